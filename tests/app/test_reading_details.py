"""Details of the reading pages a new user ran into (issue 9's defect list), each checked as the
user meets it: the uploader's stated limit, a new case's controls, the findings chart's labels."""

from __future__ import annotations

import json
from pathlib import Path

from tests.app.conftest import new_app, texts


def _upload(at, path: Path):
    at.file_uploader[0].set_value((path.name, path.read_bytes(), "image/png")).run()
    assert not at.exception, at.exception
    return at


def _compare_toggle(at):
    [toggle] = [t for t in at.toggle if (t.key or "").startswith("compare_cams")]
    return toggle


def test_the_xray_uploader_states_the_xray_limit_not_the_servers(untrained_env, monkeypatch) -> None:
    """The server takes 500 MB (CT series); the X-ray page refuses over 50 MB, and says 50 MB."""
    at = new_app()
    at.run()
    assert at.file_uploader[0].proto.max_upload_size_mb == 50
    monkeypatch.setenv("MAX_UPLOAD_MB", "20")
    at = new_app()
    at.run()
    assert at.file_uploader[0].proto.max_upload_size_mb == 20


def test_a_new_upload_starts_with_the_method_comparison_off(untrained_env, samples: Path) -> None:
    """The toggle and the six-method grid agree: a new case shows neither switched on nor computed."""
    at = new_app()
    at.run()
    _upload(at, samples / "nih_00000001_000.png")
    _compare_toggle(at).set_value(True).run()
    assert "Ranked by faithfulness" in texts(at)
    _upload(at, samples / "tbx11k_h0001.png")
    assert _compare_toggle(at).value is False
    assert "Ranked by faithfulness" not in texts(at)


def test_score_labels_sit_in_their_own_column_clear_of_the_markers(untrained_env, samples: Path) -> None:
    at = new_app()
    at.run()
    _upload(at, samples / "nih_00000001_000.png")
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = [t for t in figure["data"] if t["type"] == "scatter"]
    markers = [t for t in traces if "markers" in t["mode"]]
    labels = [t for t in traces if "text" in t["mode"]]
    assert markers and labels
    assert all("text" not in t["mode"] for t in markers), "no label drawn beside a diamond"
    plot_right = figure["layout"]["xaxis"]["range"][1]
    for trace in labels:
        assert len(trace["text"]) == 18 and all("(untrained)" in text for text in trace["text"])
        assert min(trace["x"]) > plot_right, "labels right of the bars, never over a marker"
