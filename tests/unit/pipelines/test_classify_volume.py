"""A volume classified slice by slice, on known answers: a synthetic volume whose blob sits in a
few axial slices, through the blob detector; the slice scores peak there and the aggregation
names one of them. Then each aggregation against its formula, and the shipped brain models on the
real MNI T1."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import CorruptImage, WrongModality
from inference.volume.types import Volume
from pipelines.classify import AGGREGATIONS, aggregate, classify_volume, volume_slice_heatmaps
from tests.support import synthetic_model as synth

BLOB_SLICES = range(18, 23)
AS_IS = (127.5, 255.0)  # the window that keeps 0..255 pixels as they are (the blob model's range)


@pytest.fixture(scope="module")
def blob_model(tmp_path_factory):
    return synth.loaded(synth.trained_once(tmp_path_factory.getbasetemp().parent))


def _volume(images: list[np.ndarray], modality: str = "OT") -> Volume:
    # oriented_slice shows data[:, :, i] transposed and flipped both ways: store each image so that
    # the axial view shows it as it is.
    data = np.stack([image[::-1, ::-1].T for image in images], axis=2).astype(np.float32)
    return Volume(data, np.eye(4), modality, "nifti", "0" * 64, "synthetic", "RAS")


def test_the_slice_strip_peaks_at_the_blob_and_the_aggregation_names_one_of_its_slices(blob_model) -> None:
    rng = np.random.default_rng(7)
    images = [synth.make_image(rng, blob=i in BLOB_SLICES, distractor=True) for i in range(40)]
    images[0] = np.zeros_like(images[0])  # air: not scored
    result = classify_volume(blob_model, _volume(images), method="max", window=AS_IS)
    assert result.skipped == 1 and result.slice_indices == tuple(range(1, 40))
    scores = dict(zip(result.slice_indices, result.slice_scores[:, 0], strict=True))
    inside = [scores[i] for i in BLOB_SLICES]
    outside = [s for i, s in scores.items() if i not in BLOB_SLICES]
    assert min(inside) > 0.5 > max(outside), (inside, max(outside))
    assert result.driving_slice[0] in BLOB_SLICES and result.scores[0] == pytest.approx(max(inside))
    for method in AGGREGATIONS:
        assert classify_volume(blob_model, _volume(images), method=method, window=AS_IS).driving_slice[0] in range(
            1, 40
        )


def test_a_slice_of_the_volume_gets_the_classification_s_score_and_a_heatmap_on_its_blob(blob_model) -> None:
    """The slice a reader asks about (the one driving the volume's score) is given to the model as
    the volume's classification gave it: the same score; its Grad-CAM peaks on the blob."""
    rng = np.random.default_rng(8)
    images = [synth.make_image(rng, blob=i in BLOB_SLICES, distractor=False) for i in range(40)]
    volume = _volume(images)
    result = classify_volume(blob_model, volume, method="max", window=AS_IS)
    driving = result.driving_slice[0]
    shown = volume_slice_heatmaps(blob_model, volume, driving, window=AS_IS)
    assert shown.index == driving and shown.square.shape == (synth.SIZE, synth.SIZE) and shown.square.dtype == np.uint8
    assert shown.scores[0] == pytest.approx(
        float(result.slice_scores[result.slice_indices.index(driving), 0]), abs=1e-5
    )
    peak = np.unravel_index(int(np.argmax(shown.maps[0])), shown.maps[0].shape)
    row, col = synth.target_centre()
    assert np.hypot(peak[0] - row, peak[1] - col) < synth.SIZE / 6, (peak, (row, col))
    with pytest.raises(ValueError, match="outside the volume"):
        volume_slice_heatmaps(blob_model, volume, 40, window=AS_IS)


def test_each_aggregation_is_its_formula() -> None:
    scores = np.array([[0.1, 0.9], [0.7, 0.2], [0.4, 0.5]])
    values, driving = aggregate(scores, "max")
    assert values.tolist() == [0.7, 0.9] and driving.tolist() == [1, 0]
    values, driving = aggregate(scores, "mean")
    assert values == pytest.approx([0.4, 1.6 / 3]) and driving.tolist() == [2, 2]
    values, _ = aggregate(scores, "top-k mean", k=2)
    assert values == pytest.approx([0.55, 0.7])
    values, _ = aggregate(scores, "noisy-or")
    assert values == pytest.approx([1 - 0.9 * 0.3 * 0.6, 1 - 0.1 * 0.8 * 0.5])
    with pytest.raises(ValueError, match="Unknown aggregation"):
        aggregate(scores, "median")


def test_a_volume_without_content_or_of_another_modality_is_refused(blob_model) -> None:
    from dataclasses import replace

    from core.vocabulary import Modality

    with pytest.raises(CorruptImage, match="enough content"):
        classify_volume(blob_model, _volume([np.zeros((64, 64), np.float32)] * 3))
    mr_model = replace(blob_model, spec=replace(synth.SPEC, modality=Modality.MR))
    with pytest.raises(WrongModality, match="CT image"):
        classify_volume(mr_model, _volume([np.full((64, 64), 100.0, np.float32)] * 3, modality="CT"))
