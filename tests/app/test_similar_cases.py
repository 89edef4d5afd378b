"""Similar reviewed cases under a case, on real brain MRI slices read by the shipped tumour model:
shown when asked, reviewed cases only, most similar first, with what the AI called and the
verdicts; a signed-out reader's own only where sign-in is on is checked in storage's query."""

from __future__ import annotations

from tests.app.conftest import new_app, texts
from tests.conftest import SAMPLES, require_samples
from tests.support.stored_cases import store_classified
from ui.session import similar_toggle_key


def test_the_case_page_shows_the_reviewed_cases_most_like_it_when_asked() -> None:
    from core.settings import load_settings
    from core.vocabulary import Verdict
    from storage import repository
    from storage.db import open_database

    require_samples()
    folder = SAMPLES / "mri_tumour/test"
    runs = store_classified(
        [
            sorted((folder / "glioma").iterdir())[0],
            sorted((folder / "glioma").iterdir())[1],
            sorted((folder / "notumor").iterdir())[0],
            sorted((folder / "pituitary").iterdir())[0],
        ]
    )
    sessions = open_database(load_settings().database_url)
    with sessions.begin() as s:
        for run in runs[1:3]:  # two reviewed; the pituitary slice is not, so it is never shown
            repository.record_verdict(s, run, "Glioma", Verdict.AGREE, "Dr B")
        case = repository.get_run(s, runs[0]).case_id
        reviewed_cases = {repository.get_run(s, r).case_id for r in runs[1:3]}
    sessions.kw["bind"].dispose()

    at = new_app()
    at.query_params["case"] = str(case)
    at.run()
    at.switch_page("pages/cases.py").run()
    assert not at.exception, at.exception
    assert not [d for d in at.dataframe if "similarity" in d.value.columns]  # not until asked
    at.toggle(key=similar_toggle_key("cases", runs[0])).set_value(True).run()
    assert not at.exception, at.exception
    [table] = [d.value for d in at.dataframe if "similarity" in d.value.columns]
    assert set(table["case"]) == reviewed_cases
    assert list(table["similarity"]) == sorted(table["similarity"], reverse=True) and table["similarity"].max() <= 1.0
    assert "Glioma: agree" in table["verdicts"].iloc[0]
    assert "not a diagnosis" in texts(at) and "of 4 runs with the same weights" in texts(at)
