"""A 2D slice through any registered classifier, with the checks and extras a brain MRI model needs:
which images it reads (``expected_image``), and test-time augmentation as a measure of how stable
its answer is (``tta``).

TTA scores four views of the slice in one batched forward pass (the original, a horizontal flip,
brightness +10% and -10%): the mean and standard deviation per class are the uncertainty, flagged
where mean ± standard deviation crosses a band boundary. The views are label-preserving changes
that a scanner or an export can make; a model whose answer moves under them is less to be trusted
on this image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.types import Image2D
from core.vocabulary import Modality
from inference.images.bands import BandConfig
from inference.images.expected import CHEST_RADIOGRAPH, MODALITY_NAMES, ExpectedImage
from inference.images.preprocess import NORMALISATIONS, model_square
from inference.models.adapters import as_input
from inference.models.loader import LoadedModel
from inference.models.spec import ClassifierSpec

TTA_VIEWS = ("original", "horizontal flip", "brightness +10%", "brightness -10%")


@dataclass(frozen=True)
class Uncertainty:
    method: str  # "test-time augmentation (4 views)"
    views: tuple[str, ...]
    labels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crosses_band: tuple[bool, ...]  # mean ± std spans a band boundary

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "views": list(self.views),
            "classes": [
                {"label": label, "mean": round(m, 6), "std": round(s, 6), "crosses_band": c}
                for label, m, s, c in zip(self.labels, self.mean, self.std, self.crosses_band, strict=True)
            ],
        }


def expected_image(spec: ClassifierSpec) -> ExpectedImage:
    """The DICOM modalities ``spec`` reads, for the front door's one-sentence refusal."""
    if spec.modality is Modality.CHEST_XRAY:
        return CHEST_RADIOGRAPH
    modalities = tuple(m.value for m in (spec.accepts or (spec.modality,)))
    names = " or ".join(MODALITY_NAMES.get(m, m) for m in modalities)
    name = spec.display_name.split(" (")[0]
    return ExpectedImage(
        modalities=frozenset(modalities),
        what=names,
        reader=f"The {name[:1].lower()}{name[1:]}",
        elsewhere=f"it was trained on {' and '.join(modalities)} slices and would give meaningless scores for others.",
        noun="slices",
    )


def tta_inputs(image: Image2D, spec: ClassifierSpec) -> np.ndarray:
    """(4, 1, S, S) model inputs of the four ``TTA_VIEWS``."""
    square = model_square(image.pixels, spec.input_size)
    views = np.stack([square, square[:, ::-1], np.clip(square * 1.1, 0, 255), square * 0.9])
    return NORMALISATIONS[spec.normalisation](views)[:, None].astype(np.float32)


def tta(loaded: LoadedModel, image: Image2D, bands: BandConfig) -> Uncertainty:
    import torch

    spec = loaded.classifier_spec
    with torch.inference_mode():
        scores = loaded.adapter.score(spec, loaded.module, as_input(tta_inputs(image, spec), loaded.device))
    values = scores.float().cpu().numpy().astype(np.float64)
    mean, std = values.mean(axis=0), values.std(axis=0)
    crosses = []
    for label, m, s in zip(spec.labels, mean, std, strict=True):
        t = bands.thresholds(spec.bands_key, label)
        crosses.append(t.band_of(float(m - s)) != t.band_of(float(m + s)))
    return Uncertainty(
        method=f"test-time augmentation ({len(TTA_VIEWS)} views)",
        views=TTA_VIEWS,
        labels=spec.labels,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        crosses_band=tuple(crosses),
    )


def classifiers_reading(modality: str, specs: tuple[ClassifierSpec, ...]) -> tuple[ClassifierSpec, ...]:
    """The classifiers that read an image of this DICOM modality ("image": a PNG or JPEG, any)."""
    if modality == "image":
        return specs
    return tuple(spec for spec in specs if modality in expected_image(spec).modalities)
