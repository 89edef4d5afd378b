"""`python -m inference` as a batch user runs it: real files, real process, JSON lines, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from tests.conftest import PROJECT


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT), **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "inference", *args], capture_output=True, text=True, env=env, cwd=PROJECT, timeout=300
    )


def run_in_process(*args: str) -> subprocess.CompletedProcess:
    """The command line run in this process (its parser, commands, output and exit codes, without
    starting an interpreter and importing torch again), for tests whose point is not the process."""
    import contextlib
    import io

    from cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(list(args), out)
        except SystemExit as exc:  # argparse's refusals
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def test_analyze_good_and_bad_files_in_one_batch(samples: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "chest.dcm"
    renamed.write_bytes((samples / "nih_00000001_000.png").read_bytes())
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    files = [
        samples / "nih_00000001_000.png",
        samples / "siim_sample.dcm",
        renamed,
        empty,
        Path(get_testdata_file("CT_small.dcm")),
        Path(get_testdata_file("test-SR.dcm")),
        tmp_path / "absent.png",
    ]
    done = run_cli("analyze", *map(str, files), "--json", "--allow-untrained", "--cam-dir", str(tmp_path / "cams"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == list(map(str, files))
    good, dicom, *bad = lines
    for result in (good, dicom):
        assert set(result) >= {"file", "modality", "findings", "model", "timing_ms"}
        assert len(result["findings"]) == 18
        assert {"label", "score", "band"} == set(result["findings"][0])
        assert result["model"]["trained"] is False and len(result["model"]["weights_sha256"]) == 64
    assert dicom["modality"] == "CR"
    messages = [b["error"] for b in bad]
    assert "contains a PNG image" in messages[0]
    assert "empty" in messages[1]
    assert "not a chest radiograph" in messages[2]
    assert "without an image" in messages[3]
    assert "cannot read the file" in messages[4]
    assert all("\n" not in m for m in messages)
    cams = sorted((tmp_path / "cams").glob("*.png"))
    assert len(cams) == 36 and all(c.name.endswith("__UNTRAINED.png") for c in cams)
    assert any(c.name.startswith("001_nih_00000001_000_") and "__Effusion__" in c.name for c in cams)


def test_same_names_do_not_overwrite_and_a_bad_cam_dir_is_a_per_file_error(samples: Path, tmp_path: Path) -> None:
    for folder, source in (("a", "nih_00000001_000.png"), ("b", "tbx11k_h0001.png")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes((samples / source).read_bytes())
    done = run_in_process(
        "analyze",
        str(tmp_path / "a" / "x.png"),
        str(tmp_path / "b" / "x.png"),
        "--json",
        "--allow-untrained",
        "--cam-dir",
        str(tmp_path / "cams"),
    )
    assert done.returncode == 0 and len(list((tmp_path / "cams").glob("*.png"))) == 36
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    done = run_in_process(
        "analyze", str(tmp_path / "a" / "x.png"), "--json", "--allow-untrained", "--cam-dir", str(blocked)
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "cannot write heatmaps" in json.loads(done.stdout)["error"]


def test_all_good_files_exit_zero_and_human_output_labels_untrained(samples: Path) -> None:
    done = run_cli("analyze", str(samples / "tbx11k_h0001.png"), "--allow-untrained")
    assert done.returncode == 0, done.stderr
    assert "UNTRAINED WEIGHTS" in done.stdout and "Cardiomegaly" in done.stdout


def test_without_weights_every_file_gets_the_fix(samples: Path) -> None:
    done = run_cli("analyze", str(samples / "nih_00000001_000.png"), "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = [json.loads(x) for x in done.stdout.splitlines()]
    assert "python -m inference weights import" in line["error"]


def test_weights_status_and_import(tmp_path: Path) -> None:
    import torch

    from inference.models.loader import build_network
    from inference.models.registry import CXR_DENSENET

    status = run_in_process("weights", "status")
    assert status.returncode == 1 and "MISSING" in status.stdout
    torch.save(build_network(CXR_DENSENET).state_dict(), tmp_path / "w.pt")
    done = run_in_process("weights", "import", str(tmp_path / "w.pt"))
    assert done.returncode == 0, done.stderr
    assert run_in_process("weights", "status").returncode == 0
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    refused = run_in_process("weights", "import", str(bad))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr and "error:" in refused.stderr


@pytest.mark.parametrize("args", [["analyze"], ["frobnicate"]])
def test_usage_errors(args: list[str]) -> None:
    assert run_in_process(*args).returncode == 2
