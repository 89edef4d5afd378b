"""Speed and memory of the chest X-ray pipeline, as ratios against a baseline from the same run.

    python bench/bench.py [--repeats N] [--out FILE]

The last line printed is one JSON object. Goals (2-core CPU): all_cams_ms <= 1.3 x forward_ms,
case_ms <= 1.2 x (forward_ms + decode_ms), rerun_ms <= 50, rss_mb <= 1500;
shap_s x 1000 <= 1.2 x shap_evals x forward_ms_batched, shap_evals <= 256, shap_max_err <= 0.01,
shap_first_use_extra_s <= 1;
20 threads writing verdicts to SQLite (WAL, synchronous=FULL) sustain >= 200 verdicts/s with no
error and none lost. Volumes (bench_volumes.py): seg_s <= 1.15 x seg_window_s, scroll_rerun_ms <= 50,
rss_both_mb <= 3000, rss_both_peak_mb <= 3500. Sessions (bench_sessions.py, a real browser): rss_growth_per_session_mb <= 0.5
over 50 reviewer sessions. Brain MRI classifiers (bench_classifiers.py): volume_classify_s <= 1.1 x 189 x
slice_forward_ms_batched, slice_cam_ms <= 1.3 x slice_forward_ms, tta_ms <= 4.4 x slice_forward_ms_batched,
and train_epoch_s, per shipped model. Untrained weights are used when no trained file is installed: timing does not
depend on the weight values. PostgreSQL figures (pg_*) are measured on a throwaway server when
Debian's postgresql binaries are installed, and are null otherwise.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from measure import judge, median_ms, rss_probe, script_times  # beside this script

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
SAMPLE = (
    Path(os.environ.get("REVIEW_SAMPLES_DIR", PROJECT.parent / "shared" / "samples")) / "cxr" / "nih_00000001_000.png"
)

log = logging.getLogger("bench")


def model_timings(repeats: int) -> dict:
    import torch

    from core.settings import load_settings
    from inference.images.bands import load_band_config
    from inference.images.ingest import load_image
    from inference.images.preprocess import model_input
    from inference.models.loader import load_model
    from inference.models.registry import CXR_DENSENET
    from pipelines.analyze import analyze
    from pipelines.forward import closed_form_gradcam, forward_with_features
    from xai.cam import pgc_cam

    settings = load_settings()
    loaded = load_model(CXR_DENSENET, settings, allow_untrained=True)
    bands = load_band_config(settings.bands_file)
    data = SAMPLE.read_bytes()

    def decode():
        return load_image(data, SAMPLE.name, max_bytes=50_000_000, max_pixels=64_000_000, hash_key=b"bench")

    image = decode()
    x = model_input(image.pixels, CXR_DENSENET.input_size)
    tensor = torch.from_numpy(x).to(loaded.device)

    def forward():
        with torch.inference_mode():
            loaded.module(tensor)

    def all_cams():
        _, features = forward_with_features(loaded, x)
        closed_form_gradcam(loaded, features[0])

    def pgc_all_cams():
        for index in range(len(CXR_DENSENET.labels)):
            pgc_cam(loaded, x, "Grad-CAM", index)

    shap = shap_timings(loaded, x[0, 0], repeats)
    return {
        **shap,
        "device": loaded.device,
        "torch_threads": torch.get_num_threads(),
        "trained_weights": loaded.trained,
        "decode_ms": median_ms(decode, repeats),
        "forward_ms": median_ms(forward, repeats),
        "all_cams_ms": median_ms(all_cams, repeats),
        "pgc_all_cams_ms": median_ms(pgc_all_cams, max(3, repeats // 5), warmup=1),
        "case_ms": median_ms(lambda: analyze(loaded, decode(), bands), repeats),
    }


SHAP_BATCH = 16


def shap_seconds(loaded, image, repeats: int = 1, warmup: int = 1) -> float:
    """Region SHAP of one model input plane for all 18 findings on the fixed grid, in seconds
    (the median of ``repeats``): the baseline that the app's own figure (``shap_app_s``) is held to."""
    from pipelines.analyze import score_batch
    from xai.region_shap import explain_regions
    from xai.regions import grid_regions

    predict = score_batch(loaded)
    regions = grid_regions(loaded.spec.input_size)
    return (
        median_ms(
            lambda: explain_regions(predict, image, regions, loaded.spec.labels, batch_size=SHAP_BATCH),
            repeats,
            warmup=warmup,
        )
        / 1000.0
    )


def shap_timings(loaded, image, repeats: int) -> dict:
    """Region SHAP for all 18 findings, and the per-image forward time at SHAP's batch size."""
    import numpy as np

    from pipelines.analyze import score_batch
    from xai.cam import CAM_METHODS, pgc_cam
    from xai.faithfulness import faithfulness_of
    from xai.region_shap import explain_regions, shap_exact_reference
    from xai.regions import grid_regions

    predict = score_batch(loaded)
    batch = np.repeat(image[None, None], SHAP_BATCH, axis=0)
    forward_batched = median_ms(lambda: predict(batch), max(3, repeats // 3)) / SHAP_BATCH
    regions = grid_regions(loaded.spec.input_size)
    scored: list[np.ndarray] = []  # every coalition's scores, in the order explain_regions asks for them

    def recording(images: np.ndarray) -> np.ndarray:
        scored.append(predict(images))
        return scored[-1]

    start = time.perf_counter()
    result = explain_regions(recording, image, regions, loaded.spec.labels, batch_size=SHAP_BATCH)
    shap_s = time.perf_counter() - start
    reference, reference_base = shap_exact_reference(np.concatenate(scored), len(regions.names))
    cams = {m: pgc_cam(loaded, image[None, None], m, 0) for m in CAM_METHODS}
    faith_ms = median_ms(lambda: faithfulness_of(predict, image, cams, 0), max(3, repeats // 3), warmup=1)
    return {
        "shap_s": shap_s,
        **shap_first_use(),
        "shap_evals": result.evaluations,
        "shap_max_err": float(
            max(np.abs(result.values - reference).max(), np.abs(result.base_values - reference_base).max())
        ),
        "shap_sum_err": float(np.abs(result.values.sum(axis=1) - (result.scores - result.base_values)).max()),
        "forward_ms_batched": forward_batched,
        "faith_ms": faith_ms,
    }


FIRST_USE_PROBE = """
import sys, time
sys.path.insert(0, {project!r})
import numpy as np
from xai.region_shap import explain_regions, shap_exact_reference
from xai.regions import grid_regions
regions = grid_regions(224)
image = np.zeros((224, 224), np.float32)
scores = lambda images: np.zeros((len(images), 18))  # no model: what the explanation costs besides it
times = []
for _ in range(2):
    start = time.perf_counter()
    explain_regions(scores, image, regions, [str(i) for i in range(18)])
    times.append(time.perf_counter() - start)
start = time.perf_counter()
shap_exact_reference(np.zeros((256, 18)), 8)
print(times[0] - times[1], time.perf_counter() - start)
"""


def shap_first_use() -> dict:
    """In a fresh process: ``shap_first_use_extra_s``, how much longer the first region SHAP takes
    than the second, besides the model (what the first explanation in a new server waits extra);
    ``shap_library_first_use_s``, shap's own Exact explainer on its first use there (compiling its
    numba kernels), which the app no longer waits for."""
    code = FIRST_USE_PROBE.format(project=str(PROJECT))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    extra, library = (float(v) for v in done.stdout.split())
    return {"shap_first_use_extra_s": extra, "shap_library_first_use_s": library}


def rerun_timing(repeats: int) -> float:
    """Median server-side script time of a full page rerun after an opacity change (AppTest).

    A browser reruns only the heatmap fragment on an opacity change; the whole page is the
    upper bound measured here. It is the server-rendered view's slider (the reader's "Server-rendered
    view" switch on): in the browser viewer an opacity change never reaches the server."""
    from streamlit.testing.v1 import AppTest

    with script_times() as script_ms:
        at = AppTest.from_file(str(PROJECT / "app.py"), default_timeout=300)
        at.session_state["reviewer_name"] = "Bench"
        at.session_state["viewer::server_rendered"] = True
        at.run()
        at.file_uploader[0].set_value((SAMPLE.name, SAMPLE.read_bytes(), "image/png")).run()
        [yes] = [b for b in at.button if (b.key or "").endswith("::yes")]  # a frontal chest radiograph
        yes.click().run()
        for value in (0.5, 0.6):  # warm-up
            at.slider(key="cam_opacity").set_value(value).run()
        script_ms.clear()
        for i in range(repeats):
            at.slider(key="cam_opacity").set_value(0.3 + 0.05 * (i % 8)).run()
        if at.exception:
            raise RuntimeError(f"page raised during the rerun benchmark: {at.exception}")
        return statistics.median(script_ms)


def rss_mb() -> float:
    """Resident memory of a fresh process with the model loaded and one case analysed."""
    return rss_probe(SAMPLE, segment=False)[0]


VERDICT_THREADS = 20
VERDICTS_PER_THREAD = 25
SINGLE_VERDICTS = 100
SQLITE_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _bench_run(sessions) -> tuple[int, tuple[str, ...]]:
    """A stored run with the chest X-ray model's 18 findings, as the review page stores it."""
    from core.types import CaseFacts, Finding, ModelIdentity, Prediction
    from core.vocabulary import Band
    from inference.models.registry import CXR_DENSENET
    from storage import repository

    labels = tuple(CXR_DENSENET.labels)
    prediction = Prediction(
        findings=tuple(Finding(label, 0.1, Band.NEGATIVE) for label in labels),
        model=ModelIdentity(CXR_DENSENET.model_id, "0" * 64, False, "cpu"),
        bands_version="bench",
        thresholds={label: {"low": 0.3, "high": 0.5, "critical": 0.8} for label in labels},
        timing_ms=0.0,
    )
    facts = CaseFacts(input_sha256="b" * 64, source_format="png", modality="image")
    with sessions.begin() as session:
        return repository.store_analysis(session, facts, prediction, "Grad-CAM").run_id, labels


def verdict_writes(url: str) -> dict:
    """Median single-verdict commit, then VERDICT_THREADS threads writing verdicts at once through
    ``record_verdict`` (one transaction each): verdicts/s, errors, and verdicts missing afterwards."""
    from sqlalchemy import func, select, text

    from storage import repository
    from storage.db import open_database
    from storage.models import VerdictEntry

    sessions = open_database(url)
    try:
        run_id, labels = _bench_run(sessions)
        counter = itertools.count()

        def write(reviewer: str) -> None:
            i = next(counter)
            with sessions.begin() as session:
                repository.record_verdict(
                    session, run_id, labels[i % len(labels)], ("agree", "disagree")[i % 2], reviewer, f"verdict {i}"
                )

        single_ms = median_ms(lambda: write("Bench single"), SINGLE_VERDICTS, warmup=5)
        with sessions.begin() as session:
            before = session.scalar(select(func.count(VerdictEntry.id)))
            synchronous = (
                session.execute(text("PRAGMA synchronous")).scalar() if session.bind.dialect.name == "sqlite" else None
            )
        errors: list[BaseException] = []
        barrier = threading.Barrier(VERDICT_THREADS + 1)

        def writer(index: int) -> None:
            barrier.wait()
            for _ in range(VERDICTS_PER_THREAD):
                try:
                    write(f"Bench {index}")
                except Exception as exc:  # noqa: BLE001 - counted and reported, not hidden
                    errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(VERDICT_THREADS)]
        for thread in threads:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        with sessions.begin() as session:
            stored = session.scalar(select(func.count(VerdictEntry.id))) - before
    finally:
        sessions.kw["bind"].dispose()
    for exc in errors[:3]:
        log.error("verdict write failed: %r", exc)
    written = VERDICT_THREADS * VERDICTS_PER_THREAD - len(errors)
    result = {
        "verdict_write_ms": single_ms,
        "verdicts_per_s_20_threads": written / elapsed,
        "verdict_errors_20_threads": len(errors),
        "verdicts_lost_20_threads": written - stored,
    }
    if synchronous is not None:
        result["sqlite_synchronous"] = SQLITE_SYNCHRONOUS.get(synchronous, synchronous)
    return result


def storage_timings() -> dict:
    """Verdict writes on a SQLite file, then the same on a throwaway PostgreSQL server if one starts."""
    from tests.support.pg_server import PostgresStartError, PostgresUnavailable, running_server

    with tempfile.TemporaryDirectory() as data_dir:
        result = verdict_writes(f"sqlite:///{Path(data_dir) / 'bench.sqlite3'}")
    pg_keys = ("verdict_write_ms", "verdicts_per_s_20_threads", "verdict_errors_20_threads", "verdicts_lost_20_threads")
    try:
        with running_server() as server:
            pg = verdict_writes(server.create_database("bench"))
    except (PostgresUnavailable, PostgresStartError) as exc:
        log.warning("no PostgreSQL figures: %s", exc)
        pg = dict.fromkeys(pg_keys)
    result.update({f"pg_{key}": pg[key] for key in pg_keys})
    return result


def _app_shap(found: dict) -> dict:
    """shap_app_timings' own baseline (measured between its app runs) under a name of its own,
    beside model_timings' shap_s."""
    found["shap_app_baseline_s"] = found.pop("shap_s")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    parser.add_argument("--skip-volumes", action="store_true", help="leave out the MRI/CT figures (about 4 minutes)")
    parser.add_argument(
        "--skip-interaction",
        action="store_true",
        help="leave out what a reader waits for in the browser: upload, finding and page switch, keys (about 3 minutes)",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=50,
        help="reviewer sessions for the server-memory figure in a real browser (0 leaves it out)",
    )
    parser.add_argument(
        "--shap-repeats",
        type=int,
        default=5,
        help="region SHAP runs started in the app, for shap_app_s against shap_s (part of the interaction figures)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from core.native_memory import tune_heap

    tune_heap()  # the heap settings of the processes that run models, so in-process figures compare
    if not SAMPLE.is_file():
        log.error("sample image not found at %s (set REVIEW_SAMPLES_DIR)", SAMPLE)
        return 2
    result: dict = {}
    skipped: dict[str, str] = {}

    bundle = PROJECT / "ui" / "viewer" / "static" / "niivue.umd.js"

    def part(name: str, measure, viewer: bool = False) -> None:  # type: ignore[no-untyped-def]
        """One part of the benchmark: a part that cannot run (no viewer bundle, no browser, no
        PostgreSQL...) says why in one line and the others' figures still come out."""
        if viewer and not bundle.is_file():
            skipped[name] = f"the browser viewer is not built ({bundle} is missing: bash scripts/build-viewer)"
            log.error("%s could not be measured: %s", name, skipped[name])
            return
        try:
            result.update(measure())
        except Exception as exc:  # noqa: BLE001 - any failure of one part must not lose the others
            skipped[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            log.error("%s could not be measured: %s", name, skipped[name])

    with tempfile.TemporaryDirectory() as data_dir:
        os.environ.update({"REVIEW_DATA_DIR": data_dir, "ALLOW_UNTRAINED_WEIGHTS": "1", "MODEL_AUTO_DOWNLOAD": "0"})
        os.environ.pop("DATABASE_URL", None)
        # First, before torch's threads exist: the storage figures are about the database alone.
        part("storage", storage_timings)
        part("model", lambda: model_timings(args.repeats))
        part("rerun", lambda: {"rerun_ms": rerun_timing(args.repeats)})
        part("memory", lambda: {"rss_mb": rss_mb()})
        if not args.skip_volumes:
            import bench_volumes  # beside this script, which is on sys.path

            part("volumes", bench_volumes.seg_timings)
            part("volume scroll", lambda: {"scroll_page_rerun_ms": bench_volumes.scroll_timing(args.repeats)})
            part("volume scroll in the browser", lambda: bench_volumes.browser_scroll_timing(args.repeats))
            part("volume viewer scroll", lambda: bench_volumes.viewer_scroll_timing(max(20, args.repeats)), viewer=True)
            part("volume memory", lambda: bench_volumes.rss_both(SAMPLE))
        if not args.skip_interaction:
            import bench_interaction  # beside this script

            part(
                "interaction", lambda: bench_interaction.interaction_timings(SAMPLE, max(20, args.repeats)), viewer=True
            )
            # Region SHAP as the reader starts it, held to shap_s of the same run.
            part(
                "region SHAP in the app",
                lambda: _app_shap(bench_interaction.shap_app_timings(SAMPLE, args.shap_repeats)),
            )
        if args.sessions:
            import bench_sessions  # beside this script

            part("sessions", lambda: bench_sessions.session_growth(SAMPLE, args.sessions))
        import bench_classifiers  # beside this script

        part("brain MRI classifiers", lambda: bench_classifiers.classifier_timings(args.repeats))
        import bench_similar  # beside this script

        part("similar cases", bench_similar.similar_timings)

    def ratio(top: str, bottom: str) -> float | None:
        return result[top] / result[bottom] if top in result and bottom in result and result[bottom] else None

    derived = {
        "all_cams_over_forward": ratio("all_cams_ms", "forward_ms"),
        "pgc_over_ours": ratio("pgc_all_cams_ms", "all_cams_ms"),
        "seg_over_window": ratio("seg_s", "seg_window_s"),
    }
    if {"case_ms", "decode_ms", "forward_ms"} <= result.keys():
        derived["case_minus_decode_over_forward"] = (result["case_ms"] - result["decode_ms"]) / result["forward_ms"]
        derived["case_over_forward_plus_decode"] = result["case_ms"] / (result["forward_ms"] + result["decode_ms"])
    if {"shap_s", "shap_evals", "forward_ms_batched"} <= result.keys():
        derived["shap_over_evals_x_forward_batched"] = (
            result["shap_s"] * 1000 / (result["shap_evals"] * result["forward_ms_batched"])
        )
    result.update({k: v for k, v in derived.items() if v is not None})
    goals = {
        "all_cams_ms <= 1.3 x forward_ms": lambda r: r["all_cams_over_forward"] <= 1.3,
        "case_ms <= 1.2 x (forward_ms + decode_ms)": lambda r: r["case_over_forward_plus_decode"] <= 1.2,
        "rerun_ms <= 50": lambda r: r["rerun_ms"] <= 50.0,
        "rss_mb <= 1500": lambda r: r["rss_mb"] <= 1500.0,
        "shap_s x 1000 <= 1.2 x shap_evals x forward_ms_batched": lambda r: (
            r["shap_over_evals_x_forward_batched"] <= 1.2
        ),
        "shap_evals <= 256": lambda r: r["shap_evals"] <= 256,
        "shap_max_err <= 0.01": lambda r: r["shap_max_err"] <= 0.01,
        "shap_first_use_extra_s <= 1": lambda r: r["shap_first_use_extra_s"] <= 1.0,
        "verdicts_per_s_20_threads >= 200 on SQLite (synchronous=FULL), 0 errors, 0 lost": lambda r: (
            r["verdicts_per_s_20_threads"] >= 200.0
            and r["sqlite_synchronous"] == "FULL"
            and r["verdict_errors_20_threads"] == 0
            and r["verdicts_lost_20_threads"] == 0
        ),
        "rss_growth_per_session_mb <= 0.5": lambda r: r["rss_growth_per_session_mb"] <= 0.5,
        "shap_app_s <= 1.2 x shap_s": lambda r: r["shap_app_ratio"] <= 1.2,
    }
    if not args.skip_interaction:
        import bench_interaction

        goals.update(bench_interaction.GOALS)
    import bench_classifiers

    goals.update(bench_classifiers.GOALS)
    import bench_similar

    goals.update(bench_similar.GOALS)
    if not args.skip_volumes:
        import bench_volumes

        goals.update(bench_volumes.GOALS)
    result["goals_met"] = judge(goals, result)
    if skipped:
        result["skipped"] = skipped
    rounded = {k: (round(v, 3) if isinstance(v, float) and abs(v) >= 1e-3 else v) for k, v in result.items()}
    line = json.dumps(rounded)
    if args.out:
        args.out.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
