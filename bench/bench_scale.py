"""When one server is not enough: two API replicas and two workers on one Redis and one PostgreSQL,
on loopback, under simulated readers for a few minutes; and one heatmap through the API against
the in-process case, and a batch of 32 radiographs against the model-bound rate.

    python bench/bench_scale.py [--clients 20] [--seconds 300] [--out FILE]

Each client is a reader with an API key of its own. In a loop it asks a random replica for a
random radiograph's heatmap, kept for review (the time from upload to findings is what a reader
waits for), and gives verdicts on two of its findings through a random replica, one time in five
sending a verdict twice (a retry); one time in ten it asks instead for the segmentation of one of
a few small CTs, which it follows to the end. Checked at the end: no request failed, every verdict
is stored once (a row for each change of a reader's verdict on an item, none for a retry, none
lost), every CT is stored once whichever replica and worker took it, each worker process loaded
each model once, and no API replica loaded the segmentation network (the workers did).

The last line printed is one JSON object. Goals: errors == 0, stored once, loaded once,
api_heatmap_ms <= 1.3 x case_ms, batch_images_per_s >= 0.9 x the model-bound rate (1000 / case_ms),
both on the NIH radiograph case_ms is measured on, on the idle system right before them (before
the readers start), with one torch thread in each process (four model processes share the two cores).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import random
import re
import secrets as secrets_module
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from measure import median_ms  # beside this script

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
SAMPLES = Path(os.environ.get("REVIEW_SAMPLES_DIR", PROJECT.parent / "shared" / "samples"))
CXR = SAMPLES / "cxr"

log = logging.getLogger("bench_scale")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _small_ct(seed: int) -> bytes:
    import nibabel as nib
    import numpy as np

    x, y = np.ogrid[:64, :64]
    body = ((x - 32) / 26.0) ** 2 + ((y - 32) / 20.0) ** 2 <= 1
    data = np.where(body[..., None], 40.0, -1000.0) * np.ones((64, 64, 40))
    data += np.random.default_rng(seed).normal(0, 5, data.shape)
    return gzip.compress(nib.Nifti1Image(data.astype(np.float32), np.diag([3.0, 3.0, 3.0, 1.0])).to_bytes(), mtime=0)


def _radiographs() -> list[tuple[str, bytes]]:
    files = sorted(p for p in CXR.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"))
    return [(p.name, p.read_bytes()) for p in files]


def _start(command: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=PROJECT,
        env={**os.environ, **env, "PYTHONPATH": str(PROJECT)},
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(base: str, process: subprocess.Popen, log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{base} did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.3)


def _stored_verdicts(database_url: str) -> dict[tuple[str, int, str], int]:
    """Rows in the verdicts table per reviewer, run and item."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT reviewer, run_id, item, count(*) FROM verdicts GROUP BY reviewer, run_id, item")
            )
            return {(reviewer, run_id, item): n for reviewer, run_id, item, n in rows}
    finally:
        engine.dispose()


def _stop(processes: list[subprocess.Popen]) -> None:
    import signal

    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def in_process_case_ms(repeats: int) -> float:
    """The chest X-ray case (decode, scores, every Grad-CAM) in this process, as bench.py's case_ms,
    on one torch thread as each API replica runs here."""
    import torch

    torch.set_num_threads(1)
    from core.settings import load_settings
    from inference.images.bands import load_band_config
    from inference.images.ingest import load_image
    from inference.models.loader import load_model
    from inference.models.registry import CXR_DENSENET
    from pipelines.analyze import analyze

    settings = load_settings()
    loaded = load_model(CXR_DENSENET, settings, allow_untrained=True)
    bands = load_band_config(settings.bands_file)
    data = (CXR / "nih_00000001_000.png").read_bytes()
    return median_ms(
        lambda: analyze(
            loaded, load_image(data, "x.png", max_bytes=50_000_000, max_pixels=64_000_000, hash_key=b"b"), bands
        ),
        repeats,
    )


def run(clients: int, seconds: float, repeats: int) -> dict:
    import httpx

    from tests.support import pg_server, redis_server

    result: dict = {"clients": clients, "seconds": seconds}
    with tempfile.TemporaryDirectory() as folder_name, pg_server.running_server() as postgres:
        folder = Path(folder_name)
        redis = redis_server.start()
        env = {
            "WORKER_BROKER_URL": redis.url,
            "DATABASE_URL": postgres.create_database(),
            "REVIEW_DATA_DIR": str(folder / "data"),
            "ALLOW_UNTRAINED_WEIGHTS": "1",
            "MODEL_AUTO_DOWNLOAD": "0",
            # Four model processes on two cores: one torch thread each. Two threads each (the
            # default) left 20 readers at 1.8 requests/s, p95 26 s (2026-12-07): OpenMP's waiting
            # threads spin, and four processes' spinning threads took the cores from each other.
            "OMP_NUM_THREADS": "1",
        }
        os.environ.update(env)
        processes: list[subprocess.Popen] = []
        try:
            workers = [
                _start(
                    [sys.executable, "-m", "inference", "-v", "worker", "--name", f"w{i}"], env, folder / f"w{i}.log"
                )
                for i in (1, 2)
            ]
            processes += workers
            # One API key per simulated reader: each reader's verdicts are stored under its own name.
            keys = {f"reader{i:02d}": secrets_module.token_urlsafe(32) for i in range(max(clients, 1))}
            secrets = folder / "secrets.toml"
            secrets.write_text("[api]\nkeys = { " + ", ".join(f'"{k}" = "{v}"' for k, v in keys.items()) + " }\n")
            tokens = [{"Authorization": f"Bearer {v}"} for v in keys.values()]
            bases = []
            for i in (1, 2):
                port = _free_port()
                log_path = folder / f"api{i}.log"
                process = _start(
                    [
                        sys.executable,
                        "-m",
                        "inference",
                        "serve",
                        "--port",
                        str(port),
                        "--allow-untrained",
                        "--secrets",
                        str(secrets),
                    ],
                    env,
                    log_path,
                )
                processes.append(process)
                bases.append((f"http://127.0.0.1:{port}", process, log_path))
            for base, process, log_path in bases:
                _wait_ready(base, process, log_path)
            urls = [b for b, _, _ in bases]
            radiographs = _radiographs()
            cts = [_small_ct(seed) for seed in range(4)]

            # One heatmap through the API on an idle system, against the in-process case measured
            # right before it on the same idle system (this machine's speed drifts by 15 % within
            # minutes: a case_ms from before the servers started compared two machines).
            nih = (CXR / "nih_00000001_000.png").read_bytes()
            with httpx.Client(timeout=120, headers=tokens[0]) as http:

                def one_heatmap():
                    r = http.post(f"{urls[0]}/api/inference/heatmap", files={"file": ("nih.png", nih)})
                    r.raise_for_status()

                result["case_ms"] = in_process_case_ms(repeats)
                result["api_heatmap_ms"] = median_ms(one_heatmap, repeats)
                # The same radiograph as case_ms, 32 times: the batch against the model-bound rate,
                # the median of three batches.
                batch = [("files", (f"nih_{i}.png", nih)) for i in range(32)]
                rates, failed = [], 0
                for _ in range(3):
                    started = time.perf_counter()
                    answer = http.post(f"{urls[0]}/api/inference/heatmap-batch", files=batch, timeout=600).json()
                    rates.append(answer["succeeded"] / (time.perf_counter() - started))
                    failed += answer["failed"]
                result["batch_images_per_s"] = statistics.median(rates)
                result["batch_failed"] = failed

            # Readers under load.
            latencies: list[float] = []
            errors: list[str] = []
            segmented: dict[int, set[int]] = {i: set() for i in range(len(cts))}
            lock = threading.Lock()
            deadline = time.monotonic() + seconds
            # What each reader's verdicts should leave in the database: a row for each verdict that
            # differs from the reader's last on the item; a verdict sent again (a retry) adds none.
            expected: dict[tuple[str, int, str], int] = {}
            sent = [0]

            def judge(http, base: str, rng: random.Random, reviewer: str, answer: dict, given: dict) -> None:
                run_id = answer["run_id"]
                for finding in rng.sample(answer["findings"], 2):
                    item = finding["label"]
                    verdict = rng.choice(("agree", "disagree", "unsure"))
                    for _ in range(2 if rng.random() < 0.2 else 1):  # one time in five, sent twice
                        r = http.post(f"{base}/api/runs/{run_id}/verdicts", json={"item": item, "verdict": verdict})
                        r.raise_for_status()
                        with lock:
                            sent[0] += 1
                    key = (reviewer, run_id, item)
                    with lock:
                        if given.get(key) != verdict:
                            expected[key] = expected.get(key, 0) + 1
                            given[key] = verdict

            def reader(seed: int) -> None:
                rng = random.Random(seed)
                reviewer = f"service:{list(keys)[seed]}"
                given: dict[tuple[str, int, str], str] = {}
                with httpx.Client(timeout=600, headers=tokens[seed]) as http:
                    while time.monotonic() < deadline:
                        base = rng.choice(urls)
                        try:
                            if rng.random() < 0.1:
                                case = rng.randrange(len(cts))
                                r = http.post(
                                    f"{base}/api/inference/segment", files=[("files", (f"ct{case}.nii.gz", cts[case]))]
                                )
                                r.raise_for_status()
                                status_url = r.json()["status_url"]
                                while True:
                                    status = http.get(f"{rng.choice(urls)}{status_url}").json()
                                    if status["state"] == "done":
                                        with lock:
                                            segmented[case].add(status["result"]["run_id"])
                                        break
                                    if status["state"] == "failed":
                                        raise RuntimeError(status["error"])
                                    time.sleep(0.5)
                            else:
                                name, data = rng.choice(radiographs)
                                started = time.perf_counter()
                                r = http.post(
                                    f"{base}/api/inference/heatmap",
                                    files={"file": (name, data)},
                                    data={"store": "true"},
                                )
                                r.raise_for_status()
                                with lock:
                                    latencies.append((time.perf_counter() - started) * 1000.0)
                                judge(http, rng.choice(urls), rng, reviewer, r.json(), given)
                        except (httpx.HTTPError, RuntimeError, KeyError) as exc:
                            with lock:
                                errors.append(f"{type(exc).__name__}: {exc}"[:300])

            threads = [threading.Thread(target=reader, args=(i,)) for i in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            result["requests"] = len(latencies) + sum(len(v) for v in segmented.values())
            result["errors"] = len(errors)
            result["first_errors"] = errors[:3]
            result["upload_to_findings_p95_ms"] = (
                statistics.quantiles(latencies, n=20)[18] if len(latencies) >= 20 else None
            )
            result["upload_to_findings_median_ms"] = statistics.median(latencies) if latencies else None
            result["verdicts_sent"] = sent[0]
            stored = _stored_verdicts(env["DATABASE_URL"])
            result["verdicts_stored"] = sum(stored.values())
            result["verdicts_expected"] = sum(expected.values())
            result["every_verdict_stored_once"] = stored == expected
            result["cts_segmented"] = sum(1 for runs in segmented.values() if runs)
            result["each_ct_stored_once"] = all(len(runs) <= 1 for runs in segmented.values())
            for base in urls:
                models = httpx.get(f"{base}/health", timeout=10).json()["models"]
                result.setdefault("api_models_loaded", []).append(sorted(m["id"] for m in models))
        finally:
            _stop(processes)
            redis.stop()
        loads: dict[str, list[str]] = {}
        for i in (1, 2):
            for pid, model in re.findall(r"Worker (\d+) loaded (\S+)", (folder / f"w{i}.log").read_text()):
                loads.setdefault(model, []).append(pid)
        result["worker_model_loads"] = {model: len(pids) for model, pids in loads.items()}
        result["each_model_loaded_once_per_worker_process"] = all(len(p) == len(set(p)) for p in loads.values())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from core.native_memory import tune_heap

    tune_heap()  # the heap settings of the processes that run models, so in-process figures compare
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    result = run(args.clients, args.seconds, args.repeats)
    case_ms = result["case_ms"]
    result["api_heatmap_over_case"] = result["api_heatmap_ms"] / case_ms
    result["model_bound_images_per_s"] = 1000.0 / case_ms
    result["batch_over_model_bound"] = result["batch_images_per_s"] / result["model_bound_images_per_s"]
    result["goals"] = {
        "errors == 0": result["errors"] == 0 and result["batch_failed"] == 0,
        "every CT stored once": result["each_ct_stored_once"],
        "every verdict stored once": result["every_verdict_stored_once"],
        "each model loaded once per worker process": result["each_model_loaded_once_per_worker_process"],
        "no API replica loaded the segmentation network": all(
            not any(m.startswith("monai-") for m in models) for models in result["api_models_loaded"]
        ),
        "api_heatmap_ms <= 1.3 x case_ms": result["api_heatmap_over_case"] <= 1.3,
        "batch_images_per_s >= 0.9 x model-bound": result["batch_over_model_bound"] >= 0.9,
    }
    line = json.dumps(result)
    if args.out:
        args.out.write_text(line + "\n")
    print(line)
    return 0 if all(result["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
