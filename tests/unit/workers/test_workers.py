"""Segmentation on Celery workers with real parts: Debian's redis-server on loopback, worker
processes started as IT starts them (``python -m inference worker``), and two app "replicas" (the
client each app process holds) on one Redis, one database and one image store. The volume is a
small synthetic CT (one window of the untrained whole-body network, seconds a job): what is under
test is the jobs' life, not the segmentation, which the in-process tests run on the real BraTS case."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PROJECT


@pytest.fixture(scope="module")
def redis_url():
    from tests.support import redis_server

    try:
        server = redis_server.start()
    except redis_server.RedisUnavailable as exc:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield server.url
    server.stop()


def _department(folder: Path, redis_url: str) -> dict:
    """One department's shared places: a Redis database, a database file and an image store."""
    return {
        "WORKER_BROKER_URL": redis_url,
        "REVIEW_DATA_DIR": str(folder / "data"),
        "DATABASE_URL": f"sqlite:///{folder / 'reviews.sqlite3'}",
        "WORKER_STALL_S": "10",
    }


@pytest.fixture(scope="module")
def department(redis_url: str, tmp_path_factory: pytest.TempPathFactory):
    """A department with one worker running, shared by the tests that leave the worker alive (a
    worker start costs seconds of CPU): they each use cases of their own."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    folder = tmp_path_factory.mktemp("department")
    env = _department(folder, redis_url)
    worker, log = _worker(env, "w1", folder)
    yield env, log
    _stop(worker)  # each test reads the worker's log for its own job's lines


@pytest.fixture
def site(department, monkeypatch: pytest.MonkeyPatch) -> dict:
    env, _ = department
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def own_site(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A department of the test's own (another Redis database, so no other worker takes its jobs)."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + "/1"
    redis.Redis.from_url(url).flushdb()
    env = _department(tmp_path, url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _worker(site: dict, name: str, folder: Path) -> tuple[subprocess.Popen, Path]:
    log = folder / f"worker-{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "inference", "-v", "worker", "--name", name],
        cwd=PROJECT,
        env={**os.environ, **site, "PYTHONPATH": str(PROJECT), "MODEL_AUTO_DOWNLOAD": "0"},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the test can kill the worker and its children
    )
    return process, log


def _replica():
    """What one app process holds: the workers' client, resolving a finished job from the shared
    database and image store (as ui.resources.jobs does)."""
    from core.settings import load_settings
    from pipelines.kept_volumes import stored_segmentation
    from storage.db import open_database
    from storage.image_store import ImageStore
    from workers.client import RemoteJobs

    settings = load_settings()
    sessions = open_database(settings.database_url)
    store = ImageStore(settings.image_store_dir, settings.image_retention_days)
    return RemoteJobs(
        settings, {"segment": lambda answer: stored_segmentation(sessions.begin, store, answer["run_id"])}
    )


def _request(inputs, spec):
    """The page's side of a segmentation: the case kept in the shared store, and the job's key and
    payload for the untrained network the page runs."""
    from core.settings import load_settings
    from inference.models.loader import load_model
    from inference.volume.case import case_facts
    from pipelines.kept_volumes import keep_volume
    from storage.image_store import ImageStore
    from workers.client import segmentation_payload

    settings = load_settings()
    keep_volume(ImageStore(settings.image_store_dir, settings.image_retention_days), inputs)
    loaded = load_model(spec, settings, allow_untrained=True, device="cpu")
    key = f"segment:{inputs.input_sha256}:{loaded.spec.model_id}:{loaded.weights_sha256}"
    payload = segmentation_payload(
        inputs, spec.model_id, loaded.weights_sha256, loaded.trained, case_facts(inputs), "Dr Worker"
    )
    return key, payload


def _small_ct_request(patient: int = 7):
    """A small synthetic CT (64 x 64 x 48 at 3 mm: one window of the whole-body network, a few
    seconds), for the tests whose point is what happens to a job when its worker dies."""
    import numpy as np

    from inference.models.registry import WHOLEBODY_CT_SEGRESNET
    from inference.volume.types import Volume, read_only

    x, y, z = np.ogrid[:64, :64, :48]
    body = ((x - 32) / 26.0) ** 2 + ((y - 32) / 20.0) ** 2 <= 1
    data = np.where(body & (z >= 0), 40.0, -1000.0) + np.random.default_rng(patient).normal(0, 5, (64, 64, 48))
    volume = Volume(
        data=read_only(data.astype(np.float32)),
        affine=np.diag([3.0, 3.0, 3.0, 1.0]),
        modality="CT",
        source_format="nifti",
        input_sha256=f"{patient:02d}" * 32,
        description="synthetic CT",
        original_axcodes="RAS",
    )
    return _request(volume, WHOLEBODY_CT_SEGRESNET)


def _runs(site: dict, payload: dict | None = None) -> list[tuple]:
    """The stored runs (of ``payload``'s input only, when given)."""
    where = "" if payload is None else " WHERE input_sha256 = :sha"
    engine = create_engine(site["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(f"SELECT id, model_id, trained FROM analysis_runs{where}"),
                {} if payload is None else {"sha": payload["input_sha256"]},
            )
            return list(rows)
    finally:
        engine.dispose()


def _running_pid(job, timeout: float = 120.0) -> int:
    """The worker process running ``job``, once it has started it."""
    deadline = time.monotonic() + timeout
    while True:
        info = job._result.info
        if isinstance(info, dict) and info.get("pid"):
            return int(info["pid"])
        assert not job.done, job.error
        assert time.monotonic() < deadline, f"the job did not start: {job._result.state}"
        time.sleep(0.1)


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return ""


def test_two_replicas_share_one_segmentation_run_by_a_worker_that_loads_the_model_once(site, department) -> None:
    from workers.tasks import SEGMENT

    key, payload = _small_ct_request(patient=1)
    first, second = _replica(), _replica()
    job = first.submit(key, SEGMENT, payload)
    joined = second.submit(key, SEGMENT, payload)  # the other replica, same case and weights
    assert joined.task_id == job.task_id
    assert job.wait(timeout=300), job.message
    assert job.error is None, job.error
    segmentation, run_id = job.result
    assert segmentation.model.model_id == "monai-wholebody-ct-segresnet-3mm" and segmentation.model.trained is False
    again = second.get(key)
    assert again is not None and again.wait(timeout=10) and again.result[1] == run_id
    assert again.result[0].label_map.sha256 == segmentation.label_map.sha256
    # A third ask after it is done joins the stored result: no second job, no second run.
    assert second.submit(key, SEGMENT, payload).task_id == job.task_id
    assert _runs(site, payload) == [(run_id, "monai-wholebody-ct-segresnet-3mm", 0)]
    # Another case from the other replica: the worker's model, loaded once, runs it too.
    other_key, other = _small_ct_request(patient=2)
    assert second.submit(other_key, SEGMENT, other).wait(timeout=300)
    assert len(_runs(site, other)) == 1
    said = department[1].read_text()
    loads = re.findall(r"Worker (\d+) loaded monai-wholebody-ct-segresnet-3mm", said)
    assert loads and len(loads) == len(set(loads)), said[-3000:]  # once per worker process
    assert "Traceback" not in said, said[-3000:]


def test_a_worker_child_killed_mid_job_is_replaced_and_the_job_runs_again_stored_once(site, department) -> None:
    from workers.tasks import SEGMENT

    key, payload = _small_ct_request(patient=3)
    job = _replica().submit(key, SEGMENT, payload)
    child = _running_pid(job)
    os.kill(child, signal.SIGKILL)
    assert job.wait(timeout=300), job.message
    assert job.error is None, job.error
    assert len(_runs(site, payload)) == 1
    said = department[1].read_text()
    assert f"Worker {child} loaded" in said and "signal 9" in said, said[-3000:]


def test_a_worker_with_other_weights_refuses_the_job_and_stores_nothing(site, department) -> None:
    """A page that ran other weights than the worker has (new weights installed on the app's machine
    only): the job is refused with what to do, never run on the worker's weights and stored as the
    page's."""
    from workers.tasks import SEGMENT

    key, payload = _small_ct_request(patient=6)
    other_weights = "ab" * 32
    payload = {**payload, "weights_sha256": other_weights}
    job = _replica().submit(f"{key.rsplit(':', 1)[0]}:{other_weights}", SEGMENT, payload)
    assert job.wait(timeout=300), job.message
    assert "The worker runs other weights for monai-wholebody-ct-segresnet-3mm" in (job.error or ""), job.error
    assert "install the same weights on every worker" in (job.error or "")
    assert _runs(site, payload) == []


def test_a_worker_killed_outright_is_reported_as_stopped_and_the_job_can_be_started_again(own_site, tmp_path) -> None:
    from workers.tasks import SEGMENT

    site = own_site
    key, payload = _small_ct_request(patient=4)
    worker, _ = _worker(site, "doomed", tmp_path)
    replica = _replica()
    job = replica.submit(key, SEGMENT, payload)
    _running_pid(job)
    os.killpg(worker.pid, signal.SIGKILL)  # the whole worker: nobody is left to finish or report it
    worker.wait()
    started = time.monotonic()
    assert job.wait(timeout=60), "a job whose worker is gone must not hang"
    assert "The worker running this job stopped" in (job.error or "")
    assert time.monotonic() - started < 30
    assert _runs(site, payload) == []  # nothing half-stored

    # A new worker, and the reader starts it again: done and stored once (a new job, or the lost
    # one where the broker has handed it to the new worker already: it is alive again, so joined).
    worker, log = _worker(site, "w2", tmp_path)
    try:
        retried = replica.submit(key, SEGMENT, payload)
        assert retried.wait(timeout=300) and retried.error is None, retried.error
        assert len(_runs(site, payload)) == 1
    finally:
        _stop(worker)


def test_the_mri_ct_page_segments_on_a_worker_as_it_does_in_its_own_thread(site, department, monkeypatch) -> None:
    """The page unchanged with WORKER_BROKER_URL set: Segment, the progress, then the run with its
    structures and the untrained label, computed and stored by the worker."""
    import ui.resources
    from tests.app.conftest import new_app, texts
    from tests.app.test_volume_page import _ct_nifti, _wait_for_segmentation
    from ui.session import segment_key, volume_upload_key

    monkeypatch.setenv("ALLOW_UNTRAINED_WEIGHTS", "1")
    ui.resources.jobs.clear()  # this process's runner is made for the broker now, and dropped after
    loads: list[str] = []
    real_load = ui.resources.load_model
    monkeypatch.setattr(
        ui.resources, "load_model", lambda spec, *a, **k: loads.append(spec.model_id) or real_load(spec, *a, **k)
    )
    ui.resources.model.clear()
    try:
        at = new_app()
        at.run()
        at.switch_page("pages/volumes.py").run()
        at.segmented_control(key="volume_task").set_value("Whole-body CT structures").run()
        ct = ("small_ct.nii.gz", _ct_nifti((64, 64, 48), (3.0, 3.0, 3.0)), "application/gzip")
        at.file_uploader(key=volume_upload_key("Whole-body CT structures")).set_value([ct]).run()
        assert not at.exception, at.exception
        assert ui.resources.jobs().remote is not None  # the page's jobs go to the workers
        at.button(key=segment_key("monai-wholebody-ct-segresnet-3mm")).click().run()
        _wait_for_segmentation(at, timeout=300)
        said = texts(at)
        assert "untrained model: meaningless" in said.replace("\\", "")
        assert [e.value for e in at.error if "untrained" not in e.value.lower()] == []  # nothing but the label
        [caption] = [c.value for c in at.caption if c.value.startswith("Segmentation run")]
        run_id = int(caption.split("#")[1].split()[0])
        assert (run_id, "monai-wholebody-ct-segresnet-3mm", 0) in _runs(site)
        assert not [m for m in loads if m.startswith("monai-")], loads  # the worker's network, not this replica's
        assert "runs on the workers" in " ".join(c.value for c in at.sidebar.caption)
        assert f"Segmentation stored as run {run_id} " in department[1].read_text()
    finally:
        ui.resources.jobs.clear()
        ui.resources.model.clear()
        ui.resources.model_reference.clear()


def test_region_shap_from_the_review_page_runs_on_a_worker_and_the_page_shows_it(site, department, monkeypatch) -> None:
    """The review page unchanged with WORKER_BROKER_URL set: "Explain the scores with region SHAP"
    sends the job to a worker, which reads the radiograph from the shared image store and stores the
    explanation with the run; the page shows the waterfall, untrained-labelled, computed there."""
    import ui.models
    import ui.resources
    from tests.app.conftest import confirm_radiograph, new_app, texts
    from tests.conftest import SAMPLES
    from ui.background import region_shap_key
    from ui.session import start_shap_key

    monkeypatch.setenv("ALLOW_UNTRAINED_WEIGHTS", "1")
    ui.resources.jobs.clear()
    try:
        at = new_app()
        at.run()
        path = SAMPLES / "cxr" / "tbx11k_h0001.png"
        at.file_uploader[0].set_value((path.name, path.read_bytes(), "image/png")).run()
        confirm_radiograph(at)
        [run_id] = [int(m.group(1)) for c in at.caption if (m := re.match(r"Case run \\?#(\d+)", c.value))]
        at.button(key=start_shap_key(run_id)).click().run()
        assert not at.exception, at.exception
        [sha] = list(at.session_state["upload_sha256"].values())
        key = region_shap_key(sha, ui.models.classifier().weights_sha256, run_id)
        runner = ui.resources.jobs()
        job = runner.get(key)
        assert job is not None and runner.runs_remotely(key)
        assert job.wait(300) and job.error is None, job.error
        assert not runner.local._jobs, "computed on the worker, not in this replica"
        at.run()
        assert not at.exception, at.exception
        said = texts(at)
        assert "256 model evaluations" in said and "UNTRAINED" in said.upper()
        assert [c for c in at.get("plotly_chart") if "shap_waterfall" in (c.proto.id or "")]
        assert f"Region SHAP of run {run_id} stored by worker" in department[1].read_text()
    finally:
        ui.resources.jobs.clear()


def test_the_api_sends_a_segmentation_to_the_workers_without_loading_the_network_itself(site, department) -> None:
    import gzip

    import nibabel as nib
    import numpy as np
    from fastapi.testclient import TestClient

    from api.access import Access
    from api.app import ApiConfig, create_app
    from core.settings import load_settings
    from tests.unit.api.test_api import follow

    x, y = np.ogrid[:64, :64]
    body = ((x - 32) / 26.0) ** 2 + ((y - 32) / 20.0) ** 2 <= 1
    data = (np.where(body[..., None], 30.0, -1000.0) * np.ones((64, 64, 40))).astype(np.float32)
    ct = gzip.compress(nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0])).to_bytes(), mtime=0)
    app = create_app(ApiConfig(settings=load_settings(), access=Access(), allow_untrained=True))
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        answer = client.post("/api/inference/segment", files=[("files", ("ct.nii.gz", ct))])
        assert answer.status_code == 202, answer.text
        status = follow(client, answer.json())
        assert status["state"] == "done", status
        assert client.get("/health").json()["models"] == []  # the worker ran the network, not the API
    run_id = status["result"]["run_id"]
    assert (run_id, "monai-wholebody-ct-segresnet-3mm", 0) in _runs(site)
    assert f"Segmentation stored as run {run_id} " in department[1].read_text()


def test_the_api_sends_a_volumes_classification_to_the_workers_and_answers_what_it_would_have(site, department) -> None:
    """A brain MRI volume posted to /classify with workers configured: 202, the slices classified on
    a worker from the kept volume, and the answer the API gives without workers (same classes,
    bands, scores and driving slices), the model never loaded in the API process."""
    from fastapi.testclient import TestClient

    from api.access import Access
    from api.app import ApiConfig, create_app
    from core.deid import load_or_create_key
    from core.settings import load_settings
    from inference.images.bands import load_band_config
    from inference.models.loader import load_model
    from inference.models.registry import get_spec
    from pipelines.summaries import volume_classification
    from pipelines.volume_inputs import read_case
    from tests.conftest import SAMPLES
    from tests.unit.api.test_api import follow

    template = SAMPLES / "mri" / "mni152_t1.nii.gz"
    settings = load_settings()
    app = create_app(ApiConfig(settings=settings, access=Access(), allow_untrained=True))
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        queued = client.post(
            "/api/inference/classify",
            files=[("files", (template.name, template.read_bytes()))],
            data={"model": "brain-tumour-4class"},
        )
        assert queued.status_code == 202, queued.text
        assert queued.json()["model"]["trained"] is True and "warning" not in queued.json()
        status = follow(client, queued.json())
        assert status["state"] == "done", status
        assert client.get("/health").json()["models"] == []  # the worker ran the classifier, not the API
    result = status["result"]
    volume = read_case(
        [(template.name, template.read_bytes())], settings, load_or_create_key(settings.patient_key_file)
    )
    loaded = load_model(get_spec("brain-tumour-4class"), settings, allow_untrained=False)
    here = volume_classification(volume, loaded, load_band_config(settings.bands_file))
    assert result["classes"] == here["classes"] and result["aggregate"] == here["aggregate"]
    assert result["slices"] == here["slices"] and result["model"] == here["model"]
    assert "classified by worker" in department[1].read_text()
