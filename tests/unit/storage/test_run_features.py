"""Run features in storage, on SQLite and PostgreSQL: kept once with the run, read back per model
weights after a row; the confirmed normals are the runs where the AI called nothing and readers
agreed on every finding, and no other."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sqlalchemy import text

from core.types import ImageFeatures
from core.vocabulary import Band, Verdict
from storage import features, reporting
from storage import repository as repo
from tests.unit.storage.test_storage import FACTS, REFUSED_BY_TRIGGER, db, prediction  # noqa: F401


def _features(seed: int) -> ImageFeatures:
    return ImageFeatures.from_activations(np.random.default_rng(seed).random((8, 3, 3)).astype(np.float32))


def _store(s, i: int, bands: tuple[Band, Band, Band]) -> int:
    shown = prediction()
    shown = replace(shown, findings=tuple(replace(f, band=b) for f, b in zip(shown.findings, bands)))
    return repo.store_analysis(
        s, replace(FACTS, input_sha256=f"{i:064x}"), shown, "Grad-CAM", features=_features(i)
    ).run_id


def test_features_are_kept_once_and_read_back_by_weights_and_row(db) -> None:  # noqa: F811
    negative = (Band.NEGATIVE,) * 3
    with db.begin() as s:
        first = _store(s, 1, negative)
        again = repo.store_analysis(
            s,
            replace(FACTS, input_sha256=f"{1:064x}"),
            replace(prediction(), findings=tuple(replace(f, band=Band.NEGATIVE) for f in prediction().findings)),
            "Grad-CAM",
            features=_features(99),
        )
        second = _store(s, 2, negative)
    assert again.run_id == first
    with db.begin() as s:
        everything = features.embeddings_after(s, "xrv-densenet121-res224-all", "a" * 64)
        later = features.embeddings_after(s, "xrv-densenet121-res224-all", "a" * 64, int(everything.ids[0]))
        other = features.embeddings_after(s, "xrv-densenet121-res224-all", "b" * 64)
        kept = features.run_features(s, [first])[first]
    assert list(everything.run_ids) == [first, second] and list(later.run_ids) == [second] and len(other.ids) == 0
    np.testing.assert_array_equal(kept.embedding, _features(1).embedding)  # the first features, not the second
    assert kept.grid == (3, 3) and kept.patches.shape == (9, 8) and kept.patches.dtype == np.float16
    with db.begin() as s, pytest.raises(REFUSED_BY_TRIGGER):
        s.execute(text("DELETE FROM run_features"))


def test_confirmed_normals_are_agreed_runs_where_the_ai_called_nothing(db) -> None:  # noqa: F811
    negative = (Band.NEGATIVE,) * 3
    with db.begin() as s:
        normal = _store(s, 1, negative)
        doubted = _store(s, 2, negative)
        half_read = _store(s, 3, negative)
        called = _store(s, 4, (Band.POSITIVE, Band.NEGATIVE, Band.NEGATIVE))
        for run in (normal, doubted, called):
            for label in ("Effusion", "Pneumothorax", "Mass"):
                repo.record_verdict(s, run, label, Verdict.AGREE, "Dr A")
        repo.record_verdict(s, doubted, "Mass", Verdict.DISAGREE, "Dr B")
        repo.record_verdict(s, half_read, "Mass", Verdict.AGREE, "Dr A")
        found = reporting.confirmed_normals(s, "xrv-densenet121-res224-all", "a" * 64)
        everyone = reporting.reviewed_runs(s, [normal, doubted, half_read, called])
        for_b = reporting.reviewed_runs(s, [normal, doubted, half_read, called], reviewer="Dr B")
    assert found == [normal]
    assert set(everyone) == {normal, doubted, half_read, called} and everyone[doubted].readers == 2
    # A reader sees as similar only what they read themselves, and only their own verdicts on it.
    assert set(for_b) == {doubted} and for_b[doubted].verdicts == (("Dr B", "Mass", "disagree"),)
