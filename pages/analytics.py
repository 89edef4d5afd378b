"""Agreement analytics for leads and stakeholders: how often readers agree with the AI and with
each other. Runs on untrained weights are excluded unless asked for, and labelled when included."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pandas as pd
import plotly.express as px
import streamlit as st

from analytics import agreement, exports
from storage import reporting, repository
from ui import database
from ui.downloads import export_button
from ui.entry import require_app_entry
from ui.identity import auth_configured, visible_reviewer
from ui.widgets.verdicts import exclusive_classes

require_app_entry()

CONFUSION_COLUMNS = (
    ((True, True), "AI present · reader present"),
    ((True, False), "AI present · reader absent"),
    ((False, True), "AI absent · reader present"),
    ((False, False), "AI absent · reader absent"),
)


def agreement_table(facts) -> pd.DataFrame:
    """One row per finding, one column per (AI, reader) pair, each column saying which side is which."""
    rows = [
        {"finding": finding, **{name: counts.get(pair, 0) for pair, name in CONFUSION_COLUMNS}}
        for finding, counts in sorted(agreement.confusion(facts).items())
    ]
    return pd.DataFrame(rows, columns=["finding", *(name for _, name in CONFUSION_COLUMNS)])


st.title("Analytics")
st.caption("Current verdicts only (a changed verdict counts once, as it stands now).")

today = datetime.now(UTC).date()
filters = st.columns([2, 2, 2, 1.4])
dates = filters[0].date_input("Verdicts between", (today - timedelta(days=90), today), key="an_dates")
with database.transaction() as session:
    recorded = reporting.current_verdict_facts(session, include_untrained=True)
    windows = reporting.first_and_last_verdict_times(session)
    names = repository.reviewer_names(session)
# In a demo every run is untrained: then the page starts with them included (and says so at the
# top) rather than empty; once trained runs exist it starts with those alone.
demo_only = bool(recorded) and not any(f.trained for f in recorded)
include_untrained = filters[3].toggle("Include untrained runs", value=demo_only, key="an_untrained")
everything = recorded if include_untrained else [f for f in recorded if f.trained]
model = filters[1].selectbox("Model", ["all"] + sorted({f.model_id for f in everything}), key="an_model")
only = visible_reviewer()
if only is None:
    reviewer = filters[2].selectbox(
        "Reviewer",
        ["all"] + sorted({f.reviewer for f in everything}),
        key="an_reviewer",
        format_func=lambda r: names.get(r, r),
    )
    if not auth_configured():
        filters[2].caption("Open mode: everyone's verdicts are shown. A name is needed only to record verdicts.")
else:
    reviewer = only
    filters[2].caption("Only your own verdicts are shown; the lead (admin) sees everyone's.")

start, end = dates if isinstance(dates, tuple) and len(dates) == 2 else (dates, dates)
since = datetime.combine(start, time.min, tzinfo=UTC)
until = datetime.combine(end, time.min, tzinfo=UTC) + timedelta(days=1)
facts = [
    f
    for f in everything
    if since <= f.created_at < until
    and (model == "all" or f.model_id == model)
    and (reviewer == "all" or f.reviewer == reviewer)
]
if include_untrained and any(not f.trained for f in facts):
    st.error("Includes verdicts on runs with UNTRAINED weights: those AI scores were meaningless.")
if not facts:
    st.info(
        "No verdicts match these filters yet."
        + (
            ""
            if include_untrained
            else " Runs on untrained weights are left out unless 'Include untrained runs' is on."
        )
    )
    st.stop()

cases = {f.run_id for f in facts}
readers = {f.reviewer for f in facts}
metrics = st.columns(4)
metrics[0].metric("Verdicts", len(facts))
metrics[1].metric("Cases", len(cases))
metrics[2].metric("Readers", len(readers))
decided = [f for f in facts if f.verdict != "unsure"]
metrics[3].metric(
    "Agree with AI", f"{sum(f.verdict == 'agree' for f in decided) / len(decided):.0%}" if decided else "–"
)

per_finding = agreement.per_finding(facts)
frame = pd.DataFrame(
    [
        {
            "finding": a.finding,
            "verdicts": a.verdicts,
            "agree with AI": a.agree_rate,
            "readers": a.readers,
            "cases read by all": a.shared_items,
            "reader agreement": a.kappa,
            "measure": a.kappa_kind,
        }
        for a in per_finding
    ]
)
st.subheader("Agreement per finding")
chart = px.bar(
    frame.dropna(subset=["agree with AI"]),
    x="agree with AI",
    y="finding",
    orientation="h",
    range_x=[0, 1.04],  # up to 100 % with room for a full bar (an axis ending at 1 showed its last tick at 0.8)
    height=140 + 26 * len(frame),
    labels={"agree with AI": "share of agree (agree + disagree)"},
)
chart.update_xaxes(tickformat=".0%", tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1.0])
st.plotly_chart(chart, config={"displayModeBar": False})
# Shown as text: a missing rate or kappa reads "–" (the measure column says why), never "None".
shown = frame.assign(
    **{
        # pandas holds a missing rate as NaN, not None: "nan%" was shown.
        "agree with AI": [f"{v:.0%}" if pd.notna(v) else "– (only unsure)" for v in frame["agree with AI"]],
        "reader agreement": [f"{v:.2f}" if pd.notna(v) else "–" for v in frame["reader agreement"]],
    }
)
st.dataframe(shown, hide_index=True)

st.subheader("AI versus reader, per finding")
st.caption(
    "Verdicts counted by what the AI said (its band) and what the reader's verdict implies: agreeing with a "
    "positive or critical band means present, disagreeing means absent; the reverse for a negative band. "
    "Indeterminate and unsure are left out."
)
st.dataframe(agreement_table(facts), hide_index=True)

for model_id in sorted({f.model_id for f in facts}):
    classes = exclusive_classes(model_id)
    if not classes:
        continue
    columns, matrix = agreement.class_confusion([f for f in facts if f.model_id == model_id], classes)
    st.subheader(f"AI versus reader: {model_id}")
    st.caption(
        "Rows: the AI's answer (its highest class). Columns: the reader's reading of that answer: the same class "
        "when they agreed, the class they named when they disagreed. One verdict per reader and case."
    )
    st.dataframe(
        pd.DataFrame([[f"AI: {c}", *row] for c, row in zip(classes, matrix)], columns=["", *columns]),
        hide_index=True,
    )

left, right = st.columns(2)
bands = Counter(f.band.value for f in facts)
left.plotly_chart(
    px.bar(
        x=list(bands),
        y=list(bands.values()),
        labels={"x": "AI band", "y": "verdicts"},
        title="Band distribution of reviewed findings",
    ),
    config={"displayModeBar": False},
)
bins = agreement.agree_share_by_score_bin(facts)
right.plotly_chart(
    px.bar(
        x=[f"{a:.1f}–{b:.1f}" for a, b, _n, _s in bins],
        y=[s if s is not None else 0 for *_x, s in bins],
        labels={"x": "calibrated score", "y": "share of agree"},
        title="Agree share per score bin",
        range_y=[0, 1],
    ),
    config={"displayModeBar": False},
)

per_day = Counter(f.created_at.date() for f in facts)
left, right = st.columns(2)
days = sorted(per_day)
reviews_per_day = px.bar(
    x=[d.isoformat() for d in days],
    y=[per_day[d] for d in days],
    labels={"x": "day (UTC)", "y": "verdicts"},
    title="Reviews per day",
)
reviews_per_day.update_xaxes(type="category")
left.plotly_chart(reviews_per_day, config={"displayModeBar": False})
minutes = [
    (last - first).total_seconds() / 60
    for (run, who), (first, last) in windows.items()
    if run in cases and who in readers
]
if minutes:
    right.plotly_chart(
        px.histogram(
            x=minutes, nbins=20, labels={"x": "minutes from first to last verdict"}, title="Time per case and reader"
        ),
        config={"displayModeBar": False},
    )

st.subheader("Exports")


def _runs_json(session) -> bytes:
    """Built only when the button is pressed: the runs behind these figures, with the history a
    reader may see (their own) or the lead may see (everyone's)."""
    runs = [
        (
            repository.get_run(session, run_id, repository.ClassificationRunRecord),
            repository.verdict_history(session, run_id, reviewer=only),
            repository.case_note_history(session, run_id, reviewer=only),
        )
        for run_id in sorted(cases)
    ]
    return exports.runs_json(runs, names, blinded_to=only)


left, right = st.columns(2)
with left:
    export_button(
        "Verdicts (CSV)",
        lambda session: exports.verdicts_csv(facts),
        file_name="verdicts.csv",
        mime="text/csv",
        kind="verdicts (CSV)",
    )
with right:
    export_button(
        "Runs and verdict history (JSON)",
        _runs_json,
        file_name="runs.json",
        mime="application/json",
        kind="runs and verdicts (JSON)",
    )
