"""The lead's side of a reader study: set one up over stored cases of one model, read its results
(agreement with and without the AI, time, automation bias, each with its interval), and adjudicate
a case's reference."""

from __future__ import annotations

import streamlit as st

from analytics import exports, reader_study
from core.errors import InvalidReview
from core.vocabulary import StudyPhase
from storage import reporting, repository, studies
from ui import database, session
from ui import results as ui_results
from ui.downloads import export_button
from ui.text import md_escape
from ui.widgets.charts import normal_labels
from ui.widgets.study_reading import calls_form, store_calls


def setup_form(creator: str) -> None:
    """Name, model, cases and findings, then "Start the study"."""
    with database.transaction() as db:
        rows = reporting.worklist(db, reviewer=None).cases
    st.subheader("Set up a study")
    if len(rows) < studies.MIN_CASES:
        st.info(f"A study needs at least {studies.MIN_CASES} stored classification cases; analyse some first.")
        return
    model_ids = sorted({r.model_id for r in rows})
    model_id = st.selectbox("Model whose output the readers see", model_ids, key=session.STUDY_MODEL)
    mine = [r for r in rows if r.model_id == model_id]
    by_run = {r.run_id: r for r in mine}
    chosen = st.multiselect(
        "Cases (in the order readers get them)",
        list(by_run),
        format_func=lambda run_id: (
            f"Case {by_run[run_id].case_id} · {by_run[run_id].modality} · "
            f"analysed {by_run[run_id].analysed_at:%Y-%m-%d %H:%M}" + ("" if by_run[run_id].trained else " · UNTRAINED")
        ),
        key=session.STUDY_CASES,
    )
    # The model's findings, from one of its runs: known before any case is chosen, so the list
    # starts with all of them (a keyed list keeps its first default).
    with database.transaction() as db:
        example = repository.get_run(db, mine[0].run_id, repository.ClassificationRunRecord)
    labels = [f.label for f in example.findings] if example is not None else []
    findings = st.multiselect(
        "Findings the readers call", labels, default=labels, key=session.study_findings_key(model_id)
    )
    name = st.text_input("Study name", key=session.STUDY_NAME, max_chars=studies.MAX_NAME_CHARS)
    if any(not by_run[r].trained for r in chosen):
        st.warning("Some chosen cases were read with UNTRAINED weights: such a study tests the workflow, not the AI.")
    if st.button("Start the study", type="primary", key=session.STUDY_CREATE):
        try:
            with database.transaction() as db:
                study = studies.create_study(db, name, chosen, findings, creator)
        except InvalidReview as problem:
            st.error(str(problem))
            return
        st.success(
            f"Study '{study.name}' started: {len(study.run_ids)} cases. Its readers open it on this page; the "
            "worklist and the case page keep its cases from each reader until their first read."
        )


def _percent(p: reader_study.Proportion) -> str:
    return "–" if p.estimate is None else f"{100 * p.estimate:.0f} %"


def _proportion_caption(p: reader_study.Proportion, of: str = "calls") -> str:
    """ "3 of 10 calls · 95 % CI 11–60 %"; ``of`` says which calls."""
    if p.interval is None:
        return f"no {of} yet"
    low, high = p.interval
    return f"{p.hits} of {p.total} {of} · 95 % CI {100 * low:.0f}–{100 * high:.0f} %"


def _seconds(e: reader_study.Estimate) -> tuple[str, str]:
    if e.value is None:
        return "–", "no reads yet"
    ci = f" · 95 % CI {e.interval[0]:.0f}–{e.interval[1]:.0f} s" if e.interval else ""
    return f"{e.value:.0f} s", f"{e.n} reads{ci}"


def _metric(column, label: str, value: str, caption: str) -> None:
    column.metric(label, value)
    column.caption(caption)


def results(study: studies.StudyRecord) -> None:
    with database.transaction() as db:
        reads = studies.reads(db, study.study_id)
        ai = studies.study_findings(db, study)
        untrained = studies.untrained_cases(db, study) > 0
    result = results_cache(study, reads, ai)
    st.subheader(f"Results: {study.name}")
    st.caption(
        f"{result.readers} readers · {result.cases} of {len(study.run_ids)} cases read with and without the AI · "
        f"findings: {', '.join(study.findings)} · {'open' if study.open else 'closed'}"
    )
    if untrained:
        st.error("The AI in this study ran UNTRAINED weights: its calls are meaningless, and so is any effect of it.")
    if result.pending:
        st.caption(f"{result.pending} first reads are waiting for their read with the AI (left out below).")
    if not result.calls:
        st.info("No reader has finished a case yet.")
        return
    judged = result.calls - result.without_reference
    st.caption(
        f"Reference: adjudicated for {result.adjudicated} of {judged} calls, else the majority of the other readers' "
        f"reads with the AI; {result.without_reference} calls had none (a tie, or no other reader) and are left out "
        "of the agreement. 'Unsure' never matches the reference."
    )
    top = st.columns(3)
    _metric(
        top[0], "Agreement with the reference, AI hidden", _percent(result.unaided), _proportion_caption(result.unaided)
    )
    _metric(top[1], "Agreement with the reference, AI shown", _percent(result.aided), _proportion_caption(result.aided))
    change = result.change
    _metric(
        top[2],
        "Change with the AI",
        "–" if change.value is None else f"{100 * change.value:+.0f} points",
        (f"95 % CI {100 * change.interval[0]:+.0f} to {100 * change.interval[1]:+.0f} points (cases resampled)")
        if change.interval
        else "too few cases for an interval",
    )
    middle = st.columns(3)
    _metric(middle[0], "Median time per case, AI hidden", *_seconds(result.seconds_unaided))
    _metric(middle[1], "Median time with the AI, after the first read", *_seconds(result.seconds_aided))
    _metric(
        middle[2],
        "Calls changed after seeing the AI",
        str(result.changed),
        f"{result.toward_ai} toward the AI's call, {result.away_from_ai} away from it",
    )
    st.markdown("**Automation bias**")
    bias = st.columns(3)
    _metric(
        bias[0],
        "Followed the AI when it was wrong",
        _percent(result.followed_wrong_ai),
        _proportion_caption(
            result.followed_wrong_ai, "calls where the AI was wrong and the first call was not the AI's"
        ),
    )
    _metric(
        bias[1],
        "Changed a right call to the AI's wrong one",
        _percent(result.switched_to_wrong_ai),
        _proportion_caption(result.switched_to_wrong_ai),
    )
    _metric(
        bias[2],
        "Changed a wrong call to the AI's right one",
        _percent(result.helped_by_ai),
        _proportion_caption(result.helped_by_ai),
    )
    st.caption(
        f"The AI's own call (its band) agreed with the reference on {_percent(result.ai_agreement)} "
        f"({_proportion_caption(result.ai_agreement)}); indeterminate makes no call."
    )
    with database.transaction() as db:
        names = repository.reviewer_names(db)
    export_button(
        "Calls (CSV)",
        lambda db: exports.study_calls_csv(
            studies.reads(db, study.study_id),
            studies.study_findings(db, study),
            study.findings,
            tuple(normal_labels(study.model_id)),
        ),
        file_name=f"reader-study-{study.study_id}-calls.csv",
        mime="text/csv",
        kind="reader study calls (CSV)",
    )
    st.dataframe(
        [
            {
                "reader": names.get(r.reader, r.reader),
                "cases": r.cases,
                "agreement, AI hidden": _percent(r.unaided),
                "agreement, AI shown": _percent(r.aided),
                "calls changed": r.changed,
                "toward the AI": r.toward_ai,
                "followed the AI when wrong": f"{r.followed_wrong_ai.hits} of {r.followed_wrong_ai.total}",
                "median s, AI hidden": "–" if r.median_seconds_unaided is None else f"{r.median_seconds_unaided:.0f}",
                "median s, with AI": "–" if r.median_seconds_aided is None else f"{r.median_seconds_aided:.0f}",
            }
            for r in result.per_reader
        ],
        hide_index=True,
    )


def results_cache(study: studies.StudyRecord, reads, ai) -> reader_study.StudyResult:
    """Summarised once per study and set of reads (the bootstrap resamples thousands of times)."""
    last = max((r.read_id for r in reads), default=0)
    return ui_results.study_summary(
        study.study_id, last, len(reads), reads, ai, study.findings, tuple(sorted(normal_labels(study.model_id)))
    )


def adjudication(study: studies.StudyRecord, adjudicator: str) -> None:
    """The reference for a case: the adjudicator's call per finding (the latest adjudication wins)."""
    with st.expander("Adjudicate a case (the reference the readers are measured against)"):
        with database.transaction() as db:
            done = {r.run_id: r for r in studies.reads(db, study.study_id) if r.phase is StudyPhase.REFERENCE}
        numbers = {run_id: i + 1 for i, run_id in enumerate(study.run_ids)}
        run_id = st.selectbox(
            "Case",
            study.run_ids,
            format_func=lambda r: f"Case {numbers[r]} of the study" + (" · adjudicated" if r in done else ""),
            key=session.study_adjudicate_case_key(study.study_id),
        )
        if run_id in done:
            st.caption(
                "Adjudicated: "
                + " · ".join(f"{md_escape(f)} {c.value}" for f, c in done[run_id].answers.items())
                + ". A new adjudication by another adjudicator replaces it."
            )
        calls = calls_form(study, run_id, StudyPhase.REFERENCE, None, "Record the reference")
        if calls is not None and store_calls(study, run_id, adjudicator, StudyPhase.REFERENCE, calls):
            st.rerun()
