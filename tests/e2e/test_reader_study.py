"""Issue 13's reader study in a real browser: the lead sets up a study of five real brain MRI slices
read by the shipped tumour model; a reader calls each case with the AI hidden, then with it shown
(revising one case); the lead adjudicates the five and reads the figures. Screenshots go to
$SCREENSHOT_DIR when it is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from tests.e2e.conftest import browser_page, key_class, settled, wait_for_text
from tests.e2e.test_browser import _shot, _sign
from ui import session

pytestmark = pytest.mark.e2e

FINDINGS = ("Glioma", "Meningioma", "Pituitary tumour", "No tumour")
SLICES = [  # (file, its class's finding): the samples' test split, never seen in training
    ("glioma/Te-gl_0012.jpg", "Glioma"),
    ("meningioma", "Meningioma"),
    ("notumor", "No tumour"),
    ("pituitary", "Pituitary tumour"),
    ("glioma", "Glioma"),
]


def _slices() -> list[tuple[Path, str]]:
    chosen = []
    for name, finding in SLICES:
        path = SAMPLES / "mri_tumour/test" / name
        if path.is_dir():  # the folder's first (or second, for a class already taken) slice
            files = sorted(path.iterdir())
            path = files[sum(1 for p, _ in chosen if p.parent == path)]
        chosen.append((path, finding))
    return chosen


def _truth(finding: str) -> dict[str, str]:
    return {f: "present" if f == finding else "absent" for f in FINDINGS}


def _call(page, study: int, run: int, phase: str, calls: dict[str, str]) -> None:
    for finding, call in calls.items():
        group = page.locator(f".{key_class(session.study_call_key(study, run, phase, finding))}")
        group.get_by_text(call, exact=True).click()


def test_a_lead_runs_a_reader_study_on_five_cases_and_reads_its_result(shared_server, monkeypatch) -> None:
    from playwright.sync_api import expect
    from sqlalchemy import create_engine, text

    url, database_url = shared_server
    monkeypatch.setenv("DATABASE_URL", database_url)
    # The server's own data folder (its image store and patient key), beside its database.
    monkeypatch.setenv("REVIEW_DATA_DIR", str(Path(database_url.removeprefix("sqlite:///")).parent / "data"))
    from tests.support.stored_cases import store_classified

    cases = _slices()
    runs = store_classified([p for p, _ in cases])
    truth = {run: _truth(finding) for run, (_, finding) in zip(runs, cases)}
    engine = create_engine(database_url)
    with engine.connect() as connection:
        case_numbers = [
            connection.execute(text("SELECT case_id FROM analysis_runs WHERE id = :r"), {"r": r}).scalar_one()
            for r in runs
        ]

    with browser_page(1920, 1080) as page:
        page.goto(f"{url}/study")
        _sign(page, "Dr Lead")
        page.get_by_text("Set up a study", exact=True).click()
        wait_for_text(page, "Cases (in the order readers get them)")
        page.locator(f".{key_class(session.STUDY_MODEL)} input").click()  # the server holds other models' cases
        page.keyboard.type("brain-tumour-4class")
        page.keyboard.press("Enter")
        settled(page)
        picker = page.locator(f".{key_class(session.STUDY_CASES)} input")
        for case in case_numbers:  # typed and picked as a lead does, in the order readers get them
            picker.click()
            page.keyboard.type(f"Case {case} ·")
            page.keyboard.press("Enter")
            settled(page)
        page.keyboard.press("Escape")
        page.get_by_role("textbox", name="Study name").fill("Tumour pilot")
        page.get_by_role("textbox", name="Study name").press("Enter")
        settled(page)
        _shot(page, "60-study-setup")
        page.get_by_role("button", name="Start the study").click()
        wait_for_text(page, "Study 'Tumour pilot' started: 5 cases")

    with engine.connect() as connection:
        study = connection.execute(text("SELECT id FROM reader_studies WHERE name = 'Tumour pilot'")).scalar_one()
        ordered = [r for (r,) in connection.execute(text("SELECT run_id FROM reader_study_cases ORDER BY position"))]
    assert ordered == runs

    with browser_page(1920, 1080) as page:
        page.goto(f"{url}/worklist")
        _sign(page, "Dr A")
        wait_for_text(page, "5 cases are in an open reader study that you have not read yet")
        page.goto(f"{url}/study")
        _sign(page, "Dr A")
        for number, run in enumerate(ordered, start=1):
            wait_for_text(page, f"Case {number} of 5")
            wait_for_text(page, "the AI is hidden")
            expect(page.get_by_text("AI score")).to_have_count(0)
            first = dict(truth[run])
            if number == 2:  # this reader misses the case without the AI
                first = {f: "absent" if v == "present" else v for f, v in first.items()} | {"No tumour": "present"}
            _call(page, study, run, "unaided", first)
            if number == 1:
                _shot(page, "61-study-first-read")
            page.get_by_role("button", name="Submit first read (AI hidden)").click()
            wait_for_text(page, "The AI's output")
            if number == 2:
                _shot(page, "62-study-with-ai")
                _call(page, study, run, "aided", truth[run])  # and gets it right with the AI
            page.get_by_role("button", name="Submit final read (with AI)").click()
        wait_for_text(page, "You have read every case of this study")

    with engine.connect() as connection:
        reads = connection.execute(text("SELECT phase, count(*) FROM study_reads GROUP BY phase ORDER BY phase")).all()
    assert [tuple(r) for r in reads] == [("aided", 5), ("unaided", 5)]

    with browser_page(1920, 1080) as page:
        page.goto(f"{url}/study")
        _sign(page, "Dr Lead")
        page.get_by_text("Results and adjudication", exact=True).click()
        wait_for_text(page, "Adjudicate a case")
        page.get_by_text("Adjudicate a case", exact=False).click()
        for number, run in enumerate(ordered, start=1):
            page.locator(f".{key_class(session.study_adjudicate_case_key(study))} input").click()
            page.keyboard.type(f"Case {number} of the study")
            page.keyboard.press("Enter")
            settled(page)
            _call(page, study, run, "reference", truth[run])
            page.get_by_role("button", name="Record the reference").click()
            wait_for_text(page, f"adjudicated for {4 * number} of")
        metrics = page.get_by_test_id("stMetric")
        expect(metrics.filter(has_text="Agreement with the reference, AI hidden")).to_contain_text("90 %")
        expect(metrics.filter(has_text="Agreement with the reference, AI shown")).to_contain_text("100 %")
        expect(metrics.filter(has_text="Calls changed after seeing the AI")).to_contain_text("2")
        wait_for_text(page, "Reference: adjudicated for 20 of 20 calls")
        _shot(page, "63-study-results")
    engine.dispose()
