"""The MRI/CT page through AppTest: the MNI152 T1 with a grey-matter mask, scrolling, volumes and
verdicts; a BraTS case and a CT series through the (untrained, labelled) networks; bad input."""

from __future__ import annotations

import dataclasses
import gzip
import time

import nibabel as nib
import numpy as np

from tests.app.conftest import chosen_verdicts, click_verdict, new_app, texts, verdict_items
from tests.conftest import SAMPLES, require_samples
from ui.session import (
    MASK_TASK,
    MASK_UPLOAD,
    NEXT_SLICE_KEY,
    VIEW_KEY,
    channel_key,
    prior_volume_key,
    segment_key,
    slice_key,
    untrained_key,
    volume_upload_key,
)

MRI = SAMPLES / "mri"


def _nifti(data: np.ndarray, affine: np.ndarray) -> bytes:
    return gzip.compress(nib.Nifti1Image(data, affine).to_bytes(), compresslevel=1)


def _grey_matter_mask() -> bytes:
    image = nib.load(MRI / "mni152_gm_prob.nii.gz")
    return _nifti((np.asarray(image.dataobj) >= 128).astype(np.uint8), image.affine)


def _open_mask_task(at):
    at.run()
    at.switch_page("pages/volumes.py").run()
    at.segmented_control(key="volume_task").set_value(MASK_TASK).run()
    return at


def _upload_t1_and_mask(at, mask: bytes):
    t1 = (MRI / "mni152_t1.nii.gz").read_bytes()
    at.file_uploader(key=volume_upload_key(MASK_TASK)).set_value([("mni152_t1.nii.gz", t1, "application/gzip")]).run()
    at.file_uploader(key=MASK_UPLOAD).set_value(("grey_matter.nii.gz", mask, "application/gzip")).run()
    return at


def _count(table: str) -> int:
    from sqlalchemy import text

    from core.settings import load_settings
    from storage.db import open_database

    with open_database(load_settings().database_url).begin() as session:
        return session.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


def test_mni_t1_with_grey_matter_mask_scrolls_measures_and_records_a_verdict():
    require_samples()
    at = _upload_t1_and_mask(_open_mask_task(new_app()), _grey_matter_mask())
    assert not at.exception, at.exception
    said = texts(at)
    assert "Axial 95 of 189" in said  # opens in the middle slice
    assert "1.00 x 1.00 x 1.00 mm" in said
    table = at.dataframe[0].value
    volume_ml = float(table.loc[table["structure"] == "Label 1", "volume (mL)"].iloc[0])
    assert 400 < volume_ml < 1200  # an adult brain's grey matter
    assert "Download the masks as DICOM SEG" in [b.label for b in at.get("download_button")]

    at.slider(key=slice_key("Axial")).set_value(120).run()
    assert "Axial 120 of 189" in texts(at)
    at.button(key=NEXT_SLICE_KEY).click().run()
    assert "Axial 121 of 189" in texts(at)
    at.segmented_control(key=VIEW_KEY).set_value("Coronal").run()
    assert "Coronal 117 of 233" in texts(at)
    at.segmented_control(key=VIEW_KEY).set_value("Sagittal").run()
    assert "Sagittal 99 of 197" in texts(at)
    assert not at.exception, at.exception

    click_verdict(at, "Label 1", "agree", noun="structure")
    assert "Saved: Label 1 — agree" in texts(at)
    from core.settings import load_settings
    from core.vocabulary import RunKind
    from storage import reporting, repository
    from storage.db import open_database

    with open_database(load_settings().database_url).begin() as session:
        run = repository.get_run(session, 1, repository.SegmentationRunRecord)
        verdicts = repository.current_verdicts(session, 1)
    assert run.model_id == "uploaded-mask" and run.kind is RunKind.UPLOADED_MASK
    assert [(v.item, v.verdict, v.reviewer) for v in verdicts] == [("Label 1", "agree", "Dr Test")]

    from analytics import exports

    with open_database(load_settings().database_url).begin() as session:
        csv_text = exports.structure_verdicts_csv(reporting.current_structure_verdict_facts(session)).decode()
    header, row = csv_text.splitlines()
    assert header.startswith("entry,run_id,case_id,modality,structure,voxels,volume_ml,model_id")
    assert ",MR,Label 1," in row and ",uploaded-mask," in row and ",Dr Test,agree," in row
    voxels = int((np.asarray(nib.load(MRI / "mni152_gm_prob.nii.gz").dataobj) >= 128).sum())
    assert f",{voxels},{voxels / 1000}," in row  # voxel count, then mL (1 mm voxels: 1000 per mL)

    at.switch_page("pages/worklist.py").run()
    assert not at.exception, at.exception
    assert any(b.label == "Structure verdicts (CSV)" for b in at.get("download_button"))
    row = at.dataframe[0].value.iloc[0]
    assert (row["masks from"], row["status"], row["modality"], row["structures"]) == (
        "uploaded mask",
        "reviewed by 1",
        "MR",
        1,
    )


def test_a_mask_on_another_grid_is_refused_and_nothing_is_stored():
    require_samples()
    image = nib.load(MRI / "mni152_gm_prob.nii.gz")
    cropped = (np.asarray(image.dataobj)[10:-10] >= 128).astype(np.uint8)
    at = _upload_t1_and_mask(_open_mask_task(new_app()), _nifti(cropped, image.affine))
    assert not at.exception, at.exception
    errors = " ".join(str(e.value) for e in at.error)
    assert "177x233x189" in errors and "197x233x189" in errors
    assert _count("analysis_runs") == 0


def test_a_file_that_is_not_a_volume_gets_a_clear_error():
    require_samples()
    at = _open_mask_task(new_app())
    png = (SAMPLES / "cxr" / "nih_00000001_000.png").read_bytes()
    at.file_uploader(key=volume_upload_key(MASK_TASK)).set_value([("chest.png", png, "image/png")]).run()
    assert not at.exception, at.exception
    assert "chest.png" in " ".join(str(e.value) for e in at.error)


def _wait_for_segmentation(at, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while "Segmentation run" not in texts(at):
        assert time.monotonic() < deadline, texts(at)
        assert not at.exception, at.exception
        time.sleep(0.5)
        at.run()
    return at


def _small_brats_files() -> list[tuple[str, bytes, str]]:
    rng = np.random.default_rng(1)
    x, y, z = np.ogrid[:48, :56, :40]
    brain = ((x - 24) / 18.0) ** 2 + ((y - 28) / 22.0) ** 2 + ((z - 20) / 16.0) ** 2 <= 1
    files = []
    for i, suffix in enumerate(("t1c", "t1", "t2", "flair")):
        data = (brain * (300.0 + 40 * i) + rng.normal(0, 10, brain.shape) * brain).astype(np.float32)
        files.append((f"BraTS2021_00001_{suffix}.nii.gz", _nifti(data, np.eye(4)), "application/gzip"))
    return files[::-1]  # upload order must not matter


def test_brats_case_runs_through_the_untrained_network_labelled_everywhere(untrained_env, monkeypatch):
    import inference.models.registry as registry

    # A small roi keeps this test to seconds on CPU; the architecture and weights rules are unchanged.
    small = dataclasses.replace(registry.BRATS_SEGRESNET, roi_size=(48, 56, 40))
    monkeypatch.setattr(registry, "BRATS_SEGRESNET", small)
    monkeypatch.setitem(registry.MODELS, small.model_id, small)
    at = new_app()
    at.run()
    at.switch_page("pages/volumes.py").run()
    at.file_uploader(key=volume_upload_key("Brain tumour (MRI, 4 channels)")).set_value(_small_brats_files()).run()
    assert not at.exception, at.exception
    assert at.selectbox(key=channel_key("t1c")).value == "BraTS2021_00001_t1c.nii.gz"
    assert at.selectbox(key=channel_key("flair")).value == "BraTS2021_00001_flair.nii.gz"
    assert "untrained" in texts(at).lower()
    at.button(key=segment_key("monai-brats-segresnet")).click().run()
    _wait_for_segmentation(at)
    said = texts(at)
    assert "UNTRAINED weights" in said
    structures = list(at.dataframe[0].value["structure"])
    assert structures == ["Tumour core", "Whole tumour", "Enhancing tumour", "Necrotic core", "Oedema"]
    assert "(untrained model: meaningless)" in said.replace("\\", "")
    # The run's caption says what ran; its technical parameters sit behind a details toggle.
    [caption] = [c.value for c in at.caption if c.value.startswith("Segmentation run")]
    assert "roi" not in caption and "blend" not in caption and "sw\\_batch" not in caption
    [details] = [e for e in at.expander if e.label == "How it was computed (run parameters)"]
    parameters = details.dataframe[0].value
    assert {"bundle", "roi", "windows", "resampling"} <= set(parameters["parameter"])
    # A note typed with Oedema selected goes to Oedema, not to the first structure.
    click_verdict(at, "Oedema", "unsure", noun="structure")
    [box] = [t for t in at.text_input if "structure_note_text" in (t.key or "")]
    assert "Oedema" in box.label
    box.input("Oedema extends past the mask.")
    [save] = [b for b in at.button if "structure_note_save" in (b.key or "")]
    save.click().run()
    assert not at.exception, at.exception
    from tests.app.test_review_page import db_rows

    assert db_rows("SELECT item, note FROM verdicts ORDER BY id")[-1] == ("Oedema", "Oedema extends past the mask.")


def test_missing_segmentation_weights_say_where_they_go_and_offer_untrained_mode():
    at = new_app()
    at.run()
    at.switch_page("pages/volumes.py").run()
    at.file_uploader(key=volume_upload_key("Brain tumour (MRI, 4 channels)")).set_value(_small_brats_files()).run()
    said = texts(at)
    assert "cannot run" in said and "model.pt" in said
    assert not any(b.key == segment_key("monai-brats-segresnet") for b in at.button)
    at.button(key=untrained_key("monai-brats-segresnet")).click().run()
    assert any(b.key == segment_key("monai-brats-segresnet") for b in at.button)


# --- details a new user ran into (issue 9's defect list) -------------------------------------


def test_a_0_255_probability_map_is_thresholded_at_half_its_scale_with_the_range_shown():
    """0.5 on the 0-255 grey-matter map kept every voxel above zero (1961.9 mL); half the scale
    (127.5) gives the grey matter (about 1080 mL), and the page says what the map's values are."""
    require_samples()
    at = _open_mask_task(new_app())
    t1 = (MRI / "mni152_t1.nii.gz").read_bytes()
    at.file_uploader(key=volume_upload_key(MASK_TASK)).set_value([("mni152_t1.nii.gz", t1, "application/gzip")]).run()
    at.checkbox(key="mask_is_probability").check().run()
    gm = (MRI / "mni152_gm_prob.nii.gz").read_bytes()
    at.file_uploader(key=MASK_UPLOAD).set_value(("mni152_gm_prob.nii.gz", gm, "application/gzip")).run()
    assert not at.exception, at.exception
    assert "The map's values run from 0 to 255; kept: ≥ 127.5." in texts(at).replace("\\", "")
    [threshold] = [n for n in at.number_input if (n.key or "").startswith("mask_threshold")]
    assert threshold.value == 127.5
    table = at.dataframe[0].value
    volume_ml = float(table.loc[table["structure"] == "Label 1", "volume (mL)"].iloc[0])
    expected = int((np.asarray(nib.load(MRI / "mni152_gm_prob.nii.gz").dataobj) >= 127.5).sum()) / 1000
    assert volume_ml == round(expected, 1) and 1000 < volume_ml < 1150


def _ct_nifti(shape: tuple[int, int, int], spacing_mm: tuple[float, float, float]) -> bytes:
    x, y = np.ogrid[: shape[0], : shape[1]]
    body = ((x - shape[0] / 2) / (shape[0] * 0.4)) ** 2 + ((y - shape[1] / 2) / (shape[1] * 0.3)) ** 2 <= 1
    data = np.where(body[..., None], 40.0, -1000.0) * np.ones(shape, np.float32)
    return _nifti(data.astype(np.float32), np.diag([*spacing_mm, 1.0]))


def test_each_ct_opens_in_its_own_window_a_whole_body_slab_in_soft_tissue():
    """A head CT opens in the brain window; a 100 mm slab of a 500 mm wide body CT dropped next
    is read alone (not with the head CT still in the list) and opens in the soft-tissue window."""
    at = new_app()
    at.run()
    at.switch_page("pages/volumes.py").run()
    at.segmented_control(key="volume_task").set_value("Whole-body CT structures").run()
    uploader = volume_upload_key("Whole-body CT structures")
    head = ("head_ct.nii.gz", _ct_nifti((200, 200, 30), (1.0, 1.0, 5.0)), "application/gzip")
    at.file_uploader(key=uploader).set_value([head]).run()
    assert not at.exception, at.exception
    assert "Brain window L 40 / W 80 HU" in texts(at)
    body = ("body_ct_slab.nii.gz", _ct_nifti((256, 256, 20), (1.95, 1.95, 5.0)), "application/gzip")
    at.file_uploader(key=uploader).set_value([head, body]).run()
    assert not at.exception, at.exception
    said = texts(at).replace("\\", "")
    assert not [e for e in at.error if "uploaded together" in e.value]
    assert "body_ct_slab.nii.gz · CT" in said and "256 x 256 x 20 voxels" in said
    assert "Set aside: head_ct.nii.gz" in said
    assert "Soft tissue window L 40 / W 400 HU" in said


def test_one_file_for_the_brain_tumour_model_is_counted_in_words_and_the_sidebar_names_its_models():
    from inference.models.registry import segmenters

    at = new_app()
    at.run()
    at.switch_page("pages/volumes.py").run()
    files = _small_brats_files()[:1]
    at.file_uploader(key=volume_upload_key("Brain tumour (MRI, 4 channels)")).set_value(files).run()
    assert "exactly 4 NIfTI files (T1c, T1, T2, FLAIR); 1 was uploaded." in " ".join(e.value for e in at.error)
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert all(spec.display_name in sidebar for spec in segmenters())
    assert "DenseNet" not in sidebar  # the chest X-ray model is not what this page runs


def test_a_stored_segmentation_reopens_on_the_case_page_from_the_store_with_its_verdicts():
    """Another day (new session, caches empty): the case page reopens the run with the kept volume
    and masks, the same volumes, the reader's verdict, and takes a new one."""
    import streamlit as st

    require_samples()
    mask = _grey_matter_mask()
    at = _upload_t1_and_mask(_open_mask_task(new_app()), mask)
    table = at.dataframe[0].value
    volume_ml = float(table.loc[table["structure"] == "Label 1", "volume (mL)"].iloc[0])
    click_verdict(at, "Label 1", "agree", noun="structure")

    st.cache_resource.clear()
    st.cache_data.clear()
    later = new_app()
    later.query_params["segmentation"] = "1"
    later.run()
    later.switch_page("pages/cases.py").run()
    assert not later.exception, later.exception
    said = texts(later)
    assert "Case 1 · segmentation" in said
    assert "Segmentation run \\#1 · uploaded mask" in said
    assert "Axial 95 of 189" in said  # the kept T1, in the scroller, with the kept masks
    assert "not kept" not in said
    reopened = later.dataframe[0].value
    assert float(reopened.loc[reopened["structure"] == "Label 1", "volume (mL)"].iloc[0]) == volume_ml
    assert chosen_verdicts(later, noun="structure") == {"Label 1": "agree"}
    click_verdict(later, "Label 1", "disagree", noun="structure")
    assert chosen_verdicts(later, noun="structure") == {"Label 1": "disagree"}
    assert _count("analysis_runs") == 1  # reopening stores no new run

    from core.settings import load_settings
    from storage.image_store import ImageStore

    settings = load_settings()
    kept = ImageStore(settings.image_store_dir, settings.image_retention_days)
    stored = [p.name for p in settings.image_store_dir.rglob("*.npz")]
    assert len(stored) == 2, stored  # the volume and its label map, under their sha256 only
    label_maps = [p for p in settings.image_store_dir.rglob("*.labels.npz")]
    label_map = kept.get_label_map(label_maps[0].name.split(".")[0])
    gm = np.asarray(nib.load(MRI / "mni152_gm_prob.nii.gz").dataobj) >= 128
    assert label_map is not None and int((label_map.data == 1).sum()) == int(gm.sum())


def test_with_the_store_off_a_stored_segmentation_opens_without_its_volume_and_says_so(monkeypatch):
    require_samples()
    monkeypatch.setenv("IMAGE_STORE", "0")
    at = _upload_t1_and_mask(_open_mask_task(new_app()), _grey_matter_mask())
    at.switch_page("pages/cases.py").run()
    assert not at.exception, at.exception
    said = texts(at)
    assert "The image store is turned off" in said
    assert verdict_items(at, noun="structure") == ["Label 1"]


def _stored_follow_up(sha: str, lesion_slices: int) -> int:
    """A segmentation run of patient "pk-follow" stored as the MRI/CT page stores one (database and
    image store): a 40 x 40 x 20 MR volume with a 10 x 10 voxel lesion over ``lesion_slices``."""
    from core.results import LabelInfo, LabelMap, Structure
    from core.settings import load_settings
    from core.types import ModelIdentity
    from inference.volume.case import case_facts
    from inference.volume.measure import measure_structures
    from inference.volume.types import Segmentation, Volume
    from pipelines.kept_volumes import store_segmentation_run
    from storage.db import open_database, session_scope
    from storage.image_store import ImageStore

    settings = load_settings()
    sessions = open_database(settings.database_url)
    store = ImageStore(settings.image_store_dir, settings.image_retention_days)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    data = np.random.default_rng(lesion_slices).normal(100, 10, size=(40, 40, 20)).astype(np.float32)
    volume = Volume(data, affine, "MR", "dicom-series", sha, "follow-up", "LPS", "pk-follow")
    labels = np.zeros((40, 40, 20), dtype=np.uint8)
    labels[15:25, 15:25, 5 : 5 + lesion_slices] = 1
    structures = (Structure("Lesion", (1,)),)
    label_map = LabelMap(
        labels, affine, (LabelInfo(1, "Lesion", (255, 0, 0)),), structures, "uploaded:mask", sha[:2] * 32
    )
    segmentation = Segmentation(
        label_map=label_map,
        model=ModelIdentity("uploaded-mask", label_map.sha256, True, "cpu"),
        params=(("mask_sha256", label_map.sha256),),
        spacing_mm=(1.0, 1.0, 2.0),
        timing_ms=0.0,
        measurements=measure_structures(labels, affine, structures),
        measure_ms=0.0,
    )
    return store_segmentation_run(
        lambda: session_scope(sessions), store, volume, case_facts(volume), segmentation, actor="dr-a"
    )


def test_a_volume_and_its_prior_open_side_by_side_linked_with_the_change_in_volume(monkeypatch):
    """Two segmentations of the same patient (keyed hash): the later one offers its prior; both open
    in browser viewers linked by position, and the table gives each structure's volume then and now."""
    import json

    from ui.widgets.image_viewer import BUNDLE

    if not BUNDLE.is_file():
        raise AssertionError(f"The browser viewer is not built ({BUNDLE} is missing): run `bash scripts/build-viewer`.")
    monkeypatch.setenv("REVIEW_VIEWER", "browser")
    first = _stored_follow_up("a1" * 32, lesion_slices=4)  # 10 x 10 x 4 voxels of 2 mm^3: 0.8 mL
    second = _stored_follow_up("b2" * 32, lesion_slices=6)  # 1.2 mL
    at = new_app()
    at.query_params["segmentation"] = str(second)
    at.run()
    at.switch_page("pages/cases.py").run()
    assert not at.exception, at.exception
    at.toggle(key=prior_volume_key(second)).set_value(True).run()
    assert not at.exception, at.exception
    viewers = [e for e in at.get("component_instance") if "review_viewer" in e.proto.component_name]
    specs = [json.loads(json.loads(v.proto.json_args)["spec"]) for v in viewers]
    linked = [s for s in specs if s.get("sync")]
    assert len(linked) == 2 and linked[0]["sync"] == linked[1]["sync"] == f"prior:{second}:{first}"
    assert [s["kind"] for s in linked] == ["volume", "volume"]
    assert linked[0]["scene"] != linked[1]["scene"], "each study its own volume"
    assert all("labels" in [layer["role"] for layer in s["layers"]] for s in linked), "each with its masks"
    [table] = [d.value for d in at.dataframe if "change (mL)" in d.value.columns]
    row = table.loc[table["structure"] == "Lesion"].iloc[0]
    assert (row["now (mL)"], row["prior (mL)"], row["change (mL)"], row["change (%)"]) == (1.2, 0.8, "+0.40", "+50.0")
    assert any("move both volumes together" in str(c.value) for c in at.caption)


def test_a_volume_without_a_patient_key_offers_no_prior():
    require_samples()
    at = _upload_t1_and_mask(_open_mask_task(new_app()), _grey_matter_mask())
    at.switch_page("pages/cases.py").run()
    assert not at.exception, at.exception
    assert not [t for t in at.toggle if t.label.startswith("Compare with a prior")], (
        "a NIfTI says nothing about whose it is"
    )
