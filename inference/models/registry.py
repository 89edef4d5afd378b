"""Every model this app can run, as data: one registry for classifiers and segmentation networks.

A new model is an entry here (or one passed to ``register``), not new loading code: weights
discovery, import, download, sha256, strict loading, the untrained mode and device placement are
shared (``inference.models.weights`` and ``loader``); how a network is built and run is its
adapter (``inference.models.adapters``). Nothing here imports torch.

The chest X-ray entry's labels, URL and operating points are copied from torchxrayvision's
``model_urls`` (``tests/unit/inference/models/test_registry.py`` checks they still match the
installed library). The segmentation entries follow the MONAI model-zoo bundles'
``configs/inference.json`` and ``configs/metadata.json`` (Project-MONAI/model-zoo,
``models/brats_mri_segmentation`` bundle 0.4.2 and ``models/wholeBody_ct_segmentation`` bundle
0.2.5, whose ``highres: false`` setting selects the 3 mm ``model_lowres.pt``).
"""

from __future__ import annotations

import colorsys

from core.results import LabelInfo, Structure
from core.vocabulary import Modality
from inference.models.cards import read_card
from inference.models.spec import ClassifierSpec, ModelSpec, SegmentationSpec, WeightsSource

XRV_RELEASE = "https://github.com/mlmed/torchxrayvision/releases/download/v1/"
XRV_CACHE_DIR = ".torchxrayvision/models_data"  # torchxrayvision's own download cache, under the home folder
ZOO_DOWNLOAD_BASE = "https://developer.download.nvidia.com/assets/Clara/monai/tutorials/model_zoo/"

_XRV_ALL = "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"

CXR_DENSENET = ClassifierSpec(
    model_id="xrv-densenet121-res224-all",
    modality=Modality.CHEST_XRAY,
    display_name="torchxrayvision DenseNet-121 (res224, all datasets)",
    adapter="xrv-densenet",
    architecture=(("xrv_weights_key", "densenet121-res224-all"),),
    labels=(
        "Atelectasis",
        "Consolidation",
        "Infiltration",
        "Pneumothorax",
        "Edema",
        "Emphysema",
        "Fibrosis",
        "Effusion",
        "Pneumonia",
        "Pleural Thickening",  # torchxrayvision spells it Pleural_Thickening: named as a reader says it
        "Cardiomegaly",
        "Nodule",
        "Mass",
        "Hernia",
        "Lung Lesion",
        "Fracture",
        "Lung Opacity",
        "Enlarged Cardiomediastinum",
    ),  # fmt: skip
    input_size=224,
    normalisation="xrv",
    weights=WeightsSource(
        description=f"torchxrayvision release ({XRV_RELEASE + _XRV_ALL})",
        url=XRV_RELEASE + _XRV_ALL,
        filename=_XRV_ALL,
        installed=_XRV_ALL,
        home_dirs=(XRV_CACHE_DIR,),
        pickled_release=True,
    ),
    op_thresholds=(
        0.07422872,
        0.038290843,
        0.09814756,
        0.0098118475,
        0.023601074,
        0.0022490358,
        0.010060724,
        0.103246614,
        0.056810737,
        0.026791653,
        0.050318155,
        0.023985857,
        0.01939503,
        0.042889766,
        0.053369623,
        0.035975814,
        0.20204692,
        0.05015312,
    ),  # fmt: skip
    cam_target_layer="features.cam_relu",  # the explicit ReLU after norm5 in the hooked copy
    bands_key="cxr",
    shap_regions="chest radiograph zones",
)


def _zoo_description(bundle: str, member: str, url: str) -> str:
    return f"MONAI model zoo bundle {bundle!r} ({member}; direct file {url})"


# BraTS label values 1/2/4 are the challenge's own (label 3 was retired in BraTS 2017), and the
# bundle's post-processing writes exactly these: ET -> 4, else TC -> 1, else WT -> 2. Keeping them
# means masks exported from here open correctly in every BraTS-aware tool.
BRATS_NECROTIC, BRATS_OEDEMA, BRATS_ENHANCING = 1, 2, 4


def _segresnet(init_filters: int, in_channels: int, out_channels: int) -> tuple[tuple[str, object], ...]:
    """MONAI SegResNet's arguments as both bundles set them: 1-2-2-4 blocks down, 1-1-1 up."""
    return (
        ("spatial_dims", 3),
        ("blocks_down", (1, 2, 2, 4)),
        ("blocks_up", (1, 1, 1)),
        ("init_filters", init_filters),
        ("in_channels", in_channels),
        ("out_channels", out_channels),
        ("dropout_prob", 0.2),
    )


BRATS_SEGRESNET = SegmentationSpec(
    model_id="monai-brats-segresnet",
    display_name="MONAI BraTS SegResNet (brain tumour, 4-channel MRI)",
    modality=Modality.MR,
    adapter="monai-segresnet",
    bundle_name="brats_mri_segmentation",
    bundle_version="0.4.2",
    architecture=_segresnet(init_filters=16, in_channels=4, out_channels=3),
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
    weights=WeightsSource(
        description=_zoo_description(
            "brats_mri_segmentation", "models/model.pt", ZOO_DOWNLOAD_BASE + "model_brats_mri_segmentation.pt"
        ),
        url=ZOO_DOWNLOAD_BASE + "model_brats_mri_segmentation.pt",
        filename="brats_mri_segmentation_model.pt",
        installed="monai-brats-segresnet/model.pt",
        also=("brats_mri_segmentation/models/model.pt",),
        bundle_member="models/model.pt",
    ),
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

WHOLEBODY_CT_SEGRESNET = SegmentationSpec(
    model_id="monai-wholebody-ct-segresnet-3mm",
    display_name="MONAI whole-body CT SegResNet, 3 mm (104 TotalSegmentator structures)",
    modality=Modality.CT,
    adapter="monai-segresnet",
    bundle_name="wholeBody_ct_segmentation",
    bundle_version="0.2.5",
    architecture=_segresnet(init_filters=32, in_channels=1, out_channels=105),
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
    weights=WeightsSource(
        description=_zoo_description(
            "wholeBody_ct_segmentation",
            "models/model_lowres.pt",
            ZOO_DOWNLOAD_BASE + "model_lowres_wholebody_ct_segmentation.pt",
        ),
        url=ZOO_DOWNLOAD_BASE + "model_lowres_wholebody_ct_segmentation.pt",
        filename="wholeBody_ct_segmentation_model_lowres.pt",
        installed="monai-wholebody-ct-segresnet-3mm/model.pt",
        also=("wholeBody_ct_segmentation/models/model_lowres.pt",),
        bundle_member="models/model_lowres.pt",
    ),
)


def card_temperature(card: str) -> float | None:
    """The temperature a model card recorded, or None where there is no card yet (not trained)."""
    content = read_card(card)
    return None if content is None else float(content["calibration"]["temperature"])


# Brain MRI classifiers trained by this project (``python -m inference train``) on the samples'
# public data sets: a ResNet-18 with a one-channel input, from scratch (no published weights can
# be downloaded here), small enough to train in well under an hour on two CPU cores.
_RESNET18_GRAY = (("name", "resnet18"), ("in_channels", 1), ("first_conv", "conv1"), ("head", "fc"))
BRAIN_INPUT_SIZE = 128


RESEARCH_USE = "Research and demonstration only: not a medical device, not for diagnosis or treatment decisions. "


def _shipped_brain_classifier(
    model_id: str,
    display_name: str,
    folders: tuple[tuple[str, str], ...],
    source: str,
    intended_use: str,
    limitations: tuple[str, ...],
    normal: str,
) -> ClassifierSpec:
    card = f"{model_id}.card.json"
    return ClassifierSpec(
        model_id=model_id,
        modality=Modality.MR,
        display_name=display_name,
        adapter="torchvision",
        architecture=_RESNET18_GRAY,
        labels=tuple(label for _folder, label in folders),
        input_size=BRAIN_INPUT_SIZE,
        normalisation="imagenet-gray",
        cam_target_layer="layer4",
        bands_key="mri_brain",
        head="softmax",
        temperature=card_temperature(card),
        # A volume's class score: the mean of its 5 highest slices (one odd slice at the skull
        # base or the vertex, levels these slice models never saw, moves a plain maximum).
        aggregation="top-k mean",
        cam_beside=True,
        normal_labels=(normal,),
        class_folders=folders,
        card=card,
        intended_use=RESEARCH_USE + intended_use,
        limitations=limitations,
        weights=WeightsSource(
            description=f"trained by this project on {source}, shipped in inference/models/trained/",
            url="",
            filename=f"{model_id}.pt",
            installed=f"{model_id}/model.pt",
            shipped=f"{model_id}.pt",
        ),
    )


BRAIN_TUMOUR = _shipped_brain_classifier(
    "brain-tumour-4class",
    "Brain tumour MRI classifier (ResNet-18, 4 classes, trained here)",
    (("glioma", "Glioma"), ("meningioma", "Meningioma"), ("pituitary", "Pituitary tumour"), ("notumor", "No tumour")),
    "the Kaggle Brain Tumor MRI Dataset (samples/mri_tumour)",
    "Shows how an AI reads one 2D brain MRI slice as glioma, meningioma, pituitary tumour or no tumour, "
    "for teaching and for testing the review workflow.",
    (
        "Trained and tested on one public collection of single 2D slices (Kaggle Brain Tumor MRI Dataset, "
        "itself combining figshare, SARTAJ and Br35H); never checked on a hospital's own scans.",
        "The 'no tumour' slices come mostly from another source (Br35H, mostly axial T2/FLAIR) than the "
        "tumour slices (mostly contrast-enhanced T1): the model may have learnt the sequence or source "
        "rather than the disease. A T2 slice of a tumour may read as 'no tumour'.",
        "One slice is not a study: it knows nothing of other slices, sequences, history or prior imaging, "
        "and classes outside these four (metastases, lymphoma, abscess, stroke...) are forced into one of them.",
        "Head CT images were removed from training by a brightness heuristic; CT input is refused.",
        "Training images were resized to at most 224 px and JPEG-compressed; test images are the originals.",
    ),
    normal="No tumour",
)

BRAIN_DEMENTIA = _shipped_brain_classifier(
    "brain-dementia-4class",
    "Dementia grade MRI classifier (ResNet-18, 4 classes, trained here)",
    (
        ("NonDemented", "No Impairment"),
        ("VeryMildDemented", "Very Mild Impairment"),
        ("MildDemented", "Mild Impairment"),
        ("ModerateDemented", "Moderate Impairment"),
    ),
    "the Kaggle Alzheimer's Dataset, 4 classes (samples/mri_dementia)",
    "Shows how an AI grades one axial T1 brain MRI slice on a four-step impairment scale, for teaching "
    "and for testing the review workflow.",
    (
        "Trained on one public Kaggle collection whose image provenance is undocumented; labels are per "
        "slice and subjects are not identified, so one person's slices may sit in both training and test data.",
        "Training slices are mostly at the level of the basal ganglia, test slices higher (the bodies of the "
        "lateral ventricles): the test figures already include that shift; other levels are untested.",
        "Only 52 training slices (and 12 test slices) show moderate impairment: its figures are the least certain.",
        "Dementia is a clinical diagnosis: atrophy on one slice is not dementia, and age-related change "
        "can look like impairment.",
    ),
    normal="No Impairment",
)

# The original design's dementia grader, for a site's own weights: a torchvision ResNet-50 at
# 224 px with a one-channel input convolution and a four-class head, the heatmap from ``layer4``.
# No weights ship: it runs (labelled untrained) until a site installs a plain state_dict of that
# architecture with ``python -m inference weights import FILE --model brain-mri-dementia-resnet50``.
SITE_DEMENTIA_RESNET50 = ClassifierSpec(
    model_id="brain-mri-dementia-resnet50",
    modality=Modality.MR,
    display_name="Dementia grade MRI classifier (ResNet-50, a site's own weights)",
    adapter="torchvision",
    architecture=(("name", "resnet50"), ("in_channels", 1), ("first_conv", "conv1"), ("head", "fc")),
    labels=BRAIN_DEMENTIA.labels,
    input_size=224,
    normalisation="imagenet-gray",
    cam_target_layer="layer4",
    bands_key="mri_brain",
    head="softmax",
    aggregation="top-k mean",
    cam_beside=True,
    normal_labels=("No Impairment",),
    intended_use=RESEARCH_USE
    + "A site's own dementia grading model, reviewed in this app; its figures are the site's.",
    limitations=("No model card: what it was trained on and how it scored are the site's to state.",),
    weights=WeightsSource(
        description="a site's own training (a torchvision ResNet-50 state_dict, 1-channel conv1, 4-class fc)",
        url="",
        filename="brain-mri-dementia-resnet50.pt",
        installed="brain-mri-dementia-resnet50/model.pt",
    ),
)

MODELS: dict[str, ModelSpec] = {
    spec.model_id: spec
    for spec in (
        CXR_DENSENET,
        BRATS_SEGRESNET,
        WHOLEBODY_CT_SEGRESNET,
        BRAIN_TUMOUR,
        BRAIN_DEMENTIA,
        SITE_DEMENTIA_RESNET50,
    )
}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model (a site's own entry, or a test's); an id already registered is refused."""
    if spec.model_id in MODELS and MODELS[spec.model_id] != spec:
        raise ValueError(f"A different model is already registered as {spec.model_id!r}.")
    MODELS[spec.model_id] = spec
    return spec


def all_models() -> tuple[ModelSpec, ...]:
    """Every registered model, in registration order."""
    return tuple(MODELS.values())


def chest_classifiers() -> tuple[ClassifierSpec, ...]:
    """The classifiers that read chest radiographs (the chest X-ray page offers each)."""
    return tuple(s for s in MODELS.values() if isinstance(s, ClassifierSpec) and s.modality is Modality.CHEST_XRAY)


def get_spec(model_id: str) -> ModelSpec:
    try:
        return MODELS[model_id]
    except KeyError:
        raise KeyError(f"Unknown model id {model_id!r}; known: {sorted(MODELS)}.") from None


def get_classifier(model_id: str) -> ClassifierSpec:
    spec = get_spec(model_id)
    if not isinstance(spec, ClassifierSpec):
        raise KeyError(f"{model_id!r} is not a classification model.")
    return spec


def get_segmenter(model_id: str) -> SegmentationSpec:
    spec = get_spec(model_id)
    if not isinstance(spec, SegmentationSpec):
        raise KeyError(
            f"Unknown segmentation model id {model_id!r}; known: {sorted(s.model_id for s in segmenters())}."
        )
    return spec


def segmenters() -> tuple[SegmentationSpec, ...]:
    return tuple(s for s in MODELS.values() if isinstance(s, SegmentationSpec))


def slice_classifiers() -> tuple[ClassifierSpec, ...]:
    """The classifiers of MR and CT slices (the MRI/CT page's "Classify" task), in registration order."""
    return tuple(
        s for s in MODELS.values() if isinstance(s, ClassifierSpec) and s.modality in (Modality.MR, Modality.CT)
    )
