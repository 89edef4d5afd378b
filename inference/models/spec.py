"""What a model is, as data: one entry per model in ``inference.models.registry``.

Every model, whatever it does, has the same identity and weights facts (``ModelSpec``); a
classifier adds what scoring and heatmaps need (``ClassifierSpec``), a segmentation network what
the sliding window and its label map need (``SegmentationSpec``). How a network is built and run
is named by ``adapter`` (see ``inference.models.adapters``) and parametrised by ``architecture``;
nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.results import LabelInfo, Structure
from core.vocabulary import Band, Modality, Task

if TYPE_CHECKING:
    from inference.images.bands import BandConfig

# Weights and model cards of the models this project trained itself (``python -m inference train``).
SHIPPED_DIR = Path(__file__).resolve().parent / "trained"

HEADS = ("sigmoid", "softmax")


@dataclass(frozen=True, kw_only=True)
class WeightsSource:
    """Where a model's trained weights come from and where the loader looks for them.

    Paths are relative to the weights directory (``MODEL_WEIGHTS_DIR``), looked in the order
    ``installed``, ``also``, ``filename``, then ``filename`` in each of ``home_dirs``.
    """

    description: str  # where to get them, in words, for messages
    url: str  # the published file
    filename: str  # the published file's name, accepted as a flat file in the weights directory
    installed: str  # where ``weights import`` writes the checked plain state_dict
    sha256: str | None = None  # of the published file, where it is known; a mismatch is refused
    also: tuple[str, ...] = ()  # further relative paths looked in (an unpacked bundle folder...)
    home_dirs: tuple[str, ...] = ()  # other tools' caches holding ``filename``, relative to the home folder
    pickled_release: bool = False  # the published file is a pickled whole model (import needs --allow-pickle)
    bundle_member: str | None = None  # the weights file inside a bundle folder or zip, if it comes as one
    shipped: str | None = None  # weights trained by this project and committed in ``SHIPPED_DIR``

    def candidates(self, weights_dir: Path, home: Path) -> list[Path]:
        """Every place the loader looks, in order: a site's own installed weights come before the
        shipped ones."""
        paths = [weights_dir / self.installed, *(weights_dir / p for p in self.also)]
        if self.filename != self.installed and self.filename not in self.also:
            paths.append(weights_dir / self.filename)
        paths += [home / d / self.filename for d in self.home_dirs]
        if self.shipped:
            paths.append(SHIPPED_DIR / self.shipped)
        return paths

    def shipped_path(self) -> Path | None:
        return SHIPPED_DIR / self.shipped if self.shipped else None


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model: identity, task, what it reads, its weights and how to build it."""

    model_id: str
    task: Task
    modality: Modality
    display_name: str
    weights: WeightsSource
    adapter: str  # key of the adapter that builds and runs it (inference.models.adapters)
    architecture: tuple[tuple[str, object], ...] = ()  # the adapter's constructor arguments

    @property
    def weights_source(self) -> str:
        return self.weights.description

    @property
    def weights_url(self) -> str:
        return self.weights.url

    @property
    def weights_filename(self) -> str:
        return self.weights.filename

    def architecture_kwargs(self) -> dict[str, object]:
        return dict(self.architecture)


@dataclass(frozen=True, kw_only=True)
class ClassifierSpec(ModelSpec):
    """A 2D image classifier: one calibrated score per label, a CAM target layer, a bands section.

    ``head`` says what the scores are: ``sigmoid``, one independent probability per label (a chest
    X-ray may show several findings), or ``softmax``, exclusive classes whose probabilities sum
    to one. Calibration is data too: per-label operating points (``op_thresholds``, sigmoid heads)
    or a fitted ``temperature`` that divides the logits (softmax heads), or neither.
    """

    task: Task = Task.CLASSIFICATION
    labels: tuple[str, ...]
    input_size: int
    normalisation: str  # how 0..255 pixels become model input (inference.images.preprocess.NORMALISATIONS)
    cam_target_layer: str  # dotted module path of the layer heatmaps are computed on
    bands_key: str  # the section of the bands configuration holding this model's thresholds
    # Per-label operating points: scores are calibrated so that 0.5 is each label's threshold.
    op_thresholds: tuple[float, ...] = ()
    head: str = "sigmoid"
    temperature: float | None = None  # fitted on a validation split when the model was trained
    accepts: tuple[Modality, ...] = ()  # input modalities it reads; empty: only ``modality``
    class_folders: tuple[tuple[str, str], ...] = ()  # training data: (class folder name, label)
    card: str | None = None  # its model card, a JSON file in ``SHIPPED_DIR``
    shap_regions: str | None = None  # the named region set of its region SHAP; None: not offered
    # A volume, slice by slice: how the slices' scores become the volume's ("max", "mean",
    # "top-k mean", "noisy-or"), and how many adjacent slices make one input (1, or 3 for "2.5D").
    aggregation: str = "max"
    slice_context: int = 1
    # How the heatmap is shown: over the image (a radiograph, large), or beside an unmarked copy of
    # the image at the same size (a brain slice: the original design reads both side by side).
    cam_beside: bool = False
    # Classes that mean "nothing found" (no tumour, no impairment): their probability is shown but
    # never banded (a confident normal answer is not a critical finding), and they are never
    # flagged as crossing a band.
    normal_labels: tuple[str, ...] = ()
    intended_use: str = ""  # for the model card, in plain words
    limitations: tuple[str, ...] = ()  # for the model card: what it must not be trusted for

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"{self.model_id}: head {self.head!r} is not one of {HEADS}.")
        if self.op_thresholds and len(self.op_thresholds) != len(self.labels):
            raise ValueError(
                f"{self.model_id}: {len(self.op_thresholds)} operating points for {len(self.labels)} labels."
            )
        if set(self.normal_labels) - set(self.labels):
            raise ValueError(f"{self.model_id}: normal labels {self.normal_labels} are not all among its labels.")
        if self.op_thresholds and self.head != "sigmoid":
            raise ValueError(f"{self.model_id}: operating points calibrate sigmoid heads only.")

    def band_of(self, bands: "BandConfig", label: str, score: float) -> Band:
        """``label``'s band at ``score`` in this model's bands section; a normal class is never banded."""
        if label in self.normal_labels:
            return Band.NEGATIVE
        return bands.thresholds(self.bands_key, label).band_of(score)

    @property
    def exclusive(self) -> bool:
        """The labels are exclusive classes: exactly one is the answer."""
        return self.head == "softmax"


@dataclass(frozen=True, kw_only=True)
class SegmentationSpec(ModelSpec):
    """A 3D segmentation network, its input contract and how its output becomes a label map."""

    task: Task = Task.SEGMENTATION
    bundle_name: str
    bundle_version: str  # the bundle metadata version the values below were checked against
    channel_names: tuple[str, ...]  # network input channels, in the bundle's order
    output_kind: str  # "sigmoid-multilabel" or "softmax"
    output_channels: tuple[str, ...]  # what each network output channel means
    labels: tuple[LabelInfo, ...]  # label map values written by this app, ascending
    structures: tuple[Structure, ...]
    target_spacing_mm: float  # isotropic grid the network was trained on
    roi_size: tuple[int, int, int]
    overlap: float
    sw_batch_size: int
    blend_mode: str  # sliding-window blending: "constant" or "gaussian"
    padding_mode: str  # how windows are padded past the image edge
    threshold: float | None  # sigmoid threshold for multilabel outputs
    intensity: str  # the bundle's intensity preprocessing, in words

    @property
    def in_channels(self) -> int:
        return len(self.channel_names)

    @property
    def out_channels(self) -> int:
        return len(self.output_channels)

    @property
    def bundle_weights_path(self) -> str:
        return self.weights.bundle_member or self.weights.installed
