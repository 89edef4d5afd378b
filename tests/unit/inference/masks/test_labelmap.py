"""Uploaded masks: NIfTI label maps and DICOM SEG onto a volume's grid, legends, refusals."""

from __future__ import annotations

import copy
import gzip
import io
import json
import logging

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import pack_bits

from core.errors import CorruptImage, EmptyInput, GridMismatch, InputTooLarge, NotAVolume, UnsupportedFormat
from inference.masks.load import load_label_map
from inference.volume.measure import measure_structures
from inference.volume.types import Volume, read_only
from tests.conftest import SAMPLES, require_samples

MRI = SAMPLES / "mri"
LIMITS = {"max_bytes": 50_000_000, "max_voxels": 20_000_000}


def _volume(shape, affine, axcodes="RAS") -> Volume:
    return Volume(
        data=read_only(np.zeros(shape, dtype=np.float32)),
        affine=read_only(np.asarray(affine, dtype=np.float64)),
        modality="MR",
        source_format="nifti",
        input_sha256="0" * 64,
        description="test volume",
        original_axcodes=axcodes,
    )


def _nifti(array, affine, gz=True) -> bytes:
    data = nib.Nifti1Image(array, affine).to_bytes()
    return gzip.compress(data, compresslevel=1) if gz else data  # fast: the tests are about content


@pytest.fixture(scope="module")
def mni():
    """The MNI T1 grid as a Volume, and the grey-matter probability map (0..255) on it."""
    require_samples()
    t1 = nib.as_closest_canonical(nib.load(MRI / "mni152_t1.nii.gz"))
    volume = _volume(t1.shape, t1.affine)
    gm_bytes = (MRI / "mni152_gm_prob.nii.gz").read_bytes()
    gm = np.asarray(nib.as_closest_canonical(nib.load(MRI / "mni152_gm_prob.nii.gz")).dataobj)
    return volume, gm_bytes, gm


@pytest.fixture
def small():
    """A 10x12x8 grid at 1.5x1.5x3 mm with labels 1 and 3 as uncompressed NIfTI bytes."""
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    affine[:3, 3] = (-7.0, 4.0, 20.0)
    mask = np.zeros((10, 12, 8), dtype=np.uint8)
    mask[1:4, 2:5, 1:3] = 1
    mask[6:9, 6:10, 4:7] = 3
    return _volume(mask.shape, affine), mask, _nifti(mask, affine, gz=False)


def test_gm_probability_map_thresholded(mni):
    volume, gm_bytes, gm = mni
    result = load_label_map([("mni152_gm_prob.nii.gz", gm_bytes)], volume, threshold=128, **LIMITS)
    assert [(i.value, i.name) for i in result.labels] == [(1, "Label 1")]
    assert result.data.dtype == np.uint8 and not result.data.flags.writeable
    assert np.array_equal(result.data, gm >= 128)
    assert np.array_equal(result.affine, volume.affine)
    assert result.source == "uploaded:mni152_gm_prob.nii.gz"
    # The identity covers what shaped the mask: another threshold or a legend is another mask.
    other = load_label_map([("mni152_gm_prob.nii.gz", gm_bytes)], volume, threshold=64, **LIMITS)
    assert other.sha256 != result.sha256 and other.data.sum() > result.data.sum()
    named = load_label_map(
        [("mni152_gm_prob.nii.gz", gm_bytes)],
        volume,
        threshold=128,
        legend=("l.json", b'{"1": "Grey matter"}'),
        **LIMITS,
    )
    assert named.sha256 not in (result.sha256, other.sha256)
    (gm_ml,) = measure_structures(result.data, result.affine, result.structures)
    # The template's grey matter at p >= 0.5 measures 1079.6 mL (a smoothed average brain).
    assert 900 < gm_ml.volume_ml < 1300


def test_probability_maps_without_threshold_are_refused(mni):
    volume, gm_bytes, gm = mni
    with pytest.raises(NotAVolume, match="probability map.*threshold"):
        load_label_map([("gm.nii.gz", gm_bytes)], volume, **LIMITS)
    as_float = _nifti((gm / 255.0).astype(np.float32), volume.affine)
    with pytest.raises(NotAVolume, match=r"fractional values .*probability map.*Threshold it"):
        load_label_map([("gm_float.nii.gz", as_float)], volume, **LIMITS)
    thresholded = load_label_map([("gm_float.nii.gz", as_float)], volume, threshold=0.5, **LIMITS)
    assert np.array_equal(thresholded.data, gm >= 128)
    with pytest.raises(NotAVolume, match="threshold 128 .* 0 to 1"):
        load_label_map([("gm_float.nii.gz", as_float)], volume, threshold=128, **LIMITS)


def test_lps_and_permuted_masks_match_the_ras_mask(mni):
    volume, _, gm = mni
    mask = np.where(gm >= 128, 1, np.where(gm >= 64, 2, 0)).astype(np.int16)
    ras = nib.Nifti1Image(mask, volume.affine)
    expected = load_label_map([("ras.nii.gz", _nifti(mask, volume.affine))], volume, **LIMITS)
    for ornt in ([[0, -1], [1, -1], [2, 1]], [[1, 1], [2, -1], [0, 1]]):  # LPS, and axes swapped too
        stored = ras.as_reoriented(np.array(ornt))
        assert nib.aff2axcodes(stored.affine) != ("R", "A", "S")
        data = stored.to_bytes()
        loaded = load_label_map([("other.nii", data)], volume, **LIMITS)
        assert np.array_equal(loaded.data, expected.data)
        assert min(loaded.data.strides) > 0  # the flipped view was copied, not kept
    assert [i.value for i in expected.labels] == [1, 2]


def test_cropped_or_shifted_mask_is_refused(mni):
    volume, _, gm = mni
    cropped = (gm[8:190, 7:225, 3:185] >= 128).astype(np.uint8)
    with pytest.raises(GridMismatch) as refused:
        load_label_map([("crop.nii.gz", _nifti(cropped, volume.affine))], volume, **LIMITS)
    message = str(refused.value)
    assert "182x218x182 at 1.0 mm" in message and "197x233x189 at 1.0 mm" in message
    assert "export the mask on the image's grid" in message
    shifted = volume.affine.copy()
    shifted[0, 3] += 2.0
    with pytest.raises(GridMismatch, match="lies up to 2 mm away"):
        load_label_map([("shift.nii.gz", _nifti((gm >= 128).astype(np.uint8), shifted))], volume, **LIMITS)


def test_legend_formats_name_and_colour_labels(small):
    volume, _, data = small
    legends = {
        "legend.json": json.dumps({"1": "Liver", "2": {"name": "Spleen", "color": [1, 2, 3]}}),
        "list.json": json.dumps([{"value": 1, "name": "Liver"}, {"value": 2, "name": "Spleen", "color": "#010203"}]),
        "dataset.json": json.dumps({"labels": {"background": 0, "Liver": 1, "Spleen": 2}, "name": "x"}),
        "legend.csv": "value,name,r,g,b\n1,Liver,10,20,30\n2,Spleen,1,2,3\n",
        "labels.txt": '# ITK-SNAP\n0 0 0 0 0 0 0 "Clear Label"\n1 10 20 30 1 1 1 "Liver"\n2 1 2 3 1 1 1 "Spleen"\n',
    }
    for name, text in legends.items():
        result = load_label_map([("m.nii", data)], volume, legend=(name, text.encode()), **LIMITS)
        # 3 is in the mask but not the legend; 2 (Spleen) is declared but has no voxels.
        assert [(i.value, i.name) for i in result.labels] == [(1, "Liver"), (2, "Spleen"), (3, "Label 3")], name
        assert [s.values for s in result.structures] == [(1,), (2,), (3,)]
        if name not in ("dataset.json",):
            assert result.label(2).color == (1, 2, 3), name
    plain = load_label_map([("m.nii", data)], volume, **LIMITS)
    assert [i.name for i in plain.labels] == ["Label 1", "Label 3"]
    assert plain.label(1).color != plain.label(3).color
    assert plain.labels == load_label_map([("m.nii", data)], volume, **LIMITS).labels  # deterministic
    spleen = measure_structures(result.data, result.affine, result.structures)[1]
    assert (spleen.name, spleen.voxels, spleen.volume_ml) == ("Spleen", 0, 0.0)


def test_bad_legends_are_refused_with_the_line(small):
    volume, _, data = small
    for legend, pattern in (
        ("value;name\n1;Liver\n", "not JSON, CSV"),
        ("label,title\n1,Liver\n", "needs a header row 'value,name'"),
        ('{"x": "Liver"}', "'x' that is not a whole number"),
        ("value,name\n70000,Big\n", "70000 outside 0..65535"),
        ("value,name,r,g,b\n1,Liver,300,0,0\n", "use three numbers 0-255"),
    ):
        with pytest.raises(UnsupportedFormat, match=pattern):
            load_label_map([("m.nii", data)], volume, legend=("legend.txt", legend.encode()), **LIMITS)


def test_nifti_refusals(small):
    volume, mask, data = small
    affine = volume.affine
    with pytest.raises(NotAVolume, match="negative values .* -1024"):
        load_label_map([("ct.nii", _nifti(mask.astype(np.int16) - 1024, affine))], volume, **LIMITS)
    with pytest.raises(NotAVolume, match="3D"):
        load_label_map([("4d.nii", _nifti(np.stack([mask, mask], axis=3), affine))], volume, **LIMITS)
    with pytest.raises(InputTooLarge, match="10x12x8"):
        load_label_map([("m.nii", data)], volume, max_bytes=10**6, max_voxels=500)
    with pytest.raises(CorruptImage, match="NaN"):
        load_label_map([("nan.nii", _nifti(np.full(mask.shape, np.nan, np.float32), affine))], volume, **LIMITS)
    with pytest.raises(UnsupportedFormat, match="2 files"):
        load_label_map([("a.nii", data), ("b.nii", data)], volume, **LIMITS)
    with pytest.raises(EmptyInput):
        load_label_map([("a.nii", b"")], volume, **LIMITS)
    with pytest.raises(UnsupportedFormat, match="not a NIfTI label map"):
        load_label_map([("a.png", b"\x89PNG\r\n\x1a\n" + bytes(100))], volume, **LIMITS)
    # Float labels that are whole numbers, and (X, Y, Z, 1) arrays, are ordinary label maps.
    as_float = load_label_map([("f.nii.gz", _nifti(mask[..., None].astype(np.float32), affine))], volume, **LIMITS)
    assert np.array_equal(as_float.data, mask)


# ---- DICOM SEG -------------------------------------------------------------------------------


def _seg_dataset() -> pydicom.Dataset:
    path = get_testdata_file("liver_1frame.dcm")
    if path is None:
        pytest.skip("pydicom's liver_1frame.dcm test file is not installed")
    return pydicom.dcmread(path)


def _seg_grid(ds: pydicom.Dataset, slices: int = 3, shift=(0.0, 0.0, 0.0), scale=1.0) -> Volume:
    """A canonical volume whose voxels are the SEG's pixels (its CT is not available)."""
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    s_row, s_col = (float(v) for v in measures.PixelSpacing)
    first = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    x, y, z = (float(v) for v in first)
    # IOP is (1,0,0, 0,1,0) in LPS: columns run Left, rows Posterior, so RAS indices count backwards.
    affine = np.diag([s_col * scale, s_row, float(measures.SliceThickness), 1.0])
    affine[:3, 3] = (-x - (ds.Columns - 1) * s_col + shift[0], -y - (ds.Rows - 1) * s_row + shift[1], z + shift[2])
    return _volume((ds.Columns, ds.Rows, slices), affine, axcodes="LPS")


def _seg_bytes(ds: pydicom.Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_dicom_seg_lands_on_the_grid():
    ds = _seg_dataset()
    data = _seg_bytes(ds)
    result = load_label_map([("liver_seg.dcm", data)], _seg_grid(ds), **LIMITS)
    assert [(i.value, i.name) for i in result.labels] == [(1, "Liver")]
    assert result.label(1).color == (221, 130, 101)  # from RecommendedDisplayCIELabValue
    pixels = ds.pixel_array
    assert int(result.data.sum()) == int(pixels.sum()) == 36233
    # Canonical axis 0 runs against the SEG's columns, axis 1 against its rows.
    assert np.array_equal(result.data[::-1, ::-1, 0].T, pixels)
    assert not result.data[:, :, 1:].any()
    assert result.source == "uploaded:liver_seg.dcm"


@pytest.mark.parametrize(
    "grid, pattern",
    [
        ({"shift": (0.4, 0.0, 0.0)}, "misses the image's voxel centres by up to 0.49 voxel"),
        ({"scale": 0.5}, "does not step one voxel per pixel"),
        ({"shift": (0.0, 0.0, 1.0)}, "falls outside the image"),
    ],
)
def test_dicom_seg_off_the_grid_is_refused(grid, pattern):
    ds = _seg_dataset()
    with pytest.raises(GridMismatch, match=pattern) as refused:
        load_label_map([("liver_seg.dcm", _seg_bytes(ds))], _seg_grid(ds, **grid), **LIMITS)
    assert "512x512" in str(refused.value) and "Export the SEG from this image series" in str(refused.value)


def _multi_frame(ds: pydicom.Dataset, frames: np.ndarray, segments: list[int], fractional: bool) -> pydicom.Dataset:
    """liver_1frame rebuilt with 3 frames (at its 3 planes) and a second segment, "Tumour"."""
    ds = copy.deepcopy(ds)
    tumour = copy.deepcopy(ds.SegmentSequence[0])
    tumour.SegmentNumber, tumour.SegmentLabel = 2, "Tumour"
    del tumour.RecommendedDisplayCIELabValue
    ds.SegmentSequence.append(tumour)
    for item, segment in zip(ds.PerFrameFunctionalGroupsSequence, segments):
        item.SegmentIdentificationSequence[0].ReferencedSegmentNumber = segment
    ds.NumberOfFrames = len(frames)
    if fractional:
        ds.SegmentationType, ds.MaximumFractionalValue = "FRACTIONAL", 200
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelData = frames.astype(np.uint8).tobytes()
    else:
        ds.PixelData = pack_bits(frames.astype(np.uint8))
    return ds


def test_dicom_seg_overlap_and_fractional(caplog):
    base = _seg_dataset()
    frames = np.zeros((3, base.Rows, base.Columns), dtype=np.uint8)
    frames[0, 100:120, 200:230] = 1  # segment 2, plane 0
    frames[1, 110:130, 200:230] = 1  # segment 1, plane 1
    frames[2, 110:125, 200:210] = 1  # segment 1, plane 2
    # Frame order on disk is not segment order: the higher segment number still wins an overlap.
    ds = _multi_frame(base, frames, [2, 1, 1], fractional=False)
    ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence = copy.deepcopy(
        ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence
    )
    with caplog.at_level(logging.WARNING, logger="inference.masks.dicom_seg"):
        result = load_label_map([("two.dcm", _seg_bytes(ds))], _seg_grid(base), **LIMITS)
    assert [(i.value, i.name) for i in result.labels] == [(1, "Liver"), (2, "Tumour")]
    plane0 = result.data[::-1, ::-1, 0].T
    assert int((plane0 == 2).sum()) == 600 and int((plane0 == 1).sum()) == 10 * 30
    assert int((result.data[:, :, 2] == 1).sum()) == 150
    assert "300 voxels belong to more than one segment" in caplog.text

    fractions = np.zeros_like(frames)
    fractions[0, 10:20, 10:20] = 100  # exactly 50% of 200: inside
    fractions[0, 30:40, 10:20] = 99  # just under: outside
    fractions[2, 50:52, 50:53] = 200
    fractional = _seg_bytes(_multi_frame(base, fractions, [1, 2, 2], fractional=True))
    result = load_label_map([("frac.dcm", fractional)], _seg_grid(base), **LIMITS)
    counts = {i.name: int((result.data == i.value).sum()) for i in result.labels}
    assert counts == {"Liver": 100, "Tumour": 6}


def test_other_dicom_is_not_a_seg():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    with pytest.raises(UnsupportedFormat, match="DICOM CT .* not a DICOM SEG"):
        load_label_map([("ct.dcm", _seg_bytes(ds))], _volume((4, 4, 4), np.eye(4)), **LIMITS)


def test_names_are_unique_and_fit_storage():
    from inference.masks.legend import LegendEntry, build_labels

    labels = build_labels([1, 2, 3], {1: LegendEntry("Tumor"), 2: LegendEntry("Tumor"), 3: LegendEntry("x" * 90)})
    names = [info.name for info in labels]
    assert names[:2] == ["Tumor", "Tumor (label 2)"]
    assert len(names[2]) == 64 and names[2].endswith("…")


def test_a_seg_missing_a_required_attribute_is_refused_clearly():
    from core.errors import CorruptImage

    ds = _seg_dataset()
    grid = _seg_grid(ds)
    del ds.SegmentSequence[0].SegmentNumber
    with pytest.raises(CorruptImage, match="liver_seg.dcm is a DICOM SEG with a missing or malformed attribute"):
        load_label_map([("liver_seg.dcm", _seg_bytes(ds))], grid, **LIMITS)


def test_a_malformed_legend_colour_is_refused_clearly(small):
    volume, _mask, data = small
    with pytest.raises(Exception) as caught:
        load_label_map(
            [("m.nii", data)], volume, legend=("l.json", b'{"1": {"name": "A", "color": "#zzzzzz"}}'), **LIMITS
        )
    assert "l.json" in str(caught.value)
    assert type(caught.value).__module__ == "core.errors"


# ---- the one bounded NIfTI reader: the scans' limits apply to label maps ----------------------


def test_a_label_map_gzip_bomb_is_refused_while_inflating(small) -> None:
    import tracemalloc
    import zlib

    volume, mask, _ = small
    header = nib.Nifti1Image(mask, volume.affine).header
    header["vox_offset"] = 352
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = compressor.compress(header.binaryblock + b"\x00" * 4)
    for _ in range(40):  # 960 voxel bytes declared, 40 MB inflated
        bomb += compressor.compress(b"\x00" * 1_000_000)
    bomb += compressor.flush()
    tracemalloc.start()
    try:
        with pytest.raises(
            InputTooLarge, match=r"bomb.nii.gz decompresses to more than the 1.3 kB its header declares"
        ):
            load_label_map([("bomb.nii.gz", bomb)], volume, **LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12_000_000


def test_a_label_map_header_claiming_a_huge_grid_is_refused_before_reading(small) -> None:
    volume, _, _ = small
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_data_shape((30000, 30000, 900))
    header["vox_offset"] = 352
    data = header.binaryblock + b"\x00" * 4 + b"\x01" * 64
    with pytest.raises(
        InputTooLarge, match=r"The NIfTI header of huge.nii claims 30000x30000x900 voxels .*image's grid"
    ):
        load_label_map([("huge.nii", data)], volume, **LIMITS)


@pytest.mark.parametrize("cut", [100, 360, -50])
def test_a_truncated_label_map_is_refused_naming_it(small, cut: int) -> None:
    volume, _, data = small
    with pytest.raises(CorruptImage, match=r"^cut.nii is truncated"):
        load_label_map([("cut.nii", data[:cut])], volume, **LIMITS)


def test_a_damaged_seg_is_refused_naming_it() -> None:
    ds = _seg_dataset()
    data = _seg_bytes(ds)
    with pytest.raises(CorruptImage) as refused:
        load_label_map([("liver_seg.dcm", data[: len(data) // 3])], _seg_grid(ds), **LIMITS)
    assert str(refused.value).startswith("liver_seg.dcm") and "\n" not in str(refused.value)
