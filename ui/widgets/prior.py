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
from ui.text import md_escape

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


def side_by_side(
    run: AnyRun,
    prior: AnyRun,
    describe: Callable[[AnyRun], str],
    draw: Callable[[int, AnyRun], None],
    untrained: str,
) -> None:
    """This case and the prior in two columns, each headed by its date and ``describe`` and drawn
    by ``draw(side, run)`` (side 0 this case, 1 the prior), each run on untrained weights
    saying so (``untrained``: what is meaningless, e.g. "scores are meaningless")."""
    columns = st.columns(2)
    for side, (column, shown, title) in enumerate(
        ((columns[0], run, "This case"), (columns[1], prior, f"Prior: case {prior.case_id}"))
    ):
        column.markdown(f"**{title}** · {shown.created_at:%Y-%m-%d} · {md_escape(describe(shown))}")
        with column:
            draw(side, shown)
        if not shown.trained:
            column.caption(f":red[UNTRAINED weights: {untrained}]")
