"""What is truly different between model families: how a network is built and how it is run.

Everything else (finding, importing, hashing and strictly loading weights, the untrained mode,
device placement, identity) is shared and lives in ``weights`` and ``loader``. An adapter is
named by a registry entry's ``adapter`` field and parametrised by its ``architecture`` data, so
a new model of a known family is a registry entry with no code:

* ``xrv-densenet``: torchxrayvision's DenseNet-121 (operating points from the registry).
* ``torchvision``: a torchvision classification network whose target layer feeds global average
  pooling and one linear head directly (the ResNets' ``layer4``), optionally with a 1-channel input.
* ``monai-segresnet``: MONAI's SegResNet, as the model-zoo bundles build it.
"""

from __future__ import annotations

import copy
import threading
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import WeightsInvalid
from inference.models.spec import ClassifierSpec, ModelSpec, SegmentationSpec

if TYPE_CHECKING:
    import torch

# A network is reached through attributes the registry names (``features``, ``layer4``, ``fc``...),
# which torch's own annotations cannot describe.
Network = Any

UNTRAINED_SEED = 0
# torch's seed is the process's: two seeded builds at once (a server's warm-up loading one model
# while a page asks for another) interleave their draws, and each gets other weights than it
# would alone (a worker then refused a page's job for "other weights", 2026-12-07). One at a time.
_SEEDED_BUILD = threading.Lock()


def import_xrv() -> Any:
    """Import torchxrayvision without keeping its process-wide ``warnings.filterwarnings('ignore')``."""
    with warnings.catch_warnings():
        import torchxrayvision

    return torchxrayvision


def module_at(module: Network, dotted: str) -> Network:
    """The submodule at a dotted path such as ``features.norm5`` or ``layer4``."""
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def calibrate(probabilities: "torch.Tensor", thresholds: "torch.Tensor") -> "torch.Tensor":
    """Map probabilities so that each label's operating point becomes 0.5 (torchxrayvision's op_norm)."""
    import torch

    below = probabilities / (thresholds * 2)
    above = 1 - (1 - probabilities) / ((1 - thresholds) * 2)
    return torch.where(probabilities < thresholds, below, above)


class Adapter:
    """Builds a model family's network; classifiers also say how to score and where CAMs come from."""

    def build(self, spec: ModelSpec) -> Network:
        raise NotImplementedError

    def untrained(self, spec: ModelSpec) -> Network:
        """The seeded random network of the untrained mode (the same weights on every machine)."""
        import torch

        with _SEEDED_BUILD, torch.random.fork_rng(devices=[]):
            torch.manual_seed(UNTRAINED_SEED)
            return self.build(spec)

    def fit_state_dict(self, spec: ModelSpec, model: Network, state_dict: dict) -> dict:
        """The state_dict to load with strict keys (an adapter may supply registry-owned buffers)."""
        return state_dict

    def architecture_name(self, spec: ModelSpec) -> str:
        return f"{spec.display_name} architecture"

    def for_inference(self, spec: ModelSpec, model: Network) -> Network:
        """The loaded network as it runs best for inference (the same weights and outputs)."""
        return model

    # Classifiers -------------------------------------------------------------------------------

    def forward_with_features(
        self, spec: ClassifierSpec, module: Network, x: "torch.Tensor"
    ) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Calibrated scores (B, C) and the CAM target layer's activations (B, K, h, w), one pass."""
        raise NotImplementedError(f"{type(self).__name__} is not a classifier adapter.")

    def head_weight(self, spec: ClassifierSpec, module: Network) -> "torch.Tensor":
        """(C, K) weight of the linear head that follows global pooling of the target layer."""
        raise NotImplementedError(f"{type(self).__name__} is not a classifier adapter.")

    def score(self, spec: ClassifierSpec, module: Network, x: "torch.Tensor") -> "torch.Tensor":
        """Calibrated scores (B, C) for model inputs (B, 1, S, S)."""
        return self.forward_with_features(spec, module, x)[0]

    def gradcam_terms(
        self, spec: ClassifierSpec, module: Network, features: "torch.Tensor"
    ) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Grad-CAM in closed form, for every label from one forward pass: the channel weights
        (C, K), proportional for each label to the mean gradient of its logit over the target layer,
        and the activations (K, h, w) that pytorch-grad-cam records at that layer; the map is
        ReLU(weights @ activations). Each adapter derives them for its own architecture."""
        raise NotImplementedError(f"{type(self).__name__} is not a classifier adapter.")

    def cam_copy(self, spec: ClassifierSpec, module: Network) -> Network:
        """A private copy for hook-based CAM methods, with ``spec.cam_target_layer`` in it."""
        return copy.deepcopy(module).eval()

    # Segmentation networks ---------------------------------------------------------------------

    def segment_window(self, spec: SegmentationSpec, module: Network, window: "torch.Tensor") -> "torch.Tensor":
        """The network's logits for one sliding-window batch (B, C, *roi), under inference mode."""
        return module(window)


class XrvDenseNet(Adapter):
    def build(self, spec: ModelSpec) -> Network:
        """The torchxrayvision DenseNet with random weights (no download, no unpickling)."""
        import torch

        assert isinstance(spec, ClassifierSpec)
        model = import_xrv().models.DenseNet(weights=None, num_classes=len(spec.labels))
        # What DenseNet(weights=key) would set, without its download.
        model.pathologies = list(spec.labels)
        model.targets = model.pathologies
        model.op_threshs = torch.tensor(spec.op_thresholds, dtype=torch.float32)
        model.input_resolution = spec.input_size
        return model.eval()

    def untrained(self, spec: ModelSpec) -> Network:
        """Seeded random weights whose batch-norm statistics are fitted to synthetic radiograph-range
        input, so scores spread over 0..1 instead of saturating (still meaningless, and labelled so)."""
        import torch

        assert isinstance(spec, ClassifierSpec)
        with _SEEDED_BUILD, torch.random.fork_rng(devices=[]):
            torch.manual_seed(UNTRAINED_SEED)
            model = self.build(spec)
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

    def fit_state_dict(self, spec: ModelSpec, model: Network, state_dict: dict) -> dict:
        fitted = {k: v for k, v in state_dict.items() if k != "op_threshs"}
        fitted["op_threshs"] = model.op_threshs  # the registry's operating points, never the file's
        return fitted

    def architecture_name(self, spec: ModelSpec) -> str:
        return "DenseNet-121 chest X-ray architecture"

    def forward_with_features(
        self, spec: ClassifierSpec, module: Network, x: "torch.Tensor"
    ) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Mirrors torchxrayvision's ``DenseNet.forward`` (ReLU, pooling, linear, sigmoid, ``op_norm``)
        without its in-place ReLU, so the activations stay available for Grad-CAM. No second sigmoid."""
        import torch
        import torch.nn.functional as F

        features = module.features(x)
        logits = module.classifier(F.relu(features).mean(dim=(2, 3)))
        return calibrate(torch.sigmoid(logits), module.op_threshs), features

    def head_weight(self, spec: ClassifierSpec, module: Network) -> "torch.Tensor":
        return module.classifier.weight

    def gradcam_terms(
        self, spec: ClassifierSpec, module: Network, features: "torch.Tensor"
    ) -> tuple["torch.Tensor", "torch.Tensor"]:
        """``features`` (K, h, w) are ``norm5``'s output; the CAM layer is the ReLU after it, whose
        output A feeds a second (idempotent) ReLU, global average pooling and the linear head. So
        d logit_c / d A_k(i,j) = W_ck / hw * [A_k(i,j) > 0], whose mean over positions is
        W_ck / hw * (share of positions where A_k > 0); 1 / hw drops out in the scaling."""
        import torch.nn.functional as F

        positive_share = (features > 0).float().mean(dim=(1, 2))
        return module.classifier.weight * positive_share[None, :], F.relu(features)

    def score(self, spec: ClassifierSpec, module: Network, x: "torch.Tensor") -> "torch.Tensor":
        return module(x)

    def cam_copy(self, spec: ClassifierSpec, module: Network) -> Network:
        """Its ``features`` end in an explicit, not in-place ReLU, the CAM target layer: the
        activations pytorch-grad-cam records are post-ReLU on every device (torchxrayvision's own
        in-place ReLU made them post-ReLU on CPU only, by aliasing)."""
        from inference.models.cam_layer import PostReLU

        clone = copy.deepcopy(module)
        clone.features.add_module("cam_relu", PostReLU())
        return clone.eval()


class TorchvisionClassifier(Adapter):
    """``architecture``: ``name`` (a torchvision.models builder), ``in_channels`` (default 3),
    ``first_conv`` (dotted path of the input convolution, when ``in_channels`` is not 3) and
    ``head`` (dotted path of the final linear layer). Outputs follow the spec's ``head``: sigmoid
    per label, calibrated with the registry's operating points when it has them, or softmax over
    exclusive classes of the logits divided by the spec's fitted temperature."""

    def build(self, spec: ModelSpec) -> Network:
        import torch
        import torchvision

        assert isinstance(spec, ClassifierSpec)
        arch = spec.architecture_kwargs()
        builder = getattr(torchvision.models, str(arch["name"]))
        model = builder(weights=None, num_classes=len(spec.labels))
        in_channels = int(arch.get("in_channels", 3))  # type: ignore[call-overload]
        if in_channels != 3:
            parent_path, _, leaf = str(arch["first_conv"]).rpartition(".")
            parent = module_at(model, parent_path) if parent_path else model
            old = getattr(parent, leaf)
            setattr(
                parent,
                leaf,
                torch.nn.Conv2d(
                    in_channels,
                    old.out_channels,
                    kernel_size=old.kernel_size,
                    stride=old.stride,
                    padding=old.padding,
                    bias=old.bias is not None,
                ),
            )
        return model.eval()

    def for_inference(self, spec: ModelSpec, model: Network) -> Network:
        """Channels-last weights: oneDNN's convolutions run a ResNet-18 slice 10-20% faster on
        this CPU, most at the small batches of test-time augmentation (outputs equal to 1e-5)."""
        import torch

        return model.to(memory_format=torch.channels_last)

    def _calibrated(self, spec: ClassifierSpec, logits: "torch.Tensor") -> "torch.Tensor":
        import torch

        if spec.head == "softmax":
            return torch.softmax(logits / (spec.temperature or 1.0), dim=1)
        probabilities = torch.sigmoid(logits)
        if not spec.op_thresholds:
            return probabilities
        thresholds = torch.tensor(spec.op_thresholds, dtype=probabilities.dtype, device=probabilities.device)
        return calibrate(probabilities, thresholds)

    def forward_with_features(
        self, spec: ClassifierSpec, module: Network, x: "torch.Tensor"
    ) -> tuple["torch.Tensor", "torch.Tensor"]:
        captured: list[torch.Tensor] = []
        handle = module_at(module, spec.cam_target_layer).register_forward_hook(
            lambda _m, _i, output: captured.append(output)
        )
        try:
            logits = module(x)
        finally:
            handle.remove()
        return self._calibrated(spec, logits), captured[0]

    def head_weight(self, spec: ClassifierSpec, module: Network) -> "torch.Tensor":
        return module_at(module, str(spec.architecture_kwargs()["head"])).weight

    def gradcam_terms(
        self, spec: ClassifierSpec, module: Network, features: "torch.Tensor"
    ) -> tuple["torch.Tensor", "torch.Tensor"]:
        """The target layer (a ResNet's ``layer4``, which ends in a ReLU) feeds global average
        pooling and the linear head directly: d logit_c / d A_k(i,j) = W_ck / hw at every
        position, so the channel weights are the head's own (no gate, unlike the DenseNet)."""
        return self.head_weight(spec, module), features

    def score(self, spec: ClassifierSpec, module: Network, x: "torch.Tensor") -> "torch.Tensor":
        return self._calibrated(spec, module(x))


class MonaiSegResNet(Adapter):
    def build(self, spec: ModelSpec) -> Network:
        """The bundle's network with randomly initialised weights (no download)."""
        from monai.networks.nets import SegResNet

        return SegResNet(**spec.architecture_kwargs()).eval()  # type: ignore[arg-type]

    def segment_window(self, spec: SegmentationSpec, module: Network, window: "torch.Tensor") -> "torch.Tensor":
        """The same logits as ``module(window)`` with a fraction of its peak memory (``segresnet_lean``)."""
        from inference.models.segresnet_lean import lean_forward

        return lean_forward(module, window)

    def architecture_name(self, spec: ModelSpec) -> str:
        assert isinstance(spec, SegmentationSpec)
        return f"{spec.display_name} architecture ({spec.bundle_name} {spec.bundle_weights_path})"


ADAPTERS: dict[str, Adapter] = {
    "xrv-densenet": XrvDenseNet(),
    "torchvision": TorchvisionClassifier(),
    "monai-segresnet": MonaiSegResNet(),
}


def adapter_for(spec: ModelSpec) -> Adapter:
    try:
        return ADAPTERS[spec.adapter]
    except KeyError:
        raise KeyError(f"{spec.model_id} names adapter {spec.adapter!r}; known: {sorted(ADAPTERS)}.") from None


def apply_state_dict(spec: ModelSpec, model: Network, state_dict: dict, *, source_name: str) -> None:
    """Load with strict keys and shapes; ``WeightsInvalid`` naming the file otherwise."""
    adapter = adapter_for(spec)
    try:
        model.load_state_dict(adapter.fit_state_dict(spec, model, state_dict), strict=True)
    except RuntimeError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        detail = " ".join(str(exc).split())[:400]
        raise WeightsInvalid(
            f"{source_name} does not fit the {adapter.architecture_name(spec)} ({first_line}): {detail}"
        ) from exc


def as_input(x: np.ndarray, device: str) -> "torch.Tensor":
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
