"""Writing a label map back out as NIfTI, in the orientation and with the affine of its input."""

from __future__ import annotations

import json
import os
import tempfile
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
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".nii.gz" if name.endswith(".gz") else ".nii")
    os.close(handle)
    try:
        nib.save(image, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ReviewError(f"cannot write {path}: {exc.strerror or exc}") from None
    sidecar = path.with_name(path.name.split(".nii")[0] + ".labels.json")
    sidecar.write_text(
        json.dumps([{"value": i.value, "name": i.name, "color": list(i.color)} for i in label_map.labels], indent=1)
    )
    return path
