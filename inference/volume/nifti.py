"""NIfTI-1/NIfTI-2 bytes to a canonical (RAS+) ``Volume``.

The header is parsed and checked before any voxel is read or decompressed beyond it, so a header
that claims absurd dimensions, or a small ``.nii.gz`` that inflates to gigabytes, is refused
without allocating memory for it.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import zlib
from pathlib import PureWindowsPath

import numpy as np

from core.errors import CorruptImage, EmptyInput, FormatMismatch, InputTooLarge, NotAVolume, UnsupportedFormat
from inference.volume.types import Volume, read_only

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
_NIFTI1_SIZE = 348
_NIFTI2_SIZE = 540
# Header extensions sit between the header and the voxels; real ones are kilobytes. A larger
# offset only makes us buffer bytes that are never voxels.
_MAX_VOX_OFFSET = 64 * 1024 * 1024
# A .nii.gz may carry a little padding after the voxels; more than this is not a NIfTI file.
_TRAILING_SLACK = 1024 * 1024
_INFLATE_CHUNK = 4 * 1024 * 1024

# NIfTI datatype code -> numpy dtype for the real-valued types we can show and measure.
_SUPPORTED_DTYPES = {
    2: np.dtype(np.uint8),
    4: np.dtype(np.int16),
    8: np.dtype(np.int32),
    16: np.dtype(np.float32),
    64: np.dtype(np.float64),
    256: np.dtype(np.int8),
    512: np.dtype(np.uint16),
    768: np.dtype(np.uint32),
    1024: np.dtype(np.int64),
    1280: np.dtype(np.uint64),
}
_UNSUPPORTED_DTYPE_NAMES = {
    0: "an unset datatype (code 0)",
    1: "1-bit binary",
    32: "complex64",
    128: "RGB (24-bit colour)",
    1536: "float128",
    1792: "complex128",
    2048: "complex256",
    2304: "RGBA (32-bit colour)",
}


def base_name(name: str) -> str:
    """The file name without any directories (Windows or POSIX separators)."""
    return PureWindowsPath(name).name or name


def looks_like_nifti_name(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(".nii") or lower.endswith(".nii.gz")


def nifti_kind(header_bytes: bytes) -> str | None:
    """ "nifti1", "nifti2", "analyze-pair" (a .hdr of an .hdr/.img pair) or None, from the magic."""
    if len(header_bytes) >= _NIFTI2_SIZE and header_bytes[4:12] == b"n+2\x00\r\n\x1a\n":
        return "nifti2"
    if len(header_bytes) >= _NIFTI1_SIZE:
        magic = header_bytes[344:348]
        if magic == b"n+1\x00":
            return "nifti1"
        if magic in (b"ni1\x00", b"ni2\x00"):
            return "analyze-pair"
    return None


def human_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def guess_modality(data: np.ndarray) -> str:
    """ "CT" when the darkest voxels look like air in Hounsfield units (<= -500) and the volume
    also holds non-negative values, else "MR" (NIfTI does not record the modality)."""
    flat = np.asarray(data).reshape(-1)
    if flat.size == 0:
        return "MR"
    step = max(1, flat.size // 1_000_000)  # a strided sample is plenty for a 0.5th percentile
    low = float(np.percentile(flat[::step], 0.5))
    return "CT" if low <= -500.0 and float(flat.max()) >= 0.0 else "MR"


def to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip/permute voxel axes to nibabel's closest RAS+ order (what ``as_closest_canonical`` does);
    no resampling, so an oblique affine stays oblique. Returns contiguous float32 and the new affine."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    ornt = io_orientation(affine)
    out = np.ascontiguousarray(apply_orientation(data, ornt), dtype=np.float32)
    new_affine = np.asarray(affine, dtype=np.float64) @ inv_ornt_aff(ornt, data.shape)
    return out, new_affine


class _BoundedInflater:
    """Incremental gunzip that never holds more than the bytes asked for."""

    def __init__(self, data: bytes, name: str) -> None:
        self._name = name
        self._input = memoryview(data)
        self._pos = 0  # next unread input byte: slicing a memoryview copies nothing
        self._inflater = zlib.decompressobj(wbits=31)
        self._out = bytearray()
        self.truncated = False  # the input ended before the gzip end marker

    def read_until(self, limit: int) -> bytes:
        """Inflate until ``limit`` bytes are out or the stream ends; returns what is out so far."""
        try:
            while len(self._out) < limit:
                if self._inflater.eof:
                    rest = self._inflater.unused_data
                    if not rest.startswith(GZIP_MAGIC):
                        break  # the end of the gzip stream
                    # A multi-member gzip (e.g. written by pigz): carry on with the next member.
                    self._input = memoryview(bytes(rest) + bytes(self._input[self._pos :]))
                    self._pos = 0
                    self._inflater = zlib.decompressobj(wbits=31)
                source = self._inflater.unconsumed_tail
                if not source:
                    if self._pos >= len(self._input):
                        self.truncated = True
                        break
                    source = self._input[self._pos : self._pos + _INFLATE_CHUNK]
                    self._pos += len(source)
                self._out += self._inflater.decompress(source, limit - len(self._out))
        except zlib.error as exc:
            raise CorruptImage(f"{self._name} is a damaged gzip file and cannot be decompressed ({exc}).") from None
        return bytes(self._out)


def _parse_header(raw: bytes, name: str, *, compressed: bool):
    import nibabel as nib

    kind = nifti_kind(raw)
    if kind == "analyze-pair":
        raise UnsupportedFormat(
            f"{name} is the header of a two-file NIfTI/Analyze pair (.hdr/.img). Convert it to a "
            "single-file .nii or .nii.gz (e.g. with nibabel or dcm2niix) and upload that."
        )
    if kind is None:
        if looks_like_nifti_name(name):
            raise FormatMismatch(
                f"{name} is named as a NIfTI file but does not contain a NIfTI-1 or NIfTI-2 header. "
                "Check that this is the intended file."
            )
        what = "is gzip-compressed but holds" if compressed else "holds"
        raise NotAVolume(f"{name} {what} no NIfTI-1 or NIfTI-2 scan.")
    klass, size = (nib.Nifti2Header, _NIFTI2_SIZE) if kind == "nifti2" else (nib.Nifti1Header, _NIFTI1_SIZE)
    try:
        header = klass(raw[:size], check=False)
        shape = tuple(int(n) for n in header.get_data_shape())
        offset = int(header.get_data_offset())
    except Exception as exc:  # noqa: BLE001 - nibabel raises assorted types for a garbled header
        raise CorruptImage(f"The NIfTI header of {name} is damaged ({type(exc).__name__}: {exc}).") from None
    return kind, header, shape, offset, size


def _check_header(name: str, header, shape: tuple[int, ...], offset: int, header_size: int, max_voxels: int) -> int:
    """Refuse the file from its header alone; returns the byte count the voxels occupy."""
    code = int(header["datatype"])
    if code not in _SUPPORTED_DTYPES:
        what = _UNSUPPORTED_DTYPE_NAMES.get(code, f"datatype code {code}, which is not a NIfTI datatype")
        raise UnsupportedFormat(
            f"{name} stores its voxels as {what}; only real-valued grayscale scans (integer or "
            "float) can be shown. Convert it (e.g. to float32 magnitude) and upload it again."
        )
    dims = "x".join(str(n) for n in shape)
    if not shape or min(shape) < 1:
        raise CorruptImage(f"The NIfTI header of {name} gives an invalid shape ({dims or 'none'}).")
    _check_shape(name, shape)
    voxels = int(np.prod([int(n) for n in shape], dtype=object))  # Python ints: no overflow
    if voxels > max_voxels:
        raise InputTooLarge(
            f"The NIfTI header of {name} claims {dims} voxels ({human_bytes(voxels * 4)}); the limit is "
            f"{human_bytes(max_voxels * 4)} ({max_voxels / 1e6:.0f} million voxels). Upload a single "
            "3D scan at its acquired resolution."
        )
    if offset < header_size + 4 or offset > _MAX_VOX_OFFSET:
        raise CorruptImage(
            f"The NIfTI header of {name} puts the voxel data at byte {offset}, which is impossible "
            f"for a single-file NIfTI (it must be between {header_size + 4} and {_MAX_VOX_OFFSET}). "
            "The file is damaged; export it again."
        )
    return voxels * _SUPPORTED_DTYPES[code].itemsize


def _check_shape(name: str, shape: tuple[int, ...]) -> None:
    dims = "x".join(str(n) for n in shape)
    extra = shape[3:]
    if any(n > 1 for n in extra):
        count = int(np.prod(extra))
        raise NotAVolume(
            f"{name} holds {count} volumes (shape {dims}); a single 3D scan (X x Y x Z) is expected. "
            "Upload each scan or MRI sequence as its own file."
        )
    spatial = (tuple(shape[:3]) + (1, 1, 1))[:3]
    if min(spatial) < 2:
        raise NotAVolume(
            f"{name} is a single 2D slice (shape {dims}); a 3D volume with several slices in each "
            "direction is expected."
        )


def _inflate(data: bytes, name: str, max_voxels: int) -> tuple[bytes, int]:
    """Decompress only as far as the header says the voxels reach; returns (raw bytes, voxel end)."""
    inflater = _BoundedInflater(data, name)
    head = inflater.read_until(_NIFTI2_SIZE)
    if inflater.truncated and nifti_kind(head) is None:
        raise CorruptImage(
            f"{name} is truncated: the gzip stream ends after {len(head)} bytes. Upload the complete file."
        )
    kind, header, shape, offset, size = _parse_header(head, name, compressed=True)
    end = offset + _check_header(name, header, shape, offset, size, max_voxels)
    raw = inflater.read_until(end + _TRAILING_SLACK + 1)
    if len(raw) > end + _TRAILING_SLACK:
        raise InputTooLarge(
            f"{name} decompresses to more than the {human_bytes(end)} its header declares (stopped at "
            f"{human_bytes(len(raw))}); it may be a decompression bomb or a damaged file and was not loaded."
        )
    return raw, end


def load_nifti(data: bytes, name: str, *, max_bytes: int, max_voxels: int) -> Volume:
    """Decode a ``.nii`` / ``.nii.gz`` upload into a canonical float32 ``Volume``.

    Raises:
        InputRejected: (a subclass) naming the file and what is wrong with it.
    """
    name = base_name(name)
    if not data:
        raise EmptyInput(f"{name} is empty (0 bytes). Upload the file again.")
    if len(data) > max_bytes:
        raise InputTooLarge(f"{name} is {human_bytes(len(data))}, over the {human_bytes(max_bytes)} upload limit.")
    if data.startswith(GZIP_MAGIC):
        raw, end = _inflate(data, name, max_voxels)
    else:
        raw = data
        kind, header, shape, offset, size = _parse_header(raw, name, compressed=False)
        end = offset + _check_header(name, header, shape, offset, size, max_voxels)
    if len(raw) < end:
        raise CorruptImage(
            f"{name} is truncated: its header declares {human_bytes(end)} but the file holds "
            f"{human_bytes(len(raw))}. Upload the complete file."
        )
    data3d, affine, axcodes = _decode(raw, name)
    modality = guess_modality(data3d)
    # No file name in the log: exported names often carry a patient's name or a date.
    log.info("Loaded a NIfTI volume: shape %s, stored as %s, guessed %s", data3d.shape, axcodes, modality)
    return Volume(
        data=read_only(data3d),
        affine=read_only(affine),
        modality=modality,
        source_format="nifti",
        input_sha256=hashlib.sha256(data).hexdigest(),
        description=name,
        original_axcodes=axcodes,
    )


def _decode(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray, str]:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    klass = nib.Nifti2Image if nifti_kind(raw) == "nifti2" else nib.Nifti1Image
    try:
        image = klass.from_bytes(raw)
        values = image.get_fdata(dtype=np.float32)  # applies scl_slope / scl_inter
        affine = np.asarray(image.affine, dtype=np.float64)
    except (ValueError, OSError, EOFError, struct.error, ImageFileError, HeaderDataError) as exc:
        raise CorruptImage(f"{name} could not be read as NIfTI ({type(exc).__name__}: {exc}).") from None
    values = values.reshape(values.shape[:3])  # trailing dims are all 1 (checked from the header)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise CorruptImage(
            f"{name} has an invalid voxel-to-world transform (sform/qform); its geometry cannot be trusted."
        )
    _check_finite(values, name)
    axcodes = "".join(nib.aff2axcodes(affine))
    canonical, canonical_affine = to_canonical(values, affine)
    return canonical, canonical_affine, axcodes


def _check_finite(values: np.ndarray, name: str) -> None:
    finite = np.isfinite(values)
    if finite.all():
        return
    bad = int(finite.size - np.count_nonzero(finite))
    first = tuple(int(i) for i in np.unravel_index(int(np.argmin(finite)), finite.shape))
    raise CorruptImage(
        f"{name} has {bad} voxel(s) that are NaN or infinite (the first at voxel {first}, as stored); "
        "measurements on it would be meaningless. Fix or re-export the scan."
    )
