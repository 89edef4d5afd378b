"""The one entry point from uploaded files to a 3D ``Volume`` (pages and CLI alike).

The format is decided by the bytes, sniffed once (``inference.formats.sniff``): gzip or a NIfTI
header -> NIfTI, zip -> a zipped DICOM series, DICM marker -> DICOM. Names only decide between
NIfTI and "not NIfTI" messages. Whatever goes wrong inside a reader is refused with one line that
names the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from pathlib import Path

import numpy as np

from core.errors import ChannelAssignmentError, EmptyInput, GridMismatch, InputTooLarge, NotAVolume
from inference.formats import Format, describe_bytes, reader_boundary, sniff
from inference.volume.archive import unpack_zip
from inference.volume.dicom import load_dicom_series
from inference.volume.nifti import human_bytes, load_nifti, looks_like_nifti_name
from inference.volume.types import MultiChannelVolume, Volume

log = logging.getLogger(__name__)

BRATS_CHANNELS = ("t1c", "t1", "t2", "flair")
_CHANNEL_LABELS = {"t1c": "T1c", "t1": "T1", "t2": "T2", "flair": "FLAIR"}
# Whole last name token (after the final "_" or "-") -> channel. Whole tokens, so "t1ce" can never
# be read as "t1", and "t2f" (BraTS 2023 FLAIR) never as "t2".
_CHANNEL_TOKENS = {
    "t1ce": "t1c",
    "t1c": "t1c",
    "t1gd": "t1c",
    "t1": "t1",
    "t1n": "t1",
    "t1w": "t1",
    "t2": "t2",
    "t2w": "t2",
    "flair": "flair",
    "t2f": "flair",
}
_AFFINE_TOL_MM = 1e-3
_NIFTI_FORMATS = (Format.GZIP, Format.NIFTI1, Format.NIFTI2)


def _kind(name: str, data: bytes) -> str | None:
    """ "zip", "dicom", "nifti" or None: the bytes first, then the name for NIfTI and zip."""
    fmt = sniff(data)
    if fmt is Format.DICOM:
        return "dicom"
    if fmt is Format.ZIP or (fmt is None and name.lower().endswith(".zip")):
        return "zip"
    if fmt in _NIFTI_FORMATS or looks_like_nifti_name(name):
        return "nifti"
    return None


def _describe(data: bytes) -> str:
    return describe_bytes(data) or "not a scan format this tool reads"


def _unpack_limit(max_bytes: int, max_voxels: int) -> int:
    # DICOM compresses well in a zip, so the unpacked series may exceed the upload limit; four
    # bytes per allowed voxel is more than any uncompressed CT/MR pixel data plus headers needs.
    return max(max_bytes, 4 * max_voxels)


def load_volume(files: list[tuple[str, bytes]], *, max_bytes: int, max_voxels: int, hash_key: bytes) -> Volume:
    """Decode an upload (one NIfTI, one zip of a series, or the files of one DICOM series).

    Raises:
        InputRejected: (a subclass) naming the file and what to upload instead.
    """
    if not files:
        raise EmptyInput("No files were uploaded. Upload a NIfTI file, a zipped DICOM series or its files.")
    for name, data in files:
        if not data:
            raise EmptyInput(f"{name} is empty (0 bytes). Upload the file again.")
    total = sum(len(data) for _, data in files)
    if total > max_bytes:
        raise InputTooLarge(f"The upload is {human_bytes(total)}, over the {human_bytes(max_bytes)} limit.")
    kinds = [_kind(name, data) for name, data in files]
    if len(files) == 1:
        (name, data), kind = files[0], kinds[0]
        if kind == "zip":
            log.debug("Reading the upload as a zipped DICOM series")
            limit = _unpack_limit(max_bytes, max_voxels)
            # Messages about a member ("IM0001 is truncated") also name the zip it came in.
            with reader_boundary(name, "a zipped DICOM series", "Create the zip again from the series folder."):
                members = unpack_zip(data, max_total_bytes=limit, max_member_bytes=limit, name=name)
                return load_dicom_series(members, max_bytes=limit, max_voxels=max_voxels, hash_key=hash_key)
        if kind == "dicom":
            with reader_boundary(name, "a DICOM file", "Export it again from PACS."):
                return load_dicom_series(files, max_bytes=max_bytes, max_voxels=max_voxels, hash_key=hash_key)
        if kind == "nifti":
            log.debug("Reading the upload as NIfTI")
            return load_nifti(data, name, max_bytes=max_bytes, max_voxels=max_voxels)
        raise NotAVolume(
            f"{name} is {_describe(data)}, not a 3D scan. Upload a NIfTI file (.nii or .nii.gz), a zip "
            "of a DICOM series folder, or all DICOM files of one series."
        )
    for (name, _), kind in zip(files, kinds):
        if kind in ("zip", "nifti"):
            what = "a zip" if kind == "zip" else "a NIfTI file"
            raise NotAVolume(
                f"{name} is {what} uploaded together with {len(files) - 1} other file(s); upload {what} "
                "on its own (several files are read as the slices of one DICOM series)."
            )
    # Each file's own failures name it; this boundary is for what the series as a whole raises.
    with reader_boundary("The DICOM series", "a DICOM series", "Export the series again from PACS.", prefix=False):
        return load_dicom_series(files, max_bytes=max_bytes, max_voxels=max_voxels, hash_key=hash_key)


def files_from_path(path: Path, *, max_bytes: int) -> list[tuple[str, bytes]]:
    """A file, or every file under a folder (recursive, hidden files skipped), as (name, bytes).

    Names under a folder are relative to it. The total size is checked before anything is read.
    """
    path = Path(path)
    if path.is_file():
        candidates = [(path.name, path)]
    elif path.is_dir():
        candidates = [
            (p.relative_to(path).as_posix(), p)
            for p in sorted(path.rglob("*"))
            if p.is_file() and not any(part.startswith(".") or part == "__MACOSX" for part in p.relative_to(path).parts)
        ]
    else:
        raise EmptyInput(f"{path} does not exist.")
    if not candidates:
        raise EmptyInput(f"The folder {path} holds no files.")
    total = sum(p.stat().st_size for _, p in candidates)
    if total > max_bytes:
        raise InputTooLarge(
            f"{path} holds {len(candidates)} file(s) totalling {human_bytes(total)}, over the "
            f"{human_bytes(max_bytes)} limit."
        )
    return [(name, p.read_bytes()) for name, p in candidates]


def _stem(name: str) -> str:
    base = re.split(r"[\\/]", name)[-1].lower()
    for ext in (".nii.gz", ".nii", ".gz"):
        if base.endswith(ext):
            return base[: -len(ext)]
    return base.rsplit(".", 1)[0] if "." in base else base


def assign_mri_channels(names: list[str]) -> dict[str, str]:
    """Map each BraTS channel ("t1c", "t1", "t2", "flair") to the one file named for it.

    The channel is the last ``_`` / ``-`` separated token before the extension, e.g.
    ``BraTS20_001_t1ce.nii.gz`` -> t1c, ``BraTS-GLI-00000-000-t2f.nii.gz`` -> flair.

    Raises:
        ChannelAssignmentError: a channel with no file or several, listing what matched what.
    """
    matches: dict[str, list[str]] = {channel: [] for channel in BRATS_CHANNELS}
    unmatched = []
    for name in names:
        token = re.split(r"[_\-]", _stem(name))[-1]
        channel = _CHANNEL_TOKENS.get(token)
        if channel is None:
            unmatched.append(name)
        else:
            matches[channel].append(name)
    if all(len(found) == 1 for found in matches.values()):
        return {channel: found[0] for channel, found in matches.items()}
    lines = []
    for channel, found in matches.items():
        label = _CHANNEL_LABELS[channel]
        if not found:
            lines.append(f"{label}: no file")
        elif len(found) > 1:
            lines.append(f"{label}: {', '.join(found)} (ambiguous, several files)")
        else:
            lines.append(f"{label}: {found[0]}")
    if unmatched:
        lines.append(f"not recognised: {', '.join(unmatched)}")
    raise ChannelAssignmentError(
        "The MRI files could not be assigned to the four channels (" + "; ".join(lines) + "). Name each "
        "file with one channel suffix before .nii.gz: _t1c (or _t1ce), _t1 (or _t1n), _t2 (or _t2w), "
        "_flair (or _t2f), e.g. case_t1ce.nii.gz or BraTS-GLI-00000-000-t2f.nii.gz."
    )


def load_mri_channels(
    files: dict[str, tuple[str, bytes]],
    *,
    max_bytes: int,
    max_voxels: int,
    hash_key: bytes | None = None,
) -> MultiChannelVolume:
    """Load the four BraTS channels (keyed by channel, each a NIfTI (name, bytes)) on one grid.

    ``hash_key`` is accepted so callers can pass the same limits as to ``load_volume``; NIfTI
    carries no PatientID, so there is nothing to hash.

    Raises:
        ChannelAssignmentError: channels missing or unknown.
        GridMismatch: channels whose shapes or affines differ (they must be co-registered).
    """
    if set(files) != set(BRATS_CHANNELS):
        missing = [c for c in BRATS_CHANNELS if c not in files]
        extra = sorted(set(files) - set(BRATS_CHANNELS))
        raise ChannelAssignmentError(
            f"The MRI channels must be exactly {', '.join(BRATS_CHANNELS)}; missing: {', '.join(missing) or 'none'}, "
            f"unknown: {', '.join(extra) or 'none'}."
        )
    volumes = []
    for channel in BRATS_CHANNELS:
        name, data = files[channel]
        volume = load_nifti(data, name, max_bytes=max_bytes, max_voxels=max_voxels)
        # These are MR sequences by definition; the CT guess must not flip on an odd intensity range.
        volumes.append(dataclasses.replace(volume, modality="MR"))
    reference = volumes[0]
    for channel, volume in zip(BRATS_CHANNELS[1:], volumes[1:]):
        _check_same_grid(BRATS_CHANNELS[0], reference, channel, volume)
    digest = hashlib.sha256("".join(v.input_sha256 for v in volumes).encode("ascii")).hexdigest()
    return MultiChannelVolume(channel_names=BRATS_CHANNELS, channels=tuple(volumes), input_sha256=digest)


def _grid(volume: Volume) -> str:
    shape = "x".join(str(n) for n in volume.shape)
    spacing = "x".join(f"{s:.2f}" for s in volume.spacing_mm)
    return f"{shape} voxels of {spacing} mm"


def _check_same_grid(ref_channel: str, ref: Volume, channel: str, volume: Volume) -> None:
    ref_label = f"{_CHANNEL_LABELS[ref_channel]} ({ref.description})"
    label = f"{_CHANNEL_LABELS[channel]} ({volume.description})"
    if volume.shape != ref.shape:
        raise GridMismatch(
            f"{label} is {_grid(volume)} but {ref_label} is {_grid(ref)}; the four channels must be "
            "co-registered on one grid (as in BraTS pre-processed data)."
        )
    difference = float(np.abs(volume.affine - ref.affine).max())
    if difference > _AFFINE_TOL_MM:
        raise GridMismatch(
            f"{label} and {ref_label} both have {_grid(ref)} but are placed differently in space (their "
            f"voxel-to-world transforms differ by up to {difference:.3g} mm, e.g. origin "
            f"{tuple(np.round(volume.affine[:3, 3], 2))} vs {tuple(np.round(ref.affine[:3, 3], 2))}); "
            "the channels must be co-registered on one grid."
        )
