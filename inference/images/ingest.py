"""Upload bytes to an ``Image2D``: format sniffing, limits, and PNG/JPEG decoding.

The format is decided by the bytes (``inference.formats.sniff``), never the file name alone; a
name that claims another format is refused with a message saying what the file really is. Every
failure while decoding is refused with one line that names the file.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
from pathlib import PurePath

import numpy as np

from core.errors import (
    CorruptImage,
    EmptyInput,
    FormatMismatch,
    InputTooLarge,
    UnsupportedFormat,
)
from core.types import CaseFacts, Image2D
from inference.formats import Format, describe, describe_bytes, library_reason, reader_boundary, sniff
from inference.images.expected import CHEST_RADIOGRAPH, ExpectedImage

log = logging.getLogger(__name__)

_EXTENSIONS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".dcm": "dicom",
    ".dicom": "dicom",
}
_RADIOGRAPH_FORMATS = (Format.PNG, Format.JPEG, Format.DICOM)
_FORMAT_NAMES = {fmt.value: describe(fmt) for fmt in _RADIOGRAPH_FORMATS}


def sniff_format(data: bytes) -> str | None:
    """ "png", "jpeg" or "dicom" from the bytes, or None for anything else."""
    fmt = sniff(data)
    return fmt.value if fmt in _RADIOGRAPH_FORMATS else None


def declared_format(filename: str) -> str | None:
    return _EXTENSIONS.get(PurePath(filename).suffix.lower())


def _check_declared(filename: str, data: bytes) -> Format:
    fmt = sniff(data)
    declared = declared_format(filename)
    if fmt is None or fmt not in _RADIOGRAPH_FORMATS:
        named_as = f" (named as {_FORMAT_NAMES[declared]})" if declared else ""
        actual = describe_bytes(data)
        what = f" is {actual}, not a PNG, JPEG or DICOM image" if actual else " is not a PNG, JPEG or DICOM image"
        raise UnsupportedFormat(
            f"{filename}{named_as}{what}. Upload the radiograph itself as exported from PACS (DICOM) or as a PNG/JPEG."
        )
    if declared is not None and declared != fmt.value:
        raise FormatMismatch(
            f"{filename} is named as {_FORMAT_NAMES[declared]} but contains {describe(fmt)}. "
            "Check that this is the intended file, then give it the right extension."
        )
    return fmt


def decode_raster(data: bytes, filename: str, fmt: str, max_pixels: int) -> np.ndarray:
    """PNG/JPEG bytes to float32 grayscale 0..255; the pixel count is checked before decoding."""
    from PIL import Image, UnidentifiedImageError

    what = _FORMAT_NAMES.get(fmt, "an image")
    try:
        # Image.open reads only the header; our limit is checked before any pixel is decoded.
        # (Pillow's own bomb check raises beyond twice its limit; no warning filter is touched.)
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise InputTooLarge(
                f"{filename} is {width}x{height} pixels, over the limit of {max_pixels / 1e6:.0f} "
                "megapixels. Export the radiograph at a normal diagnostic resolution."
            )
        image.load()
        return raster_to_gray(image)
    except Image.DecompressionBombError:
        raise InputTooLarge(
            f"{filename} declares an image far larger than the {max_pixels / 1e6:.0f} megapixel limit "
            "and was not decoded (possible decompression bomb)."
        ) from None
    except UnidentifiedImageError:
        # Pillow's own text names an in-memory buffer, not the file.
        raise CorruptImage(
            f"{filename} could not be decoded as {what}: its header is damaged or it is not {what}."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError) as exc:
        raise CorruptImage(f"{filename} could not be decoded as {what} ({library_reason(exc)}).") from None


def raster_to_gray(image) -> np.ndarray:
    """Any Pillow mode to float32 0..255 grayscale (alpha composited on black)."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if arr.max(initial=0) > 4095 else 4095.0 if arr.max(initial=0) > 255 else 255.0
        return np.clip(arr * (255.0 / peak), 0, 255).astype(np.float32)
    if image.mode == "F":
        arr = np.asarray(image, dtype=np.float32)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        return ((arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)).astype(np.float32)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("L"), dtype=np.float32)


def load_image(
    data: bytes,
    filename: str,
    *,
    max_bytes: int,
    max_pixels: int,
    hash_key: bytes,
    expected: ExpectedImage = CHEST_RADIOGRAPH,
    retain_characteristics: bool = False,
) -> Image2D:
    """Decode an uploaded 2D image (a radiograph by default; ``expected`` says which DICOM
    modalities the model reads). ``retain_characteristics``: a DICOM's sex and age band are kept
    with its acquisition facts (the site's de-identification option; off by default).

    Raises:
        InputRejected: (a subclass) with a message for the reviewer; nothing is half-decoded.
    """
    if not data:
        raise EmptyInput(f"{filename} is empty (0 bytes). Upload the file again.")
    if len(data) > max_bytes:
        raise InputTooLarge(f"{filename} is {len(data) / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB upload limit.")
    fmt = _check_declared(filename, data)
    sha = hashlib.sha256(data).hexdigest()
    with reader_boundary(filename, describe(fmt), "Export the radiograph again from PACS."):
        if fmt is Format.DICOM:
            from inference.images.dicom import decode_dicom

            image = decode_dicom(
                data,
                filename,
                sha,
                max_pixels=max_pixels,
                hash_key=hash_key,
                expected=expected,
                retain_characteristics=retain_characteristics,
            )
        else:
            pixels = decode_raster(data, filename, fmt.value, max_pixels)
            image = Image2D(pixels=pixels, facts=CaseFacts(input_sha256=sha, source_format=fmt.value, modality="image"))
        if not np.isfinite(image.pixels).all():
            raise CorruptImage(f"{filename} has invalid pixel values (NaN or infinity) and cannot be analysed.")
    return image
