"""The de-identified image store: decoded pixels and the non-identifying facts of each input, so a
case reopens with its image, heatmaps and masks.

What is kept is what the app already decoded: the pixel array (for a radiograph, 0..255 grey, dense
tissue white) and the ``CaseFacts`` (format, modality, view, the keyed patient hash). Never the
uploaded file, so never its DICOM tags, names or dates. Burned-in text in the pixels themselves is
kept as it is: sites whose images carry it should turn the store off (``IMAGE_STORE=0``).

Layout: ``<data dir>/images/<first two hex digits>/<input sha256>.npz`` (NumPy's compressed
archive, readable without pickle), written atomically, readable by the app's user only. A file
older than the retention period is deleted by ``purge_expired``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from core.errors import StorageError
from core.types import CaseFacts, Image2D

log = logging.getLogger(__name__)

_SHA_LENGTH = 64
_DAY_S = 86_400


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
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as out:
                    np.savez_compressed(out, pixels=pixels, facts=np.array(facts), kind=np.array("radiograph"))
                os.chmod(temporary, 0o600)
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(
                f"The image could not be kept in {self.root} ({exc.strerror or exc}); the findings and verdicts "
                "are stored. Free disk space or set IMAGE_STORE=0."
            ) from None
        log.info("Kept image %s… (%s, %d x %d)", image.facts.input_sha256[:12], pixels.dtype, *pixels.shape[:2])
        return True

    def get_image(self, input_sha256: str) -> Image2D | None:
        """The kept radiograph, or None when it is not kept (never stored, expired or turned off)."""
        target = self.path(input_sha256)
        try:
            with np.load(target, allow_pickle=False) as archive:
                if str(archive["kind"]) != "radiograph":
                    return None
                pixels = archive["pixels"].astype(np.float32)
                raw = json.loads(str(archive["facts"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("Kept image %s… is unreadable (%s); treated as not kept", input_sha256[:12], exc)
            return None
        raw["notes"] = tuple(raw.get("notes", ()))
        facts = CaseFacts(**raw)
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
        for path in self.root.glob("??/*.npz"):
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except OSError as exc:
                log.warning("Could not delete the expired image %s: %s", path.name, exc)
        if removed:
            log.info("Deleted %d image(s) kept longer than %d days", removed, self.retention_days)
        return removed
