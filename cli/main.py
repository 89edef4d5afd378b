"""Command line: batch analysis and weights management, for headless and scripted use.

    python -m inference analyze FILE...|DICOMWEB_URL [--json] [--cam-dir DIR] [--stow [URL]] [--allow-untrained]
    python -m inference weights status
    python -m inference weights import FILE [--allow-pickle]
    python -m inference weights import BUNDLE_DIR_OR_ZIP_OR_PT --model SEG_MODEL_ID
    python -m inference weights download
    python -m inference segment FILE... [--json] [--model ID] [--mask-out OUT.nii.gz] [--seg-out OUT.dcm] [--stow [URL]]
        [--allow-untrained]
    python -m inference measure IMAGE LABELMAP [--legend FILE] [--threshold T] [--json] [--seg-out OUT.dcm] [--stow [URL]]
    python -m inference export --case ID --sr FILE.dcm|DIR/ [--seg FILE.dcm] [--sc DIR] [--reader NAME] [--stow [URL]] [--json]
    python -m inference calibrate [--model ID] [--target-sensitivity 0.9] [--include-untrained] [--json]
    python -m inference drift [--model ID] [--reference-weeks 4] [--include-untrained] [--json]   (exit 3: drifted)
    python -m inference classify FILE... --model ID [--json] [--tta] [--cam-dir DIR] [--allow-untrained]
    python -m inference models [--json]
    python -m inference train --model ID --data DIR [--epochs N] [--seed S] [--device cpu|cuda]
    python -m inference serve [--host 127.0.0.1] [--port 8000] [--secrets FILE] [--allow-untrained]
    python -m inference worker [--concurrency 1] [--name NAME]     (with WORKER_BROKER_URL set)

Bad input never produces a traceback: each file gets a result or a one-line error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from cli.calibration import add_commands as add_calibration_commands
from cli.calibration import calibrate_command
from cli.classify import add_commands as add_classify_commands
from cli.classify import classify_command, each_slice, models_command
from cli.drift import add_commands as add_drift_commands
from cli.drift import drift_command
from cli.exports import add_commands as add_export_commands
from cli.exports import export_command
from cli.options import allow_untrained_option, input_source, local_inputs
from cli.serving import add_commands as add_serving_commands
from cli.serving import serve_command, worker_command
from cli.training import add_commands as add_training_commands
from cli.training import train_command
from cli.volumes import add_commands as add_volume_commands
from cli.volumes import measure_command, segment_command
from core.errors import ReviewError
from core.settings import load_settings
from inference.models.registry import CXR_DENSENET

log = logging.getLogger("cli.main")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = commands.add_parser("analyze", help="analyse chest radiographs (PNG, JPEG, DICOM)")
    analyze.add_argument("files", nargs="+", type=input_source, help="images, or a DICOMweb study or series URL")
    analyze.add_argument("--json", action="store_true", help="one JSON object per line per file")
    analyze.add_argument("--cam-dir", type=Path, help="write a Grad-CAM overlay PNG per finding here")
    analyze.add_argument(
        "--stow",
        nargs="?",
        const="",
        metavar="URL",
        help="send each image's findings as a DICOM SR (the AI's, not reviewed) to the PACS: this URL, or PACS_DICOMWEB_URL",
    )
    allow_untrained_option(analyze, "scores")

    weights = commands.add_parser("weights", help="inspect or install model weights")
    actions = weights.add_subparsers(dest="action", required=True)
    actions.add_parser("status", help="where the weights are expected and whether they are there")
    install = actions.add_parser("import", help="check a weights file against the architecture and install it")
    install.add_argument("file", type=Path)
    install.add_argument(
        "--allow-pickle",
        action="store_true",
        help="accept a pickled whole model (the torchxrayvision release format); only for trusted files",
    )
    install.add_argument(
        "--model",
        help="the registered model the file is for (default: the chest X-ray model); for a MONAI bundle "
        "model, a bundle folder, zip or model.pt",
    )
    actions.add_parser("download", help="download the release weights (needs internet)")
    add_volume_commands(commands)
    add_export_commands(commands)
    add_calibration_commands(commands)
    add_drift_commands(commands)
    add_classify_commands(commands)
    add_training_commands(commands)
    add_serving_commands(commands)
    return parser


def _result(path: Path, analysis) -> dict:
    from pipelines.summaries import analysis_summary

    return {"file": str(path), **analysis_summary(analysis)}


def _print_human(result: dict, out: TextIO) -> None:
    if "error" in result:
        out.write(f"{result['file']}: ERROR: {result['error']}\n")
        return
    trained = result["model"]["trained"]
    out.write(f"{result['file']} ({result['modality']}, {result['timing_ms']:.0f} ms)\n")
    if not trained:
        out.write("  UNTRAINED WEIGHTS: scores are meaningless, for interface testing only\n")
    for finding in sorted(result["findings"], key=lambda f: -f["score"]):
        out.write(f"  {finding['label']:<28} {finding['score']:.3f}  {finding['band']}\n")


def analyze_files(args: argparse.Namespace, out: TextIO) -> int:
    """Each image's findings; with --stow, then each one's SR of the AI's results (not reviewed)
    sent to the PACS, once every file has been analysed and printed."""
    from pipelines.dicom_export import ai_results_sr

    reports = []

    def describe(path: Path, analysis, *_) -> dict:
        if args.stow is not None:
            reports.append(ai_results_sr(analysis))
        return _result(path, analysis)

    with local_inputs(args.files, one_series=False) as args.files:
        code = each_slice(CXR_DENSENET, args, out, describe, _emit)
    if reports:
        from pipelines.pacs import endpoint, send

        target = endpoint(load_settings(), args.stow or None)
        sent = send(target, reports)
        said = f"{sent.count} SR(s) of the AI's results (not reviewed by a reader) sent to {target.url}"
        out.write(
            json.dumps({"sent": {"pacs": target.url, "objects": sent.count}}) + "\n" if args.json else said + "\n"
        )
    return code


def _emit(result: dict, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(result) + "\n")
    else:
        _print_human(result, out)
    out.flush()


def weights_command(args: argparse.Namespace, out: TextIO) -> int:
    from inference.models.registry import all_models, get_spec
    from inference.models.weights import candidate_paths, download_weights, find_weights_file, import_weights

    settings = load_settings()
    if args.action == "status":
        for spec in all_models():
            found = find_weights_file(spec, settings)
            out.write(f"model: {spec.model_id}\n")
            for path in candidate_paths(spec, settings):
                out.write(f"  looks in: {path} ({'present' if path.is_file() else 'absent'})\n")
            out.write(f"status: {'installed at ' + str(found) if found else 'MISSING'}\n")
        # The exit status answers "can the chest X-ray review run with trained weights?"
        return 0 if find_weights_file(CXR_DENSENET, settings) else 1
    if args.action == "import":
        try:
            spec = get_spec(args.model) if args.model else CXR_DENSENET
        except KeyError as exc:
            raise ReviewError(str(exc).strip("'\"")) from None
        dest = import_weights(args.file, spec, settings, allow_pickle=args.allow_pickle)
        out.write(f"installed {args.file} as {dest} (checked: loads with strict keys)\n")
        return 0
    dest = download_weights(CXR_DENSENET, settings)
    out.write(f"downloaded and installed {dest}\n")
    return 0


# Libraries that log and warn about every oddity of a damaged file (pydicom with a traceback when
# a decoder fails); the one refusal line per file says what matters.
_CHATTY_LIBRARIES = ("pydicom", "nibabel", "PIL")


@contextmanager
def _quiet_libraries(verbose: bool) -> Iterator[None]:
    """Silences the readers' libraries for one command (their warnings stay visible with -v)."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LIBRARIES]
    saved = [(logger.level, logger.propagate) for logger in loggers]
    with warnings.catch_warnings():
        if not verbose:
            for name in _CHATTY_LIBRARIES:
                warnings.filterwarnings("ignore", module=rf"{name}(\.|$)")
        for logger in loggers:
            # Not propagating as well: pydicom sets its logger's level when it is first imported.
            logger.setLevel(logging.CRITICAL)
            logger.propagate = False
        try:
            yield
        finally:
            for logger, (level, propagate) in zip(loggers, saved):
                logger.setLevel(level)
                logger.propagate = propagate


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    with _quiet_libraries(args.verbose):
        return _run(args, out)


COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "analyze": analyze_files,
    "segment": segment_command,
    "measure": measure_command,
    "export": export_command,
    "calibrate": calibrate_command,
    "drift": drift_command,
    "classify": classify_command,
    "models": models_command,
    "train": train_command,
    "weights": weights_command,
    "serve": serve_command,
    "worker": worker_command,
}


def _run(args: argparse.Namespace, out: TextIO) -> int:
    try:
        return COMMANDS[args.command](args, out)
    except ReviewError as exc:
        # Set-up problems (missing weights, bad bands file) stop the whole run with one line.
        if getattr(args, "json", False):
            out.write(json.dumps({"error": str(exc)}) + "\n")
        else:
            sys.stderr.write(f"error: {exc}\n")
        return 2
