"""Agreement analytics for leads and stakeholders: how often readers agree with the AI and with
each other, on findings and classes and on segmented structures, and the volumes the masks
measure. Runs on untrained weights are excluded unless asked for, and labelled when included."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime, time, timedelta

import pandas as pd
import plotly.express as px
import streamlit as st

from analytics import agreement, drift, exports
from core.settings import load_settings
from core.vocabulary import RunKind
from inference.models.loader import LoadedModel
from pipelines import mask_agreement
from storage import reporting, repository
from ui import database, models, results
from ui.downloads import export_button
from ui.entry import require_app_entry
from ui.identity import auth_configured, visible_reviewer
from ui.widgets.band_editor import proposal_button
from ui.widgets.verdicts import exclusive_classes

require_app_entry()

UPLOADED = RunKind.UPLOADED_MASK.value  # the "model" of a mask uploaded from another tool
CONFUSION_COLUMNS = (
    ((True, True), "AI present · reader present"),
    ((True, False), "AI present · reader absent"),
    ((False, True), "AI absent · reader present"),
    ((False, False), "AI absent · reader absent"),
)
# A box per structure is readable up to this many; the table below the chart has them all.
MAX_BOXES = 40


def agreement_table(facts) -> pd.DataFrame:
    """One row per finding, one column per (AI, reader) pair, each column saying which side is which."""
    rows = [
        {"finding": finding, **{name: counts.get(pair, 0) for pair, name in CONFUSION_COLUMNS}}
        for finding, counts in sorted(agreement.confusion(facts).items())
    ]
    return pd.DataFrame(rows, columns=["finding", *(name for _, name in CONFUSION_COLUMNS)])


def source_name(model_id: str) -> str:
    return "uploaded masks" if model_id == UPLOADED else model_id


def _as_text(frame: pd.DataFrame, rate: str) -> pd.DataFrame:
    """A missing rate or kappa reads "–" (the measure column says why), never "None" or "nan%"
    (pandas holds a missing rate as NaN)."""
    if frame.empty:
        return frame
    return frame.assign(
        **{
            rate: [f"{v:.0%}" if pd.notna(v) else "– (only unsure)" for v in frame[rate]],
            "reader agreement": [f"{v:.2f}" if pd.notna(v) else "–" for v in frame["reader agreement"]],
        }
    )


st.title("Analytics")
st.caption("Current verdicts only (a changed verdict counts once, as it stands now).")

today = datetime.now(UTC).date()
filters = st.columns([2, 2, 2, 1.4])
dates = filters[0].date_input("Verdicts between", (today - timedelta(days=90), today), key="an_dates")
only = visible_reviewer()
with database.transaction() as session:
    recorded = reporting.current_verdict_facts(session, include_untrained=True)
    recorded_structures = reporting.current_structure_verdict_facts(session, reviewer=only)
    measured = reporting.structure_volumes(session)
    windows = reporting.first_and_last_verdict_times(session)
    names = repository.reviewer_names(session)
# In a demo every run is untrained: then the page starts with them included (and says so at the
# top) rather than empty; once trained runs exist it starts with those alone.
trained = [r.trained for r in [*recorded, *recorded_structures, *measured]]
demo_only = bool(trained) and not any(trained)
include_untrained = filters[3].toggle("Include untrained runs", value=demo_only, key="an_untrained")
everything, every_structure, every_volume = (
    rows if include_untrained else [r for r in rows if r.trained] for rows in (recorded, recorded_structures, measured)
)
model = filters[1].selectbox(
    "Model",
    ["all"] + sorted({r.model_id for r in [*everything, *every_structure, *every_volume]}),
    key="an_model",
    format_func=source_name,
)
if only is None:
    reviewer = filters[2].selectbox(
        "Reviewer",
        ["all"] + sorted({f.reviewer for f in [*everything, *every_structure]}),
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


def _chosen(rows, by_reviewer: bool = True) -> list:
    return [
        r
        for r in rows
        if since <= r.created_at < until
        and (model == "all" or r.model_id == model)
        and (not by_reviewer or reviewer == "all" or r.reviewer == reviewer)
    ]


facts, structure_facts = _chosen(everything), _chosen(every_structure)
volumes = _chosen(every_volume, by_reviewer=False)  # what the masks measure, reviewed or not: no reader's answer
if include_untrained and any(not r.trained for r in [*facts, *structure_facts, *volumes]):
    st.error("Includes runs with UNTRAINED weights: those AI scores and masks were meaningless.")
if not facts and not structure_facts and not volumes:
    st.info(
        "No verdicts match these filters yet."
        + (
            ""
            if include_untrained
            else " Runs on untrained weights are left out unless 'Include untrained runs' is on."
        )
    )
    st.stop()

judged = [*facts, *structure_facts]
cases = {f.run_id for f in facts}
segmentations = {f.run_id for f in structure_facts}
readers = {f.reviewer for f in judged}
metrics = st.columns(4)
metrics[0].metric("Verdicts", len(judged))
metrics[1].metric("Cases", len(cases) + len(segmentations))
metrics[2].metric("Readers", len(readers))
# With the AI: an uploaded mask is someone's own, not the AI's.
decided = [f for f in judged if f.verdict != "unsure" and f.model_id != UPLOADED]
metrics[3].metric(
    "Agree with AI", f"{sum(f.verdict == 'agree' for f in decided) / len(decided):.0%}" if decided else "–"
)


def findings_section() -> None:
    """Findings and classes: agreement per finding, AI against reader, bands and scores, pace."""
    frame = pd.DataFrame(
        [
            {
                "finding": a.item,
                "verdicts": a.verdicts,
                "agree with AI": a.agree_rate,
                "readers": a.readers,
                "cases read by all": a.shared_items,
                "reader agreement": a.kappa,
                "measure": a.kappa_kind,
            }
            for a in agreement.per_finding(facts)
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
    st.dataframe(_as_text(frame, "agree with AI"), hide_index=True)

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
                x=minutes,
                nbins=20,
                labels={"x": "minutes from first to last verdict"},
                title="Time per case and reader",
            ),
            config={"displayModeBar": False},
        )


def structures_section() -> None:
    """Segmented structures: agreement per structure of each source's masks, and the volumes the
    masks measure."""
    if structure_facts:
        st.subheader("Agreement per structure")
        st.caption(
            "A verdict on a structure says whether its mask is right. For a model's masks, agree is agreement "
            "with the AI; uploaded masks are someone's own, so their rows say how often readers accepted them."
        )
        frame = pd.DataFrame(
            [
                {
                    "masks from": source_name(source),
                    "structure": a.item,
                    "verdicts": a.verdicts,
                    "agree with the mask": a.agree_rate,
                    "readers": a.readers,
                    "cases read by all": a.shared_items,
                    "reader agreement": a.kappa,
                    "measure": a.kappa_kind,
                }
                for source, rows in agreement.per_structure(structure_facts).items()
                for a in rows
            ]
        )
        st.dataframe(_as_text(frame, "agree with the mask"), hide_index=True)
    if not volumes:
        return
    st.subheader("Volume per structure")
    sources = sorted({v.model_id for v in volumes})
    source = (
        sources[0]
        if len(sources) == 1
        else st.selectbox("Masks from", sources, key="an_volume_source", format_func=source_name)
    )
    shown = [v for v in volumes if v.model_id == source]
    table = pd.DataFrame([{"structure": v.structure, "volume (mL)": v.volume_ml} for v in shown])
    per_structure = table.groupby("structure", sort=False)["volume (mL)"]
    summary = pd.DataFrame(
        {
            "runs": per_structure.size(),
            "absent (0 mL)": per_structure.apply(lambda s: int((s == 0).sum())),
            "median (mL)": per_structure.median().round(2),
            "lower quartile (mL)": per_structure.quantile(0.25).round(2),
            "upper quartile (mL)": per_structure.quantile(0.75).round(2),
            "smallest (mL)": per_structure.min().round(2),
            "largest (mL)": per_structure.max().round(2),
        }
    ).reset_index()
    boxed = summary.sort_values("median (mL)", ascending=False).head(MAX_BOXES)["structure"].tolist()
    runs = len({v.run_id for v in shown})
    chart = px.box(
        table[table["structure"].isin(boxed)],
        x="volume (mL)",
        y="structure",
        points="all",
        orientation="h",
        height=max(260, 160 + 32 * len(boxed)),
        title=f"{source_name(source)}: volume per structure over {runs} run(s)",
    )
    st.plotly_chart(chart, config={"displayModeBar": False})
    if len(summary) > len(boxed):
        st.caption(
            f"The chart shows the {len(boxed)} largest structures by median volume; the table has all {len(summary)}."
        )
    st.dataframe(summary, hide_index=True)


def masks_against_the_ai() -> None:
    """Where a volume was segmented by a model and also given a mask uploaded from another tool
    (a reader's own, or their correction of the AI's made from its DICOM SEG), the structures of
    the same name compared voxel by voxel: read from the image store only when asked."""
    in_dates = [v for v in every_volume if since <= v.created_at < until]
    pairs = [p for p in mask_agreement.mask_pairs(in_dates) if model in ("all", UPLOADED, p.model_id)]
    if not pairs:
        return
    st.subheader("Readers' masks against the AI's")
    st.caption(
        f"{len(pairs)} volume(s) with both a model's masks and an uploaded mask sharing structure names. "
        "Dice: 1 is the same voxels, 0 none in common."
    )
    if not st.toggle("Compare them voxel by voxel", key="an_mask_dice"):
        return
    with database.transaction() as session:
        runs = {
            run_id: repository.get_run(session, run_id, repository.SegmentationRunRecord)
            for p in pairs
            for run_id in (p.model_run, p.mask_run)
        }
    rows = []
    for p in pairs:
        first, second = runs[p.model_run], runs[p.mask_run]
        if first is None or second is None:
            continue
        for a in results.mask_agreement(first.label_map_sha256, second.label_map_sha256, p.shared, first, second):
            rows.append(
                {
                    "case": a.case_id,
                    "masks from": a.model_id + ("" if a.trained else " (UNTRAINED)"),
                    "AI run": a.model_run,
                    "uploaded mask run": a.mask_run,
                    "structure": a.structure,
                    "Dice": f"{a.dice:.3f}" if a.dice is not None else "– (both empty)",
                    "AI (mL)": round(a.model_ml, 2),
                    "uploaded (mL)": round(a.mask_ml, 2),
                    "difference": f"{(a.mask_ml - a.model_ml) / a.model_ml:+.0%}" if a.model_ml else "–",
                }
            )
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    else:
        st.caption("Their label maps are no longer kept (or lie on different grids): nothing to compare.")


def site_calibration_section() -> None:
    """Per finding: how the scores match what the readers say, and the thresholds their verdicts
    support. Fitted only when asked; for a signed-in admin, the chest X-ray proposal can be taken to
    the band editor, where it is reviewed and saved as a new bands version (nothing changes here)."""
    st.subheader("Site calibration from the verdicts")
    st.caption(
        "Each verdict implies a reader label (present: agree on a positive or critical band, or disagree on a "
        "negative one); a case's readers count by majority. The errors after recalibration are measured on cases "
        "each fit never saw (5-fold). Proposed thresholds: low keeps 98 % of present cases at or above it, high "
        "the target share, critical lets at most 2 % of absent cases above it."
    )
    if not st.toggle("Fit the calibration to these verdicts", key="an_calibration"):
        return
    target = st.slider("Target sensitivity for high", 0.5, 0.99, 0.9, 0.01, key="an_target_sensitivity")
    digest = hashlib.sha256(
        repr(sorted((f.run_id, f.reviewer, f.finding, f.entry, f.score) for f in facts)).encode()
    ).hexdigest()
    found = results.site_calibration(digest, target, facts)
    if not found:
        st.info("No verdict here gives a reader label yet (unsure and indeterminate say nothing).")
        return

    def cut(t) -> str:
        return f"{t.value:.3f} ({t.interval[0]:.3f}–{t.interval[1]:.3f})" if t is not None else "–"

    def error(value) -> str:
        return f"{value:.3f}" if value is not None else "–"

    st.dataframe(
        pd.DataFrame(
            [
                {
                    "model": c.model_id,
                    "weights": c.weights_sha256[:12] + "…",
                    "finding": c.finding,
                    "cases": c.cases,
                    "present": c.present,
                    "ECE": error(c.ece),
                    "temperature": f"{c.temperature:.2f}" if c.temperature is not None else "–",
                    "ECE after temperature": error(c.ece_temperature),
                    "ECE after isotonic": error(c.ece_isotonic),
                    "proposed low": cut(c.low),
                    "proposed high": cut(c.high),
                    "proposed critical": cut(c.critical),
                    "note": c.why_not or c.adjusted,
                }
                for c in found
            ]
        ),
        hide_index=True,
    )
    picked = st.selectbox(
        "Reliability diagram of",
        range(len(found)),
        format_func=lambda i: f"{found[i].model_id} ({found[i].weights_sha256[:12]}…) · {found[i].finding}",
        key="an_reliability_finding",
    )
    chosen = found[picked or 0]
    filled = [b for b in chosen.reliability if b.cases]
    diagram = px.line(
        x=[b.mean_score for b in filled],
        y=[b.observed for b in filled],
        markers=True,
        labels={"x": "mean score in the bin", "y": "share the readers called present"},
        title=f"{chosen.finding}: scores against the readers ({chosen.cases} cases)",
        range_x=[0, 1],
        range_y=[0, 1],
        hover_data={"cases": [b.cases for b in filled]},
    )
    diagram.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"dash": "dot", "color": "grey"})
    st.plotly_chart(diagram, config={"displayModeBar": False})
    # A proposal for the bands of the chest X-ray model as it runs now: its own weights' verdicts only.
    state = models.classifier()
    running = (state.spec.model_id, state.weights_sha256) if isinstance(state, LoadedModel) else None
    proposal = {
        c.finding: {"low": c.low.value, "high": c.high.value, "critical": c.critical.value}
        for c in found
        if (c.model_id, c.weights_sha256) == running
        and c.low is not None
        and c.high is not None
        and c.critical is not None
    }
    if proposal and running is not None:
        proposal_button(
            proposal, f"site calibration of {len(facts)} verdicts, target sensitivity {target:.2f}", running
        )


def _weeks_table(weeks, series: str, mean: str, p_value: str, with_model: bool) -> None:
    """Drifted weeks first; ``series`` names what each row measures (a finding, an input measure)."""
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "week of": w.week.isoformat(),
                    **({"model": w.model_id, "weights": w.weights_sha256[:12] + "…"} if with_model else {}),
                    series: w.finding,
                    "runs": w.cases,
                    mean: f"{w.mean_score:.3f}" if w.mean_score == w.mean_score else "–",  # NaN: a category
                    "PSI": f"{w.psi:.3f}" if w.psi is not None else "–",
                    p_value: f"{w.ks_p:.2g}" if w.ks_p is not None else "–",
                    "drift": "YES" if w.alert else "",
                    "note": w.why,
                }
                for w in sorted(weeks, key=lambda w: (not w.alert, w.finding, w.week))
            ]
        ),
        hide_index=True,
    )


def drift_section() -> None:
    """Week by week against the first weeks: each finding's score distribution (PSI, KS) per model
    and weights, and the readers' agreement with the AI. Computed only when asked."""
    st.subheader("Drift, week by week")
    st.caption(
        "Each finding's scores in every run (reviewed or not) of a model's weights, and the inputs (intensity, "
        "size, pixel spacing, manufacturer, view, format), each week against the first weeks: "
        f"flagged when the shift is significant (KS p < {drift.KS_ALERT_P}) and large (PSI > {drift.PSI_ALERT}), "
        f"on at least {drift.MIN_WEEK_CASES} cases. New weights start their own reference."
    )
    if not st.toggle("Check for drift", key="an_drift"):
        return
    reference_weeks = st.number_input("Reference: the first weeks", 1, 26, 4, key="an_drift_reference")
    with database.transaction() as session:
        latest = reporting.latest_run_id(session)
    weeks, inputs, profiled = results.drift_weeks(
        None if model == "all" else model, include_untrained, until, int(reference_weeks), latest
    )
    judged = [w for w in weeks if w.psi is not None]
    alerts = [w for w in judged if w.alert]
    if not judged:
        st.info(f"Not enough weeks yet: drift is measured from week {int(reference_weeks) + 1} of a model's weights.")
    elif alerts:
        st.error(f"{len(alerts)} finding-week(s) drifted from the reference; the rows below say which.")
    else:
        st.success(f"No drift flagged in {len(judged)} finding-week(s) after the reference.")
    if weeks:
        _weeks_table(weeks, "finding", "mean score", "KS p", with_model=True)
    if inputs:
        changed = [w for w in inputs if w.alert]
        st.markdown(
            f"**The inputs** ({profiled} runs with a stored profile): "
            + (f"{len(changed)} measure-week(s) drifted." if changed else "no drift flagged.")
        )
        _weeks_table(inputs, "measure", "mean", "p (KS or chi-square)", with_model=False)
    _subgroups_table(facts)
    per_week = drift.agreement_by_week(facts)
    if per_week:
        chart = px.line(
            x=[w.week.isoformat() for w in per_week],
            y=[w.agree_rate for w in per_week],
            markers=True,
            labels={"x": "week of (UTC)", "y": "share of agree (agree + disagree)"},
            title="Readers' agreement with the AI per week",
            range_y=[0, 1.04],
        )
        chart.update_xaxes(type="category")
        st.plotly_chart(chart, config={"displayModeBar": False})


def _subgroups_table(facts) -> None:
    """Runs and agreement per sex and age band, only where the site keeps them (off by default)."""
    if not load_settings().retain_patient_characteristics:
        st.caption(
            "Subgroups (sex, age band) are off: this site keeps no patient characteristics. IT turns them on with "
            "RETAIN_PATIENT_CHARACTERISTICS=1 or retain_patient_characteristics = true under [deid] in the secrets "
            "file (DICOM de-identification's 'retain patient characteristics' option); images read from then on keep "
            "their sex and age band, never a birth date."
        )
        return
    with database.transaction() as session:
        profiles = reporting.input_profiles(session, None if model == "all" else model)
    groups = drift.subgroups([p for p in profiles if include_untrained or p.trained], facts)
    if not groups:
        st.caption("Subgroups (sex, age band): kept from now on; no image read since has them yet.")
        return
    st.markdown("**Subgroups**: the readers' agreement with the AI by sex and age band")
    st.dataframe(
        [
            {
                "characteristic": g.characteristic,
                "value": g.value,
                "runs": g.runs,
                "verdicts (agree or disagree)": g.verdicts,
                "agree": "–" if g.agree_rate is None else f"{100 * g.agree_rate:.0f} %",
                "95 % CI": "–" if g.interval is None else f"{100 * g.interval[0]:.0f}–{100 * g.interval[1]:.0f} %",
            }
            for g in groups
        ],
        hide_index=True,
    )


if facts:
    findings_section()
    site_calibration_section()
drift_section()  # of every run, reviewed or not
if structure_facts or volumes:
    structures_section()
masks_against_the_ai()

st.subheader("Exports")


def _runs_json(session) -> bytes:
    """Built only when the button is pressed: the runs behind these figures (classifications and
    segmentations), with the history a reader may see (their own) or the lead may see (everyone's)."""
    runs = [
        (
            repository.get_run(session, run_id),
            repository.verdict_history(session, run_id, reviewer=only),
            repository.case_note_history(session, run_id, reviewer=only),
        )
        for run_id in sorted(cases | segmentations)
    ]
    return exports.runs_json([r for r in runs if r[0] is not None], names, blinded_to=only)


buttons = st.columns(3)
with buttons[0]:
    export_button(
        "Verdicts (CSV)",
        lambda session: exports.verdicts_csv(facts),
        file_name="verdicts.csv",
        mime="text/csv",
        kind="verdicts (CSV)",
    )
with buttons[1]:
    export_button(
        "Structure verdicts (CSV)",
        lambda session: exports.structure_verdicts_csv(structure_facts),
        file_name="structure-verdicts.csv",
        mime="text/csv",
        kind="structure verdicts (CSV)",
    )
with buttons[2]:
    export_button(
        "Runs and verdict history (JSON)",
        _runs_json,
        file_name="runs.json",
        mime="application/json",
        kind="runs and verdicts (JSON)",
    )
