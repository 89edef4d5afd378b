"""A reader study through the pages, on real brain MRI slices read by the shipped tumour model: the
lead sets it up; a reader's worklist and case page keep its cases from them; the reader calls each
case with the AI hidden, then sees it and revises; the first read cannot be redone; the lead
adjudicates and reads the figures."""

from __future__ import annotations

from sqlalchemy import text

from tests.app.conftest import new_app, texts
from tests.conftest import SAMPLES, require_samples
from tests.support.stored_cases import store_classified
from ui import session

FINDINGS = ["Glioma", "No tumour"]


def _rows(sql: str) -> list[tuple]:
    from core.settings import load_settings
    from storage.db import open_database

    sessions = open_database(load_settings().database_url)
    try:
        with sessions.begin() as s:
            return [tuple(r) for r in s.execute(text(sql)).all()]
    finally:
        sessions.kw["bind"].dispose()


def _study_page(reader: str):
    at = new_app(reader)
    at.run()
    at.switch_page("pages/study.py").run()
    assert not at.exception, at.exception
    return at


def _call(at, study: int, run: int, phase: str, calls: dict[str, str], button: bool = True):
    for finding, call in calls.items():
        at.radio(key=session.study_call_key(study, run, phase, finding)).set_value(call)
    if button:
        at.button(key=session.study_submit_key(study, run, phase)).click().run()
        assert not at.exception, at.exception
    return at


def test_a_reader_study_hides_the_ai_for_the_first_read_and_the_lead_reads_its_figures() -> None:
    require_samples()
    slices = [
        SAMPLES / "mri_tumour/test/glioma/Te-gl_0012.jpg",
        sorted((SAMPLES / "mri_tumour/test/notumor").iterdir())[0],
        sorted((SAMPLES / "mri_tumour/test/meningioma").iterdir())[0],
    ]
    runs = store_classified(slices)

    lead = _study_page("Dr Lead")
    lead.segmented_control(key=session.STUDY_MODE).set_value("Set up a study").run()
    lead.multiselect(key=session.STUDY_CASES).set_value(runs).run()
    lead.multiselect(key=session.study_findings_key("brain-tumour-4class")).set_value(FINDINGS)
    lead.text_input(key=session.STUDY_NAME).set_value("Tumour pilot")
    lead.button(key=session.STUDY_CREATE).click().run()
    assert not lead.exception, lead.exception
    assert "Study 'Tumour pilot' started: 3 cases" in texts(lead)
    [(study,)] = _rows("SELECT id FROM reader_studies")

    # A reader's worklist and case page keep the study's cases (and so the AI's bands) from them.
    reader = new_app("Dr A")
    reader.run()
    reader.switch_page("pages/worklist.py").run()
    assert "3 cases are in an open reader study that you have not read yet" in texts(reader)
    assert not [d for d in reader.dataframe if "highest band" in d.value.columns]
    reader.switch_page("pages/cases.py").run()
    assert "in an open reader study" in texts(reader) and not reader.subheader and not reader.selectbox

    reader = _study_page("Dr A")
    said = texts(reader)
    assert "Case 1 of 3" in said and "the AI is hidden" in said
    assert not [d for d in reader.dataframe if "AI score" in d.value.columns]  # no score anywhere
    _call(reader, study, runs[0], "unaided", {"Glioma": "absent"})  # one finding left uncalled
    assert "not yet called: No tumour" in texts(reader)
    assert _rows("SELECT count(*) FROM study_reads") == [(0,)]
    _call(reader, study, runs[0], "unaided", {"Glioma": "absent", "No tumour": "unsure"})
    [ai_table] = [d.value for d in reader.dataframe if "AI score" in d.value.columns]
    assert set(ai_table["finding"]) == set(FINDINGS) and "untrained" not in " ".join(ai_table["AI score"])
    # The first read is where the revision starts, and it is shown as kept.
    assert reader.radio(key=session.study_call_key(study, runs[0], "aided", "Glioma")).value == "absent"
    assert "Your first read: Glioma absent · No tumour unsure" in texts(reader)
    _call(reader, study, runs[0], "aided", {"Glioma": "present", "No tumour": "absent"})
    assert "Case 2 of 3" in texts(reader)
    for run in runs[1:]:
        _call(reader, study, run, "unaided", {"Glioma": "absent", "No tumour": "present"})
        _call(reader, study, run, "aided", {"Glioma": "absent", "No tumour": "present"})
    assert "You have read every case of this study" in texts(reader)
    reads = _rows("SELECT run_id, phase, answers_json, started_at <= submitted_at FROM study_reads ORDER BY id")
    assert [(r[0], r[1]) for r in reads[:2]] == [(runs[0], "unaided"), (runs[0], "aided")]
    assert '"Glioma": "absent"' in reads[0][2] and '"Glioma": "present"' in reads[1][2]
    assert all(r[3] for r in reads) and len(reads) == 6

    # The lead adjudicates two cases and reads the figures.
    lead = _study_page("Dr Lead")
    lead.segmented_control(key=session.STUDY_MODE).set_value("Results and adjudication").run()
    for run, truth in [
        (runs[0], {"Glioma": "present", "No tumour": "absent"}),
        (runs[1], {"Glioma": "absent", "No tumour": "present"}),
    ]:
        lead.selectbox(key=session.study_adjudicate_case_key(study)).set_value(run).run()
        _call(lead, study, run, "reference", truth)
    said = texts(lead)
    assert "Reference: adjudicated for 4 of 4 calls" in said and "2 calls had none" in said
    metrics = {m.label: m.value for m in lead.metric}
    # Case 1: Glioma absent -> present (right with the AI), No tumour unsure -> absent; case 2 right throughout.
    assert metrics["Agreement with the reference, AI hidden"] == "50 %"
    assert metrics["Agreement with the reference, AI shown"] == "100 %"
    assert metrics["Calls changed after seeing the AI"] == "2"
    # The AI was right on both adjudicated cases: nothing to follow, and the page says so.
    assert "no calls where the AI was wrong and the first call was not the AI's yet" in said
    [per_reader] = [d.value for d in lead.dataframe if "reader" in d.value.columns]
    assert per_reader.iloc[0]["reader"] == "Dr A" and per_reader.iloc[0]["cases"] == 3
