"""The anomaly map on the MRI page's slice review, on real slices through the shipped tumour model:
not before enough slices were confirmed normal here; then, for a glioma slice, the map over the
slice, its score against the site's confirmed normals, and the check an unusual image asks for."""

from __future__ import annotations

from tests.app.conftest import new_app, texts
from tests.app.test_classify_slice import _open, _upload
from tests.conftest import SAMPLES, require_samples
from tests.support.stored_cases import store_classified
from ui.widgets.radiograph_check import BRAIN_MRI_SLICE
from xai.anomaly import MIN_NORMALS


def _confirm_normals(count: int) -> int:
    """``count`` "no tumour" slices stored and agreed on by a reader wherever the AI called nothing."""
    from core.settings import load_settings
    from core.vocabulary import Band, Verdict
    from storage import repository
    from storage.db import open_database

    runs = store_classified(sorted((SAMPLES / "mri_tumour/test/notumor").iterdir())[:count])
    sessions = open_database(load_settings().database_url)
    confirmed = 0
    with sessions.begin() as s:
        for run_id in runs:
            run = repository.get_run(s, run_id, repository.ClassificationRunRecord)
            calls = {f.label: f.band for f in run.findings}
            if all(b is Band.NEGATIVE for label, b in calls.items() if label != "No tumour"):
                for label in calls:
                    repository.record_verdict(s, run_id, label, Verdict.AGREE, "Dr Normal")
                confirmed += 1
    sessions.kw["bind"].dispose()
    return confirmed


def _glioma_review():
    path = SAMPLES / "mri_tumour/test/glioma/Te-gl_0012.jpg"
    at = _open(new_app())
    _upload(at, path.name, path.read_bytes())
    [yes] = [b for b in at.button if b.label == BRAIN_MRI_SLICE.yes_label]
    yes.click().run()
    assert not at.exception, at.exception
    [toggle] = [t for t in at.toggle if t.key and t.key.startswith("review::anomaly::")]
    toggle.set_value(True).run()
    assert not at.exception, at.exception
    return at


def test_the_anomaly_map_waits_for_confirmed_normals_then_shows_where_a_glioma_slice_is_unusual() -> None:
    require_samples()
    _confirm_normals(3)
    at = _glioma_review()
    assert f"The anomaly map needs {MIN_NORMALS} images that readers confirmed as normal" in texts(at)
    assert not at.metric

    confirmed = _confirm_normals(16)
    assert confirmed >= MIN_NORMALS
    at = _glioma_review()
    said = texts(at)
    assert f"Against {confirmed} images readers confirmed as normal with these weights" in said
    [score] = [m for m in at.metric if m.label == "Anomaly score"]
    assert float(score.value) > 0
    assert "Unlike anything confirmed normal here" in said and "check that this is a 2D brain MRI slice" in said
    assert "unusual for this site, which is not the same as diseased" in said
    assert "Mean patch distance " in said and "{" not in said  # every figure filled in
