"""Speed of the brain MRI classifiers trained here, as ratios against their own forward pass.

    python bench/bench_classifiers.py [--repeats N]

Figures (the shipped models share one architecture and input size; each is measured):
``slice_forward_ms`` (one slice, batch 1), ``slice_forward_ms_batched`` (per slice, in a batch of
32), ``slice_cam_ms`` (the scores and every class's Grad-CAM from one pass), ``tta_ms`` (what the
four test-time views add to a slice's analysis, the three others riding in its batch: the
analysis with them less the analysis without), ``volume_classify_s`` (the MNI T1's 189 axial
slices: those with content windowed, squared, batched and scored, and aggregated), ``train_epoch_s`` (ten
training steps of the train command, batch 32 with augmentation, times the steps of one epoch on
the samples' training split). Goals (2-core CPU): volume_classify_s <= 1.1 x 189 x
slice_forward_ms_batched, slice_cam_ms <= 1.3 x slice_forward_ms, tta_ms <= 4.4 x
slice_forward_ms_batched. Keys carry the model: ``slice_forward_ms[brain-tumour-4class]``.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from measure import median_ms  # beside this script

PROJECT = Path(__file__).resolve().parent.parent
SAMPLES = Path(os.environ.get("REVIEW_SAMPLES_DIR", PROJECT.parent / "shared" / "samples"))
MNI_T1 = SAMPLES / "mri" / "mni152_t1.nii.gz"
MNI_AXIAL_SLICES = 189
DATA = {"brain-tumour-4class": "mri_tumour", "brain-dementia-4class": "mri_dementia"}


def _one_model(model_id: str, repeats: int) -> dict:
    import numpy as np
    import torch

    from core.settings import load_settings
    from inference.images.bands import load_band_config
    from inference.images.ingest import load_image
    from inference.images.preprocess import NORMALISATIONS, model_input, model_square
    from inference.models.adapters import as_input
    from inference.models.loader import load_model
    from inference.models.registry import get_classifier
    from inference.training.data import read_split
    from inference.training.train import augment
    from inference.volume.ingest import load_volume
    from pipelines.analyze import analyze
    from pipelines.classify import classify_volume, expected_image, uncertainty
    from pipelines.forward import closed_form_gradcam, forward_with_features

    spec = get_classifier(model_id)
    settings = load_settings()
    loaded = load_model(spec, settings, allow_untrained=False, device="cpu")
    bands = load_band_config(settings.bands_file)
    test = sorted((SAMPLES / DATA[model_id] / "test").glob("*/*.jpg"))
    path = test[0]
    image = load_image(
        path.read_bytes(), path.name, max_bytes=50_000_000, max_pixels=64_000_000, hash_key=b"bench",
        expected=expected_image(spec),
    )  # fmt: skip
    x = model_input(image.pixels, spec.input_size, spec.normalisation)
    one = as_input(x, "cpu")
    batch = as_input(np.repeat(x, 32, axis=0), "cpu")

    def forward(tensor) -> None:
        with torch.inference_mode():
            loaded.adapter.score(spec, loaded.module, tensor)

    def cams() -> None:
        _, features = forward_with_features(loaded, x)
        closed_form_gradcam(loaded, features[0])

    volume = load_volume(
        [(MNI_T1.name, MNI_T1.read_bytes())], max_bytes=500_000_000, max_voxels=50_000_000, hash_key=b"bench"
    )
    volume_runs = max(3, repeats // 5)
    volume_s = statistics.median(classify_volume(loaded, volume).timing_ms / 1000.0 for _ in range(volume_runs))
    # Training: ten steps of the train command's loop (augmentation, forward, backward, AdamW).
    network = loaded.adapter.build(spec)
    network.train()
    optimiser = torch.optim.AdamW(network.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    square = model_square(image.pixels, spec.input_size)
    pixels = torch.from_numpy(np.repeat(square[None, None], 32, axis=0)).float()
    labels = torch.arange(32) % len(spec.labels)
    normalise = NORMALISATIONS[spec.normalisation]

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(network(normalise(augment(pixels, generator))), labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    step_ms = median_ms(step, 10, warmup=2)
    folders = dict(spec.class_folders)
    train_images = len(read_split(SAMPLES / DATA[model_id], "train", folders, spec.labels).paths)
    steps_per_epoch = int(train_images * 0.9) // 32  # the validation part (10%) is held back
    return {
        f"slice_forward_ms[{model_id}]": median_ms(lambda: forward(one), repeats),
        f"slice_forward_ms_batched[{model_id}]": median_ms(lambda: forward(batch), max(5, repeats // 3)) / 32,
        f"slice_cam_ms[{model_id}]": median_ms(cams, repeats),
        # What test-time augmentation adds to a slice's scores and heatmaps, as the page and the
        # CLI run it: the three other views ride in the analysis's batch.
        f"tta_ms[{model_id}]": max(
            0.0,
            median_ms(
                lambda: uncertainty(loaded, image, bands, scored=analyze(loaded, image, bands, augment=True).scored),
                repeats,
            )
            - median_ms(lambda: analyze(loaded, image, bands), repeats),
        ),
        f"volume_classify_s[{model_id}]": volume_s,
        f"train_epoch_s[{model_id}]": step_ms * steps_per_epoch / 1000.0,
    }


def classifier_timings(repeats: int) -> dict:
    import torch

    threads = torch.get_num_threads()
    result: dict = {"classifier_torch_threads": threads}
    for model_id in DATA:
        result.update(_one_model(model_id, repeats))
    return result


def _ratio(result: dict, top: str, bottom: str, model_id: str) -> float:
    return result[f"{top}[{model_id}]"] / result[f"{bottom}[{model_id}]"]


GOALS = {
    **{
        f"volume_classify_s <= 1.1 x 189 x slice_forward_ms_batched [{m}]": (
            lambda r, m=m: (
                r[f"volume_classify_s[{m}]"] * 1000 <= 1.1 * MNI_AXIAL_SLICES * r[f"slice_forward_ms_batched[{m}]"]
            )
        )
        for m in DATA
    },
    **{
        f"slice_cam_ms <= 1.3 x slice_forward_ms [{m}]": (
            lambda r, m=m: _ratio(r, "slice_cam_ms", "slice_forward_ms", m) <= 1.3
        )
        for m in DATA
    },
    **{
        f"tta_ms <= 4.4 x slice_forward_ms_batched [{m}]": (
            lambda r, m=m: _ratio(r, "tta_ms", "slice_forward_ms_batched", m) <= 4.4
        )
        for m in DATA
    },
}


if __name__ == "__main__":
    import argparse
    import json
    import sys

    sys.path.insert(0, str(PROJECT))
    from measure import judge  # beside this script

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    found = classifier_timings(args.repeats)
    found["goals_met"] = judge(GOALS, found)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in found.items()}))
