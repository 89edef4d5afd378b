"""The volume commands of the CLI: ``segment`` (run a MONAI network) and ``measure`` (a given mask).

    python -m inference segment FILE... [--json] [--model ID] [--mask-out OUT.nii.gz] [--seg-out OUT.dcm]
        [--stow [URL]] [--allow-untrained]
    python -m inference measure IMAGE LABELMAP [--legend FILE] [--threshold T] [--json] [--seg-out OUT.dcm]
        [--stow [URL]]

``--stow`` sends the label map as a DICOM SEG to the PACS over DICOMweb (STOW-RS), into the source
series' study when the input was DICOM (a DICOMweb URL included); files asked for are written first.

A BraTS case is its 4 NIfTI files (assigned to channels by their name suffixes); anything else is
one volume: a NIfTI, a DICOM series folder or zip, or the files of one series.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TextIO

from cli.options import allow_untrained_option, input_source, local_inputs
from core.errors import ReviewError
from core.settings import Settings, load_settings
from inference.volume.types import MultiChannelVolume, Segmentation, Volume


def add_commands(commands) -> None:
    segment = commands.add_parser("segment", help="segment an MRI/CT volume with a MONAI network")
    segment.add_argument(
        "files",
        nargs="+",
        type=input_source,
        help="4 BraTS NIfTI files, a NIfTI, a DICOM folder/zip/files, or a DICOMweb series URL",
    )
    segment.add_argument("--json", action="store_true", help="one JSON object on one line")
    segment.add_argument("--model", help="model id (default: BraTS for 4 MRI files, whole-body CT otherwise)")
    segment.add_argument("--mask-out", type=Path, help="write the label map here (.nii.gz) with the input's affine")
    _seg_out_option(segment)
    allow_untrained_option(segment, "masks")

    measure = commands.add_parser("measure", help="measure the structures of a label map on its image")
    measure.add_argument(
        "image", type=input_source, help="the image volume (NIfTI, DICOM folder or zip, or a DICOMweb series URL)"
    )
    measure.add_argument("labelmap", type=Path, help="a label map on the image's grid (NIfTI or DICOM SEG)")
    measure.add_argument("--legend", type=Path, help="label names: JSON or CSV (value,name)")
    measure.add_argument("--threshold", type=float, help="treat the label map as a probability map cut at this value")
    measure.add_argument("--json", action="store_true", help="one JSON object on one line")
    _seg_out_option(measure)


def _seg_out_option(parser) -> None:
    parser.add_argument(
        "--seg-out",
        type=Path,
        help="write the label map here as a DICOM SEG (referencing the input series when it is DICOM)",
    )
    parser.add_argument(
        "--stow",
        nargs="?",
        const="",
        metavar="URL",
        help="send the label map as a DICOM SEG to the PACS over DICOMweb (STOW-RS): this URL, or PACS_DICOMWEB_URL",
    )


def _write_seg(
    args: argparse.Namespace, volume: Volume, segmentation: Segmentation, output: dict, settings: Settings
) -> None:
    """--seg-out, then --stow: the file asked for is written before anything is sent, so a PACS
    that is down loses nothing."""
    if args.seg_out is None and args.stow is None:
        return
    from inference.dicom_out.seg import seg_dataset, write_seg

    if args.seg_out is not None:
        write_seg(args.seg_out, volume, segmentation)
        output["seg_out"] = str(args.seg_out)
    if args.stow is not None:
        from pipelines.pacs import endpoint, send

        target = endpoint(settings, args.stow or None)
        sent = send(target, [seg_dataset(volume, segmentation)])
        output["sent"] = {"pacs": target.url, "objects": sent.count}


def _read(paths: list[Path], settings: Settings) -> list[tuple[str, bytes]]:
    from inference.volume.ingest import files_from_path

    files: list[tuple[str, bytes]] = []
    for path in paths:
        try:
            files.extend(files_from_path(path, max_bytes=settings.max_volume_upload_mb * 1_000_000))
        except OSError as exc:
            raise ReviewError(f"cannot read {path}: {exc.strerror or exc}") from None
    return files


def _limits(settings: Settings, key: bytes) -> dict:
    return dict(
        max_bytes=settings.max_volume_upload_mb * 1_000_000, max_voxels=settings.max_volume_voxels, hash_key=key
    )


def load_inputs(paths: list[Path], settings: Settings, key: bytes) -> Volume | MultiChannelVolume:
    from pipelines.volume_inputs import read_case

    return read_case(_read(paths, settings), settings, key)


def segmentation_result(files: list[str], segmentation: Segmentation, volume: Volume, timing: dict) -> dict:
    from inference.volume.measure import measurements_table  # OpenCV: only when a volume command runs

    model = segmentation.model
    return {
        "files": files,
        "model_id": model.model_id,
        "weights_sha256": model.weights_sha256,
        "trained": model.trained,
        "device": model.device,
        "modality": volume.modality,
        "shape": list(volume.shape),
        "spacing_mm": [round(s, 4) for s in volume.spacing_mm],
        "labels": [{"value": i.value, "name": i.name} for i in segmentation.label_map.labels],
        "structures": measurements_table(segmentation.measurements),
        "voxel_counts": {m.name: m.voxels for m in segmentation.measurements},
        "volumes_ml": {m.name: round(m.volume_ml, 3) for m in segmentation.measurements},
        "params": dict(segmentation.params),
        "warnings": list(volume.warnings),
        "timing_ms": {k: round(v, 1) for k, v in timing.items()},
    }


def _emit(result: dict, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(result) + "\n")
    elif "error" in result:
        out.write(f"error: {result['error']}\n")
    else:
        out.write(
            f"{', '.join(result['files'])}: {result['model_id']} ({result['modality']}, "
            f"{'x'.join(map(str, result['shape']))} voxels at {result['spacing_mm']} mm)\n"
        )
        if not result["trained"]:
            out.write("  UNTRAINED WEIGHTS: masks and volumes are meaningless, for interface testing only\n")
        for s in result["structures"]:
            out.write(f"  {s['name']:<32} {s['voxels']:>10} voxels  {s['volume_ml']:10.2f} mL\n")
        for warning in result["warnings"]:
            out.write(f"  warning: {warning}\n")
        for key, what in (("mask_out", "label map (NIfTI)"), ("seg_out", "DICOM SEG")):
            if key in result:
                out.write(f"  {what} written to {result[key]}\n")
        if "sent" in result:
            out.write(f"  DICOM SEG sent to {result['sent']['pacs']}\n")
    out.flush()


def _pick_model(inputs, requested: str | None):
    from pipelines.volume_inputs import segmenter_for

    return segmenter_for(inputs, requested)


def segment_command(args: argparse.Namespace, out: TextIO) -> int:
    from core.deid import load_or_create_key
    from inference.masks.write import write_label_map
    from inference.models.loader import load_model
    from inference.volume.segment import segment

    settings = load_settings()
    names = [str(p) for p in args.files]
    try:
        started = time.perf_counter()
        with local_inputs(list(args.files), one_series=True) as paths:
            inputs = load_inputs(paths, settings, load_or_create_key(settings.patient_key_file))
        read_ms = (time.perf_counter() - started) * 1000
        spec = _pick_model(inputs, args.model)
        loaded = load_model(spec, settings, allow_untrained=args.allow_untrained or settings.allow_untrained_weights)
        started = time.perf_counter()
        result = segment(inputs, loaded)
        segment_ms = (time.perf_counter() - started) * 1000
        labels = result.label_map
        measure_ms = result.measure_ms
        segment_ms -= measure_ms  # reported apart, as before
        volume = inputs.reference if isinstance(inputs, MultiChannelVolume) else inputs
        if args.mask_out is not None:
            write_label_map(args.mask_out, labels, volume)
        output = segmentation_result(
            names, result, volume, {"read": read_ms, "segment": segment_ms, "measure": measure_ms}
        )
        if args.mask_out is not None:
            output["mask_out"] = str(args.mask_out)
        _write_seg(args, volume, result, output, settings)
    except ReviewError as exc:
        _emit({"files": names, "error": str(exc)}, args.json, out)
        return 1
    _emit(output, args.json, out)
    return 0


def measure_command(args: argparse.Namespace, out: TextIO) -> int:
    from core.deid import load_or_create_key
    from inference.masks.load import load_label_map
    from inference.volume.case import uploaded_segmentation
    from inference.volume.ingest import load_volume

    settings = load_settings()
    names = [str(args.image), str(args.labelmap)]
    try:
        started = time.perf_counter()
        with local_inputs([args.image], one_series=True) as [image]:
            volume = load_volume(
                _read([image], settings), **_limits(settings, load_or_create_key(settings.patient_key_file))
            )
        legend = None
        if args.legend is not None:
            try:
                legend = (args.legend.name, args.legend.read_bytes())
            except OSError as exc:
                raise ReviewError(f"cannot read {args.legend}: {exc.strerror or exc}") from None
        label_map = load_label_map(
            _read([args.labelmap], settings),
            volume,
            legend=legend,
            threshold=args.threshold,
            max_bytes=settings.max_volume_upload_mb * 1_000_000,
            max_voxels=settings.max_volume_voxels,
        )
        result = uploaded_segmentation(label_map, volume)
        output = segmentation_result(names, result, volume, {"total": (time.perf_counter() - started) * 1000})
        _write_seg(args, volume, result, output, settings)
    except ReviewError as exc:
        _emit({"files": names, "error": str(exc)}, args.json, out)
        return 1
    _emit(output, args.json, out)
    return 0
