"""Writing a label map back out as NIfTI, in the orientation and with the affine of its input."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.errors import ReviewError
from inference.volume.types import LabelMap, Volume


def to_original_orientation(
    data: np.ndarray, affine: np.ndarray, original_axcodes: str
) -> tuple[np.ndarray, np.ndarray]:
    """Undo the canonical (RAS+) reorientation, so the written file lines up voxel for voxel with
    the input in any viewer, including ones that ignore the affine."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

    transform = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(tuple(original_axcodes)))
    reoriented = apply_orientation(data, transform)
    new_affine = np.asarray(affine) @ inv_ornt_aff(transform, data.shape)
    return np.ascontiguousarray(reoriented), new_affine


def write_replacing(path: Path, write: Callable[[Path], object], suffix: str) -> Path:
    """Writes ``path`` through ``write`` (given a partial file's path beside it, ending in ``suffix``)
    and then renames it into place: a reader never sees half a file, and a failed write leaves
    nothing behind. The file gets the user's usual permissions (mkstemp's would be owner-only)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial{suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ReviewError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def write_label_map(path: Path, label_map: LabelMap, volume: Volume) -> Path:
    """Write ``label_map`` as NIfTI (``.nii`` or ``.nii.gz``) with the input's orientation and affine;
    label names go into a JSON sidecar (``<name>.labels.json``). Written atomically."""
    import nibabel as nib

    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        raise ReviewError(f"--mask-out must end in .nii or .nii.gz, got {path.name!r}.")
    data, affine = to_original_orientation(np.asarray(label_map.data), label_map.affine, volume.original_axcodes)
    dtype = np.uint8 if int(data.max(initial=0)) < 256 else np.int16
    image = nib.Nifti1Image(data.astype(dtype), affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    write_replacing(path, lambda tmp: nib.save(image, tmp), ".nii.gz" if name.endswith(".gz") else ".nii")
    sidecar = path.with_name(path.name.split(".nii")[0] + ".labels.json")
    sidecar.write_text(
        json.dumps([{"value": i.value, "name": i.name, "color": list(i.color)} for i in label_map.labels], indent=1)
    )
    return path
