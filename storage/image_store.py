"""The de-identified image store: decoded pixels and the non-identifying facts of each input, so a
case reopens with its image, heatmaps and masks.

What is kept is what the app already decoded: the pixel array (for a radiograph, 0..255 grey, dense
tissue white) and the ``CaseFacts`` (format, modality, view, the keyed patient hash); for an MRI or
CT, the canonical voxel arrays (each channel of a BraTS case), the affine and the de-identified
description; for a segmentation, its label map with the label names and colours. Never the
uploaded file, so never its DICOM tags, names or dates. Burned-in text in the pixels themselves is
kept as it is: sites whose images carry it should turn the store off (``IMAGE_STORE=0``).

Layout: ``<data dir>/images/<first two hex digits>/<input sha256>.npz`` for images and volumes,
``<label map sha256>.labels.npz`` beside them for label maps (NumPy's compressed archive, readable
without pickle), written atomically, readable by the app's user only. A file older than the
retention period is deleted by ``purge_expired``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import StorageError
from core.results import LabelInfo, LabelMap, Structure
from core.types import CaseFacts, Image2D

log = logging.getLogger(__name__)

_SHA_LENGTH = 64
_DAY_S = 86_400
_INT16 = np.iinfo(np.int16)


@dataclass(frozen=True)
class KeptVolume:
    """A kept MRI or CT: its channels (one for most volumes, four for a BraTS case) on one
    canonical grid, the affine, and the de-identified facts the app decoded with it."""

    channel_names: tuple[str, ...]
    channels: tuple[np.ndarray, ...]  # float32 (X, Y, Z), read-only
    affine: np.ndarray  # float64 4x4
    meta: dict[str, Any]  # modality, source_format, description, original_axcodes, patient_key, ...


def _compact(array: np.ndarray) -> np.ndarray:
    """Whole numbers in int16 range (CT in HU, most MR) kept exactly in int16; others float32."""
    values = np.asarray(array)
    if (
        values.size
        and np.array_equal(values, np.round(values))
        and values.min() >= _INT16.min
        and values.max() <= _INT16.max
    ):
        return values.astype(np.int16)
    return values.astype(np.float32)


class ImageStore:
    """Images by input sha256 under ``root``, kept for ``retention_days``."""

    def __init__(self, root: Path, retention_days: int) -> None:
        self.root = Path(root)
        self.retention_days = retention_days

    def path(self, input_sha256: str) -> Path:
        if len(input_sha256) != _SHA_LENGTH or any(c not in "0123456789abcdef" for c in input_sha256):
            raise ValueError(f"Not a sha256 hex digest: {input_sha256!r}")
        return self.root / input_sha256[:2] / f"{input_sha256}.npz"

    def has(self, input_sha256: str) -> bool:
        return self.path(input_sha256).is_file()

    def put_image(self, image: Image2D) -> bool:
        """Keep a decoded radiograph (once: an image already kept is not written again).
        Returns whether it was written.

        Raises:
            StorageError: the folder cannot be written (disk full, permissions).
        """
        target = self.path(image.facts.input_sha256)
        if target.is_file():
            return False
        pixels = np.asarray(image.pixels)
        # Most radiographs decode to whole numbers 0..255: uint8 keeps them exactly in a quarter of the space.
        if np.array_equal(pixels, np.round(pixels)) and pixels.min() >= 0 and pixels.max() <= 255:
            pixels = pixels.astype(np.uint8)
        facts = json.dumps(asdict(image.facts), sort_keys=True)
        self._write(target, "image", pixels=pixels, facts=np.array(facts), kind=np.array("radiograph"))
        log.info("Kept image %s… (%s, %d x %d)", image.facts.input_sha256[:12], pixels.dtype, *pixels.shape[:2])
        return True

    def _write(self, target: Path, what: str, **arrays: np.ndarray) -> None:
        """Write ``arrays`` to ``target`` atomically, readable by this user only.

        Raises:
            StorageError: the folder cannot be written (disk full, permissions).
        """
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as out:
                    np.savez_compressed(out, allow_pickle=False, **arrays)
                os.chmod(temporary, 0o600)
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(
                f"The {what} could not be kept in {self.root} ({exc.strerror or exc}); the findings and verdicts "
                "are stored. Free disk space or set IMAGE_STORE=0."
            ) from None

    def _read(self, target: Path, kind: str) -> dict[str, np.ndarray] | None:
        """The arrays of a kept file of ``kind``, or None when absent, of another kind or unreadable."""
        try:
            with np.load(target, allow_pickle=False) as archive:
                if str(archive["kind"]) != kind:
                    return None
                return {name: archive[name] for name in archive.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("Kept %s %s is unreadable (%s); treated as not kept", kind, target.name[:12], exc)
            return None

    def put_volume(
        self,
        input_sha256: str,
        channels: dict[str, np.ndarray],
        affine: np.ndarray,
        meta: dict[str, Any],
    ) -> bool:
        """Keep an MRI or CT (once), its channels in order, keyed by the run's input sha256.
        ``meta`` is what the app shows about it and must hold nothing identifying (it is the
        de-identified description, modality, format and keyed patient hash). Returns whether it
        was written.

        Raises:
            StorageError: the folder cannot be written.
        """
        target = self.path(input_sha256)
        if target.is_file():
            return False
        arrays = {f"channel_{i}": _compact(data) for i, data in enumerate(channels.values())}
        record = json.dumps({**meta, "channel_names": list(channels), "input_sha256": input_sha256}, sort_keys=True)
        self._write(
            target,
            "volume",
            kind=np.array("volume"),
            affine=np.asarray(affine, dtype=np.float64),
            meta=np.array(record),
            **arrays,
        )
        first = next(iter(arrays.values()))
        log.info("Kept volume %s… (%d channel(s), %s, %s)", input_sha256[:12], len(arrays), first.dtype, first.shape)
        return True

    def get_volume(self, input_sha256: str) -> KeptVolume | None:
        """The kept volume, or None when it is not kept."""
        arrays = self._read(self.path(input_sha256), "volume")
        if arrays is None:
            return None
        meta = json.loads(str(arrays["meta"]))
        if meta.pop("input_sha256", None) != input_sha256:
            log.warning("Kept volume %s… holds another input; treated as not kept", input_sha256[:12])
            return None
        names = tuple(meta.pop("channel_names"))
        channels = []
        for i in range(len(names)):
            data = arrays[f"channel_{i}"].astype(np.float32)
            data.setflags(write=False)
            channels.append(data)
        affine = arrays["affine"]
        affine.setflags(write=False)
        return KeptVolume(names, tuple(channels), affine, meta)

    def label_map_path(self, label_map_sha256: str) -> Path:
        base = self.path(label_map_sha256)
        return base.with_name(f"{label_map_sha256}.labels.npz")

    def put_label_map(self, label_map: LabelMap) -> bool:
        """Keep a segmentation's label map (once), keyed by its sha256. Returns whether it was written.

        Raises:
            StorageError: the folder cannot be written.
        """
        target = self.label_map_path(label_map.sha256)
        if target.is_file():
            return False
        data = np.asarray(label_map.data)
        compact = (
            data.astype(np.uint8) if data.size and data.min() >= 0 and data.max() <= 255 else data.astype(np.int16)
        )
        record = json.dumps(
            {
                "sha256": label_map.sha256,
                # An upload's file name may carry a patient's name: only where it came from is kept.
                "source": "uploaded:label map" if label_map.source.startswith("uploaded:") else label_map.source,
                "labels": [[i.value, i.name, list(i.color)] for i in label_map.labels],
                "structures": [[s.name, list(s.values)] for s in label_map.structures],
            }
        )
        self._write(
            target,
            "label map",
            kind=np.array("labels"),
            data=compact,
            affine=np.asarray(label_map.affine, dtype=np.float64),
            meta=np.array(record),
        )
        log.info("Kept label map %s… (%s, %s)", label_map.sha256[:12], compact.dtype, compact.shape)
        return True

    def get_label_map(self, label_map_sha256: str) -> LabelMap | None:
        """The kept label map, or None when it is not kept."""
        arrays = self._read(self.label_map_path(label_map_sha256), "labels")
        if arrays is None:
            return None
        meta = json.loads(str(arrays["meta"]))
        if meta["sha256"] != label_map_sha256:
            log.warning("Kept label map %s… holds another one; treated as not kept", label_map_sha256[:12])
            return None
        data, affine = arrays["data"], arrays["affine"]
        data.setflags(write=False)
        affine.setflags(write=False)
        return LabelMap(
            data=data,
            affine=affine,
            labels=tuple(LabelInfo(int(v), str(n), (int(c[0]), int(c[1]), int(c[2]))) for v, n, c in meta["labels"]),
            structures=tuple(Structure(str(n), tuple(int(v) for v in values)) for n, values in meta["structures"]),
            source=meta["source"],
            sha256=label_map_sha256,
        )

    def get_image(self, input_sha256: str) -> Image2D | None:
        """The kept radiograph, or None when it is not kept (never stored, expired or turned off)."""
        arrays = self._read(self.path(input_sha256), "radiograph")
        if arrays is None:
            return None
        pixels = arrays["pixels"].astype(np.float32)
        facts = CaseFacts.from_dict(json.loads(str(arrays["facts"])))
        if facts.input_sha256 != input_sha256:
            log.warning("Kept image %s… holds another input's facts; treated as not kept", input_sha256[:12])
            return None
        pixels.setflags(write=False)
        return Image2D(pixels=pixels, facts=facts)

    def purge_expired(self, now: float | None = None) -> int:
        """Delete images kept longer than the retention period; returns how many were deleted."""
        if not self.root.is_dir():
            return 0
        limit = (now if now is not None else time.time()) - self.retention_days * _DAY_S
        removed = 0
        for path in self.root.glob("??/*.npz"):  # images, volumes and label maps
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except OSError as exc:
                log.warning("Could not delete the expired image %s: %s", path.name, exc)
        if removed:
            log.info("Deleted %d image(s) kept longer than %d days", removed, self.retention_days)
        return removed
