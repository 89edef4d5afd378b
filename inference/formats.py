"""The ingest front door: what an upload is, sniffed once from its bytes, and how readers refuse it.

Every entry point (``load_image`` for radiographs, ``load_volume`` for scans, ``load_label_map`` for
masks) calls :func:`sniff` once and hands the bytes to the reader for that format. File names never
decide the format; they only shape the message when the name and the bytes disagree.

Readers say what is wrong in one sentence that names the file. A library failure inside a reader
(pydicom, nibabel, Pillow, zipfile, zlib, numpy...) becomes an ``InputRejected`` at the reader's
boundary, :func:`reader_boundary`, so a damaged upload can never surface as a traceback or a
message carrying library internals such as ``<_io.BytesIO object at 0x...>``.
"""

from __future__ import annotations

import io
import logging
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING

from core.errors import CorruptImage, InputRejected, InputTooLarge, ReviewError

if TYPE_CHECKING:
    from pydicom import Dataset

log = logging.getLogger(__name__)


class Format(str, Enum):
    PNG = "png"
    JPEG = "jpeg"
    DICOM = "dicom"  # Part 10 file: 128-byte preamble, then "DICM"
    GZIP = "gzip"  # a .nii.gz (readers check what is inside)
    ZIP = "zip"
    NIFTI1 = "nifti1"  # uncompressed, sizeof_hdr 348 in either byte order
    NIFTI2 = "nifti2"  # uncompressed, sizeof_hdr 540 in either byte order


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip, or an empty one
NIFTI1_HEADER_SIZE = 348
NIFTI2_HEADER_SIZE = 540

_NAMES = {
    Format.PNG: "a PNG image",
    Format.JPEG: "a JPEG image",
    Format.DICOM: "a DICOM file",
    Format.GZIP: "a gzip-compressed file",
    Format.ZIP: "a zip archive",
    Format.NIFTI1: "a NIfTI-1 file",
    Format.NIFTI2: "a NIfTI-2 file",
}
# Formats no reader takes, named so a refusal can say what the file is.
_OTHER_FORMATS = {
    b"%PDF": "a PDF document",
    b"GIF8": "a GIF image",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
}


def sniff(data: bytes) -> Format | None:
    """The format of an upload from its first bytes, or None for anything no reader takes.

    DICOM is recognised by its "DICM" marker after the 128-byte preamble; files without the
    preamble (raw datasets) are not accepted, as before.
    """
    if data.startswith(PNG_MAGIC):
        return Format.PNG
    if data.startswith(JPEG_MAGIC):
        return Format.JPEG
    if len(data) >= 132 and data[128:132] == b"DICM":
        return Format.DICOM
    if data.startswith(GZIP_MAGIC):
        return Format.GZIP
    if data.startswith(ZIP_MAGICS):
        return Format.ZIP
    return nifti_header_kind(data)


def nifti_header_kind(header: bytes) -> Format | None:
    """NIFTI1 or NIFTI2 when the first four bytes are a NIfTI header size (either byte order)."""
    if len(header) < 4:
        return None
    sizes = {int.from_bytes(header[:4], "little"), int.from_bytes(header[:4], "big")}
    if NIFTI2_HEADER_SIZE in sizes:
        return Format.NIFTI2
    if NIFTI1_HEADER_SIZE in sizes:
        return Format.NIFTI1
    return None


def describe(fmt: Format) -> str:
    """'a PNG image', 'a DICOM file'..."""
    return _NAMES[fmt]


def describe_bytes(data: bytes) -> str | None:
    """What the bytes are, for a refusal: a known format (read here or not), else None."""
    fmt = sniff(data)
    if fmt is not None:
        return describe(fmt)
    for magic, what in _OTHER_FORMATS.items():
        if data.startswith(magic):
            return what
    return None


# ---- refusals ------------------------------------------------------------------------------

_OBJECT_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")


def one_line(text: str, limit: int = 400) -> str:
    """``text`` as one line of printable characters, at most ``limit`` long."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text)
    flat = " ".join(printable.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def printable_name(name: str, limit: int = 80) -> str:
    """A name from inside an upload (a zip member) fit for a message: printable, not too long."""
    return one_line(name, limit) or "(unnamed)"


def library_reason(exc: BaseException, limit: int = 120) -> str:
    """A library exception as a short parenthetical: its type and the start of its text, one line,
    with object reprs (``<_io.BytesIO object at 0x...>``), raw bytes and quoted tracebacks left out."""
    text = str(exc).split("Traceback (most recent call last)")[0]
    text = _OBJECT_REPR.sub("", text)
    text = re.sub(r"b(['\"]).*?\1", "(bytes)", text)  # raw bytes quoted in a message are noise
    text = one_line(text, limit).rstrip(" .:")
    kind = type(exc).__name__
    if kind.islower():  # zlib.error, struct.error: the bare name says nothing
        kind = f"{type(exc).__module__}.{kind}"
    return f"{kind}: {text}" if text else kind


def mentions(message: str, name: str) -> bool:
    """Whether ``message`` names the file (its path or its base name; case aside)."""
    text = message.casefold()
    base = PureWindowsPath(name).name or name
    return name.casefold() in text or base.casefold() in text


def named(exc: InputRejected, name: str) -> InputRejected:
    """The same refusal as one line that names ``name`` (prefixed when the reader did not)."""
    message = one_line(str(exc), 4000)  # one line; long lists (series, channels) stay whole
    label = printable_name(name, 200)
    if not mentions(message, name) and not mentions(message, label):
        message = f"{label}: {message}"
    if message == str(exc):
        return exc
    return type(exc)(message)


def _one_line_refusal(exc: InputRejected) -> InputRejected:
    message = one_line(str(exc), 4000)
    return exc if message == str(exc) else type(exc)(message)


@contextmanager
def reader_boundary(
    name: str, what: str, advice: str = "Export it again from the system that made it.", *, prefix: bool = True
) -> Iterator[None]:
    """Inside, any failure is the upload's: refusals come out as one line naming ``name``; any
    other exception a library raises on damaged bytes becomes ``CorruptImage`` saying so.

    ``what`` names what the file was read as ("a DICOM file", "NIfTI"...). With ``prefix`` false
    (several files read as one, e.g. a DICOM series) refusals are not prefixed with ``name``.
    """
    try:
        yield
    except InputRejected as exc:
        clean = named(exc, name) if prefix else _one_line_refusal(exc)
        if clean is exc:
            raise
        raise clean from None
    except ReviewError:
        raise  # not about the bytes (none is raised by readers today): passed on as it is
    except MemoryError:
        raise InputTooLarge(
            f"{printable_name(name, 200)} declares more data than there is memory to decode it; it is damaged "
            "or far larger than a scan this tool reads."
        ) from None
    except Exception as exc:  # noqa: BLE001 - pydicom, nibabel, Pillow, zipfile, zlib and numpy raise many types on damaged bytes
        # Neither the file name nor the library's text is logged: names often carry a patient's name.
        log.info("Refused an upload read as %s: %s.%s from a reader", what, type(exc).__module__, type(exc).__name__)
        raise CorruptImage(
            f"{printable_name(name, 200)} is damaged and could not be read as {what} ({library_reason(exc)}). {advice}"
        ) from None


# ---- DICOM ---------------------------------------------------------------------------------


def dicom_errors() -> tuple[type[BaseException], ...]:
    """What pydicom raises for a damaged file while parsing it, or while converting an element's
    raw bytes (``BytesLengthException`` for a length that does not fit its VR, and the like)."""
    from pydicom.errors import BytesLengthException, InvalidDicomError

    return (
        InvalidDicomError,
        BytesLengthException,
        EOFError,
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        AttributeError,
        OverflowError,
        OSError,
        struct.error,
        NotImplementedError,
        RecursionError,
    )


def cannot_decode(exc: BaseException) -> bool:
    """For what ``pixel_array`` raised: True when pydicom lacks a decoder (a plugin or a NumPy type
    for the pixel data), False when the decoders it has failed on the data, i.e. it is damaged."""
    if isinstance(exc, NotImplementedError):
        return True
    return "exceptions were raised by all available plugins" not in str(exc)


def read_dicom(data: bytes, name: str, *, stop_before_pixels: bool = False) -> Dataset:
    """A Part 10 DICOM file with every element already decoded, so that a damaged element fails
    here, as one refusal naming the file, and not later wherever its value is first used (pydicom
    decodes element values lazily)."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=False, stop_before_pixels=stop_before_pixels)
        _decode_elements(ds.file_meta)
        _decode_elements(ds)
    except dicom_errors() as exc:
        raise CorruptImage(
            f"{name} is a damaged or truncated DICOM file and cannot be read ({library_reason(exc)}). "
            "Export it again from PACS."
        ) from None
    return ds


def _decode_elements(ds: Dataset) -> None:
    """Decode every element now (pydicom would on first use). A standard element that cannot be
    decoded makes the file damaged; a private (vendor) one nothing here reads is dropped, as files
    with odd private tags were read before."""
    for tag in list(ds.keys()):
        try:
            element = ds[tag]  # (Dataset.walk would decode too, but wraps errors in a whole traceback)
        except dicom_errors():
            if not tag.is_private:
                raise
            del ds[tag]
            log.debug("Dropped a private DICOM element that could not be decoded")
            continue
        if element.VR == "SQ":
            for item in element.value or ():
                _decode_elements(item)


def dicom_count(ds: Dataset, keyword: str, name: str, default: int = 0) -> int:
    """A count attribute (Rows, Columns, NumberOfFrames) as a non-negative int, or a refusal naming the file."""
    value = ds.get(keyword, None)
    try:
        number = int(value) if value not in (None, "") else default
    except (TypeError, ValueError, OverflowError):
        number = -1
    if number < 0:
        raise CorruptImage(
            f"{name} has an invalid {keyword} ({one_line(repr(value), 40)}); the DICOM header is damaged. "
            "Export it again from PACS."
        )
    return number
