"""The HTTP inference API on real radiographs, as a service calling it sees it: heatmaps single and
in batches, predictions as the command line prints them, refusals with their status and reason,
health, metrics and who may call it."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from tests.conftest import CXR, NIH_PNG, require_samples
from tests.unit.cli.test_cli import run_in_process

KEY = "k" * 40


def _app(tmp: Path, *, keys: dict | None = None, allow_untrained: bool = True, max_upload_mb: int = 50, **config):
    """The app as ``serve`` builds it, for settings of its own (the environment read once, here)."""
    from api.access import load_access
    from api.app import ApiConfig, create_app
    from core.settings import load_settings

    secrets = tmp / "secrets.toml"
    if keys:
        secrets.write_text("[api]\nkeys = { " + ", ".join(f'"{k}" = "{v}"' for k, v in keys.items()) + " }\n")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REVIEW_DATA_DIR", str(tmp / "data"))
        env.setenv("MODEL_AUTO_DOWNLOAD", "0")
        env.setenv("MAX_UPLOAD_MB", str(max_upload_mb))
        env.delenv("ALLOW_UNTRAINED_WEIGHTS", raising=False)
        env.delenv("MODEL_WEIGHTS_DIR", raising=False)
        env.setattr("inference.models.weights.HOME", tmp / "home")
        settings = load_settings()
    return create_app(
        ApiConfig(settings=settings, access=load_access(secrets), allow_untrained=allow_untrained, **config)
    )


def _client(app, host: str = "127.0.0.1"):
    from fastapi.testclient import TestClient

    return TestClient(app, client=(host, 50000))


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    require_samples()
    with _client(_app(tmp_path_factory.mktemp("api"), max_batch=4)) as client:
        yield client


def _picture(b64: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)


def _files(*paths: Path) -> list:
    return [("files", (p.name, p.read_bytes())) for p in paths]


def test_a_heatmap_round_trip_on_a_real_radiograph_is_labelled_untrained(api) -> None:
    response = api.post("/api/inference/heatmap", files={"file": (NIH_PNG.name, NIH_PNG.read_bytes())})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["id"] == "xrv-densenet121-res224-all" and body["model"]["trained"] is False
    assert body["warning"].startswith("UNTRAINED WEIGHTS")
    assert len(body["findings"]) == 18 and (body["colormap"], body["alpha"], body["method"]) == ("jet", 0.4, "Grad-CAM")
    # The default finding is the one the review page opens on: the highest ranked.
    top = max(body["findings"], key=lambda f: f["score"])
    assert body["finding"]["label"] == top["label"]
    overlay, heat = _picture(body["overlay_jpeg_base64"]), _picture(body["heatmap_jpeg_base64"])
    # 512 x 512 radiograph: the whole square, under the red untrained band added above it.
    assert overlay.shape[1] == heat.shape[1] == 512 and overlay.shape[0] > 512 and overlay.shape[2] == 3
    band = overlay[:10, :, :]  # BGR as OpenCV decodes: red dominates the band
    assert band[..., 2].mean() > 150 and band[..., 1].mean() < 100
    assert body["square"] == {"top": 0, "left": 0, "size": 512}
    assert body["processing_time_ms"] > 0


def test_another_method_colormap_and_finding_are_what_is_drawn(api) -> None:
    data = NIH_PNG.read_bytes()
    findings = api.post("/api/inference/predict", files={"file": ("a.png", data)}).json()["findings"]
    second = sorted(findings, key=lambda f: -f["score"])[1]["label"]  # not the default one
    jet = api.post(
        "/api/inference/heatmap", files={"file": ("a.png", data)}, data={"finding": second, "alpha": "0.9"}
    ).json()
    hot = api.post(
        "/api/inference/heatmap",
        files={"file": ("a.png", data)},
        data={"finding": second, "method": "Grad-CAM++", "colormap": "hot", "alpha": "0.9"},
    ).json()
    assert (hot["finding"]["label"], hot["method"], hot["colormap"]) == (second, "Grad-CAM++", "hot")
    assert hot["finding"] == jet["finding"]  # the same score and band whichever picture
    a, b = _picture(jet["heatmap_jpeg_base64"]), _picture(hot["heatmap_jpeg_base64"])
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 10


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"alpha": "0.95"}, "alpha"),
        ({"alpha": "0.05"}, "alpha"),
        ({"colormap": "rainbow"}, "Unknown colormap 'rainbow'; choose one of jet, hot, viridis, inferno."),
        ({"method": "Score-CAM"}, "Unknown CAM method 'Score-CAM'"),
        ({"finding": "Broken heart"}, "has no finding 'Broken heart'"),
        ({"model": "no-such-model"}, "no-such-model"),
    ],
)
def test_a_parameter_the_tool_cannot_use_is_a_422_that_says_which(api, fields, said) -> None:
    response = api.post("/api/inference/heatmap", files={"file": ("a.png", NIH_PNG.read_bytes())}, data=fields)
    assert response.status_code == 422
    assert said in response.json()["error"]


def test_a_file_that_is_no_radiograph_is_a_422_with_the_apps_message(api, tmp_path: Path) -> None:
    response = api.post("/api/inference/predict", files={"file": ("notes.png", b"this is not an image")})
    assert response.status_code == 422
    assert "notes.png" in response.json()["error"]
    ct = get_testdata_file("CT_small.dcm")
    response = api.post("/api/inference/predict", files={"file": ("ct.dcm", Path(ct).read_bytes())})
    assert response.status_code == 422 and "CT" in response.json()["error"]


def test_predict_gives_the_command_lines_findings_for_the_same_file(api, monkeypatch) -> None:
    body = api.post("/api/inference/predict", files={"file": (NIH_PNG.name, NIH_PNG.read_bytes())}).json()
    monkeypatch.setenv("ALLOW_UNTRAINED_WEIGHTS", "1")
    printed = json.loads(run_in_process("analyze", "--json", str(NIH_PNG)).stdout)
    assert body["findings"] == printed["findings"] and body["model"] == printed["model"]
    assert body["bands_version"] == printed["bands_version"] and body["warning"].startswith("UNTRAINED")


def test_a_batch_goes_on_past_a_bad_file_and_says_which_failed(api, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(NIH_PNG.read_bytes()[:300])  # cut off
    response = api.post("/api/inference/heatmap-batch", files=_files(NIH_PNG, bad, CXR / "padchest_16747_3_1.jpg"))
    assert response.status_code == 200
    body = response.json()
    assert (body["succeeded"], body["failed"]) == (2, 1)
    first, broken, third = body["results"]
    assert first["file"] == NIH_PNG.name and first["overlay_jpeg_base64"]
    assert broken["file"] == "broken.png" and broken["status"] == 422 and "broken.png" in broken["error"]
    assert third["square"]["size"] == 885  # padchest 1036 x 885: the centred square
    # Each file in the batch is answered as it is alone.
    assert body["total_processing_time_ms"] >= max(first["processing_time_ms"], third["processing_time_ms"]) > 0
    alone = api.post("/api/inference/predict", files={"file": (NIH_PNG.name, NIH_PNG.read_bytes())}).json()
    batched = {f["label"]: f["score"] for f in first["findings"]}
    assert all(abs(batched[f["label"]] - f["score"]) < 1e-4 for f in alone["findings"])
    assert [f["band"] for f in first["findings"]] == [f["band"] for f in alone["findings"]]


def test_too_many_files_or_too_large_a_file_is_a_413(api, tmp_path: Path) -> None:
    response = api.post("/api/inference/heatmap-batch", files=_files(*[NIH_PNG] * 5))
    assert response.status_code == 413 and "at most 4" in response.json()["error"]
    small = _app(tmp_path, max_upload_mb=1)
    big = np.random.default_rng(0).integers(0, 255, (1100, 1100), dtype=np.uint8)
    data = cv2.imencode(".png", big)[1].tobytes()
    assert len(data) > 1_000_000
    with _client(small) as client:
        response = client.post("/api/inference/heatmap", files={"file": ("big.png", data)})
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_health_lists_the_loaded_model_untrained_and_metrics_count_what_happened(api) -> None:
    api.post("/api/inference/heatmap", files={"file": ("a.png", NIH_PNG.read_bytes())})
    api.post("/api/inference/heatmap", files={"file": ("a.png", NIH_PNG.read_bytes())}, data={"alpha": "2"})
    health = api.get("/health").json()
    assert health["ready"] is True and "not a cleared medical device" in health["notice"]
    [model] = health["models"]
    assert (model["id"], model["trained"]) == ("xrv-densenet121-res224-all", False) and "UNTRAINED" in model["warning"]
    assert health["access"].startswith("no API keys")
    assert api.get("/health/ready").json() == {"ready": True, "model": model["id"], "trained": False}
    text = api.get("/metrics").text
    counted = re.search(
        r'review_api_requests_total\{method="POST",route="/api/inference/heatmap",status="200"\} (\S+)', text
    )
    assert counted and float(counted.group(1)) >= 1
    refused = re.search(
        r'review_api_requests_total\{method="POST",route="/api/inference/heatmap",status="422"\} (\S+)', text
    )
    assert refused and float(refused.group(1)) >= 1
    assert re.search(r'review_api_failures_total\{reason="422",route="/api/inference/heatmap"\} [1-9]', text)
    assert 'review_model_trained{model="xrv-densenet121-res224-all"} 0.0' in text
    assert re.search(r'review_model_load_seconds\{model="xrv-densenet121-res224-all"\} [0-9.]+', text)
    assert "review_api_in_flight 0.0" in text
    assert re.search(r"^review_jobs_waiting [0-9.]+$", text, re.M)


def test_without_weights_nor_untrained_mode_the_api_is_not_ready_and_says_how_to_fix_it(tmp_path: Path) -> None:
    require_samples()
    with _client(_app(tmp_path, allow_untrained=False)) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and "weights" in ready.json()["error"]
        response = client.post("/api/inference/predict", files={"file": ("a.png", NIH_PNG.read_bytes())})
        assert response.status_code == 503 and response.json()["error"] == ready.json()["error"]
        assert client.get("/health").json()["ready"] is False


def test_with_api_keys_a_call_needs_one_and_health_stays_open(tmp_path: Path) -> None:
    require_samples()
    with _client(_app(tmp_path, keys={"pacs-bridge": KEY}), host="10.1.2.3") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health").json()["access"] == "bearer tokens: 1 API key(s)"
        for headers in ({}, {"Authorization": "Bearer " + "x" * 40}, {"Authorization": KEY}):
            response = client.post("/api/inference/predict", files={"file": ("a.png", b"")}, headers=headers)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert client.get("/metrics").status_code == 401
        ok = client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200


def test_without_access_configured_only_this_machine_may_call(tmp_path: Path) -> None:
    from api.server import build
    from core.errors import ConfigError

    app = _app(tmp_path)
    with _client(app, host="10.1.2.3") as client:
        response = client.get("/metrics")
        assert response.status_code == 401 and "loopback" in response.json()["error"]
    with pytest.raises(ConfigError, match=r"loopback\) only, not 0\.0\.0\.0"):
        build(tmp_path / "none.toml", host="0.0.0.0")
    (tmp_path / "short.toml").write_text('[api]\nkeys = { "bridge" = "short" }\n')
    with pytest.raises(ConfigError, match="at least 32 characters.*bridge"):
        build(tmp_path / "short.toml")


def _small_ct() -> bytes:
    import gzip

    import nibabel as nib

    x, y = np.ogrid[:64, :64]
    body = ((x - 32) / 26.0) ** 2 + ((y - 32) / 20.0) ** 2 <= 1
    data = (np.where(body[..., None], 40.0, -1000.0) * np.ones((64, 64, 48))).astype(np.float32)
    return gzip.compress(nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0])).to_bytes(), compresslevel=1)


def follow(client, answer: dict, timeout: float = 300.0) -> dict:
    """Poll a job's status URL until it is done or failed."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        status = client.get(answer["status_url"]).json()
        if status["state"] in ("done", "failed"):
            return status
        assert status["state"] in ("queued", "running") and 0.0 <= status["progress"] <= 1.0, status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def test_a_ct_is_segmented_in_the_background_and_its_run_stored_for_review(api) -> None:
    from sqlalchemy import create_engine, text

    ct = _small_ct()
    response = api.post("/api/inference/segment", files=[("files", ("small_ct.nii.gz", ct))])
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["model"]["id"] == "monai-wholebody-ct-segresnet-3mm" and answer["warning"].startswith("UNTRAINED")
    status = follow(api, answer)
    assert status["state"] == "done", status
    result = status["result"]
    assert result["model"] == answer["model"] and result["warning"].startswith("UNTRAINED")
    assert result["structures"] and set(result["volumes_ml"]) == {s["name"] for s in result["structures"]}
    # Stored as the MRI/CT page stores it, under the caller: reviewable in the app.
    engine = create_engine(api.app.state.database_url)
    with engine.connect() as connection:
        stored = list(
            connection.execute(
                text("SELECT id, kind, trained FROM analysis_runs WHERE id = :r"), {"r": result["run_id"]}
            )
        )
    engine.dispose()
    assert stored == [(result["run_id"], "segmentation", 0)]
    # The same case again joins the same job: nothing is computed or stored twice.
    again = api.post("/api/inference/segment", files=[("files", ("again.nii.gz", ct))]).json()
    assert again["job_id"] == answer["job_id"] and follow(api, again)["result"]["run_id"] == result["run_id"]


def test_a_volume_the_tool_cannot_read_or_segment_is_a_422_and_an_unknown_job_a_404(api) -> None:
    png = api.post("/api/inference/segment", files=[("files", (NIH_PNG.name, NIH_PNG.read_bytes()))])
    assert png.status_code == 422 and NIH_PNG.name in png.json()["error"]
    unknown = api.post(
        "/api/inference/segment", files=[("files", ("ct.nii.gz", _small_ct()))], data={"model": "no-such-network"}
    )
    assert unknown.status_code == 422 and "no-such-network" in unknown.json()["error"]
    assert api.get("/api/jobs/segment:nothing").status_code == 404


def test_a_brain_mri_slice_is_classified_at_once_and_a_volume_in_the_background(api) -> None:
    from tests.conftest import SAMPLES

    slice_path = sorted((SAMPLES / "mri_tumour" / "test" / "meningioma").iterdir())[0]
    response = api.post(
        "/api/inference/classify",
        files=[("files", (slice_path.name, slice_path.read_bytes()))],
        data={"model": "brain-tumour-4class"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["id"] == "brain-tumour-4class" and body["model"]["trained"] is True and "warning" not in body
    assert body["prediction"] in {c["label"] for c in body["classes"]} and len(body["classes"]) == 4
    # The MNI template through the same model: slice by slice, in the background.
    template = SAMPLES / "mri" / "mni152_t1.nii.gz"
    queued = api.post(
        "/api/inference/classify",
        files=[("files", (template.name, template.read_bytes()))],
        data={"model": "brain-tumour-4class"},
    )
    assert queued.status_code == 202, queued.text
    status = follow(api, queued.json())
    assert status["state"] == "done", status
    result = status["result"]
    assert result["aggregate"]["view"].lower() == "axial" and len(result["slices"]) > 100
    assert {c["label"] for c in result["classes"]} == {c["label"] for c in body["classes"]}
    missing = api.post("/api/inference/classify", files=[("files", ("x.png", NIH_PNG.read_bytes()))])
    assert missing.status_code == 422 and "model" in missing.json()["error"]


def test_a_case_kept_through_the_api_takes_each_readers_verdicts_once(tmp_path: Path) -> None:
    """A radiograph sent with ``store`` is kept as a case run (once, whichever call sends it); each
    key's verdicts are stored under its own name, a retry of the same verdict is stored once, a
    change supersedes it, and what cannot be a verdict is refused with the reason."""
    from storage import repository
    from storage.db import open_database
    from storage.image_store import ImageStore

    require_samples()
    keys = {"reader-a": "a" * 40, "reader-b": "b" * 40}
    app = _app(tmp_path, keys=keys)
    a, b = ({"Authorization": f"Bearer {k}"} for k in keys.values())
    with _client(app) as client:
        shown = client.post(
            "/api/inference/heatmap",
            files={"file": (NIH_PNG.name, NIH_PNG.read_bytes())},
            data={"store": "true"},
            headers=a,
        )
        assert shown.status_code == 200, shown.text
        run_id, finding = shown.json()["run_id"], shown.json()["finding"]["label"]
        again = client.post(
            "/api/inference/predict",
            files={"file": (NIH_PNG.name, NIH_PNG.read_bytes())},
            data={"store": "true"},
            headers=b,
        )
        assert again.json()["run_id"] == run_id  # the same image, model and bands: the same run
        assert (
            "run_id"
            not in client.post(
                "/api/inference/predict", files={"file": ("x.png", NIH_PNG.read_bytes())}, headers=b
            ).json()
        )

        url = f"/api/runs/{run_id}/verdicts"
        first = client.post(url, json={"item": finding, "verdict": "agree"}, headers=a).json()
        assert first["reviewer"] == "service:reader-a" and first["supersedes_id"] is None
        retry = client.post(url, json={"item": finding, "verdict": "agree"}, headers=a).json()
        assert retry["verdict_id"] == first["verdict_id"]  # a retry is stored once
        changed = client.post(
            url, json={"item": finding, "verdict": "disagree", "note": "  costophrenic angle clear "}, headers=a
        )
        assert changed.status_code == 200 and changed.json()["supersedes_id"] == first["verdict_id"]
        assert changed.json()["note"] == "costophrenic angle clear"
        other = client.post(url, json={"item": finding, "verdict": "unsure"}, headers=b).json()
        assert other["reviewer"] == "service:reader-b" and other["supersedes_id"] is None

        refused = client.post(url, json={"item": finding, "verdict": "maybe"}, headers=a)
        assert refused.status_code == 422 and "verdict" in refused.text
        unknown = client.post(url, json={"item": "Dragon", "verdict": "agree"}, headers=a)
        assert unknown.status_code == 422 and "'Dragon' is not a finding" in unknown.json()["error"]
        missing = client.post("/api/runs/999999/verdicts", json={"item": finding, "verdict": "agree"}, headers=a)
        assert missing.status_code == 404 and "999999" in missing.json()["error"]
        assert client.post(url, json={"item": finding, "verdict": "agree"}).status_code == 401  # no key: nobody

    with open_database(app.state.database_url).begin() as session:
        history = repository.verdict_history(session, run_id)
        current = {v.reviewer: v.verdict.value for v in repository.current_verdicts(session, run_id)}
        run = repository.get_run(session, run_id)
    assert len(history) == 3 and current == {"service:reader-a": "disagree", "service:reader-b": "unsure"}
    assert run is not None and run.model_id == "xrv-densenet121-res224-all" and run.trained is False
    assert finding in run.thresholds  # the bands the reader's answer was drawn in, with the run
    case = _case_sha(app.state.database_url, run_id)
    kept = ImageStore(tmp_path / "data" / "images", 30).get_image(case)
    assert (
        kept is not None and kept.pixels.shape == cv2.imread(str(NIH_PNG), cv2.IMREAD_UNCHANGED).shape[:2]
    )  # reopens with it


def _case_sha(database_url: str, run_id: int) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                text("SELECT input_sha256 FROM analysis_runs WHERE id = :id"),
                {"id": run_id},
            ).scalar_one()
    finally:
        engine.dispose()


def test_without_keys_a_loopback_caller_records_no_verdict(api) -> None:
    shown = api.post(
        "/api/inference/predict", files={"file": (NIH_PNG.name, NIH_PNG.read_bytes())}, data={"store": "true"}
    )
    run_id = shown.json()["run_id"]
    label = shown.json()["findings"][0]["label"]
    refused = api.post(f"/api/runs/{run_id}/verdicts", json={"item": label, "verdict": "agree"})
    assert refused.status_code == 401 and "names nobody" in refused.json()["error"]
