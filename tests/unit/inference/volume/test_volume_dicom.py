"""DICOM series and multi-frame files to canonical volumes: geometry, order, gaps, HU, de-identification.

Series are written with pydicom into memory from a phantom defined in world (patient) coordinates,
so every test can say where a voxel must land, whatever the acquisition plane or file order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from core.deid import patient_key
from core.errors import CorruptImage, EmptyInput, InputTooLarge, MixedSeries, NotAVolume
from inference.volume.dicom import load_dicom_series
from inference.volume.ingest import load_volume

KEY = b"test-key-0123456789abcdef"
PATIENT_ID = "PAT-4711-XYZ"
PATIENT_NAME = "Doe^Jane"
LIMITS = dict(max_bytes=50_000_000, max_voxels=10_000_000, hash_key=KEY)
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"

# A bright cube at the patient's left, anterior, superior: RAS+ bounds in mm (off the voxel grid).
CUBE_RAS = np.array([[-20.3, -8.3], [6.1, 18.1], [5.2, 15.3]])
BRIGHT, BACKGROUND = 1000, 100


def rotation_x(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


PLANES = {
    # name: (row cosines, column cosines), LPS
    "axial": (np.array([1.0, 0, 0]), np.array([0, 1.0, 0])),
    "oblique-20deg": (np.array([1.0, 0, 0]), rotation_x(20) @ np.array([0, 1.0, 0])),
    "coronal": (np.array([1.0, 0, 0]), np.array([0, 0, -1.0])),
}


@dataclasses.dataclass
class Geometry:
    row: np.ndarray
    col: np.ndarray
    rows: int = 24
    cols: int = 26
    spacing: tuple[float, float] = (2.0, 1.9)  # (between rows, between columns)
    gap: float = 2.5
    slices: int = 14

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row, self.col)

    def position(self, k: float) -> np.ndarray:
        """LPS position of slice k's first pixel, centred on the origin."""
        centre = (self.cols - 1) / 2 * self.spacing[1] * self.row + (self.rows - 1) / 2 * self.spacing[0] * self.col
        return -centre + (k - (self.slices - 1) / 2) * self.gap * self.normal

    def phantom(self, position: np.ndarray) -> np.ndarray:
        """Stored pixels (rows, cols) of the slice at ``position``: BRIGHT inside the cube."""
        j, i = np.mgrid[0 : self.rows, 0 : self.cols]
        lps = position + i[..., None] * self.spacing[1] * self.row + j[..., None] * self.spacing[0] * self.col
        ras = lps * np.array([-1, -1, 1])
        inside = np.all((ras >= CUBE_RAS[:, 0]) & (ras <= CUBE_RAS[:, 1]), axis=-1)
        return np.where(inside, BRIGHT, BACKGROUND).astype(np.int16)


def expected_cube(volume) -> np.ndarray:
    """Which canonical voxels lie inside the cube, from the volume's own affine."""
    idx = np.indices(volume.shape).reshape(3, -1)
    world = volume.affine[:3, :3] @ idx + volume.affine[:3, 3:4]
    inside = np.all((world >= CUBE_RAS[:, :1]) & (world <= CUBE_RAS[:, 1:]), axis=0)
    return inside.reshape(volume.shape)


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _base(sop_class: str, *, modality: str, series_uid: str, description: str, number: int, patient_id: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = _file_meta(sop_class, ds.SOPInstanceUID)
    ds.Modality = modality
    ds.PatientName = PATIENT_NAME
    ds.PatientID = patient_id
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = description
    ds.SeriesNumber = number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    return ds


def _to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dicom_slice(
    pixels: np.ndarray,
    position: np.ndarray,
    geometry: Geometry,
    *,
    modality: str = "MR",
    series_uid: str = "1.2.3.4.5",
    description: str = "AX T1 POST",
    number: int = 3,
    instance: int = 1,
    rescale: tuple[float, float] | None = None,
    patient_id: str = PATIENT_ID,
) -> bytes:
    ds = _base(
        CT_IMAGE if modality == "CT" else MR_IMAGE,
        modality=modality,
        series_uid=series_uid,
        description=description,
        number=number,
        patient_id=patient_id,
    )
    ds.InstanceNumber = instance
    ds.ImageOrientationPatient = [round(float(v), 8) for v in (*geometry.row, *geometry.col)]
    ds.ImagePositionPatient = [round(float(v), 6) for v in position]
    ds.PixelSpacing = list(geometry.spacing)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.astype("<i2").tobytes()
    return _to_bytes(ds)


def series(
    geometry: Geometry, *, positions: list[float] | None = None, shuffle: bool = True, **kwargs
) -> list[tuple[str, bytes]]:
    """The phantom as one file per slice, in shuffled order, with names and InstanceNumbers that
    deliberately do not follow anatomy."""
    ks = positions if positions is not None else list(range(geometry.slices))
    files = []
    for n, k in enumerate(ks):
        position = geometry.position(k)
        files.append(
            (
                f"IM{(n * 7) % len(ks):04d}.dcm",
                dicom_slice(geometry.phantom(position), position, geometry, instance=len(ks) - n, **kwargs),
            )
        )
    if shuffle:
        random.Random(1234).shuffle(files)
    return files


def assert_cube_in_place(volume) -> None:
    bright = volume.data > (BRIGHT + BACKGROUND) / 2
    expected = expected_cube(volume)
    assert expected.sum() > 20, "the phantom cube must cover voxels"
    np.testing.assert_array_equal(bright, expected)
    # The cube is at the patient's left, anterior, superior: low axis 0 (towards Right), high 1 and 2.
    centre = np.argwhere(bright).mean(axis=0)
    shape = np.array(volume.shape)
    assert centre[0] < shape[0] / 2 and centre[1] > shape[1] / 2 and centre[2] > shape[2] / 2


@pytest.mark.parametrize("plane", sorted(PLANES))
def test_shuffled_series_puts_the_cube_where_the_world_coordinates_say(plane: str) -> None:
    geometry = Geometry(*PLANES[plane])
    volume = load_dicom_series(series(geometry), **LIMITS)

    assert_cube_in_place(volume)
    assert volume.source_format == "dicom-series"
    assert volume.modality == "MR"
    assert volume.description == "AX T1 POST"
    assert volume.warnings == ()
    assert volume.data.dtype == np.float32 and not volume.data.flags.writeable
    assert sorted(volume.spacing_mm) == pytest.approx(sorted([1.9, 2.0, 2.5]))
    expected_codes = {"axial": "LPS", "oblique-20deg": "LPS", "coronal": "LIP"}[plane]
    assert volume.original_axcodes == expected_codes


def test_axial_series_affine_and_origin_are_exact() -> None:
    geometry = Geometry(*PLANES["axial"])
    volume = load_dicom_series(series(geometry), **LIMITS)
    # Canonical RAS: axis 0 runs right (LPS x reversed), axis 1 anterior (LPS y reversed), axis 2 up.
    np.testing.assert_allclose(np.diag(volume.affine)[:3], [1.9, 2.0, 2.5], atol=1e-6)
    corner = volume.affine @ [0, 0, 0, 1]
    last_ijk = np.array(volume.shape) - 1
    # Voxel (0,0,0) is the most right, posterior, inferior one: LPS (+x, +y) edge of the first slice.
    first_lps = (
        geometry.position(0) + (geometry.cols - 1) * 1.9 * geometry.row + (geometry.rows - 1) * 2.0 * geometry.col
    )
    np.testing.assert_allclose(corner[:3], first_lps * [-1, -1, 1], atol=1e-5)
    top = volume.affine @ [*last_ijk, 1]
    np.testing.assert_allclose(top[2], geometry.position(geometry.slices - 1)[2], atol=1e-5)


def test_file_order_does_not_change_the_volume_or_its_hash() -> None:
    geometry = Geometry(*PLANES["oblique-20deg"])
    ordered = series(geometry, shuffle=False)
    shuffled = list(reversed(ordered))
    a = load_dicom_series(ordered, **LIMITS)
    b = load_dicom_series(shuffled, **LIMITS)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(a.affine, b.affine)
    assert a.input_sha256 == b.input_sha256
    digests = sorted(hashlib.sha256(data).hexdigest() for _, data in ordered)
    assert a.input_sha256 == hashlib.sha256("".join(digests).encode()).hexdigest()


def test_missing_slice_is_kept_with_a_warning_saying_where() -> None:
    geometry = Geometry(*PLANES["axial"], slices=12)
    # Put slice 0 at z = 20 mm: positions 20, 22.5, ... 47.5; leave out the one at 40 mm.
    geometry_positions = [k for k in range(12) if k != 8]
    files = series(geometry, positions=geometry_positions)
    shift = 20 - geometry.position(0)[2]
    files = [(name, _moved(data, shift)) for name, data in files]

    volume = load_dicom_series(files, **LIMITS)

    assert volume.shape[2] == 11
    assert volume.warnings == (
        "Slice gap of 5.0 mm between positions 37.5 and 42.5 mm (slices 8-9); the series may be missing "
        "a slice; the median gap is 2.5 mm.",
    )
    assert volume.spacing_mm[2] == pytest.approx(2.5)


def _moved(data: bytes, dz: float) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, round(z + dz, 6)]
    return _to_bytes(ds)


def test_uneven_spacing_is_warned_with_the_slices_involved() -> None:
    geometry = Geometry(*PLANES["axial"], slices=10)
    files = series(geometry, positions=[0, 1, 2, 3, 4.16, 5, 6, 7, 8, 9], shuffle=True)
    volume = load_dicom_series(files, **LIMITS)
    assert len(volume.warnings) == 2
    first, second = volume.warnings
    assert "Slice gap of 2.9 mm" in first and "(slices 4-5)" in first and "uneven" in first
    assert "Slice gap of 2.1 mm" in second and "(slices 5-6)" in second
    assert "median gap is 2.5 mm" in first


def test_mixed_series_are_refused_listing_each_series_without_patient_data() -> None:
    geometry = Geometry(*PLANES["axial"], slices=4)
    t1 = series(geometry, series_uid="1.2.3.1", description="AX T1", number=3)
    t2 = series(Geometry(*PLANES["coronal"], slices=3), series_uid="1.2.3.2", description="COR T2", number=5)
    with pytest.raises(MixedSeries) as info:
        load_dicom_series(t1 + t2, **LIMITS)
    message = str(info.value)
    assert "2 DICOM series" in message
    assert "series 3 'AX T1' (4 file(s))" in message and "series 5 'COR T2' (3 file(s))" in message
    assert PATIENT_ID not in message and "Doe" not in message


def test_two_patients_in_one_series_are_refused_without_naming_them() -> None:
    geometry = Geometry(*PLANES["axial"], slices=3)
    files = series(geometry)
    other = series(geometry, positions=[3], patient_id="OTHER-999")
    with pytest.raises(MixedSeries) as info:
        load_dicom_series(files + other, **LIMITS)
    assert "2 different PatientIDs" in str(info.value)
    assert "OTHER-999" not in str(info.value) and PATIENT_ID not in str(info.value)


def test_duplicate_positions_are_refused_naming_both_files() -> None:
    geometry = Geometry(*PLANES["axial"], slices=4)
    files = series(geometry, shuffle=False)
    files.append(("copy_of_first.dcm", files[0][1]))
    with pytest.raises(NotAVolume) as info:
        load_dicom_series(files, **LIMITS)
    message = str(info.value)
    assert files[0][0] in message and "copy_of_first.dcm" in message and "repeated slices" in message


def test_ct_rescale_gives_hounsfield_units() -> None:
    geometry = Geometry(*PLANES["axial"], slices=3, rows=4, cols=5)
    stored = np.array([[24, 1024, 1064, 2024, 0]] * 4, dtype=np.int16)  # -> -1000, 0, 40, 1000, -1024 HU
    files = [
        (f"ct{k}.dcm", dicom_slice(stored, geometry.position(k), geometry, modality="CT", rescale=(1, -1024)))
        for k in range(3)
    ]
    volume = load_dicom_series(files, **LIMITS)
    assert volume.modality == "CT"
    # Stored columns run to the patient's left; canonical axis 0 runs to the right: reversed.
    np.testing.assert_array_equal(volume.data[:, 0, 0], [-1024, 1000, 40, 0, -1000])
    assert volume.data.dtype == np.float32


def test_real_ct_sample_two_positions_in_hounsfield_units() -> None:
    path = pydicom.data.get_testdata_file("CT_small.dcm")
    raw = open(path, "rb").read()
    ds = pydicom.dcmread(path)
    second = pydicom.dcmread(path)
    second.SOPInstanceUID = generate_uid()
    x, y, z = (float(v) for v in second.ImagePositionPatient)
    second.ImagePositionPatient = [x, y, z + 5.0]
    volume = load_dicom_series([("CT_small.dcm", raw), ("CT_small_b.dcm", _to_bytes(second))], **LIMITS)

    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    # Axial LPS storage: canonical axis 0 = columns reversed, axis 1 = rows reversed.
    np.testing.assert_array_equal(volume.data[:, :, 0], hu.T[::-1, ::-1])
    assert volume.modality == "CT" and volume.original_axcodes == "LPS"
    assert volume.spacing_mm == pytest.approx((0.661468, 0.661468, 5.0))


def test_a_single_slice_is_not_a_volume() -> None:
    path = pydicom.data.get_testdata_file("CT_small.dcm")
    with pytest.raises(NotAVolume, match="CT_small.dcm is a single slice"):
        load_volume([("CT_small.dcm", open(path, "rb").read())], **LIMITS)


def _multiframe(
    geometry: Geometry, *, shared: bool, modality: str = "MR", rescale: tuple[float, float] | None = None
) -> bytes:
    ds = _base(
        ENHANCED_CT if modality == "CT" else ENHANCED_MR,
        modality=modality,
        series_uid="1.2.9",
        description="ENHANCED",
        number=7,
        patient_id=PATIENT_ID,
    )
    ds.Rows, ds.Columns = geometry.rows, geometry.cols
    order = list(range(geometry.slices))
    random.Random(7).shuffle(order)  # frames stored out of anatomical order
    ds.NumberOfFrames = len(order)

    def orientation() -> Dataset:
        item = Dataset()
        item.ImageOrientationPatient = [round(float(v), 8) for v in (*geometry.row, *geometry.col)]
        return item

    def measures() -> Dataset:
        item = Dataset()
        item.PixelSpacing = list(geometry.spacing)
        item.SliceThickness = geometry.gap
        return item

    frames, per_frame = [], []
    for k in order:
        position = geometry.position(k)
        item = Dataset()
        plane = Dataset()
        plane.ImagePositionPatient = [round(float(v), 6) for v in position]
        item.PlanePositionSequence = Sequence([plane])
        if not shared:
            item.PlaneOrientationSequence = Sequence([orientation()])
            item.PixelMeasuresSequence = Sequence([measures()])
        per_frame.append(item)
        frames.append(geometry.phantom(position))
    group = Dataset()
    if shared:
        group.PlaneOrientationSequence = Sequence([orientation()])
        group.PixelMeasuresSequence = Sequence([measures()])
    if rescale is not None:
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = rescale
        transform.RescaleType = "HU"
        group.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([group])
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack(frames).astype("<i2").tobytes()
    return _to_bytes(ds)


def test_enhanced_multiframe_with_shared_groups_and_rescale() -> None:
    geometry = Geometry(*PLANES["oblique-20deg"], slices=9)
    volume = load_dicom_series(
        [("enhanced_ct.dcm", _multiframe(geometry, shared=True, modality="CT", rescale=(1, -1024)))], **LIMITS
    )
    assert volume.source_format == "dicom-multiframe"
    assert volume.modality == "CT"
    bright = volume.data > (BRIGHT + BACKGROUND) / 2 - 1024
    np.testing.assert_array_equal(bright, expected_cube(volume))
    assert set(np.unique(volume.data)) == {BRIGHT - 1024.0, BACKGROUND - 1024.0}


def test_enhanced_multiframe_with_per_frame_geometry_only() -> None:
    geometry = Geometry(*PLANES["coronal"], slices=8)
    volume = load_volume([("enhanced_mr.dcm", _multiframe(geometry, shared=False))], **LIMITS)
    assert volume.source_format == "dicom-multiframe" and volume.description == "ENHANCED"
    assert_cube_in_place(volume)


def test_non_dicom_member_is_named() -> None:
    files = series(Geometry(*PLANES["axial"], slices=3))
    files.insert(1, ("series/README.txt", b"exported by PACS viewer 1.0\n" * 10))
    with pytest.raises(NotAVolume, match=r"series/README.txt is not a DICOM file"):
        load_volume(files, **LIMITS)


def test_report_objects_are_skipped_but_not_alone() -> None:
    sr = open(pydicom.data.get_testdata_file("test-SR.dcm"), "rb").read()
    dicomdir = open(pydicom.data.get_testdata_file("DICOMDIR"), "rb").read()
    files = series(Geometry(*PLANES["axial"], slices=3)) + [("report.dcm", sr), ("DICOMDIR", dicomdir)]
    volume = load_dicom_series(files, **LIMITS)
    assert volume.shape[2] == 3
    with pytest.raises(NotAVolume, match="None of the 1 DICOM file"):
        load_dicom_series([("report.dcm", sr)], **LIMITS)


def test_a_localiser_in_the_series_is_refused_by_name() -> None:
    axial = series(Geometry(*PLANES["axial"], slices=3))
    coronal = Geometry(*PLANES["coronal"], slices=1)
    localiser = dicom_slice(coronal.phantom(coronal.position(0)), coronal.position(0), coronal)
    with pytest.raises(NotAVolume, match="localiser.dcm is oriented"):
        load_dicom_series(axial + [("localiser.dcm", localiser)], **LIMITS)


def test_size_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr("inference.volume.dicom._pixels", fail)
    files = series(Geometry(*PLANES["axial"], slices=5))
    with pytest.raises(InputTooLarge, match="5 slice\\(s\\) of 26x24 pixels"):
        load_dicom_series(files, max_bytes=10**8, max_voxels=1000, hash_key=KEY)


def test_patient_id_is_only_kept_as_a_keyed_hash() -> None:
    volume = load_dicom_series(series(Geometry(*PLANES["axial"], slices=3)), **LIMITS)
    assert volume.patient_key == patient_key(PATIENT_ID, KEY)
    text = " ".join(
        repr(getattr(volume, f.name)) for f in dataclasses.fields(volume) if f.name not in ("data", "affine")
    )
    assert PATIENT_ID not in text and "Doe" not in text and "Jane" not in text


def test_truncated_and_empty_files_are_named() -> None:
    files = series(Geometry(*PLANES["axial"], slices=3))
    name, data = files[1]
    with pytest.raises(CorruptImage) as info:
        load_dicom_series([files[0], (name, data[:400]), files[2]], **LIMITS)
    assert name in str(info.value)
    with pytest.raises(CorruptImage, match=f"{name} has damaged or truncated pixel data"):
        load_dicom_series([files[0], (name, data[:-50]), files[2]], **LIMITS)
    with pytest.raises(EmptyInput, match="empty.dcm is empty"):
        load_dicom_series([files[0], ("empty.dcm", b"")], **LIMITS)


def test_zipped_series_with_folders_and_macos_junk_loads() -> None:
    geometry = Geometry(*PLANES["axial"], slices=6)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("export/", b"")
        for name, data in series(geometry):
            archive.writestr(f"export/SER003/{name}", data)
        archive.writestr("__MACOSX/export/._IM0001.dcm", b"\x00\x05\x16\x07junk")
        archive.writestr("export/.DS_Store", b"junk")
    volume = load_volume([("study.zip", buf.getvalue())], **LIMITS)
    assert volume.shape[2] == 6
    assert_cube_in_place(volume)


def test_a_negative_pixel_spacing_is_refused_rather_than_mirroring_the_image() -> None:
    geometry = Geometry(*PLANES["axial"], spacing=(-2.0, 1.9))
    with pytest.raises(CorruptImage, match="PixelSpacing .* must be greater than 0"):
        load_dicom_series(series(geometry), **LIMITS)
