"""The MRI/CT page's "Classify a brain MRI slice" task through AppTest, with the shipped trained
models and real slices from the samples' test splits: the question a JPEG needs, the prediction
with its confidence and the model card's figures, Grad-CAM beside the slice, a stored verdict;
a CT slice refused in one sentence."""

from __future__ import annotations

import json

from pydicom.data import get_testdata_file

from tests.app.conftest import chosen_verdicts, click_verdict, new_app, texts, verdict_items
from tests.conftest import SAMPLES, require_samples
from ui.session import SLICE_UPLOAD
from ui.widgets.radiograph_check import BRAIN_MRI_SLICE

CLASSIFY = "Classify a brain MRI slice"


def _open(at):
    at.run()
    at.switch_page("pages/volumes.py").run()
    at.segmented_control(key="volume_task").set_value(CLASSIFY).run()
    assert not at.exception, at.exception
    return at


def _rows(sql: str) -> list[tuple]:
    """What the app's database holds (the test's own, from its environment)."""
    from sqlalchemy import text

    from core.settings import load_settings
    from storage.db import open_database

    with open_database(load_settings().database_url).begin() as session:
        return [tuple(row) for row in session.execute(text(sql)).all()]


def _upload(at, name: str, data: bytes, mime: str = "image/jpeg"):
    at.file_uploader(key=SLICE_UPLOAD).set_value([(name, data, mime)]).run()
    assert not at.exception, at.exception
    return at


def test_a_meningioma_slice_is_classified_with_its_card_heatmap_and_a_stored_verdict() -> None:
    require_samples()
    path = sorted((SAMPLES / "mri_tumour" / "test" / "meningioma").iterdir())[1]  # [0] is read as a glioma
    at = _open(new_app())
    assert "Brain tumour MRI classifier" in at.selectbox(key="slice_classifier").value
    _upload(at, path.name, path.read_bytes())
    # A JPEG says nothing of what it shows: nothing runs before the reader says it is a brain MRI slice.
    assert "What is this image?" in texts(at) and "AI prediction" not in texts(at)
    [yes] = [b for b in at.button if b.label == BRAIN_MRI_SLICE.yes_label]
    yes.click().run()
    assert not at.exception, at.exception
    said = texts(at)
    assert "AI prediction: Meningioma" in said
    assert "Trained on 5," in said and "slices it never saw" in said and "research use only" in said
    assert "untrained" not in said.lower().replace("untrained weights mode", "")
    assert "Region SHAP" not in said  # its regions are chest zones: not offered for a brain slice
    # Test-time augmentation: each class's spread over four views, and whether it leaves its band.
    assert "Test\\-time augmentation \\(original, horizontal flip, brightness \\+10%, brightness \\-10%\\)" in said
    assert "Meningioma 0\\." in said and " ± " in said
    assert sorted(verdict_items(at)) == ["Glioma", "Meningioma", "No tumour", "Pituitary tumour"]
    click_verdict(at, "Meningioma", "agree")
    stored = _rows(
        "SELECT v.item, v.verdict, r.model_id, r.trained FROM verdicts v JOIN analysis_runs r ON r.id = v.run_id"
    )
    assert stored == [("Meningioma", "agree", "brain-tumour-4class", True)]
    [(params,)] = _rows("SELECT params_json FROM analysis_runs")
    spread = json.loads(params)["uncertainty"]
    assert [c["label"] for c in spread["classes"]] == ["Glioma", "Meningioma", "Pituitary tumour", "No tumour"]
    assert any(c["std"] > 0 for c in spread["classes"]) and len(spread["views"]) == 4


def test_a_normal_slice_is_answered_no_tumour_without_a_band_and_never_triaged_as_critical() -> None:
    """ "No tumour 0.99" is the model's confidence that nothing is there: it is not banded (never
    "critical"), it is the first row to judge, and the case sorts as negative on the worklist."""
    require_samples()
    path = sorted((SAMPLES / "mri_tumour" / "test" / "notumor").iterdir())[0]
    at = _open(new_app())
    _upload(at, path.name, path.read_bytes())
    [yes] = [b for b in at.button if b.label == BRAIN_MRI_SLICE.yes_label]
    yes.click().run()
    assert not at.exception, at.exception
    said = texts(at)
    assert "**AI prediction: No tumour** · confidence 0." in said and "(nothing found: not banded)" in said
    assert "Critical band" not in said
    rows = [m.value for m in at.markdown if "**No tumour**" in m.value and "·" in m.value]
    assert rows and rows[0].endswith("· the AI's answer"), rows
    bands = dict(_rows("SELECT label, band FROM run_findings"))
    assert bands["No tumour"] == "negative" and all(b == "negative" for b in bands.values()), bands
    from core.settings import load_settings
    from storage import reporting
    from storage.db import open_database

    with open_database(load_settings().database_url).begin() as session:
        [case] = reporting.worklist(session).cases
    assert case.top_band.value == "negative"


def test_a_ct_slice_is_refused_in_one_sentence_and_nothing_is_stored() -> None:
    ct = get_testdata_file("CT_small.dcm")
    at = _upload(_open(new_app()), "CT_small.dcm", open(ct, "rb").read(), "application/dicom")
    [error] = [e.value for e in at.error]
    assert error.startswith("CT_small.dcm is a CT image (Modality CT), not an MR image.")
    assert "AI prediction" not in texts(at)


def test_disagree_it_is_a_meningioma_is_stored_with_the_readers_own_class() -> None:
    """The slice the model misreads (a meningioma it calls a glioma): the reader disagrees and
    names the class; the verdict and the history say so."""
    from ui.session import reader_label_key

    require_samples()
    path = sorted((SAMPLES / "mri_tumour" / "test" / "meningioma").iterdir())[0]
    at = _upload(_open(new_app()), path.name, path.read_bytes())
    [yes] = [b for b in at.button if b.label == BRAIN_MRI_SLICE.yes_label]
    yes.click().run()
    assert "AI prediction: Glioma" in texts(at)
    assert not [b for b in at.button if (b.key or "").startswith("review::reader_label::")]
    click_verdict(at, "Glioma", "disagree")
    offered = sorted(b.label for b in at.button if (b.key or "").startswith("review::reader_label::"))
    assert offered == ["Meningioma", "No tumour", "Pituitary tumour"]  # the other classes
    run_id = int((at.button(key=next(b.key for b in at.button if b.label == "Meningioma")).key or "").split("::")[2])
    at.button(key=reader_label_key("review", run_id, "Glioma", "Meningioma")).click().run()
    assert not at.exception, at.exception
    assert "Saved: Glioma — disagree: it is Meningioma." in texts(at)
    assert _rows("SELECT item, verdict, reader_label FROM verdicts ORDER BY id") == [
        ("Glioma", "disagree", None),
        ("Glioma", "disagree", "Meningioma"),
    ]
    at.toggle(key="show_history").set_value(True).run()
    history = at.dataframe[-1].value
    assert "disagree: it is Meningioma" in history["verdict"].tolist()
    # The case page reopens it with its slice and heatmap from the image store, and the same history.
    at.switch_page("pages/cases.py").run()
    assert not at.exception, at.exception
    said = texts(at)
    assert "model brain\\-tumour\\-4class" in said and "not the ones loaded now" not in said
    assert "Coloured regions are where this score was most sensitive" in said  # its heatmap
    assert any("disagree: it is Meningioma" in d.value.to_string() for d in at.dataframe)
    at.switch_page("pages/worklist.py").run()
    assert not at.exception, at.exception
    assert any("brain-tumour-4class" in d.value.to_string() for d in at.dataframe)
    # Analytics: the AI-versus-reader table of the model, the reader's meningioma against the AI's glioma.
    at.switch_page("pages/analytics.py").run()
    assert not at.exception, at.exception
    assert "AI versus reader: brain-tumour-4class" in texts(at)
    [table] = [d.value for d in at.dataframe if "disagree, class not named" in d.value.columns]
    row = table[table[""] == "AI: Glioma"].iloc[0]
    assert row["Meningioma"] == 1 and row["Glioma"] == 0


def test_a_nifti_volume_is_classified_slice_by_slice_with_its_strip_and_takes_verdicts() -> None:
    require_samples()
    t1 = SAMPLES / "mri" / "mni152_t1.nii.gz"
    at = _upload(_open(new_app()), t1.name, t1.read_bytes(), "application/gzip")
    said = texts(at)
    assert "136 axial slices scored, 53 without content skipped" in said
    # A normal brain template: no tumour, said with how volume scores are made.
    assert "**AI answer for the volume: No tumour** (volume score 0." in said
    assert "so the scores need not sum to one" in said
    assert "per class the top\\-k mean over the slices" in said
    assert "driven by axial slice" in said and "look at the slice that drives each class" in said
    charts = [c for c in at.get("plotly_chart")]
    assert len(charts) >= 2  # the bands and the per-slice strip
    assert sorted(verdict_items(at)) == ["Glioma", "Meningioma", "No tumour", "Pituitary tumour"]
    # The class being judged on the slice driving its volume score, beside its Grad-CAM.
    captions = [c for image in at.image for c in image.captions]
    [slice_caption] = [c for c in captions if c.startswith("Axial slice ")]
    driving = int(slice_caption.split()[2])
    assert any(c.startswith("Grad-CAM for ") for c in captions)
    assert f"on axial slice {driving}** (the slice driving its volume score)" in said
    # Another slice picked on the strip (in a browser, a click): its own heatmap, computed once.
    from ui.widgets.slice_strip import PICKED

    [(volume_sha,)] = _rows("SELECT input_sha256 FROM cases")
    at.session_state[PICKED] = (volume_sha, driving + 10)
    at.run()
    captions = [c for image in at.image for c in image.captions]
    assert f"Axial slice {driving + 10} as the model read it" in captions
    assert f"on axial slice {driving + 10}**:" in texts(at)
    click_verdict(at, "No tumour", "agree")
    stored = _rows(
        "SELECT v.item, v.verdict, r.model_id, c.source_format FROM verdicts v "
        "JOIN analysis_runs r ON r.id = v.run_id JOIN cases c ON c.id = r.case_id"
    )
    assert stored == [("No tumour", "agree", "brain-tumour-4class", "nifti")]

    # Another day, the case page: the kept volume as it was read, its strip, the driving slice's
    # heatmap and the verdict given, then the report and the reader's SR.
    at.switch_page("pages/cases.py").run()
    assert not at.exception, at.exception
    said = texts(at)
    assert "not kept" not in said and "Review page" not in said
    assert "**AI answer for the volume: No tumour**" in said and "136 axial slices scored" in said
    assert len(at.get("plotly_chart")) >= 2  # the bands and the per-slice strip
    captions = [c for image in at.image for c in image.captions]
    assert any(c.startswith("Grad-CAM for ") for c in captions)
    assert chosen_verdicts(at)["No tumour"] == "agree"
    labels = [b.label for b in at.get("download_button")]
    assert "Download case report (HTML)" in labels and "Download my verdicts as DICOM SR" in labels


def test_a_dicom_mr_series_is_classified_as_a_volume() -> None:
    """The files of one series, dropped together (in no particular order), are one volume."""
    from tests.unit.inference.volume.test_volume_dicom import PLANES, Geometry, series

    files = series(Geometry(*PLANES["axial"], rows=48, cols=48, spacing=(1.0, 1.0), gap=1.0, slices=12))
    at = _open(new_app())
    at.file_uploader(key=SLICE_UPLOAD).set_value([(n, d, "application/dicom") for n, d in files]).run()
    assert not at.exception, at.exception
    said = texts(at)
    assert "dicom\\-series" in said or "AX T1 POST" in said
    assert "axial slices scored" in said and "driven by axial slice" in said
    assert sorted(verdict_items(at)) == ["Glioma", "Meningioma", "No tumour", "Pituitary tumour"]
