"""Plotly figures built from plain results (no Streamlit import here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from core.types import Finding
from core.vocabulary import Band

if TYPE_CHECKING:
    from pipelines.classify import VolumeClassification

BAND_COLOURS = {
    Band.NEGATIVE: "#d9e7d4",
    Band.INDETERMINATE: "#fbe8a6",
    Band.POSITIVE: "#f7bf86",
    Band.CRITICAL: "#f08c8c",
}
MARKER_COLOURS = {
    Band.NEGATIVE: "#2f6b2f",
    Band.INDETERMINATE: "#8a6d00",
    Band.POSITIVE: "#b35900",
    Band.CRITICAL: "#b00020",
}


def score_text(score: float, trained: bool) -> str:
    return f"{score:.2f}" if trained else f"{score:.2f} (untrained)"


OPERATING_POINT_TITLE = "Calibrated score in threshold bands (0.5 = operating point)"


NORMAL_COLOUR = "#e5e7e9"  # a class that means "nothing found": no bands
NORMAL_MARKER = "#7f8c8d"


def normal_labels(model_id: str) -> frozenset[str]:
    """A registered classifier's classes that mean "nothing found" (drawn without bands)."""
    from inference.models.registry import MODELS
    from inference.models.spec import ClassifierSpec

    spec = MODELS.get(model_id)
    return frozenset(spec.normal_labels) if isinstance(spec, ClassifierSpec) else frozenset()


def score_title(model_id: str) -> str:
    """What the chart's scores are, for a registered model (the chest X-ray's by default)."""
    from inference.models.registry import MODELS
    from inference.models.spec import ClassifierSpec

    spec = MODELS.get(model_id)
    if isinstance(spec, ClassifierSpec) and spec.exclusive:
        return "Class probability in threshold bands (temperature-scaled)"
    return OPERATING_POINT_TITLE


def band_chart(
    findings: Sequence[Finding],
    thresholds: Mapping[str, Mapping[str, float]],
    trained: bool,
    title: str = OPERATING_POINT_TITLE,
    intervals: Mapping[str, tuple[float, float]] | None = None,
    normal: frozenset[str] = frozenset(),
) -> go.Figure:
    """One horizontal bar per finding with its coloured bands and a marker at the score;
    ``intervals`` (label -> mean, standard deviation of test-time augmentation) adds a bar of
    mean ± one standard deviation under each marker. A ``normal`` class ("No tumour") has no
    bands: one grey bar, a grey marker.

    ``findings`` must already be ranked (critical first, then by score); the first is drawn on top.
    All band segments are one bar trace (few traces keep Plotly's per-rerun validation cheap).
    """
    rows = list(range(len(findings)))[::-1]
    seg_y, seg_base, seg_width, seg_colour = [], [], [], []
    for row, finding in zip(rows, findings):
        if finding.label in normal:
            seg_y.append(row)
            seg_base.append(0.0)
            seg_width.append(1.0)
            seg_colour.append(NORMAL_COLOUR)
            continue
        t = thresholds[finding.label]
        edges = (0.0, t["low"], t["high"], t["critical"], 1.0)
        for band, start, end in zip(Band, edges[:-1], edges[1:]):
            seg_y.append(row)
            seg_base.append(start)
            seg_width.append(end - start)
            seg_colour.append(BAND_COLOURS[band])
    fig = go.Figure(
        [
            go.Bar(
                x=seg_width,
                base=seg_base,
                y=seg_y,
                orientation="h",
                width=0.7,
                marker=dict(color=seg_colour, line=dict(width=0)),
                hoverinfo="skip",
                showlegend=False,
            ),
            go.Scatter(
                x=[f.score for f in findings],
                y=rows,
                mode="markers",
                showlegend=False,
                marker=dict(
                    symbol="diamond",
                    size=13,
                    color=[NORMAL_MARKER if f.label in normal else MARKER_COLOURS[f.band] for f in findings],
                    line=dict(width=1, color="#222"),
                ),
                customdata=[
                    [f.label, "nothing found: not banded" if f.label in normal else f.band.value] for f in findings
                ],
                hovertemplate="%{customdata[0]}: %{x:.3f} (%{customdata[1]})<extra></extra>",
            ),
        ]
    )
    if intervals:
        spread = [(row, *intervals[f.label]) for row, f in zip(rows, findings) if f.label in intervals]
        fig.add_trace(
            go.Scatter(
                x=[mean for _row, mean, _sd in spread],
                y=[row - 0.3 for row, _mean, _sd in spread],
                mode="markers",
                showlegend=False,
                marker=dict(symbol="line-ns", size=8, color="#222", line=dict(width=1.5, color="#222")),
                error_x=dict(type="data", array=[sd for *_x, sd in spread], color="#222", thickness=1.5, width=3),
                hovertemplate="test-time augmentation: %{x:.3f} ± %{error_x.array:.3f}<extra></extra>",
            )
        )
    # The scores as a column right of the bars (annotations in the right margin; a trace outside
    # the axis range is not drawn): beside the diamonds they overlapped the marker wherever a
    # score sat near a band edge or 1.0.
    for row, finding in zip(rows, findings):
        fig.add_annotation(
            x=1.0,
            xref="paper",
            xanchor="left",
            xshift=8,
            y=row,
            yref="y",
            text=score_text(finding.score, trained),
            showarrow=False,
            font=dict(size=11, color="#222"),
        )
    if not trained:
        title = "UNTRAINED WEIGHTS: scores are meaningless"
    fig.update_layout(
        height=50 + 27 * len(findings),
        margin=dict(l=10, r=50 if trained else 120, t=40, b=25),
        title=dict(text=title, font=dict(size=13, color="#222" if trained else "#b00020")),
        xaxis=dict(range=[0, 1.01], tickvals=[0, 0.25, 0.5, 0.75, 1.0], fixedrange=True),
        yaxis=dict(
            tickvals=rows,
            fixedrange=True,
            ticktext=[f"<b>{f.label}</b>" if f.band is Band.CRITICAL else f.label for f in findings],
        ),
        plot_bgcolor="white",
    )
    return fig


# Streamlit Markdown colour + Material icon: renders without an emoji font on the reading-room PC.
BAND_SWATCHES = {
    Band.NEGATIVE: ":green[:material/square:]",
    Band.INDETERMINATE: ":yellow[:material/square:]",
    Band.POSITIVE: ":orange[:material/square:]",
    Band.CRITICAL: ":red[:material/square:]",
}


def band_legend_text() -> str:
    return "  ".join(f"{BAND_SWATCHES[b]} {b.value}" for b in Band)


def shap_waterfall(
    region_names: Sequence[str], values: Sequence[float], base: float, score: float, label: str, trained: bool
) -> go.Figure:
    """From the score with every region hidden to the model's score, region by region (largest effect first)."""
    order = sorted(range(len(values)), key=lambda i: -abs(values[i]))
    names = ["all regions hidden"] + [region_names[i] for i in order] + ["score"]
    fig = go.Figure(
        go.Waterfall(
            orientation="h",
            measure=["absolute"] + ["relative"] * len(order) + ["total"],
            y=names,
            x=[base] + [values[i] for i in order] + [score],
            text=[f"{base:.3f}"] + [f"{values[i]:+.3f}" for i in order] + [score_text(score, trained)],
            textposition="outside",
            increasing=dict(marker=dict(color="#c0392b")),
            decreasing=dict(marker=dict(color="#2e6fb0")),
            totals=dict(marker=dict(color="#555")),
            connector=dict(line=dict(color="#999", width=1)),
            cliponaxis=False,
        )
    )
    path = [base]
    for i in order:
        path.append(path[-1] + values[i])
    span = max(max(path) - min(path), 0.02)
    # Zoom on the path from base to score (as shap's own waterfall does): on a 0..1 axis, effects
    # of a few hundredths would be invisible. The first and last bars run off the left edge.
    low, high = min(path) - 0.15 * span, max(path) + 0.45 * span
    fig.update_layout(
        title=dict(
            text=f"Why {label} scores {score:.2f}" + ("" if trained else " (UNTRAINED weights)"), font=dict(size=13)
        ),
        height=70 + 30 * len(names),
        margin=dict(l=10, r=60, t=40, b=25),
        xaxis=dict(range=[low, high], fixedrange=True, title="calibrated score (zoomed on the change)"),
        yaxis=dict(autorange="reversed", fixedrange=True),
        plot_bgcolor="white",
        showlegend=False,
    )
    return fig


def volume_chart(names: Sequence[str], volumes_ml: Sequence[float], colours: Sequence[str], caption: str) -> go.Figure:
    """Horizontal bars of structure volumes in mL, largest on top, coloured like their masks."""
    order = sorted(range(len(names)), key=lambda i: volumes_ml[i])
    figure = go.Figure(
        go.Bar(
            x=[volumes_ml[i] for i in order],
            y=[names[i] for i in order],
            orientation="h",
            marker_color=[colours[i] for i in order],
            marker_line_color="#444",
            marker_line_width=0.5,
            text=[f"{volumes_ml[i]:.1f} mL" for i in order],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.2f} mL<extra></extra>",
        )
    )
    figure.update_layout(
        height=max(180, 26 * len(names) + 70),
        margin=dict(l=10, r=60, t=30, b=30),
        title=dict(text=caption, font=dict(size=13)),
        xaxis_title="volume (mL)",
        showlegend=False,
    )
    return figure


STRIP_PALETTE = ("#c0392b", "#2e86c1", "#8e44ad", "#27ae60", "#d68910", "#5d6d7e")


def slice_strip(result: "VolumeClassification", trained: bool) -> go.Figure:
    fig = go.Figure()
    for k, label in enumerate(result.labels):
        colour = STRIP_PALETTE[k % len(STRIP_PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=list(result.slice_indices),
                y=[float(v) for v in result.slice_scores[:, k]],
                mode="lines+markers",
                marker=dict(size=3, color=colour),
                name=label,
                line=dict(color=colour, width=1.6),
                hovertemplate=f"{label}: %{{y:.3f}} on slice %{{x}} (click: show it)<extra></extra>",
            )
        )
        driving = result.driving_slice[k]
        fig.add_trace(
            go.Scatter(
                x=[driving],
                y=[float(result.slice_scores[result.slice_indices.index(driving), k])],
                mode="markers",
                marker=dict(color=colour, size=10, symbol="diamond", line=dict(color="#222", width=1)),
                name=f"{label}: slice {driving}",
                hovertemplate=f"{label} is driven by slice {driving} (click: show it)<extra></extra>",
                showlegend=False,
            )
        )
    title = f"Per-slice probability ({result.view.lower()} slices; diamonds: the slice driving each class; click a slice to show it)"
    if not trained:
        title = "UNTRAINED WEIGHTS: scores are meaningless"
    fig.update_layout(
        height=260,
        margin=dict(l=10, r=10, t=40, b=30),
        title=dict(text=title, font=dict(size=13, color="#222" if trained else "#b00020")),
        xaxis=dict(title=f"{result.view.lower()} slice", fixedrange=True),
        yaxis=dict(range=[0, 1.02], fixedrange=True),
        legend=dict(orientation="h", y=-0.25),
        clickmode="event+select",
    )
    return fig
