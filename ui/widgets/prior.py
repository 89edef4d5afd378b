"""The choice of a prior for the case page: a toggle that offers the earlier cases of the same
patient, the prior picked among them, and the verdicts this reader may see on it. One for every
run kind (chest X-rays and segmentations)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import streamlit as st

from storage import repository
from ui import database
from ui.identity import visible_reviewer

AnyRun = TypeVar("AnyRun", bound=repository.RunRecord)


def choose_prior(
    priors: Sequence[AnyRun], key: str, describe: Callable[[AnyRun], str]
) -> tuple[AnyRun, dict[str, str]] | None:
    """The prior the reader chose, with its current verdicts by item (this reader's own when
    readers are blinded); None when there is none or the comparison is off."""
    if not priors:
        return None
    if not st.toggle(f"Compare with a prior of this patient ({len(priors)})", key=key):
        return None
    by_run = {p.run_id: p for p in priors}
    chosen = st.selectbox(
        "Prior",
        list(by_run),
        format_func=lambda r: f"{describe(by_run[r])} · analysed {by_run[r].created_at:%Y-%m-%d %H:%M} UTC",
        key=f"{key}::choice",
    )
    prior = by_run[chosen]
    with database.transaction() as session:
        seen = {
            v.item: v.verdict.value
            for v in repository.current_verdicts(session, prior.run_id, reviewer=visible_reviewer())
        }
    return prior, seen
