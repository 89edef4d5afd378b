"""The 3D segmentation models this app can run, described as data (no torch import).

Hyper-parameters, preprocessing, channel order and label names follow the MONAI model-zoo
bundles' ``configs/inference.json`` and ``configs/metadata.json`` (Project-MONAI/model-zoo,
``models/brats_mri_segmentation`` bundle 0.4.2 and ``models/wholeBody_ct_segmentation`` bundle
0.2.5, whose ``highres: false`` setting selects the 3 mm ``model_lowres.pt``).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

from inference.volume.types import LabelInfo, Structure

ZOO_DOWNLOAD_BASE = "https://developer.download.nvidia.com/assets/Clara/monai/tutorials/model_zoo/"


@dataclass(frozen=True)
class SegModelSpec:
    """One MONAI bundle network, its input contract and how its output becomes a label map."""

    model_id: str
    display_name: str
    modality: str  # "MR" or "CT"
    bundle_name: str
    bundle_version: str  # the bundle metadata version the values below were checked against
    network_kwargs: tuple[tuple[str, object], ...]  # monai.networks.nets.SegResNet(**dict(...))
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
    bundle_weights_path: str  # the weights file inside an unpacked bundle folder
    weights_filename: str  # a flat file name accepted directly in MODEL_WEIGHTS_DIR
    weights_url: str

    @property
    def in_channels(self) -> int:
        return len(self.channel_names)

    @property
    def out_channels(self) -> int:
        return len(self.output_channels)

    @property
    def weights_source(self) -> str:
        return (
            f"MONAI model zoo bundle {self.bundle_name!r} (version {self.bundle_version}, "
            f"{self.bundle_weights_path}; direct file {self.weights_url})"
        )

    def network_kwargs_dict(self) -> dict[str, object]:
        return dict(self.network_kwargs)


# BraTS label values 1/2/4 are the challenge's own (label 3 was retired in BraTS 2017), and the
# bundle's post-processing writes exactly these: ET -> 4, else TC -> 1, else WT -> 2. Keeping them
# means masks exported from here open correctly in every BraTS-aware tool.
BRATS_NECROTIC, BRATS_OEDEMA, BRATS_ENHANCING = 1, 2, 4

BRATS_SEGRESNET = SegModelSpec(
    model_id="monai-brats-segresnet",
    display_name="MONAI BraTS SegResNet (brain tumour, 4-channel MRI)",
    modality="MR",
    bundle_name="brats_mri_segmentation",
    bundle_version="0.4.2",
    network_kwargs=(
        ("spatial_dims", 3),
        ("blocks_down", (1, 2, 2, 4)),
        ("blocks_up", (1, 1, 1)),
        ("init_filters", 16),
        ("in_channels", 4),
        ("out_channels", 3),
        ("dropout_prob", 0.2),
    ),
    channel_names=("T1c", "T1", "T2", "FLAIR"),
    output_kind="sigmoid-multilabel",
    output_channels=("Tumor core", "Whole tumor", "Enhancing tumor"),
    labels=(
        LabelInfo(BRATS_NECROTIC, "Necrotic core (NCR)", (220, 50, 47)),
        LabelInfo(BRATS_OEDEMA, "Oedema (ED)", (46, 160, 67)),
        LabelInfo(BRATS_ENHANCING, "Enhancing tumour (ET)", (255, 215, 0)),
    ),
    structures=(
        Structure("Tumour core", (BRATS_NECROTIC, BRATS_ENHANCING)),
        Structure("Whole tumour", (BRATS_NECROTIC, BRATS_OEDEMA, BRATS_ENHANCING)),
        Structure("Enhancing tumour", (BRATS_ENHANCING,)),
        Structure("Necrotic core", (BRATS_NECROTIC,)),
        Structure("Oedema", (BRATS_OEDEMA,)),
    ),
    target_spacing_mm=1.0,
    roi_size=(240, 240, 160),
    overlap=0.5,
    sw_batch_size=1,
    blend_mode="constant",
    padding_mode="constant",
    threshold=0.5,
    intensity="z-score per channel over non-zero voxels (NormalizeIntensity nonzero, channel_wise)",
    bundle_weights_path="models/model.pt",
    weights_filename="brats_mri_segmentation_model.pt",
    weights_url=ZOO_DOWNLOAD_BASE + "model_brats_mri_segmentation.pt",
)

# TotalSegmentator v1 classes, in the order of the bundle metadata's output channel_def (1..104).
TOTALSEG_V1_CLASSES: tuple[str, ...] = (
    "spleen",
    "kidney_right",
    "kidney_left",
    "gallbladder",
    "liver",
    "stomach",
    "aorta",
    "inferior_vena_cava",
    "portal_vein_and_splenic_vein",
    "pancreas",
    "adrenal_gland_right",
    "adrenal_gland_left",
    "lung_upper_lobe_left",
    "lung_lower_lobe_left",
    "lung_upper_lobe_right",
    "lung_middle_lobe_right",
    "lung_lower_lobe_right",
    "vertebrae_L5",
    "vertebrae_L4",
    "vertebrae_L3",
    "vertebrae_L2",
    "vertebrae_L1",
    "vertebrae_T12",
    "vertebrae_T11",
    "vertebrae_T10",
    "vertebrae_T9",
    "vertebrae_T8",
    "vertebrae_T7",
    "vertebrae_T6",
    "vertebrae_T5",
    "vertebrae_T4",
    "vertebrae_T3",
    "vertebrae_T2",
    "vertebrae_T1",
    "vertebrae_C7",
    "vertebrae_C6",
    "vertebrae_C5",
    "vertebrae_C4",
    "vertebrae_C3",
    "vertebrae_C2",
    "vertebrae_C1",
    "esophagus",
    "trachea",
    "heart_myocardium",
    "heart_atrium_left",
    "heart_ventricle_left",
    "heart_atrium_right",
    "heart_ventricle_right",
    "pulmonary_artery",
    "brain",
    "iliac_artery_left",
    "iliac_artery_right",
    "iliac_vena_left",
    "iliac_vena_right",
    "small_bowel",
    "duodenum",
    "colon",
    *(f"rib_left_{i}" for i in range(1, 13)),
    *(f"rib_right_{i}" for i in range(1, 13)),
    "humerus_left",
    "humerus_right",
    "scapula_left",
    "scapula_right",
    "clavicula_left",
    "clavicula_right",
    "femur_left",
    "femur_right",
    "hip_left",
    "hip_right",
    "sacrum",
    "face",
    "gluteus_maximus_left",
    "gluteus_maximus_right",
    "gluteus_medius_left",
    "gluteus_medius_right",
    "gluteus_minimus_left",
    "gluteus_minimus_right",
    "autochthon_left",
    "autochthon_right",
    "iliopsoas_left",
    "iliopsoas_right",
    "urinary_bladder",
)


def distinct_colors(n: int) -> tuple[tuple[int, int, int], ...]:
    """``n`` deterministic, well-separated RGB colours (golden-ratio hue steps, varied lightness)."""
    colors = []
    for i in range(n):
        hue = (i * 0.618033988749895) % 1.0
        lightness = (0.45, 0.6, 0.35)[i % 3]
        r, g, b = colorsys.hls_to_rgb(hue, lightness, 0.75)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(colors)


def _one_structure_per_label(names: tuple[str, ...]) -> tuple[tuple[LabelInfo, ...], tuple[Structure, ...]]:
    colors = distinct_colors(len(names))
    labels = tuple(LabelInfo(value, name, colors[value - 1]) for value, name in enumerate(names, start=1))
    return labels, tuple(Structure(info.name, (info.value,)) for info in labels)


_CT_LABELS, _CT_STRUCTURES = _one_structure_per_label(TOTALSEG_V1_CLASSES)

WHOLEBODY_CT_SEGRESNET = SegModelSpec(
    model_id="monai-wholebody-ct-segresnet-3mm",
    display_name="MONAI whole-body CT SegResNet, 3 mm (104 TotalSegmentator structures)",
    modality="CT",
    bundle_name="wholeBody_ct_segmentation",
    bundle_version="0.2.5",
    network_kwargs=(
        ("spatial_dims", 3),
        ("blocks_down", (1, 2, 2, 4)),
        ("blocks_up", (1, 1, 1)),
        ("init_filters", 32),
        ("in_channels", 1),
        ("out_channels", 105),
        ("dropout_prob", 0.2),
    ),
    channel_names=("CT",),
    output_kind="softmax",
    output_channels=("background", *TOTALSEG_V1_CLASSES),
    labels=_CT_LABELS,
    structures=_CT_STRUCTURES,
    target_spacing_mm=3.0,
    roi_size=(96, 96, 96),
    overlap=0.25,
    sw_batch_size=1,
    blend_mode="gaussian",
    padding_mode="replicate",
    threshold=None,
    intensity=(
        "z-score over non-zero voxels (NormalizeIntensity nonzero), then min-max to -1..1 "
        "(ScaleIntensity minv=-1, maxv=1)"
    ),
    bundle_weights_path="models/model_lowres.pt",
    weights_filename="wholeBody_ct_segmentation_model_lowres.pt",
    weights_url=ZOO_DOWNLOAD_BASE + "model_lowres_wholebody_ct_segmentation.pt",
)

SEG_MODELS: dict[str, SegModelSpec] = {spec.model_id: spec for spec in (BRATS_SEGRESNET, WHOLEBODY_CT_SEGRESNET)}


def get_seg_spec(model_id: str) -> SegModelSpec:
    """The spec for ``model_id``; ``KeyError`` naming the known ids otherwise."""
    try:
        return SEG_MODELS[model_id]
    except KeyError:
        raise KeyError(f"Unknown segmentation model id {model_id!r}; known: {sorted(SEG_MODELS)}.") from None
