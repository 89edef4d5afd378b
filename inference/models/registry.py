"""The models this app can run, described as data.

Labels, URLs and operating points are copied from torchxrayvision's ``model_urls`` so that the
registry can be read without importing torch; ``tests/unit/test_registry.py`` checks they still
match the installed library.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    task: str
    modality: str
    display_name: str
    labels: tuple[str, ...]
    input_size: int
    weights_url: str
    weights_filename: str
    xrv_weights_key: str
    op_thresholds: tuple[float, ...]
    cam_target_layer: str

    @property
    def weights_source(self) -> str:
        return f"torchxrayvision release ({self.weights_url})"


CXR_DENSENET = ModelSpec(
    model_id="xrv-densenet121-res224-all",
    task="classification",
    modality="cxr",
    display_name="torchxrayvision DenseNet-121 (res224, all datasets)",
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
        "Pleural_Thickening",
        "Cardiomegaly",
        "Nodule",
        "Mass",
        "Hernia",
        "Lung Lesion",
        "Fracture",
        "Lung Opacity",
        "Enlarged Cardiomediastinum",
    ),
    input_size=224,
    weights_url=(
        "https://github.com/mlmed/torchxrayvision/releases/download/v1/"
        "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
    ),
    weights_filename=(
        "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
    ),
    xrv_weights_key="densenet121-res224-all",
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
    ),
    cam_target_layer="features.cam_relu",  # the explicit ReLU after norm5 in the hooked copy
)

MODELS: dict[str, ModelSpec] = {CXR_DENSENET.model_id: CXR_DENSENET}


def get_spec(model_id: str) -> ModelSpec:
    try:
        return MODELS[model_id]
    except KeyError:
        raise KeyError(f"Unknown model id {model_id!r}; known: {sorted(MODELS)}.") from None
