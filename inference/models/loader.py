"""Build the network, load its weights, and say honestly which weights are in it."""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.errors import WeightsInvalid
from core.settings import Settings
from inference.models.registry import ModelSpec
from inference.models.weights import find_weights_file, missing_weights_error, read_state_dict, sha256_of_file

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

UNTRAINED_LABEL = "untrained weights: scores are meaningless, for interface testing only"
UNTRAINED_SEED = 0


def import_xrv():
    """Import torchxrayvision without keeping its process-wide ``warnings.filterwarnings('ignore')``."""
    with warnings.catch_warnings():
        import torchxrayvision

    return torchxrayvision


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

    def hooked_copy(self) -> "torch.nn.Module":
        """The private copy for hook-based CAM methods (call with ``hook_lock`` held).

        Its ``features`` end in an explicit, not in-place ReLU, the CAM target layer: the
        activations pytorch-grad-cam records are post-ReLU on every device (torchxrayvision's own
        in-place ReLU made them post-ReLU on CPU only, by aliasing).
        """
        import copy

        from inference.models.cam_layer import PostReLU

        if not self._hooked_copy:
            clone = copy.deepcopy(self.module)
            clone.features.add_module("cam_relu", PostReLU())
            self._hooked_copy.append(clone.eval())
        return self._hooked_copy[0]


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_architecture(spec: ModelSpec) -> "torch.nn.Module":
    """The torchxrayvision DenseNet for ``spec`` with randomly initialised weights (no download)."""
    import torch

    xrv = import_xrv()
    model = xrv.models.DenseNet(weights=None, num_classes=len(spec.labels))
    # What DenseNet(weights=key) would set, without its download and unpickling.
    model.pathologies = list(spec.labels)
    model.targets = model.pathologies
    model.op_threshs = torch.tensor(spec.op_thresholds, dtype=torch.float32)
    model.input_resolution = spec.input_size
    return model.eval()


def apply_state_dict(model: "torch.nn.Module", state_dict: dict, *, source_name: str) -> None:
    """Load with strict keys; the operating points always come from the registry."""
    state_dict = {k: v for k, v in state_dict.items() if k != "op_threshs"}
    state_dict["op_threshs"] = model.op_threshs  # the registry's operating points, never the file's
    try:
        result = model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        detail = " ".join(str(exc).split())[:400]
        raise WeightsInvalid(
            f"{source_name} does not fit the DenseNet-121 chest X-ray architecture ({first_line}): {detail}"
        ) from exc
    if result.missing_keys or result.unexpected_keys:  # pragma: no cover - strict raises first
        raise WeightsInvalid(f"{source_name}: missing {result.missing_keys}, unexpected {result.unexpected_keys}.")


def state_dict_sha256(model: "torch.nn.Module") -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _untrained_model(spec: ModelSpec) -> "torch.nn.Module":
    """Seeded random weights whose batch-norm statistics are fitted to synthetic radiograph-range
    input, so scores spread over 0..1 instead of saturating (still meaningless, and labelled so)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        model = build_architecture(spec)
        noise = torch.rand(8, 1, 28, 28) * 2048.0 - 1024.0
        synthetic = torch.nn.functional.interpolate(noise, size=spec.input_size, mode="bilinear")
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the synthetic batch
    model.train()
    with torch.no_grad():
        model.features(synthetic)
    return model.eval()


def load_model(spec: ModelSpec, settings: Settings, *, allow_untrained: bool, device: str | None = None) -> LoadedModel:
    """Load trained weights from disk, or (only when asked) the labelled untrained network.

    Raises:
        WeightsMissing: no weights file and ``allow_untrained`` is False.
        WeightsInvalid: a weights file exists but cannot be loaded; never replaced silently.
    """
    device = device or pick_device()
    path = find_weights_file(spec, settings)
    if path is not None:
        model = build_architecture(spec)
        apply_state_dict(model, read_state_dict(path), source_name=path.name)
        sha, trained, where = sha256_of_file(path), True, str(path)
        log.info("Loaded trained weights for %s from %s", spec.model_id, path)
    elif allow_untrained:
        model = _untrained_model(spec)
        sha, trained, where = state_dict_sha256(model), False, None
        log.warning("Running %s with UNTRAINED weights (%s)", spec.model_id, UNTRAINED_LABEL)
    else:
        raise missing_weights_error(spec, settings)
    model = model.to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return LoadedModel(spec=spec, module=model, weights_sha256=sha, trained=trained, weights_path=where, device=device)
