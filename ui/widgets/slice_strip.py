"""The per-slice score strip of a volume classified slice by slice: each class's probability on
every scored slice, the slice that drives each class's volume score marked."""

from __future__ import annotations

import plotly.graph_objects as go

from pipelines.classify import VolumeClassification

PALETTE = ("#c0392b", "#2e86c1", "#8e44ad", "#27ae60", "#d68910", "#5d6d7e")


def slice_strip(result: VolumeClassification, trained: bool) -> go.Figure:
    fig = go.Figure()
    for k, label in enumerate(result.labels):
        colour = PALETTE[k % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=list(result.slice_indices),
                y=[float(v) for v in result.slice_scores[:, k]],
                mode="lines",
                name=label,
                line=dict(color=colour, width=1.6),
                hovertemplate=f"{label}: %{{y:.3f}} on slice %{{x}}<extra></extra>",
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
                hovertemplate=f"{label} is driven by slice {driving}<extra></extra>",
                showlegend=False,
            )
        )
    title = f"Per-slice probability ({result.view.lower()} slices; diamonds: the slice driving each class)"
    if not trained:
        title = "UNTRAINED WEIGHTS: scores are meaningless"
    fig.update_layout(
        height=260,
        margin=dict(l=10, r=10, t=40, b=30),
        title=dict(text=title, font=dict(size=13, color="#222" if trained else "#b00020")),
        xaxis=dict(title=f"{result.view.lower()} slice", fixedrange=True),
        yaxis=dict(range=[0, 1.02], fixedrange=True),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig
