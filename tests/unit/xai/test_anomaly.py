"""The anomaly map with known answers, on real brain MRI slices through the shipped tumour model:
a bank of confirmed-normal ("no tumour") slices; a bright blob painted into a held-out normal is
where the map peaks, and raises its score; a chest radiograph, unlike any brain slice, is flagged;
the coreset keeps the patches that cover the rest."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from tests.conftest import SAMPLES, load, require_samples
from xai.anomaly import MIN_NORMALS, NormalBank, greedy_coreset


@pytest.fixture(scope="module")
def tumour():
    from core.settings import load_settings
    from inference.images.bands import load_band_config
    from inference.models.loader import load_model
    from inference.models.registry import get_classifier
    from pipelines.analyze import analyze

    settings = load_settings()
    loaded = load_model(get_classifier("brain-tumour-4class"), settings, allow_untrained=False)
    bands = load_band_config(settings.bands_file)
    return lambda image: analyze(loaded, image, bands).features


def test_a_painted_blob_is_where_the_map_peaks_and_a_chest_film_is_unlike_every_normal(tumour) -> None:
    require_samples()
    normals = [load(p) for p in sorted((SAMPLES / "mri_tumour/test/notumor").iterdir())[:13]]
    bank = NormalBank([tumour(image).patches for image in normals[:12]])
    assert bank.normals == 12 and len(bank.normal_typical) == 12

    held_out = normals[12]
    plain = tumour(held_out)
    plain_result = bank.score(plain.patches, plain.grid)
    assert not plain_result.unusual, (plain_result.score, bank.threshold)

    # A bright disc in the upper left of the square the model sees (the image's centre crop).
    pixels = held_out.pixels.copy()
    side = min(pixels.shape[:2])
    top, left = (pixels.shape[0] - side) // 2, (pixels.shape[1] - side) // 2
    centre = (left + side // 4, top + side // 4)
    cv2.circle(pixels, centre, side // 10, 255, -1)
    blob = tumour(replace(held_out, pixels=pixels))
    result = bank.score(blob.patches, blob.grid)
    rows, cols = result.grid.shape
    peak = np.unravel_index(int(np.argmax(result.grid)), result.grid.shape)
    expected = (rows // 4, cols // 4)
    assert abs(peak[0] - expected[0]) <= 1 and abs(peak[1] - expected[1]) <= 1, (peak, result.grid.round(1))
    assert result.score > plain_result.score

    film = tumour(load(sorted((SAMPLES / "cxr").glob("*.png"))[0]))
    flagged = bank.score(film.patches, film.grid)
    assert flagged.unusual and flagged.typical > bank.threshold >= plain_result.typical


def test_a_bank_needs_enough_normals_and_the_coreset_covers_every_cluster() -> None:
    with pytest.raises(ValueError, match=f"needs {MIN_NORMALS}"):
        NormalBank([np.zeros((49, 8), np.float16)] * (MIN_NORMALS - 1))
    rng = np.random.default_rng(0)
    clusters = [rng.normal(c * 10.0, 0.1, (200, 16)) for c in range(5)]
    chosen = greedy_coreset(np.concatenate(clusters).astype(np.float32), 5)
    assert sorted(int(i) // 200 for i in chosen) == [0, 1, 2, 3, 4]  # one from each, never two from one
