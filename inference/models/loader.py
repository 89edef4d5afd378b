"""Build any registered network, load its weights, and say honestly which weights are in it.

One loader for classifiers and segmentation networks: trained weights from the first file the
registry's ``WeightsSource`` names, read with ``torch.load(weights_only=True)`` and loaded with
strict keys; no file means ``WeightsMissing`` unless the untrained mode was asked for
explicitly, in which case the adapter's seeded random network is labelled ``trained=False``. A
file that exists but does not load is an error, never silently replaced.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.errors import WeightsInvalid
from core.settings import Settings
from core.types import ModelIdentity
from inference.models.adapters import Adapter, adapter_for, apply_state_dict, import_xrv
from inference.models.cards import check_shipped_weights, ensemble_members, member_path
from inference.models.spec import ClassifierSpec, ModelSpec, SegmentationSpec
from inference.models.weights import find_weights_file, missing_weights_error, read_state_dict, sha256_of_file

if TYPE_CHECKING:
    import torch

__all__ = [
    "UNTRAINED_LABEL",
    "EnsembleMember",
    "LoadedModel",
    "build_network",
    "import_xrv",
    "load_model",
    "pick_device",
    "state_dict_sha256",
]

log = logging.getLogger(__name__)

UNTRAINED_LABEL = "untrained weights: scores are meaningless, for interface testing only"


@dataclass(frozen=True)
class EnsembleMember:
    """Another checkpoint of a model (its card's ``weights.ensemble``): its scores, with its own
    temperature, give the spread shown as uncertainty; the scores and heatmaps a reader judges
    come from the model's first checkpoint."""

    module: "torch.nn.Module" = field(repr=False)
    weights_sha256: str
    seed: int
    temperature: float | None


@dataclass(frozen=True)
class LoadedModel:
    """A network ready for inference plus the facts every result must carry."""

    spec: ModelSpec
    module: "torch.nn.Module" = field(repr=False)
    weights_sha256: str
    trained: bool
    weights_path: str | None
    device: str
    # Hook-based CAM methods (pytorch-grad-cam) run on a private copy of the network, never on
    # ``module``: a forward hook on the shared module would also fire for every other session's
    # plain forward pass. The lock serialises the hook users of that copy.
    hook_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _hooked_copy: list = field(default_factory=list, repr=False, compare=False)
    ensemble: tuple[EnsembleMember, ...] = field(default=(), repr=False, compare=False)

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(
            model_id=self.spec.model_id, weights_sha256=self.weights_sha256, trained=self.trained, device=self.device
        )

    @property
    def adapter(self) -> Adapter:
        return adapter_for(self.spec)

    @property
    def classifier_spec(self) -> ClassifierSpec:
        if not isinstance(self.spec, ClassifierSpec):
            raise TypeError(f"{self.spec.model_id} is not a classifier.")
        return self.spec

    @property
    def segmentation_spec(self) -> SegmentationSpec:
        if not isinstance(self.spec, SegmentationSpec):
            raise TypeError(f"{self.spec.model_id} is not a segmentation network.")
        return self.spec

    def hooked_copy(self) -> "torch.nn.Module":
        """The private copy for hook-based CAM methods (call with ``hook_lock`` held)."""
        if not self._hooked_copy:
            self._hooked_copy.append(self.adapter.cam_copy(self.classifier_spec, self.module))
        return self._hooked_copy[0]


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def state_dict_sha256(model: "torch.nn.Module") -> str:
    """A hash of the weights themselves (for the untrained network, which has no file)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_model(spec: ModelSpec, settings: Settings, *, allow_untrained: bool, device: str | None = None) -> LoadedModel:
    """Load trained weights from disk, or (only when asked) the labelled untrained network.

    Raises:
        WeightsMissing: no weights file and ``allow_untrained`` is False.
        WeightsInvalid: a weights file exists but cannot be loaded; never replaced silently.
    """
    device = device or pick_device()
    adapter = adapter_for(spec)
    path = find_weights_file(spec, settings)
    members: tuple[EnsembleMember, ...] = ()
    if path is not None:
        sha = sha256_of_file(path)
        check_shipped_weights(spec, path, sha)
        model = adapter.build(spec)
        apply_state_dict(spec, model, read_state_dict(path, spec), source_name=path.name)
        trained, where = True, str(path)
        log.info("Loaded trained weights for %s from %s", spec.model_id, path)
        shipped = spec.weights.shipped_path()
        if shipped is not None and path.resolve() == shipped.resolve():
            members = tuple(_member(spec, entry, device) for entry in ensemble_members(spec))
    elif allow_untrained:
        model = adapter.untrained(spec)
        sha, trained, where = state_dict_sha256(model), False, None
        log.warning("Running %s with UNTRAINED weights (%s)", spec.model_id, UNTRAINED_LABEL)
    else:
        raise missing_weights_error(spec, settings)
    model = adapter.for_inference(spec, model.to(device).eval())
    model.requires_grad_(False)
    return LoadedModel(
        spec=spec,
        module=model,
        weights_sha256=sha,
        trained=trained,
        weights_path=where,
        device=device,
        ensemble=members,
    )


@dataclass(frozen=True)
class ModelRef:
    """A model that runs elsewhere (on the workers): which one, and the weights it must run there.
    What a page needs to start a job and label it, without the network in this process."""

    spec: ModelSpec
    weights_sha256: str
    trained: bool


def model_ref(spec: ModelSpec, settings: Settings, *, allow_untrained: bool) -> ModelRef:
    sha, trained = weights_identity(spec, settings, allow_untrained=allow_untrained)
    return ModelRef(spec=spec, weights_sha256=sha, trained=trained)


def weights_identity(spec: ModelSpec, settings: Settings, *, allow_untrained: bool) -> tuple[str, bool]:
    """(weights sha256, trained) of what ``load_model`` would load, without loading it: for a
    process that sends the work to a worker and must name the weights it expects there.

    Raises:
        WeightsMissing: no weights file and ``allow_untrained`` is False.
    """
    path = find_weights_file(spec, settings)
    if path is not None:
        return sha256_of_file(path), True
    if allow_untrained:
        return state_dict_sha256(adapter_for(spec).untrained(spec)), False
    raise missing_weights_error(spec, settings)


def _member(spec: ModelSpec, entry: dict, device: str) -> EnsembleMember:
    """One more checkpoint the card lists, held to the card's sha256 as the first one is."""
    path = member_path(entry)
    if not path.is_file():
        raise WeightsInvalid(
            f"The model card of {spec.model_id} lists the checkpoint {path.name}, which is missing from "
            f"{path.parent}; restore it from the repository."
        )
    sha = sha256_of_file(path)
    if sha != entry["sha256"]:
        raise WeightsInvalid(
            f"{path} is not the checkpoint its model card lists (sha256 {sha[:12]}..., the card says "
            f"{entry['sha256'][:12]}...); restore it from the repository."
        )
    adapter = adapter_for(spec)
    module = adapter.build(spec)
    apply_state_dict(spec, module, read_state_dict(path, spec), source_name=path.name)
    module = adapter.for_inference(spec, module.to(device).eval())
    module.requires_grad_(False)
    return EnsembleMember(
        module=module, weights_sha256=sha, seed=int(entry["seed"]), temperature=entry.get("temperature")
    )


def build_network(spec: ModelSpec) -> "torch.nn.Module":
    """The registered architecture with random weights (no download): what a weights file must fit."""
    return adapter_for(spec).build(spec)
