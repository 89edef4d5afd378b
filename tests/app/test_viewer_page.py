"""What the pages send to the browser viewer, through AppTest (the viewer itself is driven in a real
browser by tests/e2e/test_viewer.py): the whole radiograph once per session, then ids only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app.conftest import confirm_radiograph, new_app, texts
from tests.app.test_review_page import upload
from ui.session import prior_key, selected_key


@pytest.fixture
def browser_viewer(monkeypatch: pytest.MonkeyPatch) -> None:
    from ui.widgets.image_viewer import BUNDLE

    if not BUNDLE.is_file():
        pytest.fail(f"The browser viewer is not built ({BUNDLE} is missing): run `bash scripts/build-viewer`.")
    monkeypatch.setenv("REVIEW_VIEWER", "browser")


def _viewer(at):
    [element] = [e for e in at.get("component_instance") if "review_viewer" in e.proto.component_name]
    spec = json.loads(json.loads(element.proto.json_args)["spec"])
    sent = {arg.key: arg.bytes for arg in element.proto.special_args}
    return spec, sent


def test_the_radiograph_goes_to_the_viewer_once(untrained_env, browser_viewer, samples: Path) -> None:
    import gzip

    import nibabel as nib

    path = samples / "padchest_16747_3_1.jpg"
    at = new_app().run()
    at.file_uploader[0].set_value((path.name, path.read_bytes(), "image/jpeg")).run()
    # Asked what the JPEG is, the reader sees the whole of it in the viewer, where its heatmap will be.
    asked, sent_asked = _viewer(at)
    assert [layer["role"] for layer in asked["layers"]] == ["image"]
    image = nib.Nifti1Image.from_bytes(gzip.decompress(sent_asked[f"b_{asked['layers'][0]['id']}"]))
    assert image.shape == (1036, 885, 1)  # the whole radiograph, not the model's 885 x 885 crop
    assert "1036 × 885 px" in texts(at)

    # Confirmed: the same viewer gets the crop outline and the heatmap; the radiograph is an id only.
    confirm_radiograph(at)
    spec, sent = _viewer(at)
    assert spec["kind"] == "xray" and spec["scene"] == asked["scene"]
    assert [layer["role"] for layer in spec["layers"]] == ["image", "outline", "heatmap"]
    assert spec["layers"][0]["id"] == asked["layers"][0]["id"]
    assert set(sent) == {f"b_{layer['id']}" for layer in spec["layers"][1:]}
    heatmap = spec["layers"][2]
    assert heatmap["caption"].startswith("Grad-CAM for ") and heatmap["untrained"].startswith("UNTRAINED")

    # Another finding: only the new heatmap travels; the radiograph and outline are ids only.
    at.selectbox(key=selected_key("review", "finding", 1)).set_value("Effusion").run()
    spec2, sent2 = _viewer(at)
    assert [layer["id"] for layer in spec2["layers"][:2]] == [layer["id"] for layer in spec["layers"][:2]]
    assert set(sent2) == {f"b_{spec2['layers'][2]['id']}"}
    at.run()
    assert _viewer(at)[1] == {}

    # The browser lost the image (its cache was full): it asks, and the next run sends it again.
    at.session_state["xray_viewer"] = {"webgl": True, "missing": [spec["layers"][0]["id"]], "nonce": 1}
    at.run()
    assert set(_viewer(at)[1]) == {f"b_{spec['layers'][0]['id']}"}
    at.run()
    assert _viewer(at)[1] == {}, "a request is answered once"


def test_without_webgl_the_page_draws_the_server_rendered_view(untrained_env, browser_viewer, samples: Path) -> None:
    at = upload(new_app().run(), samples / "nih_00000001_000.png")
    assert _viewer(at)
    at.session_state["xray_viewer"] = {"webgl": False}
    at.run()
    assert not [e for e in at.get("component_instance")]
    assert any("no WebGL2" in str(c.value) for c in at.caption)
    assert any(c.startswith("Image (the square centre crop") for image in at.image for c in image.captions)


def test_a_case_and_its_prior_open_in_two_linked_viewers(untrained_env, browser_viewer, samples: Path) -> None:
    from tests.app.test_other_pages import _patient_dicom

    at = new_app().run()
    for n in (1, 2):
        at.file_uploader[0].set_value((f"film{n}.dcm", _patient_dicom(samples, "MRN-7", n), "application/dicom")).run()
        confirm_radiograph(at)
    at.switch_page("pages/cases.py").run()
    at.selectbox[0].set_value(2).run()
    at.toggle(key=prior_key(2)).set_value(True).run()
    assert not at.exception, at.exception
    viewers = [e for e in at.get("component_instance") if "review_viewer" in e.proto.component_name]
    specs = [json.loads(json.loads(v.proto.json_args)["spec"]) for v in viewers]
    linked = [s for s in specs if s.get("sync")]
    assert len(linked) == 2 and linked[0]["sync"] == linked[1]["sync"] == "prior:2:1"
    assert [s["kind"] for s in linked] == ["xray", "xray"]
    assert linked[0]["scene"] != linked[1]["scene"], "each film its own image"
    assert not any(c.startswith("Image (the square centre crop") for image in at.image for c in image.captions)
    assert any("move both images together" in str(c.value) for c in at.caption)
