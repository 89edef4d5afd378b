"""Damaged uploads: a few hundred deterministic mutations of real samples through every reader and once
through the CLI. Each mutant is read or refused with one line that names the file; none escapes as a
library exception (a traceback in the CLI, an error page in the app).

Mutations: flipped bytes, truncation at random points, chunks spliced in from another sample, and
header fields overwritten with extreme values (DICOM element lengths and values, NIfTI dim[] /
vox_offset / datatype, PNG IHDR size, JPEG frame size, zip central directory offsets and sizes).
"""

from __future__ import annotations

import gzip
import io
import os
import random
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from core.errors import InputRejected
from inference.images.ingest import load_image
from inference.masks.load import load_label_map
from inference.volume.ingest import load_volume
from inference.volume.nifti import load_nifti
from inference.volume.types import Volume
from tests.conftest import CXR, PROJECT, SAMPLES, require_samples

# pydicom and Pillow warn about every oddity of a damaged file; what matters here is what is raised.
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]

SEED = 1234
KEY = b"fuzz-key-0123456789abcdef"
IMAGE_LIMITS = dict(max_bytes=20_000_000, max_pixels=4_000_000, hash_key=KEY)
VOLUME_LIMITS = dict(max_bytes=20_000_000, max_voxels=2_000_000)
MUTANTS_PER_SAMPLE = 48


# ---- samples -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A header field: where it is, how wide, its byte order and kind ("i" integer, "f" float)."""

    offset: int
    width: int
    order: str = "<"
    kind: str = "i"


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    fields: tuple[Field, ...]
    # Header fields of a gzip's content are patched inside it, then the stream is packed again.
    gzipped: bool = False
    # PNG: fix the CRC of the patched chunk so the decoder goes past its checksum test.
    fix_png_crc: bool = False


def _dicom_fields(data: bytes) -> tuple[Field, ...]:
    """The length and the first value bytes of a few elements of an explicit VR little endian file."""
    tags = [
        (0x0002, 0x0000),  # file meta group length
        (0x0002, 0x0010),  # transfer syntax
        (0x0008, 0x0016),  # SOP class
        (0x0008, 0x0060),  # modality
        (0x0020, 0x000E),  # series UID
        (0x0020, 0x0032),  # image position
        (0x0020, 0x0037),  # image orientation
        (0x0028, 0x0002),  # samples per pixel
        (0x0028, 0x0008),  # number of frames
        (0x0028, 0x0010),  # rows
        (0x0028, 0x0011),  # columns
        (0x0028, 0x0030),  # pixel spacing
        (0x0028, 0x0100),  # bits allocated
        (0x0028, 0x0103),  # pixel representation
        (0x0028, 0x1052),  # rescale intercept
        (0x0062, 0x0002),  # segment sequence
        (0x5200, 0x9230),  # per-frame functional groups
        (0x7FE0, 0x0010),  # pixel data
    ]
    fields: list[Field] = []
    for group, element in tags:
        at = data.find(struct.pack("<HH", group, element), 128)
        if at < 0:
            continue
        vr = data[at + 4 : at + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            fields += [Field(at + 8, 4), Field(at + 12, 4)]  # 4-byte length, then the value
        elif vr.isalpha():
            fields += [Field(at + 6, 2), Field(at + 8, 2), Field(at + 8, 4)]
        else:  # implicit VR: a 4-byte length straight after the tag
            fields += [Field(at + 4, 4), Field(at + 8, 2)]
    return tuple(fields)


def _nifti1_fields() -> tuple[Field, ...]:
    fields = [Field(0, 4)]  # sizeof_hdr
    fields += [Field(40 + 2 * i, 2) for i in range(8)]  # dim[0..7]
    fields += [Field(70, 2), Field(72, 2)]  # datatype, bitpix
    fields += [Field(76 + 4 * i, 4, kind="f") for i in range(4)]  # pixdim[0..3]
    fields += [Field(108, 4, kind="f"), Field(112, 4, kind="f"), Field(116, 4, kind="f")]  # vox_offset, scl
    fields += [Field(252, 2), Field(254, 2)]  # qform_code, sform_code
    fields += [Field(256 + 4 * i, 4, kind="f") for i in range(6)]  # quaternion and offsets
    fields += [Field(280 + 4 * i, 4, kind="f") for i in range(12)]  # srow_x/y/z
    fields += [Field(344, 4)]  # magic
    return tuple(fields)


def _png_fields() -> tuple[Field, ...]:
    return (Field(8, 4, ">"), Field(16, 4, ">"), Field(20, 4, ">"), Field(24, 1), Field(25, 1), Field(28, 1))


def _jpeg_fields(data: bytes) -> tuple[Field, ...]:
    fields: list[Field] = []
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xdb", b"\xff\xc4", b"\xff\xda"):
        at = data.find(marker, 2)
        if at < 0:
            continue
        fields.append(Field(at + 2, 2, ">"))  # segment length
        if marker in (b"\xff\xc0", b"\xff\xc2"):
            fields += [Field(at + 4, 1), Field(at + 5, 2, ">"), Field(at + 7, 2, ">"), Field(at + 9, 1)]
    return tuple(fields)


def _zip_fields(data: bytes) -> tuple[Field, ...]:
    end = data.rfind(b"PK\x05\x06")
    fields = [Field(end + 8, 2), Field(end + 10, 2), Field(end + 12, 4), Field(end + 16, 4), Field(end + 20, 2)]
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        fields += [Field(at + o, w) for o, w in ((8, 2), (10, 2), (20, 4), (24, 4), (28, 2), (30, 2), (42, 4))]
        at = data.find(b"PK\x01\x02", at + 4)
    at = data.find(b"PK\x03\x04")
    while at >= 0:
        fields += [Field(at + o, w) for o, w in ((6, 2), (8, 2), (18, 4), (22, 4), (26, 2), (28, 2))]
        at = data.find(b"PK\x03\x04", at + 4)
    return tuple(fields)


def _series_dir() -> Path:
    ct = get_testdata_file("CT_small.dcm")
    folder = Path(ct).parent / "dicomdirtests" / "98892001" / "CT5N" if ct else None
    if folder is None or not folder.is_dir():
        pytest.skip("pydicom's dicomdirtests CT series is not installed")
    return folder


def _zip_series(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buf.getvalue()


@dataclass(frozen=True)
class Scan:
    """A small crop of the MNI template (real voxels) and a label map drawn on the same grid; and
    pydicom's DICOM SEG with a volume on its grid."""

    volume_gz: bytes
    labels_gz: bytes
    volume: Volume
    seg: bytes
    seg_volume: Volume


def _scan() -> Scan:
    require_samples()
    t1 = nib.load(SAMPLES / "mri" / "mni152_t1.nii.gz")
    gm = nib.load(SAMPLES / "mri" / "mni152_gm_prob.nii.gz")
    crop = (slice(70, 94), slice(100, 124), slice(80, 100))  # 24x24x20 voxels through the cortex
    affine = t1.affine.copy()
    affine[:3, 3] = t1.affine[:3, :3] @ [s.start for s in crop] + t1.affine[:3, 3]
    t1_crop = np.asarray(t1.dataobj)[crop]
    gm_crop = np.asarray(gm.dataobj)[crop]
    labels = np.where(gm_crop >= 170, 2, np.where(gm_crop >= 85, 1, 0)).astype(np.uint8)
    volume_gz = gzip.compress(nib.Nifti1Image(t1_crop, affine).to_bytes(), compresslevel=6, mtime=0)
    labels_gz = gzip.compress(nib.Nifti1Image(labels, affine).to_bytes(), compresslevel=6, mtime=0)
    volume = load_nifti(volume_gz, "t1_crop.nii.gz", **VOLUME_LIMITS)
    from tests.unit.inference.masks.test_labelmap import _seg_bytes, _seg_dataset, _seg_grid

    seg = _seg_dataset()
    return Scan(volume_gz, labels_gz, volume, _seg_bytes(seg), _seg_grid(seg))


def _samples(scan: Scan) -> dict[str, Sample]:
    png = (CXR / "nih_00000001_000.png").read_bytes()
    jpeg = (CXR / "padchest_16747_3_1.jpg").read_bytes()
    siim = (CXR / "siim_sample.dcm").read_bytes()
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    members = [(f"CT5N/{p.name}", p.read_bytes()) for p in sorted(_series_dir().iterdir())]
    series_zip = _zip_series(members)
    return {
        "png": Sample("chest.png", png, _png_fields(), fix_png_crc=True),
        "jpeg": Sample("chest.jpg", jpeg, _jpeg_fields(jpeg)),
        "dicom": Sample("chest.dcm", siim, _dicom_fields(siim)),
        "ct_dicom": Sample("ct_small.dcm", ct, _dicom_fields(ct)),
        "nifti": Sample("t1_crop.nii.gz", scan.volume_gz, _nifti1_fields(), gzipped=True),
        "zip": Sample("ct_series.zip", series_zip, _zip_fields(series_zip)),
        # The same series uploaded as its files (one of them damaged), as the volume page takes it.
        "series": Sample("CT5N", series_zip, ()),
        "labels": Sample("labels.nii.gz", scan.labels_gz, _nifti1_fields(), gzipped=True),
        "seg": Sample("liver_seg.dcm", scan.seg, _dicom_fields(scan.seg)),
    }


# ---- mutations -----------------------------------------------------------------------------


def _extreme(rng: random.Random, field: Field) -> bytes:
    if field.kind == "f":
        value = rng.choice([0.0, -1.0, 1e-30, 1e30, 3.4e38, float("nan"), float("inf"), rng.uniform(-1e6, 1e6)])
        return struct.pack(f"{field.order}f", value)
    bits = 8 * field.width
    value = rng.choice([0, 1, 2, 3, 7, 255, 2 ** (bits - 1) - 1, 2 ** (bits - 1), 2**bits - 1, rng.getrandbits(bits)])
    return value.to_bytes(field.width, "little" if field.order == "<" else "big")


def _patch(data: bytes, field: Field, value: bytes) -> bytes:
    if field.offset + field.width > len(data):
        return data
    return data[: field.offset] + value + data[field.offset + field.width :]


def _fix_png_crcs(data: bytes) -> bytes:
    out = bytearray(data)
    at = 8
    while at + 12 <= len(out):
        length = int.from_bytes(out[at : at + 4], "big")
        if at + 12 + length > len(out) or length > 1 << 20:
            break
        struct.pack_into(">I", out, at + 8 + length, zlib.crc32(out[at + 4 : at + 8 + length]))
        at += 12 + length
        if out[at - 8 - length : at - 4 - length] == b"IDAT":
            break
    return bytes(out)


def _flip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    head = min(len(out), 2048)
    for _ in range(rng.choice([1, 2, 4, 16, 64])):
        at = rng.randrange(head) if rng.random() < 0.6 else rng.randrange(len(out))
        out[at] ^= rng.randrange(1, 256)
    return bytes(out)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    cut = rng.randrange(1, len(data)) if rng.random() < 0.7 else rng.randrange(1, min(len(data), 1024))
    return data[:cut]


def _splice(rng: random.Random, data: bytes, other: bytes) -> bytes:
    size = rng.choice([8, 64, 512, 4096])
    start = rng.randrange(max(1, len(other) - size))
    chunk = other[start : start + size]
    at = rng.randrange(min(len(data), 4096)) if rng.random() < 0.5 else rng.randrange(len(data))
    if rng.random() < 0.5:
        return data[:at] + chunk + data[at + len(chunk) :]  # overwrite
    return data[:at] + chunk + data[at:]  # insert


def _overwrite(rng: random.Random, sample: Sample) -> bytes:
    inner = gzip.decompress(sample.data) if sample.gzipped else sample.data
    for _ in range(rng.choice([1, 1, 2, 3])):
        field = rng.choice(sample.fields)
        inner = _patch(inner, field, _extreme(rng, field))
    if sample.fix_png_crc:
        inner = _fix_png_crcs(inner)
    return gzip.compress(inner, compresslevel=1, mtime=0) if sample.gzipped else inner


def _zip_of_mutated_member(rng: random.Random, sample: Sample) -> bytes:
    """The series zip again, with one DICOM member's header fields overwritten (the zip itself is sound)."""
    with zipfile.ZipFile(io.BytesIO(sample.data)) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    k = rng.randrange(len(members))
    name, data = members[k]
    fields = _dicom_fields(data)
    for _ in range(rng.choice([1, 2])):
        field = rng.choice(fields)
        data = _patch(data, field, _extreme(rng, field))
    members[k] = (name, data)
    return _zip_series(members)


def mutants(samples: dict[str, Sample], seed: int = SEED) -> Iterator[tuple[str, str, bytes]]:
    """(sample key, what was done, mutated bytes), the same every run."""
    rng = random.Random(seed)
    keys = sorted(samples)
    for key in keys:
        sample = samples[key]
        others = [samples[k].data for k in keys if k != key]
        for n in range(MUTANTS_PER_SAMPLE):
            kinds = ["flip", "truncate", "splice", "overwrite", "overwrite"]
            if key == "zip":
                kinds.append("member")
            kind = "member" if key == "series" else rng.choice(kinds)
            if kind == "flip":
                data = _flip(rng, sample.data)
            elif kind == "truncate":
                data = _truncate(rng, sample.data)
            elif kind == "splice":
                data = _splice(rng, sample.data, rng.choice(others))
            elif kind == "member":
                data = _zip_of_mutated_member(rng, sample)
            else:
                data = _overwrite(rng, sample)
            yield key, f"{key} #{n} {kind}", data


# ---- readers -------------------------------------------------------------------------------


def _readers(scan: Scan) -> dict[str, Callable[[str, bytes], object]]:
    def image(name: str, data: bytes) -> object:
        return load_image(data, name, **IMAGE_LIMITS)

    def volume(name: str, data: bytes) -> object:
        return load_volume([(name, data)], **VOLUME_LIMITS, hash_key=KEY)

    def labels(name: str, data: bytes) -> object:
        return load_label_map([(name, data)], scan.volume, **VOLUME_LIMITS)

    def seg(name: str, data: bytes) -> object:
        return load_label_map([(name, data)], scan.seg_volume, **VOLUME_LIMITS)

    def series_files(name: str, data: bytes) -> object:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [(info.filename, archive.read(info)) for info in archive.infolist()]
        return load_volume(members, **VOLUME_LIMITS, hash_key=KEY)

    def dicom_both(name: str, data: bytes) -> object:
        try:
            image(name, data)
        except InputRejected as exc:
            _check_refusal(name, exc)
        return volume(name, data)

    return {
        "png": image,
        "jpeg": image,
        "dicom": image,
        "ct_dicom": dicom_both,
        "nifti": volume,
        "zip": volume,
        "labels": labels,
        "seg": seg,
        "series": series_files,
    }


SERIES_FILES = tuple(f"CT5N/{n}" for n in ("2062", "2392", "2693", "3023", "3353"))


def _check_refusal(name: str, exc: InputRejected) -> None:
    message = str(exc)
    problems = []
    if "\n" in message or "\r" in message:
        problems.append("spans several lines")
    if name == "CT5N":  # several files: the message names one of them, or speaks of the series
        if not (any(member in message for member in SERIES_FILES) or message.startswith("The ")):
            problems.append("names neither a file nor the series")
    elif name not in message:
        problems.append("does not name the file")
    if "object at 0x" in message:
        problems.append("carries an object repr")
    if not message.strip():
        problems.append("is empty")
    if problems:
        raise AssertionError(f"{type(exc).__name__} message {', '.join(problems)}: {message!r}")


@pytest.fixture(scope="module")
def scan() -> Scan:
    return _scan()


@pytest.fixture(scope="module")
def fuzz_samples(scan: Scan) -> dict[str, Sample]:
    require_samples()
    return _samples(scan)


def test_every_mutant_is_read_or_refused_with_one_clear_line(scan: Scan, fuzz_samples: dict[str, Sample]) -> None:
    readers = _readers(scan)
    # The unmutated samples are read: the harness itself must not refuse good files.
    for key, sample in fuzz_samples.items():
        if key not in ("ct_dicom",):
            readers[key](sample.name, sample.data)
    failures: list[str] = []
    outcomes = {"read": 0, "refused": 0}
    for key, what, data in mutants(fuzz_samples):
        name = fuzz_samples[key].name
        try:
            readers[key](name, data)
            outcomes["read"] += 1
        except InputRejected as exc:
            outcomes["refused"] += 1
            try:
                _check_refusal(name, exc)
            except AssertionError as problem:
                failures.append(f"{what}: {problem}")
        except Exception as exc:  # noqa: BLE001 - the point of the test: nothing else may escape
            failures.append(f"{what}: escaped as {type(exc).__module__}.{type(exc).__name__}: {exc}")
    assert not failures, f"{len(failures)} mutant(s) not handled:\n" + "\n".join(failures)
    assert sum(outcomes.values()) == MUTANTS_PER_SAMPLE * len(fuzz_samples)
    assert outcomes["refused"] > outcomes["read"] > 0, outcomes  # most mutants are damaged beyond use


# ---- the CLI -------------------------------------------------------------------------------

RADIOGRAPHS = ("png", "jpeg", "dicom", "ct_dicom")


def _cli_batch(fuzz_samples: dict[str, Sample], folder: Path) -> tuple[list[Path], dict[Path, str | None]]:
    """A folder of mutants, each with what ``load_image`` says of it under the CLI's limits (None:
    it is read), and a good radiograph last. Mostly refused ones: every analysed file costs seconds."""
    from core.settings import load_settings

    settings = load_settings()
    limits = dict(max_bytes=settings.max_upload_mb * 1_000_000, max_pixels=settings.max_image_pixels, hash_key=KEY)
    refused = {key: 0 for key in RADIOGRAPHS}
    read, others = 0, set()
    expected: dict[Path, str | None] = {}
    for n, (key, _, data) in enumerate(mutants(fuzz_samples)):
        path = folder / f"{n:03d}_{fuzz_samples[key].name}"
        if key not in RADIOGRAPHS:
            if key in others:
                continue
            others.add(key)  # one volume or mask mutant of each kind: the CLI says it is no radiograph
        try:
            load_image(data, path.name, **limits)
            outcome = None
        except InputRejected as exc:
            outcome = str(exc)
        if key in RADIOGRAPHS:
            if outcome is None and read >= 1:
                continue
            if outcome is not None and refused[key] >= 7:
                continue
            read += outcome is None
            refused[key] += outcome is not None
        path.write_bytes(data)
        expected[path] = outcome
    good = folder / "zzz_good_chest.png"
    good.write_bytes(fuzz_samples["png"].data)
    expected[good] = None
    return sorted(expected), expected


def test_the_cli_refuses_each_damaged_file_in_one_line_and_goes_on(
    fuzz_samples: dict[str, Sample], tmp_path: Path
) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    files, expected = _cli_batch(fuzz_samples, folder)
    assert files[-1].name == "zzz_good_chest.png"
    refused = [path for path in files if expected[path] is not None]
    assert len(refused) >= 25
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "ALLOW_UNTRAINED_WEIGHTS": "1"}  # REVIEW_DATA_DIR: a tmp dir
    done = subprocess.run(
        [sys.executable, "-m", "inference", "analyze", *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT,
        timeout=600,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    for noise in ("pydicom", "nibabel", "PIL", "Warning:"):
        assert noise not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1  # some files were refused: the CLI's exit status for a partial failure
    lines = done.stdout.splitlines()
    for path in refused:
        mine = [line for line in lines if line.startswith(f"{path}")]
        assert mine == [f"{path}: ERROR: {expected[path]}"], mine
    starts = {}
    for path in files:
        if expected[path] is None:  # read: analysed, its result header then the 18 findings
            (start,) = [i for i, line in enumerate(lines) if line.startswith(f"{path} (")]
            block = lines[start + 1 : start + 20]
            assert sum(1 for line in block if line.startswith("  ") and "UNTRAINED" not in line) == 18, block
            starts[path] = start
        else:
            starts[path] = lines.index(f"{path}: ERROR: {expected[path]}")
    # In the order given, the good file last: nothing stopped the batch before it.
    assert list(starts.values()) == sorted(starts.values())
