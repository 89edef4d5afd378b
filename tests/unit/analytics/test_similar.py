"""Similar cases with known answers, on real brain MRI slices through the shipped tumour model: a
planted near-duplicate of a slice (a little brighter, a few pixels shifted) is found first; the
index takes only what was stored since its last refresh; a model's other weights are another index."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from analytics.similar import SimilarIndex
from core.settings import load_settings
from core.types import ImageFeatures
from storage import features as stored_features
from storage.db import open_database
from tests.conftest import SAMPLES, load, require_samples


@pytest.fixture(scope="module")
def tumour_model():
    from inference.models.loader import load_model
    from inference.models.registry import get_classifier

    return load_model(get_classifier("brain-tumour-4class"), load_settings(), allow_untrained=False)


def _features(loaded, image) -> ImageFeatures:
    from inference.images.bands import load_band_config
    from pipelines.analyze import analyze

    result = analyze(loaded, image, load_band_config(load_settings().bands_file)).features
    assert result is not None
    return result


def test_a_planted_near_duplicate_is_found_first_and_the_index_grows_by_what_is_new(tumour_model) -> None:
    require_samples()
    paths = [
        p
        for c in ("glioma", "meningioma", "notumor", "pituitary")
        for p in sorted((SAMPLES / "mri_tumour/test" / c).iterdir())[:3]
    ]
    images = [load(p) for p in paths]
    vectors = [_features(tumour_model, image) for image in images]
    target = images[4]
    pixels = np.clip(np.roll(target.pixels.astype(np.int16), 3, axis=1) + 6, 0, 255).astype(np.uint8)
    duplicate = _features(tumour_model, replace(target, pixels=pixels))
    assert np.linalg.norm(duplicate.embedding) == pytest.approx(1.0, abs=1e-5)
    assert duplicate.patches.dtype == np.float16 and duplicate.patches.shape[0] == duplicate.grid[0] * duplicate.grid[1]

    index = SimilarIndex("brain-tumour-4class", tumour_model.weights_sha256)
    index.add(np.arange(100, 100 + len(vectors)), np.stack([v.embedding for v in vectors]))
    index.add(np.array([999]), duplicate.embedding[None, :])
    found = index.search(vectors[4].embedding, 3, exclude={104})
    assert found[0].run_id == 999 and found[0].similarity > 0.95
    assert found[0].similarity > found[1].similarity >= found[2].similarity
    same = index.search(vectors[4].embedding, 1)[0]
    assert same.run_id == 104 and same.similarity == pytest.approx(1.0, abs=2e-3)  # half precision


def test_the_index_reads_only_new_rows_of_its_own_weights(tumour_model) -> None:
    from tests.support.stored_cases import store_classified

    require_samples()
    folder = SAMPLES / "mri_tumour/test/glioma"
    runs = store_classified(sorted(folder.iterdir())[:2])
    sessions = open_database(load_settings().database_url)
    index = SimilarIndex("brain-tumour-4class", tumour_model.weights_sha256)
    other = SimilarIndex("brain-tumour-4class", "0" * 64)
    with sessions.begin() as s:
        index.refresh(s)
        other.refresh(s)
        assert (index.size, other.size) == (2, 0)
        kept = stored_features.run_features(s, runs)
    assert set(kept) == set(runs)
    more = store_classified(sorted(folder.iterdir())[2:3])
    with sessions.begin() as s:
        index.refresh(s)
        index.refresh(s)  # nothing new: nothing added twice
    assert index.size == 3
    with sessions.begin() as s:
        newest = stored_features.run_features(s, more)[more[0]]
    [itself] = index.search(newest.embedding, 1)
    assert itself.run_id == more[0]  # the row stored after the first refresh is searched
    sessions.kw["bind"].dispose()
