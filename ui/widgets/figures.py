"""The charts of stored runs, built once per run and shared read-only (``st.cache_resource``):
Plotly validation is the slow part, and ``st.plotly_chart`` serialises a copy and never mutates it.
The run key is the cache key; the arguments starting with ``_`` are not part of it."""

from __future__ import annotations

import streamlit as st

from ui.widgets.charts import band_chart, normal_labels, score_title, slice_strip, volume_chart


@st.cache_resource(max_entries=64, show_spinner=False)
def band_figure(
    run_key: str, _findings: tuple, _thresholds: dict, trained: bool, model_id: str = "", _intervals: dict | None = None
):
    """The findings chart for one stored run (``model_id`` says what its scores are; ``_intervals``,
    the run's test-time augmentation, belongs to the run)."""
    return band_chart(_findings, _thresholds, trained, score_title(model_id), _intervals, normal_labels(model_id))


@st.cache_resource(max_entries=64, show_spinner=False)
def volume_figure(run_key: str, _names: tuple, _volumes_ml: tuple, _colours: tuple, caption: str):
    """The structure-volume chart of one stored segmentation run."""
    return volume_chart(_names, _volumes_ml, _colours, caption)


@st.cache_resource(max_entries=16, show_spinner=False)
def strip_figure(run_key: str, _result, trained: bool):
    """The per-slice strip of one classified volume."""
    return slice_strip(_result, trained)
