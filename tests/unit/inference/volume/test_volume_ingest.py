"""NIfTI ingest, zip safety, MRI channel assignment and CT/MR windowing."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import struct
import time
import tracemalloc
import zipfile
import zlib

import nibabel as nib
import numpy as np
import pytest

from core.errors import (
    ChannelAssignmentError,
    CorruptImage,
    EmptyInput,
    FormatMismatch,
    GridMismatch,
    InputTooLarge,
    NotAVolume,
    UnsafeArchive,
    UnsupportedFormat,
)
from inference.volume.archive import unpack_zip
from inference.volume.ingest import (
    BRATS_CHANNELS,
    assign_mri_channels,
    files_from_path,
    load_mri_channels,
    load_nifti,
    load_volume,
)
from inference.volume.nifti import guess_modality
from inference.volume.types import Volume
from inference.volume.windowing import CT_PRESETS, default_ct_preset, percentile_window, window_to_uint8
from tests.conftest import SAMPLES, require_samples

MNI = SAMPLES / "mri" / "mni152_t1.nii.gz"
KEY = b"test-key-0123456789abcdef"
LIMITS = dict(max_bytes=50_000_000, max_voxels=20_000_000)


def nifti_bytes(data: np.ndarray, affine: np.ndarray | None = None, *, gz: bool = False, **header) -> bytes:
    image = nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]) if affine is None else affine)
    for key, value in header.items():
        image.header[key] = value
    raw = image.to_bytes()
    return gzip.compress(raw, compresslevel=1) if gz else raw


@pytest.fixture(scope="module")
def mni_bytes() -> bytes:
    require_samples()
    if not MNI.is_file():
        pytest.skip(f"{MNI} not found")
    return MNI.read_bytes()


@pytest.fixture(scope="module")
def mni(mni_bytes: bytes) -> Volume:
    return load_nifti(mni_bytes, "uploads/mni152_t1.nii.gz", **LIMITS)


# ---- NIfTI ---------------------------------------------------------------------------------


def test_mni_sample_loads_as_canonical_mr(mni: Volume, mni_bytes: bytes) -> None:
    assert mni.shape == (197, 233, 189)
    assert mni.spacing_mm == pytest.approx((1.0, 1.0, 1.0))
    assert mni.original_axcodes == "RAS"
    assert mni.modality == "MR"
    assert mni.source_format == "nifti"
    assert mni.description == "mni152_t1.nii.gz"
    assert mni.input_sha256 == hashlib.sha256(mni_bytes).hexdigest()
    assert mni.data.dtype == np.float32 and not mni.data.flags.writeable
    reference = nib.load(MNI)
    np.testing.assert_array_equal(mni.data, reference.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(mni.affine, reference.affine)


@pytest.mark.parametrize("axcodes", ["LPS", "ASR"])
def test_reoriented_copy_comes_out_identical(mni: Volume, axcodes: str) -> None:
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    image = nib.load(MNI)
    stored = image.as_reoriented(ornt_transform(io_orientation(image.affine), axcodes2ornt(axcodes)))
    assert "".join(nib.aff2axcodes(stored.affine)) == axcodes
    volume = load_nifti(stored.to_bytes(), f"mni_{axcodes}.nii", **LIMITS)
    assert volume.original_axcodes == axcodes
    np.testing.assert_array_equal(volume.data, mni.data)
    np.testing.assert_allclose(volume.affine, mni.affine, atol=1e-6)


def test_scaling_is_applied_and_ct_is_recognised() -> None:
    stored = np.full((6, 6, 6), 500, dtype=np.int16)
    stored[:2] = -500  # air once scaled: -1000 HU
    volume = load_nifti(nifti_bytes(stored, scl_slope=2.0, scl_inter=0.0), "head_ct.nii", **LIMITS)
    assert set(np.unique(volume.data)) == {-1000.0, 1000.0}
    assert volume.modality == "CT"
    assert guess_modality(np.linspace(0, 900, 1000)) == "MR"
    assert guess_modality(np.linspace(-1024, 2000, 1000)) == "CT"


def _huge_header(nifti2: bool, dims: tuple[int, ...]) -> bytes:
    header = nib.Nifti2Header() if nifti2 else nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape(dims)
    header["vox_offset"] = 544 if nifti2 else 352
    return header.binaryblock + b"\x00" * 4 + b"\x01\x02" * 8  # a few bytes of "voxels"


@pytest.mark.parametrize(
    "nifti2, dims, claim",
    [
        (True, (40000, 40000, 900), "40000x40000x900 voxels (5.8 TB)"),
        (False, (32767, 32767, 900), "32767x32767x900 voxels (3.9 TB)"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_huge_header_is_refused_without_allocating(nifti2: bool, dims, claim: str, gz: bool) -> None:
    data = _huge_header(nifti2, dims)
    data = gzip.compress(data) if gz else data
    tracemalloc.start()
    try:
        with pytest.raises(InputTooLarge) as info:
            load_nifti(data, "brain.nii.gz" if gz else "brain.nii", max_bytes=10**9, max_voxels=500_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert f"The NIfTI header of brain.nii{'.gz' if gz else ''} claims {claim}" in message
    assert "the limit is 2.0 GB" in message
    assert peak < 5_000_000


def test_gzip_bomb_is_refused_while_inflating() -> None:
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_data_shape((64, 64, 64))  # declares 262 kB of voxels...
    header["vox_offset"] = 352
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = compressor.compress(header.binaryblock + b"\x00" * 4)
    zeros = b"\x00" * 1_000_000
    for _ in range(40):  # ...but inflates to 40 MB
        bomb += compressor.compress(zeros)
    bomb += compressor.flush()
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(
            InputTooLarge, match=r"bomb.nii.gz decompresses to more than the 262.5 kB its header declares"
        ):
            load_nifti(bomb, "bomb.nii.gz", **LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12_000_000


@pytest.mark.parametrize(
    "patch, what",
    [
        ({"datatype": 9999}, "datatype code 9999"),
        ({"datatype": 32, "bitpix": 64}, "complex64"),
        ({"datatype": 128, "bitpix": 24}, "RGB"),
    ],
)
def test_unsupported_datatypes_are_named(patch: dict, what: str) -> None:
    header = nib.Nifti1Header()
    header.set_data_shape((4, 4, 4))
    header["vox_offset"] = 352
    for key, value in patch.items():
        header[key] = value
    data = header.binaryblock + b"\x00" * (4 + 4 * 4 * 4 * 16)
    with pytest.raises(UnsupportedFormat, match=f"odd.nii stores its voxels as {what}"):
        load_nifti(data, "odd.nii", **LIMITS)


def test_complex_image_written_by_nibabel_is_refused() -> None:
    data = nib.Nifti1Image(np.zeros((4, 4, 4), np.complex64), np.eye(4)).to_bytes()
    with pytest.raises(UnsupportedFormat, match="complex64"):
        load_nifti(data, "phase.nii", **LIMITS)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((8, 8, 1), r"slice.nii is a single 2D slice \(shape 8x8x1\)"),
        ((8, 8), r"slice.nii is a single 2D slice \(shape 8x8\)"),
        ((8, 8, 8, 3), r"slice.nii holds 3 volumes \(shape 8x8x8x3\)"),
    ],
)
def test_2d_and_4d_are_not_volumes(shape, message: str) -> None:
    with pytest.raises(NotAVolume, match=message):
        load_nifti(nifti_bytes(np.ones(shape, np.float32)), "slice.nii", **LIMITS)


def test_4d_with_one_volume_is_squeezed() -> None:
    data = np.arange(8 * 9 * 10, dtype=np.float32).reshape(8, 9, 10, 1)
    volume = load_nifti(nifti_bytes(data, gz=True), "one.nii.gz", **LIMITS)
    assert volume.shape == (8, 9, 10)
    np.testing.assert_array_equal(volume.data, data[..., 0])
    assert volume.spacing_mm == pytest.approx((2.0, 2.0, 3.0))


def test_nan_voxels_are_refused_with_their_place() -> None:
    data = np.ones((5, 6, 7), np.float32)
    data[1, 2, 3] = np.nan
    data[4, 4, 4] = np.inf
    with pytest.raises(
        CorruptImage, match=r"nan.nii has 2 voxel\(s\) that are NaN or infinite \(the first at voxel \(1, 2, 3\)"
    ):
        load_nifti(nifti_bytes(data), "nan.nii", **LIMITS)


def test_name_says_nifti_but_bytes_do_not() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 500
    with pytest.raises(FormatMismatch, match="scan.nii.gz is named as a NIfTI file"):
        load_volume([("scan.nii.gz", png)], **LIMITS, hash_key=KEY)
    with pytest.raises(NotAVolume, match="archive.tar.gz is gzip-compressed but holds no NIfTI"):
        load_volume([("archive.tar.gz", gzip.compress(b"hello" * 200))], **LIMITS, hash_key=KEY)


def test_truncated_nifti_is_refused() -> None:
    data = nifti_bytes(np.random.default_rng(0).random((10, 10, 10), np.float32))
    with pytest.raises(CorruptImage, match="cut.nii is truncated"):
        load_nifti(data[:-100], "cut.nii", **LIMITS)
    packed = gzip.compress(data)
    with pytest.raises(CorruptImage, match="cut.nii.gz is truncated: its header declares 4.4 kB"):
        load_nifti(packed[: len(packed) // 2], "cut.nii.gz", **LIMITS)
    with pytest.raises(CorruptImage, match="cut.nii.gz is truncated: the gzip stream ends"):
        load_nifti(packed[:60], "cut.nii.gz", **LIMITS)


# ---- the entry point -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, data, error, message",
    [
        ("photo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, NotAVolume, "photo.png is a PNG image, not a 3D scan"),
        ("report.pdf", b"%PDF-1.7\n" + b"x" * 100, NotAVolume, "report.pdf is a PDF document, not a 3D scan"),
        ("blank.nii", b"", EmptyInput, "blank.nii is empty"),
    ],
)
def test_load_volume_refuses_what_is_not_a_scan(name: str, data: bytes, error, message: str) -> None:
    with pytest.raises(error, match=message):
        load_volume([(name, data)], **LIMITS, hash_key=KEY)


def test_load_volume_routes_nifti_and_refuses_nothing_or_mixtures() -> None:
    data = nifti_bytes(np.ones((4, 5, 6), np.int16), gz=True)
    assert load_volume([("a.nii.gz", data)], **LIMITS, hash_key=KEY).shape == (4, 5, 6)
    with pytest.raises(EmptyInput):
        load_volume([], **LIMITS, hash_key=KEY)
    with pytest.raises(NotAVolume, match="b.nii.gz is a NIfTI file uploaded together with 1 other"):
        load_volume([("x.dcm", b"\x00" * 200), ("b.nii.gz", data)], **LIMITS, hash_key=KEY)
    with pytest.raises(InputTooLarge, match="over the 1.0 kB limit"):
        load_volume([("a.nii.gz", data * 20)], max_bytes=1000, max_voxels=10**6, hash_key=KEY)


def test_files_from_path_reads_a_folder_recursively(tmp_path) -> None:
    (tmp_path / "series" / "sub").mkdir(parents=True)
    (tmp_path / "series" / "a.dcm").write_bytes(b"a" * 10)
    (tmp_path / "series" / "sub" / "b.dcm").write_bytes(b"b" * 10)
    (tmp_path / "series" / ".DS_Store").write_bytes(b"junk")
    files = files_from_path(tmp_path / "series", max_bytes=100)
    assert files == [("a.dcm", b"a" * 10), ("sub/b.dcm", b"b" * 10)]
    assert files_from_path(tmp_path / "series" / "a.dcm", max_bytes=100) == [("a.dcm", b"a" * 10)]
    with pytest.raises(InputTooLarge, match="2 file\\(s\\) totalling 20 bytes"):
        files_from_path(tmp_path / "series", max_bytes=15)
    with pytest.raises(EmptyInput, match="does not exist"):
        files_from_path(tmp_path / "nothing", max_bytes=100)


# ---- zip safety ----------------------------------------------------------------------------


def make_zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


ZIP_LIMITS = dict(max_total_bytes=10_000, max_member_bytes=5_000)


def test_zip_members_come_back_without_folders_and_junk() -> None:
    data = make_zip({"s/": b"", "s/1.dcm": b"one", "s/2.dcm": b"two", "__MACOSX/s/._1.dcm": b"x", "s/.DS_Store": b"x"})
    assert unpack_zip(data, **ZIP_LIMITS) == [("s/1.dcm", b"one"), ("s/2.dcm", b"two")]


@pytest.mark.parametrize(
    "name", ["../evil.dcm", "series/../../evil.dcm", "/etc/passwd", "C:\\evil.dcm", "a\\..\\..\\b"]
)
def test_zip_path_traversal_is_refused_naming_the_member(name: str) -> None:
    with pytest.raises(UnsafeArchive) as info:
        unpack_zip(make_zip({"ok.dcm": b"1", name: b"2"}), **ZIP_LIMITS)
    assert repr(name) in str(info.value)


def test_zip_limits_on_members_and_sizes() -> None:
    with pytest.raises(UnsafeArchive, match="6 entries, more than the 5 allowed"):
        unpack_zip(make_zip({f"{i}.dcm": b"x" for i in range(6)}), max_members=5, **ZIP_LIMITS)
    with pytest.raises(UnsafeArchive, match="big.dcm declares 6.0 kB unpacked, over the 5.0 kB limit"):
        unpack_zip(make_zip({"big.dcm": b"\x00" * 6_000}), **ZIP_LIMITS)
    with pytest.raises(UnsafeArchive, match="more than 10.0 kB unpacked \\(reached at 2.dcm\\)"):
        unpack_zip(make_zip({f"{i}.dcm": b"\x00" * 4_000 for i in range(4)}), **ZIP_LIMITS)


def _patch_sizes(data: bytes, size: int) -> bytes:
    """Make the zip lie: declare ``size`` uncompressed bytes in both the local and central headers."""
    out = bytearray(data)
    struct.pack_into("<I", out, 22, size)  # local file header: uncompressed size
    central = out.find(b"PK\x01\x02")
    struct.pack_into("<I", out, central + 24, size)
    return bytes(out)


def test_zip_member_larger_than_declared_is_refused() -> None:
    data = _patch_sizes(make_zip({"liar.dcm": b"\x00" * 200_000}), 100)
    with pytest.raises(UnsafeArchive, match="liar.dcm is damaged or does not match the size its header declares"):
        unpack_zip(data, max_total_bytes=10**6, max_member_bytes=10**6)


def test_encrypted_and_non_zip_are_refused() -> None:
    data = bytearray(make_zip({"secret.dcm": b"x" * 100}))
    data[6] |= 0x1  # local header flag: encrypted
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 0x1
    with pytest.raises(UnsupportedFormat, match="secret.dcm is password-protected"):
        unpack_zip(bytes(data), **ZIP_LIMITS)
    with pytest.raises(UnsupportedFormat, match="not a readable zip"):
        unpack_zip(b"not a zip at all", **ZIP_LIMITS)


# ---- MRI channels --------------------------------------------------------------------------


def test_brats_2021_names_including_t1ce_and_seg() -> None:
    names = [f"BraTS2021_00000_{s}.nii.gz" for s in ("flair", "seg", "t1", "t1ce", "t2")]
    assert assign_mri_channels(names) == {
        "t1c": "BraTS2021_00000_t1ce.nii.gz",
        "t1": "BraTS2021_00000_t1.nii.gz",
        "t2": "BraTS2021_00000_t2.nii.gz",
        "flair": "BraTS2021_00000_flair.nii.gz",
    }


def test_brats_2023_names_send_t2f_to_flair() -> None:
    names = [f"BraTS-GLI-00000-000-{s}.nii.gz" for s in ("t2f", "t2w", "t1n", "t1c")]
    assert assign_mri_channels(names) == {
        "t1c": "BraTS-GLI-00000-000-t1c.nii.gz",
        "t1": "BraTS-GLI-00000-000-t1n.nii.gz",
        "t2": "BraTS-GLI-00000-000-t2w.nii.gz",
        "flair": "BraTS-GLI-00000-000-t2f.nii.gz",
    }
    assert (
        assign_mri_channels(["X_T1CE.NII.GZ", "X_T1.nii", "x-T2W.nii.gz", "dir/x_FLAIR.nii.gz"])["flair"]
        == "dir/x_FLAIR.nii.gz"
    )


def test_missing_and_ambiguous_channels_say_what_matched_what() -> None:
    with pytest.raises(ChannelAssignmentError) as info:
        assign_mri_channels(["a_t1ce.nii.gz", "a_t1.nii.gz", "a_t2.nii.gz", "b_t2w.nii.gz", "notes.txt"])
    message = str(info.value)
    assert "T1c: a_t1ce.nii.gz" in message and "T1: a_t1.nii.gz" in message
    assert "T2: a_t2.nii.gz, b_t2w.nii.gz (ambiguous" in message
    assert "FLAIR: no file" in message and "not recognised: notes.txt" in message


def _channels(shapes: dict[str, tuple[int, ...]] | None = None, shift: dict[str, float] | None = None):
    files = {}
    for i, channel in enumerate(BRATS_CHANNELS):
        shape = (shapes or {}).get(channel, (8, 9, 10))
        affine = np.diag([1.0, 1.0, 1.0, 1.0])
        affine[0, 3] = (shift or {}).get(channel, 0.0)
        files[channel] = (f"case_{channel}.nii.gz", nifti_bytes(np.full(shape, i + 1, np.int16), affine, gz=True))
    return files


def test_channels_load_in_fixed_order() -> None:
    files = _channels()
    volume = load_mri_channels(files, **LIMITS, hash_key=KEY)
    assert volume.channel_names == ("t1c", "t1", "t2", "flair")
    assert [float(v.data[0, 0, 0]) for v in volume.channels] == [1.0, 2.0, 3.0, 4.0]
    assert all(v.modality == "MR" for v in volume.channels)
    hashes = "".join(hashlib.sha256(files[c][1]).hexdigest() for c in BRATS_CHANNELS)
    assert volume.input_sha256 == hashlib.sha256(hashes.encode()).hexdigest()


def test_channels_on_different_grids_are_refused_naming_both() -> None:
    with pytest.raises(GridMismatch) as info:
        load_mri_channels(_channels(shapes={"flair": (8, 9, 12)}), **LIMITS)
    message = str(info.value)
    assert (
        "FLAIR (case_flair.nii.gz) is 8x9x12 voxels" in message and "T1c (case_t1c.nii.gz) is 8x9x10 voxels" in message
    )
    with pytest.raises(
        GridMismatch, match=r"T2 \(case_t2.nii.gz\) and T1c \(case_t1c.nii.gz\) .* differ by up to 2 mm"
    ):
        load_mri_channels(_channels(shift={"t2": 2.0}), **LIMITS)


# ---- windowing -----------------------------------------------------------------------------


def test_ct_presets() -> None:
    assert CT_PRESETS == {
        "Brain": (40, 80),
        "Subdural": (75, 215),
        "Stroke": (40, 40),
        "Lung": (-600, 1500),
        "Bone": (300, 1500),
        "Soft tissue": (40, 400),
    }


def test_window_to_uint8_maps_the_window_linearly() -> None:
    hu = np.array([[-1000, 0, 40, 80, 1000]], dtype=np.float32)
    out = window_to_uint8(hu, *CT_PRESETS["Brain"])
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 0, 128, 255, 255]]
    lung = window_to_uint8(np.array([-1350, -600, 150], np.float32), *CT_PRESETS["Lung"])
    assert lung.tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match="width 0"):
        window_to_uint8(hu, 40, 0)


def test_window_is_fast_on_a_brats_slice() -> None:
    slice_ = np.random.default_rng(0).normal(300, 200, (240, 240)).astype(np.float32)
    window_to_uint8(slice_, 300, 600)
    start = time.perf_counter()
    for _ in range(50):
        window_to_uint8(slice_, 300, 600)
    assert (time.perf_counter() - start) / 50 < 0.01  # generous: a scroll must not lag


def test_percentile_window_ignores_background() -> None:
    data = np.zeros((20, 20, 20), np.float32)
    data[5:15, 5:15, 5:15] = np.linspace(100, 300, 1000).reshape(10, 10, 10)
    level, width = percentile_window(data)
    assert level == pytest.approx(200, abs=1)
    assert width == pytest.approx(200 * 0.99, abs=2)
    assert percentile_window(np.zeros((4, 4, 4))) == (0.0, 1.0)


def _volume(modality: str, shape: tuple[int, int, int], spacing: float | tuple[float, float, float]) -> Volume:
    data = np.linspace(-1000, 1000, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    x_mm, y_mm, z_mm = spacing if isinstance(spacing, tuple) else (1.0, 1.0, spacing)
    return Volume(
        data=data,
        affine=np.diag([x_mm, y_mm, z_mm, 1.0]),
        modality=modality,
        source_format="nifti",
        input_sha256="0" * 64,
        description="test",
        original_axcodes="RAS",
    )


def test_default_ct_preset_by_extent() -> None:
    assert default_ct_preset(_volume("CT", (4, 4, 30), 5.0)) == "Brain"  # 150 mm: a head
    assert default_ct_preset(_volume("CT", (4, 4, 80), 5.0)) == "Soft tissue"  # 400 mm: a body
    # A whole-body CT slab: 200 mm long but 500 mm across (512 x 0.98 mm) is a body, not a head.
    assert default_ct_preset(_volume("CT", (512, 512, 40), (0.98, 0.98, 5.0))) == "Soft tissue"
    assert default_ct_preset(_volume("CT", (512, 512, 30), (0.45, 0.45, 5.0))) == "Brain"  # 230 mm across


# ---- damaged uploads: one line naming the file ----------------------------------------------


def test_a_zip_whose_directory_points_before_its_start_is_refused_naming_it() -> None:
    # A central directory said to be larger than the whole file: zipfile seeks to a negative offset.
    data = bytearray(make_zip({"s/1.dcm": b"one", "s/2.dcm": b"two"}))
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<I", data, end + 12, 0x7FFFFFFF)
    with pytest.raises(UnsupportedFormat) as refused:
        load_volume([("series.zip", bytes(data))], **LIMITS, hash_key=KEY)
    assert str(refused.value).startswith("series.zip is not a readable zip archive")
    assert "seek" not in str(refused.value)


def test_a_damaged_zip_member_is_named_with_its_zip() -> None:
    data = bytearray(make_zip({"s/1.dcm": b"x" * 5000}, zipfile.ZIP_STORED))
    data[100] ^= 0xFF  # inside the member's data: its checksum no longer matches
    with pytest.raises(UnsafeArchive) as refused:
        load_volume([("series.zip", bytes(data))], **LIMITS, hash_key=KEY)
    message = str(refused.value)
    assert message.startswith("In series.zip, the zip member s/1.dcm is damaged") and "\n" not in message
    assert "its checksum does not match its content" in message


def test_a_nifti_header_with_a_garbled_size_field_is_refused_naming_it() -> None:
    data = bytearray(nifti_bytes(np.ones((4, 5, 6), np.int16)))
    data[0:4] = b"\xff\x00\x00\x01"  # sizeof_hdr: nibabel would guess the byte order from it
    with pytest.raises(CorruptImage, match=r"^The NIfTI header of bad.nii is damaged: its header size field"):
        load_volume([("bad.nii", bytes(data))], **LIMITS, hash_key=KEY)


def test_nibabels_header_fixes_apply_without_printing(caplog) -> None:
    # A negative pixdim is fixed (as nibabel does when loading) and nothing is said about it:
    # nibabel's own logger prints straight to stderr, past the CLI's one line per file.
    data = nifti_bytes(np.arange(60, dtype=np.int16).reshape(3, 4, 5), np.diag([2.0, 2.0, 3.0, 1.0]))
    raw = bytearray(data)
    struct.pack_into("<f", raw, 80, -2.0)  # pixdim[1]
    with caplog.at_level(logging.DEBUG):
        volume = load_nifti(bytes(raw), "fixable.nii", **LIMITS)
    assert volume.shape == (3, 4, 5)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("nibabel")] == []
