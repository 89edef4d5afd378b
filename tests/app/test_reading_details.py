"""Details of the reading pages a new user ran into (issue 9's defect list), each checked as the
user meets it: the uploader's stated limit, a new case's controls, the findings chart's labels."""

from __future__ import annotations

import json
from pathlib import Path

from tests.app.conftest import confirm_radiograph, new_app, texts
from ui.session import keyboard_key, note_save_key, note_text_key, selected_key
from ui.widgets.radiograph_check import NO_LABEL, YES_LABEL


def _upload(at, path: Path):
    at.file_uploader[0].set_value((path.name, path.read_bytes(), "image/png")).run()
    confirm_radiograph(at)
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
    assert traces and all("text" not in t["mode"] for t in traces), "no label drawn beside a diamond"
    labels = figure["layout"]["annotations"]
    assert len(labels) == 18 and all("(untrained)" in a["text"] for a in labels)
    # In the right margin, left-aligned at the plot's edge: never over a bar or a marker.
    assert all(a["xref"] == "paper" and a["x"] >= 1.0 and a["xanchor"] == "left" for a in labels)
    assert figure["layout"]["margin"]["r"] >= 110  # room for "0.99 (untrained)"


def _bar_button(at, verdict: str, run_id: int = 1):
    return at.button(key=keyboard_key("review", "finding", run_id, verdict))


def _selected(at, run_id: int = 1) -> str:
    selector = at.selectbox(key=selected_key("review", "finding", run_id))
    [line] = [m.value for m in at.markdown if m.value.startswith("Selected: ")]
    assert f"**{selector.value}**" in line
    return selector.value


def test_verdicts_from_the_keyboard_go_to_the_selected_finding_then_the_next(untrained_env, samples: Path) -> None:
    from tests.app.conftest import verdict_items

    at = new_app()
    at.run()
    _upload(at, samples / "nih_00000001_000.png")
    items = verdict_items(at)
    # Shown keys: A / D / U on the selected finding, J / K to move, N for the next case.
    shortcuts = {b.label: b.proto.shortcut for b in at.button if b.proto.shortcut}
    assert [shortcuts[k].upper() for k in ("Agree", "Disagree", "Unsure", "Next", "Previous")] == list("ADUJK")
    assert _selected(at) == items[0]

    _bar_button(at, "agree").click().run()  # A
    assert f"Saved: {items[0]} — agree." in texts(at)
    assert _selected(at) == items[1], "the next finding without a verdict is selected"
    [b for b in at.button if b.label == "Next"][0].click().run()  # J
    assert _selected(at) == items[2]
    _bar_button(at, "disagree").click().run()  # D
    [b for b in at.button if b.label == "Previous"][0].click().run()  # K: back to the skipped one
    [b for b in at.button if b.label == "Previous"][0].click().run()
    assert _selected(at) == items[1]
    _bar_button(at, "unsure").click().run()  # U
    from tests.app.test_review_page import db_rows

    # The selector is also a plain dropdown; a key press goes to what it shows.
    at.selectbox(key=selected_key("review", "finding", 1)).set_value(items[5]).run()
    _bar_button(at, "agree").click().run()
    stored = db_rows("SELECT item, verdict FROM verdicts ORDER BY id")
    assert stored == [(items[0], "agree"), (items[2], "disagree"), (items[1], "unsure"), (items[5], "agree")]


def test_negative_findings_are_grouped_last_with_one_explicit_agree_stored_per_finding(
    untrained_env, samples: Path
) -> None:
    from tests.app.conftest import verdict_items
    from tests.app.test_review_page import db_rows

    at = new_app()
    at.run()
    _upload(at, samples / "nih_00000001_000.png")
    bands = [line.rsplit("· ", 1)[-1] for line in (m.value for m in at.markdown) if "(untrained) ·" in line]
    order = {"critical": 0, "positive": 1, "indeterminate": 2, "negative": 3}
    assert [order[b] for b in bands] == sorted(order[b] for b in bands), "critical, positive, ..., negative"
    [group] = [e for e in at.expander if e.label.startswith("Negative findings (")]
    negatives = bands.count("negative")
    assert group.label == f"Negative findings ({negatives}): 0 agreed, {negatives} without your verdict"
    [bulk] = [b for b in at.button if "agree_negatives" in (b.key or "")]
    bulk.click().run()
    names = verdict_items(at)[-negatives:]
    stored = db_rows("SELECT item, verdict FROM verdicts ORDER BY id")
    assert stored == [(name, "agree") for name in names], "one verdict per negative finding"
    assert f"Saved: agree on {negatives} negative finding" in texts(at)
    [group] = [e for e in at.expander if e.label.startswith("Negative findings (")]
    assert group.label == f"Negative findings ({negatives}): {negatives} agreed, 0 without your verdict"
    assert not [b for b in at.button if "agree_negatives" in (b.key or "")]


def _heatmap_caption(at) -> str:
    [caption] = [c for image in at.image for c in image.captions if " for " in c and "CAM" in c]
    return caption


def test_the_heatmap_follows_the_finding_being_judged(untrained_env, samples: Path) -> None:
    """One selection: J / K, a row's verdict and the list by the image all move the heatmap with
    the verdict panel; a verdict stores the method only for the finding whose heatmap was shown."""
    from tests.app.conftest import cam_method_box, click_verdict, verdict_items
    from tests.app.test_review_page import db_rows

    at = new_app()
    at.run()
    _upload(at, samples / "nih_00000001_000.png")
    items = verdict_items(at)
    assert _selected(at) == items[0] and _heatmap_caption(at).startswith(f"Grad-CAM for {items[0]}")
    [b for b in at.button if b.label == "Next"][0].click().run()  # J
    assert _selected(at) == items[1] and _heatmap_caption(at).startswith(f"Grad-CAM for {items[1]}")
    at.selectbox(key=selected_key("review", "finding", 1)).set_value(items[4]).run()  # the list by the image
    assert _selected(at) == items[4] and _heatmap_caption(at).startswith(f"Grad-CAM for {items[4]}")
    cam_method_box(at).set_value("Eigen-CAM").run()
    _bar_button(at, "agree").click().run()  # A on the finding shown: stored with its heatmap
    click_verdict(at, items[7], "disagree")  # a row's verdict: that row was not the one shown
    assert _selected(at) == items[7] and _heatmap_caption(at).startswith(f"Eigen-CAM for {items[7]}")
    stored = db_rows("SELECT item, verdict, cam_method FROM verdicts ORDER BY id")
    assert stored == [(items[4], "agree", "Eigen-CAM"), (items[7], "disagree", None)]


def test_a_new_upload_shows_in_its_lists_what_its_heatmap_is(untrained_env, samples: Path) -> None:
    """Finding and method chosen on one image, then another uploaded: the lists show the finding
    and method whose heatmap is drawn (the method carries over as the reader's choice)."""
    from tests.app.conftest import cam_method_box

    at = new_app()
    at.run()
    _upload(at, samples / "nih_00000001_000.png")
    at.selectbox(key=selected_key("review", "finding", 1)).set_value("Edema").run()
    cam_method_box(at).set_value("Eigen-CAM").run()
    assert _heatmap_caption(at).startswith("Eigen-CAM for Edema")
    _upload(at, samples / "tbx11k_h0001.png")
    shown = at.selectbox(key=selected_key("review", "finding", 2)).value
    method = cam_method_box(at).value
    assert _selected(at, run_id=2) == shown
    assert _heatmap_caption(at).startswith(f"{method} for {shown}")
    assert method == "Eigen-CAM"


def test_a_note_goes_to_the_selected_finding_not_the_first(untrained_env, samples: Path) -> None:
    from tests.app.conftest import click_verdict, verdict_items
    from tests.app.test_review_page import db_rows

    at = new_app()
    at.run()
    _upload(at, samples / "nih_00000001_000.png")
    items = verdict_items(at)
    click_verdict(at, items[3], "unsure")  # selects that row
    assert _selected(at) == items[3]
    [box] = [t for t in at.text_input if t.key == note_text_key("review", "finding", 1, "Dr Test")]
    assert items[3] in box.label
    box.input("Check the lateral film.")
    [save] = [b for b in at.button if (b.key or "") == note_save_key("review", "finding", 1)]
    save.click().run()
    assert f"Saved: {items[3]} — unsure with note." in texts(at)
    assert db_rows("SELECT item, note FROM verdicts ORDER BY id")[-1] == (items[3], "Check the lateral film.")


def test_a_brain_mri_jpeg_declined_at_the_question_is_never_scored_nor_stored(untrained_env, samples: Path) -> None:
    """A PNG or JPEG carries no modality: the page asks what it is before the chest X-ray model
    scores it. Declined, nothing runs, nothing is stored and the worklist stays empty."""
    from tests.app.test_review_page import db_rows

    mri = samples.parent / "mri_tumour" / "test" / "glioma" / "Te-glTr_0000.jpg"
    at = new_app()
    at.run()
    at.file_uploader[0].set_value((mri.name, mri.read_bytes(), "image/jpeg")).run()
    assert not at.exception, at.exception
    said = texts(at)
    assert "carries no record of what it shows" in said and "18 findings" not in said
    assert "jpg · 512 × 512 px" in said, "the reader sees what is asked about"
    assert db_rows("SELECT count(*) FROM cases")[0][0] == 0, "nothing stored before the answer"
    [no] = [b for b in at.button if b.label == NO_LABEL]
    no.click().run()
    said = texts(at)
    assert "was not analysed, and nothing was stored" in said and "18 findings" not in said
    assert db_rows("SELECT count(*) FROM cases")[0][0] == 0
    at.switch_page("pages/worklist.py").run()
    assert "No cases yet" in texts(at) or not at.dataframe


def test_a_confirmed_png_is_scored_and_the_confirmation_kept_with_its_run(untrained_env, samples: Path) -> None:
    from tests.app.test_review_page import db_rows

    at = new_app()
    at.run()
    path = samples / "nih_00000001_000.png"
    at.file_uploader[0].set_value((path.name, path.read_bytes(), "image/png")).run()
    assert "18 findings" not in texts(at)
    [yes] = [b for b in at.button if b.label == YES_LABEL]
    yes.click().run()
    assert "18 findings" in texts(at)
    [(actor, detail)] = db_rows("SELECT actor, detail_json FROM audit_events WHERE kind = 'image_confirmed'")
    assert actor == "Dr Test" and json.loads(detail)["confirmed_as"] == "a frontal chest radiograph"
