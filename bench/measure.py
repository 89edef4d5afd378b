"""What the benchmark scripts share: the server time of AppTest reruns, the resident memory of a
fresh process after one case, and judging goals on the figures a run measured."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


@contextmanager
def script_times() -> Iterator[list[float]]:
    """Milliseconds of each AppTest script run made inside the block (the page's server time)."""
    from streamlit.testing.v1.local_script_runner import LocalScriptRunner

    times: list[float] = []
    original = LocalScriptRunner._run_script

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            times.append((time.perf_counter() - start) * 1000.0)

    LocalScriptRunner._run_script = timed
    try:
        yield times
    finally:
        LocalScriptRunner._run_script = original


# A fresh process: the chest X-ray model and one case, then (segment=True) the BraTS SegResNet
# and one BraTS-sized case too. It prints VmRSS and VmHWM in MiB.
RSS_PROBE = """
import sys; sys.path[:0] = [{project!r}, {bench!r}]
from pathlib import Path
from core.settings import load_settings
from inference.images.bands import load_band_config
from inference.images.ingest import load_image
from inference.models.loader import load_model
from inference.models.registry import BRATS_SEGRESNET, CXR_DENSENET
from pipelines.analyze import analyze
s = load_settings()
m = load_model(CXR_DENSENET, s, allow_untrained=True)
image = load_image(Path({sample!r}).read_bytes(), "x.png", max_bytes=50_000_000, max_pixels=64_000_000, hash_key=b"k")
analyze(m, image, load_band_config(s.bands_file))
if {segment!r}:
    from bench_volumes import brats_sized_case
    from inference.volume.segment import segment
    segment(brats_sized_case(), load_model(BRATS_SEGRESNET, s, allow_untrained=True, device="cpu"))
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024)
"""


def rss_probe(sample: Path, segment: bool) -> tuple[float, float]:
    """(resident MiB, high-water MiB) of a fresh process after one case (and one segmentation)."""
    code = RSS_PROBE.format(project=str(PROJECT), bench=str(PROJECT / "bench"), sample=str(sample), segment=segment)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    current, peak = (float(v) for v in done.stdout.strip().splitlines()[-1].split())
    return current, peak


def judge(goals: dict[str, Callable[[dict], bool]], result: dict) -> dict[str, bool]:
    """Each goal whose figures were measured: met or not (one whose figures are missing is left
    out; the run's ``skipped`` says why)."""
    met = {}
    for name, test in goals.items():
        try:
            met[name] = bool(test(result))
        except KeyError:
            continue
    return met


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)
