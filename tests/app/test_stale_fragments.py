"""ui/stale_fragments.py on the pinned Streamlit: which reruns it changes and which it leaves alone
(the browser test test_stale_fragments.py shows what a reader sees)."""

from __future__ import annotations

from types import SimpleNamespace

from streamlit.runtime.fragment import MemoryFragmentStorage
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData

from ui import stale_fragments

SHOWN = SimpleNamespace(page_script_hash="cases-page", query_string="case=2")


def storage_with(*fragment_ids: str) -> MemoryFragmentStorage:
    storage = MemoryFragmentStorage()
    for fragment_id in fragment_ids:
        storage.register(fragment_id, lambda: None)  # type: ignore[arg-type]
    return storage


def test_a_request_for_a_fragment_gone_runs_the_page_shown_at_its_address() -> None:
    left = RerunData(query_string="", page_script_hash="review-page", fragment_id_queue=["reading"])
    rerun = stale_fragments._for_fragments_that_exist(left, storage_with("other"), SHOWN)
    assert rerun.fragment_id_queue == [] and not rerun.is_fragment_scoped_rerun
    assert (rerun.page_script_hash, rerun.query_string) == ("cases-page", "case=2")


def test_requests_it_leaves_to_streamlit() -> None:
    live = RerunData(page_script_hash="review-page", fragment_id_queue=["reading"])
    assert stale_fragments._for_fragments_that_exist(live, storage_with("reading"), SHOWN) is live
    timer = RerunData(page_script_hash="review-page", fragment_id_queue=["progress"], is_auto_rerun=True)
    assert stale_fragments._for_fragments_that_exist(timer, storage_with(), SHOWN) is timer
    full = RerunData(page_script_hash="review-page")
    assert stale_fragments._for_fragments_that_exist(full, storage_with(), SHOWN) is full


def test_it_installs_on_the_pinned_streamlit() -> None:
    assert stale_fragments.install() and stale_fragments.install(), "installed, once"
