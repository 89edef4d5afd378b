"""``classify`` and ``models``: any registered 2D classifier on slices, and what each model is.

    python -m inference classify FILE_OR_VOLUME... --model ID [--json] [--tta] [--cam-dir DIR] [--allow-untrained]
    python -m inference models [--json]

``classify`` prints one result per input (``file`` is the path as given: file names repeat across
class folders), or ``{"file", "error"}``; the exit status is 1 when any input failed. A NIfTI file
or a DICOM series folder is classified slice by slice (axial), with every slice's scores and the
volume's by the model's aggregation, naming the slice that drives each class.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cli.heatmaps import write_cams
from cli.options import allow_untrained_option
from core.errors import ReviewError
from core.settings import load_settings
from core.types import Image2D
from inference.volume.types import Volume

if TYPE_CHECKING:
    from inference.images.bands import BandConfig
    from inference.models.loader import LoadedModel
    from inference.models.spec import ClassifierSpec
    from pipelines.analyze import CaseAnalysis


def add_commands(commands: argparse._SubParsersAction) -> None:
    classify = commands.add_parser(
        "classify", help="classify 2D slices (DICOM MR/CT, PNG, JPEG) with a registered model"
    )
    classify.add_argument("files", nargs="+", type=Path)
    classify.add_argument("--model", required=True, help="a registered classifier (see `models`)")
    classify.add_argument("--json", action="store_true", help="one JSON object per line per file")
    classify.add_argument("--tta", action="store_true", help="test-time augmentation: mean and spread of 4 views")
    classify.add_argument("--cam-dir", type=Path, help="write a Grad-CAM overlay PNG per class here")
    allow_untrained_option(classify, "scores")
    models = commands.add_parser("models", help="list the registered models, their weights and model cards")
    models.add_argument("--json", action="store_true", help="one JSON object per line per model")


def _print_result(result: dict, out: TextIO) -> None:
    if "error" in result:
        out.write(f"{result['file']}: ERROR: {result['error']}\n")
        return
    answer = f": {result['prediction']}" if result.get("prediction") else ""
    out.write(f"{result['file']} ({result['modality']}, {result['timing_ms']:.0f} ms){answer}\n")
    if "aggregate" in result:
        how = result["aggregate"]
        out.write(
            f"  {len(result['slices'])} {how['view'].lower()} slices scored ({how['skipped_slices']} without content "
            f"skipped); per class the {how['method']} over the slices, and the slice that drives it:\n"
        )
    if not result["model"]["trained"]:
        out.write("  UNTRAINED WEIGHTS: scores are meaningless, for interface testing only\n")
    spread = {c["label"]: c for c in result.get("uncertainty", {}).get("classes", [])}
    for c in result["classes"]:
        extra = ""
        if c["label"] in spread:
            u = spread[c["label"]]
            extra = f"  (TTA {u['mean']:.3f} ± {u['std']:.3f}{', crosses a band' if u['crosses_band'] else ''})"
        if "aggregate" in result:
            extra += f"  (slice {result['aggregate']['slice'][c['label']]})"
        out.write(f"  {c['label']:<24} {c['score']:.3f}  {c['band']}{extra}\n")


def _emit(result: dict, as_json: bool, out: TextIO) -> None:
    out.write(json.dumps(result) + "\n") if as_json else _print_result(result, out)
    out.flush()


def each_slice(
    spec: ClassifierSpec,
    args: argparse.Namespace,
    out: TextIO,
    describe: Callable[[Path, CaseAnalysis, Image2D, LoadedModel, BandConfig], dict],
    emit: Callable[[dict, bool, TextIO], None],
    volume_describe: Callable[[Path, Volume, LoadedModel, BandConfig], dict] | None = None,
) -> int:
    """Every file of ``args.files`` through ``spec``: ``describe``'s result or a one-line error per
    file, in order; exit status 1 when any failed (every file fails alike when the model cannot load).
    With ``volume_describe``, a NIfTI file or a DICOM series folder is read as a volume."""
    from core.deid import load_or_create_key
    from inference.images.bands import load_band_config
    from inference.images.ingest import load_image
    from inference.models.loader import load_model
    from pipelines.analyze import analyze
    from pipelines.classify import expected_image

    settings = load_settings()
    try:
        bands = load_band_config(settings.bands_file)
        allow = args.allow_untrained or settings.allow_untrained_weights
        loaded = load_model(spec, settings, allow_untrained=allow)
        key = load_or_create_key(settings.patient_key_file)
    except ReviewError as exc:  # nothing can be analysed: say so for every file
        for path in args.files:
            emit({"file": str(path), "error": str(exc)}, args.json, out)
        return 1
    expected = expected_image(spec)
    failures = 0
    for index, path in enumerate(args.files, start=1):
        try:
            if volume_describe is not None and is_volume(path):
                emit(volume_describe(path, read_volume(path, settings, key), loaded, bands), args.json, out)
                continue
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ReviewError(f"cannot read the file: {exc.strerror or exc}") from None
            image = load_image(
                data,
                path.name,
                max_bytes=settings.max_upload_mb * 1_000_000,
                max_pixels=settings.max_image_pixels,
                hash_key=key,
                expected=expected,
            )
            analysis = analyze(loaded, image, bands, augment=getattr(args, "tta", False))
            if args.cam_dir is not None:
                write_cams(args.cam_dir, index, path, analysis)
            result = describe(path, analysis, image, loaded, bands)
        except ReviewError as exc:
            failures += 1
            result = {"file": str(path), "error": str(exc)}
        emit(result, args.json, out)
    return 1 if failures else 0


def is_volume(path: Path) -> bool:
    return path.is_dir() or path.name.lower().endswith((".nii", ".nii.gz", ".zip"))


def read_volume(path: Path, settings, key: bytes) -> Volume:
    from cli.volumes import load_inputs

    volume = load_inputs([path], settings, key)
    if not isinstance(volume, Volume):
        raise ReviewError("a single volume is classified at a time, not a set of MRI channels.")
    return volume


def _volume_result(path: Path, volume: Volume, loaded: LoadedModel, bands: BandConfig) -> dict:
    from pipelines.summaries import volume_classification

    return {"file": str(path), **volume_classification(volume, loaded, bands)}


def classify_command(args: argparse.Namespace, out: TextIO) -> int:
    from inference.models.registry import get_classifier
    from pipelines.classify import uncertainty

    try:
        spec = get_classifier(args.model)
    except KeyError as exc:
        raise ReviewError(str(exc).strip("'\"")) from None

    def describe(path: Path, analysis: CaseAnalysis, image: Image2D, loaded: LoadedModel, bands: BandConfig) -> dict:
        from pipelines.summaries import slice_summary

        spread = uncertainty(loaded, image, bands, augment=args.tta, scored=analysis.scored)  # --tta, or an ensemble
        return {"file": str(path), **slice_summary(analysis, exclusive=spec.exclusive, spread=spread)}

    return each_slice(spec, args, out, describe, _emit, _volume_result)


def models_command(args: argparse.Namespace, out: TextIO) -> int:
    from inference.models.cards import card_of
    from inference.models.registry import all_models
    from inference.models.spec import ClassifierSpec, SegmentationSpec
    from inference.models.weights import find_weights_file, sha256_of_file

    settings = load_settings()
    for spec in all_models():
        found = find_weights_file(spec, settings)
        if isinstance(spec, ClassifierSpec):
            labels = list(spec.labels)
        elif isinstance(spec, SegmentationSpec):
            labels = [s.name for s in spec.structures]
        else:
            labels = []
        card = card_of(spec)
        entry: dict = {
            "id": spec.model_id,
            "task": spec.task.value,
            "name": spec.display_name,
            "labels": labels,
            "trained": found is not None,
            "weights_sha256": sha256_of_file(found) if found is not None else None,
            "weights_path": str(found) if found is not None else None,
            "card": card,
        }
        if args.json:
            out.write(json.dumps(entry) + "\n")
            continue
        status = "trained weights" if found else "no weights (untrained mode only)"
        out.write(f"{spec.model_id} ({entry['task']}): {spec.display_name}; {status}\n")
        if card is not None:
            from inference.training.run import card_summary

            out.write(f"  {card_summary(card)}\n")
    return 0
