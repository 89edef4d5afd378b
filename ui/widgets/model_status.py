"""What every page says about the model: trained, untrained (labelled) or missing (with the fix)."""

from __future__ import annotations

import streamlit as st

from core.errors import ReviewError, WeightsInvalid, WeightsMissing
from core.settings import load_settings
from inference.models.loader import UNTRAINED_LABEL, LoadedModel, ModelRef
from inference.models.registry import chest_classifiers, segmenters, slice_classifiers
from inference.models.weights import find_weights_file, import_command, installed_weights_path
from ui import models, resources
from ui.identity import reviewer
from ui.session import untrained_key

VOLUME_PAGE = "volumes"  # the MRI/CT page's url path (app.py)

DISCLAIMER = (
    "Research and demonstration tool, not a cleared medical device. AI output must not be used "
    "for diagnosis or treatment decisions."
)


def untrained_banner() -> None:
    st.error(f"**{UNTRAINED_LABEL.capitalize()}.** Every score, heatmap and stored run is marked as untrained.")


def _enable_untrained(spec) -> None:
    models.choose_untrained(spec, reviewer() or None)


def _retry_download() -> None:
    models.forget_download_attempt()


def weights_problem_panel(problem: WeightsMissing | WeightsInvalid) -> None:
    """Explain what is missing, where it goes, and the two ways forward."""
    settings = load_settings()
    spec = models.classifier_spec()
    expected = installed_weights_path(spec, settings)
    st.error(f"**The chest X-ray model cannot run.** {problem}")
    st.markdown("**To use the trained model**, on a machine with internet:")
    st.code(
        f"curl -L -o weights.pt {spec.weights_url}\n" + import_command(spec).strip("`").replace("FILE", "weights.pt"),
        language="bash",
    )
    st.caption(f"The weights are installed as {expected}. Set MODEL_WEIGHTS_DIR to use another folder.")
    reason = models.last_download_error()
    if reason:
        st.caption(f"Automatic download was tried and failed: {reason}")
    left, right = st.columns(2)
    left.button("Try the download again", on_click=_retry_download, disabled=not settings.auto_download_weights)
    right.button(
        "Use untrained weights (scores are meaningless, for interface testing only)",
        on_click=_enable_untrained,
        args=(spec,),
        type="secondary",
        help="For this model on this server, every tab and reviewer, until a restart; recorded in the audit trail.",
    )


def require_model(spec=None) -> LoadedModel | None:
    """The chest X-ray model for this page (``spec``, by default ``CXR_MODEL_ID``'s), or None after
    showing why it cannot run."""
    if spec is not None and spec.model_id != models.classifier_spec().model_id:
        return classifier_panel(spec)
    state = models.classifier()
    if isinstance(state, LoadedModel):
        if not state.trained:
            untrained_banner()
        return state
    weights_problem_panel(state)
    return None


def _classifier_line(spec) -> str:
    """A slice classifier in the sidebar without loading it (the page loads the one chosen): a
    site's model without weights is said to run untrained, as the page then says again."""
    if find_weights_file(spec, load_settings()) is not None:
        return _sidebar_line(spec.display_name, models.loaded(spec))
    if models.untrained_allowed(spec):
        return f"{spec.display_name}  \n:red[:material/warning: no weights installed: **UNTRAINED** when chosen (meaningless)]"
    return f"{spec.display_name}  \n:red[:material/error: weights missing] — see the page for the fix"


def _sidebar_line(display_name: str, state: LoadedModel | ModelRef | Exception) -> str:
    if not isinstance(state, LoadedModel | ModelRef):
        return f"{display_name}  \n:red[:material/error: weights missing] — see the page for the fix"
    weights = "trained weights" if state.trained else ":red[:material/warning: **UNTRAINED weights** (meaningless)]"
    where = f"device: {state.device.upper()}" if isinstance(state, LoadedModel) else "runs on the workers"
    return f"{display_name}  \n{weights}  \nweights sha256 {state.weights_sha256[:12]}…  \n{where}"


def bands_validation(state) -> str | None:
    """The warning when the bands in force were validated at this site on other weights than the
    chest X-ray model runs now (None when they match, were never validated here, or nothing runs)."""
    if not isinstance(state, LoadedModel | ModelRef):
        return None
    try:
        bands = resources.band_config()
    except ReviewError:
        return None  # the page says what is wrong with the bands file
    spec = models.classifier_spec()
    return bands.validation_warning(spec.bands_key, spec.model_id, state.weights_sha256)


def sidebar_status(page: str | None = None) -> None:
    """The models the page in view runs: the segmentation networks on the MRI/CT page, the chest
    X-ray classifier elsewhere (the case, worklist and analytics pages show its runs)."""
    if page == VOLUME_PAGE:
        st.sidebar.markdown("**Models**")
        for spec in segmenters():
            st.sidebar.caption(_sidebar_line(spec.display_name, models.seg_model(spec.model_id)))
        for spec in slice_classifiers():
            st.sidebar.caption(_classifier_line(spec))
        return
    st.sidebar.markdown("**Model**")
    state = models.classifier()
    st.sidebar.caption(_sidebar_line(models.classifier_spec().display_name, state))
    said = bands_validation(state)
    if said:
        st.sidebar.warning(said)
    for spec in chest_classifiers():  # a site's other chest X-ray models, offered on the review page
        if spec.model_id != models.classifier_spec().model_id:
            st.sidebar.caption(_classifier_line(spec))


def classifier_panel(spec):
    """A classifier other than the chest X-ray model (the brain MRI models), or None after showing
    why it cannot run and the fix."""
    state = models.loaded(spec)
    if isinstance(state, LoadedModel):
        if not state.trained:
            untrained_banner()
        return state
    st.error(f"**{spec.display_name} cannot run.** {state}")
    if spec.weights.shipped:
        st.markdown(
            "Its weights ship with this repository (`inference/models/trained/`): restore that folder from "
            "the repository, or train them again:"
        )
        st.code(f"python -m inference train --model {spec.model_id} --data FOLDER_WITH_TRAIN_AND_TEST", language="bash")
    _untrained_button(spec, "scores")
    return None


def _untrained_button(spec, outputs: str) -> None:
    st.button(
        f"Use untrained weights ({outputs} are meaningless, for interface testing only)",
        on_click=_enable_untrained,
        args=(spec,),
        key=untrained_key(spec.model_id),
        help="For this model on this server, every tab and reviewer, until a restart; recorded in the audit trail.",
    )


def seg_model_panel(spec):
    """The segmentation network for ``spec``, or None after showing why it cannot run and the fix."""
    state = models.seg_model(spec.model_id)
    if isinstance(state, LoadedModel | ModelRef):
        if not state.trained:
            st.error(
                f"**{spec.display_name}: {UNTRAINED_LABEL}.** Its masks and volumes are meaningless; every "
                "volume, mask caption and stored run is marked as untrained."
            )
        return state
    st.error(f"**{spec.display_name} cannot run.** {state}")
    st.markdown(
        "**To use the trained model**, on a machine with internet download the MONAI bundle, then import it here:"
    )
    st.code(
        f"python -m monai.bundle download {spec.bundle_name} --bundle_dir bundles\n"
        f"python -m inference weights import bundles/{spec.bundle_name} --model {spec.model_id}",
        language="bash",
    )
    st.caption(
        f"The weights are installed as {installed_weights_path(spec, load_settings())}. "
        "Set MODEL_WEIGHTS_DIR to use another folder."
    )
    _untrained_button(spec, "masks")
    return None
