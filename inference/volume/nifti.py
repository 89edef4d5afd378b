"""NIfTI-1/NIfTI-2 bytes to a canonical (RAS+) ``Volume``.

The one NIfTI reader: scans (``load_nifti``) and label maps (``read_nifti_array``, used by
``inference.masks.load``) share it, and with it the same limits. The header is parsed and checked
before any voxel is read or decompressed beyond it, so a header that claims absurd dimensions, or a
small ``.nii.gz`` that inflates to gigabytes, is refused without allocating memory for it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import zlib
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Literal

import numpy as np

from core.errors import CorruptImage, EmptyInput, FormatMismatch, InputTooLarge, NotAVolume, UnsupportedFormat
from inference.formats import GZIP_MAGIC, NIFTI1_HEADER_SIZE, NIFTI2_HEADER_SIZE, library_reason, reader_boundary
from inference.volume.types import Volume, read_only

log = logging.getLogger(__name__)

_NIFTI1_SIZE = NIFTI1_HEADER_SIZE
_NIFTI2_SIZE = NIFTI2_HEADER_SIZE
Role = Literal["scan", "label map"]
# Header extensions sit between the header and the voxels; real ones are kilobytes. A larger
# offset only makes us buffer bytes that are never voxels.
_MAX_VOX_OFFSET = 64 * 1024 * 1024
# A .nii.gz may carry a little padding after the voxels; more than this is not a NIfTI file.
_TRAILING_SLACK = 1024 * 1024
_INFLATE_CHUNK = 4 * 1024 * 1024

# NIfTI datatype code -> numpy dtype for the real-valued types we can show and measure.
_SUPPORTED_DTYPES: dict[int, np.dtype] = {
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


def _header_size(header_bytes: bytes) -> int | None:
    """sizeof_hdr in whichever byte order makes it a NIfTI size (nibabel reads the byte order from it)."""
    for size in (int.from_bytes(header_bytes[:4], "little"), int.from_bytes(header_bytes[:4], "big")):
        if size in (_NIFTI1_SIZE, _NIFTI2_SIZE):
            return size
    return None


# nibabel's header checks report what they fix through a logger; nibabel's own prints to stderr.
# Ours drops the reports: a fixable slip (negative pixdim...) is fixed silently, as before, and
# an unfixable one raises, which the reader turns into a refusal.
_HEADER_CHECKS = logging.getLogger("inference.volume.nifti.header_checks")
_HEADER_CHECKS.addHandler(logging.NullHandler())
_HEADER_CHECKS.propagate = False
_HEADER_ERROR_LEVEL = 40  # nibabel's default: what it refuses to load


def _checked(header, name: str):
    """The header after nibabel's checks and fixes, as loading it with nibabel would give."""
    try:
        header.check_fix(logger=_HEADER_CHECKS, error_level=_HEADER_ERROR_LEVEL)
    except Exception as exc:  # noqa: BLE001 - nibabel's checks raise HeaderDataError and, on garbage, others
        raise CorruptImage(f"The NIfTI header of {name} is damaged ({library_reason(exc)}).") from None
    return header


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
                source: bytes | memoryview = self._inflater.unconsumed_tail
                if not source:
                    if self._pos >= len(self._input):
                        self.truncated = True
                        break
                    source = self._input[self._pos : self._pos + _INFLATE_CHUNK]
                    self._pos += len(source)
                self._out += self._inflater.decompress(source, limit - len(self._out))
        except zlib.error as exc:
            raise CorruptImage(
                f"{self._name} is a damaged gzip file and cannot be decompressed ({library_reason(exc)})."
            ) from None
        return bytes(self._out)


def _parse_header(raw: bytes, name: str, *, compressed: bool):
    import nibabel as nib

    kind = nifti_kind(raw)
    if kind == "analyze-pair":
        raise UnsupportedFormat(
            f"{name} is the header of a two-file NIfTI/Analyze pair (.hdr/.img). Convert it to a "
            "single-file .nii or .nii.gz (e.g. with nibabel or dcm2niix) and upload that."
        )
    size_field = _header_size(raw)
    if kind is None and size_field is not None and len(raw) < size_field:
        raise CorruptImage(
            f"{name} is truncated: it ends after {len(raw)} bytes, inside its {size_field}-byte NIfTI header. "
            "Upload the complete file."
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
    if size_field != size:
        raise CorruptImage(
            f"The NIfTI header of {name} is damaged: its header size field does not say {size} bytes, so its "
            "byte order cannot be known. Export the file again."
        )
    try:
        header = klass(raw[:size], check=False)
        shape = tuple(int(n) for n in header.get_data_shape())
        offset = int(header.get_data_offset())
    except Exception as exc:  # noqa: BLE001 - nibabel raises assorted types for a garbled header
        raise CorruptImage(f"The NIfTI header of {name} is damaged ({library_reason(exc)}).") from None
    return kind, header, shape, offset, size


def _check_header(
    name: str, header, shape: tuple[int, ...], offset: int, header_size: int, max_voxels: int, role: Role = "scan"
) -> int:
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
    _check_shape(name, shape, role)
    voxels = int(np.prod([int(n) for n in shape], dtype=object))  # Python ints: no overflow
    if voxels > max_voxels:
        advice = (
            "Upload a single 3D scan at its acquired resolution."
            if role == "scan"
            else "A mask must be on the image's grid, which is smaller."
        )
        raise InputTooLarge(
            f"The NIfTI header of {name} claims {dims} voxels ({human_bytes(voxels * 4)}); the limit is "
            f"{human_bytes(max_voxels * 4)} ({max_voxels / 1e6:.0f} million voxels). {advice}"
        )
    if offset < header_size + 4 or offset > _MAX_VOX_OFFSET:
        raise CorruptImage(
            f"The NIfTI header of {name} puts the voxel data at byte {offset}, which is impossible "
            f"for a single-file NIfTI (it must be between {header_size + 4} and {_MAX_VOX_OFFSET}). "
            "The file is damaged; export it again."
        )
    return voxels * _SUPPORTED_DTYPES[code].itemsize


def _check_shape(name: str, shape: tuple[int, ...], role: Role = "scan") -> None:
    dims = "x".join(str(n) for n in shape)
    extra = shape[3:]
    if any(n > 1 for n in extra):
        count = int(np.prod(extra, dtype=object))
        if role == "label map":
            raise NotAVolume(
                f"{name} holds {count} volumes (shape {dims}); a label map is one 3D volume. Export the "
                "segmentation as a single 3D label map (not one file per class)."
            )
        raise NotAVolume(
            f"{name} holds {count} volumes (shape {dims}); a single 3D scan (X x Y x Z) is expected. "
            "Upload each scan or MRI sequence as its own file."
        )
    spatial = (tuple(shape[:3]) + (1, 1, 1))[:3]
    if min(spatial) < 2:
        what = "a 3D label map" if role == "label map" else "a 3D volume with several slices in each direction"
        raise NotAVolume(f"{name} is a single 2D slice (shape {dims}); {what} is expected.")


def _inflate(data: bytes, name: str, max_voxels: int, role: Role) -> tuple[bytes, int, object, tuple[int, ...]]:
    """Decompress only as far as the header says the voxels reach; returns (raw bytes, voxel end,
    header, shape)."""
    inflater = _BoundedInflater(data, name)
    head = inflater.read_until(_NIFTI2_SIZE)
    if inflater.truncated and nifti_kind(head) is None:
        raise CorruptImage(
            f"{name} is truncated: the gzip stream ends after {len(head)} bytes. Upload the complete file."
        )
    kind, header, shape, offset, size = _parse_header(head, name, compressed=True)
    end = offset + _check_header(name, header, shape, offset, size, max_voxels, role)
    raw = inflater.read_until(end + _TRAILING_SLACK + 1)
    if len(raw) > end + _TRAILING_SLACK:
        raise InputTooLarge(
            f"{name} decompresses to more than the {human_bytes(end)} its header declares (stopped at "
            f"{human_bytes(len(raw))}); it may be a decompression bomb or a damaged file and was not loaded."
        )
    return raw, end, header, shape


@dataclass(frozen=True)
class NiftiArray:
    """A NIfTI file's voxels as stored (3D, file axis order) and its checked voxel-to-RAS+ transform."""

    data: np.ndarray
    affine: np.ndarray
    axcodes: str  # the stored orientation, e.g. "LPS"

    def canonical(self) -> tuple[np.ndarray, np.ndarray]:
        """The voxels flipped/permuted to the closest RAS+ order (a view, no copy) and their affine."""
        from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

        ornt = io_orientation(self.affine)
        return apply_orientation(self.data, ornt), self.affine @ inv_ornt_aff(ornt, self.data.shape)


def read_nifti_array(
    data: bytes,
    name: str,
    *,
    max_bytes: int,
    max_voxels: int,
    role: Role = "scan",
    dtype: type[np.floating] | None = None,
) -> NiftiArray:
    """The bounded NIfTI reader: a ``.nii`` / ``.nii.gz`` upload's voxels and transform.

    Size, voxel-count and decompression limits are checked before the voxels are read. The
    voxels keep their stored type (after ``scl_slope`` / ``scl_inter``) unless ``dtype`` asks for
    a float type, in which they are scaled as nibabel's ``get_fdata`` does.

    Raises:
        InputRejected: (a subclass) naming the file and what is wrong with it.
    """
    name = base_name(name)
    with reader_boundary(name, "NIfTI", "Export the file again."):
        if not data:
            raise EmptyInput(f"{name} is empty (0 bytes). Upload the file again.")
        if len(data) > max_bytes:
            raise InputTooLarge(f"{name} is {human_bytes(len(data))}, over the {human_bytes(max_bytes)} upload limit.")
        if data.startswith(GZIP_MAGIC):
            raw, end, header, shape = _inflate(data, name, max_voxels, role)
        else:
            raw = data
            kind, header, shape, offset, size = _parse_header(raw, name, compressed=False)
            end = offset + _check_header(name, header, shape, offset, size, max_voxels, role)
        if len(raw) < end:
            raise CorruptImage(
                f"{name} is truncated: its header declares {human_bytes(end)} but the file holds "
                f"{human_bytes(len(raw))}. Upload the complete file."
            )
        return _decode(raw, name, header, shape, dtype)


def load_nifti(data: bytes, name: str, *, max_bytes: int, max_voxels: int) -> Volume:
    """Decode a ``.nii`` / ``.nii.gz`` upload into a canonical float32 ``Volume``.

    Raises:
        InputRejected: (a subclass) naming the file and what is wrong with it.
    """
    name = base_name(name)
    stored = read_nifti_array(data, name, max_bytes=max_bytes, max_voxels=max_voxels, dtype=np.float32)
    with reader_boundary(name, "NIfTI", "Export the file again."):
        _check_finite(stored.data, name)
        data3d, affine = to_canonical(stored.data, stored.affine)
        modality = guess_modality(data3d)
    # No file name in the log: exported names often carry a patient's name or a date.
    log.info("Loaded a NIfTI volume: shape %s, stored as %s, guessed %s", data3d.shape, stored.axcodes, modality)
    return Volume(
        data=read_only(data3d),
        affine=read_only(affine),
        modality=modality,
        source_format="nifti",
        input_sha256=hashlib.sha256(data).hexdigest(),
        description=name,
        original_axcodes=stored.axcodes,
    )


def _decode(raw: bytes, name: str, header, shape: tuple[int, ...], dtype: type[np.floating] | None) -> NiftiArray:
    """The voxels and transform from a checked header: no second parse, so none of nibabel's
    header "fixes" (and the messages it prints about them) applies to a damaged file."""
    import nibabel as nib
    from nibabel.arrayproxy import ArrayProxy
    from nibabel.spatialimages import HeaderDataError

    with np.errstate(all="ignore"):  # garbage header floats overflow; the checks below refuse them
        header = _checked(header, name)
        try:
            affine = np.asarray(header.get_best_affine(), dtype=np.float64)
        except (ValueError, ArithmeticError, HeaderDataError, np.linalg.LinAlgError) as exc:
            raise CorruptImage(
                f"{name} has an invalid voxel-to-world transform (sform/qform) ({library_reason(exc)}); its "
                "geometry cannot be trusted."
            ) from None
        if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise CorruptImage(
                f"{name} has an invalid voxel-to-world transform (sform/qform); its geometry cannot be trusted."
            )
        axcodes = nib.aff2axcodes(affine)
        if None in axcodes:
            raise CorruptImage(
                f"{name} has a degenerate voxel-to-world transform (an axis with no direction); its geometry "
                "cannot be trusted."
            )
        try:
            proxy = ArrayProxy(io.BytesIO(raw), header, mmap=False)
            values = np.asanyarray(proxy, dtype=dtype) if dtype is not None else np.asanyarray(proxy)
        except (ValueError, OSError, EOFError, struct.error, HeaderDataError) as exc:
            raise CorruptImage(f"{name} could not be read as NIfTI ({library_reason(exc)}).") from None
    values = values.reshape(shape[:3])  # trailing dims are all 1 (checked from the header)
    return NiftiArray(data=values, affine=affine, axcodes="".join(str(code) for code in axcodes))


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
