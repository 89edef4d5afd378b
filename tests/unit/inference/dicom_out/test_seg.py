"""DICOM SEG written for every label map: the standard's validator (dciodvfy) passes it, pydicom and
highdicom read it back, it lands on the same voxels when uploaded again as a mask, it references the
series it was drawn on slice by slice, and it carries no patient identifier beyond the keyed hash."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest

from core.deid import patient_key
from core.types import ModelIdentity
from inference.dicom_out.seg import seg_dataset, write_seg
from inference.masks.load import load_label_map
from inference.volume.case import uploaded_segmentation
from inference.volume.dicom import load_dicom_series
from inference.volume.ingest import load_volume
from tests.conftest import SAMPLES, require_samples
from tests.support.dicom_validator import dciodvfy_errors
from tests.unit.inference.volume.test_volume_dicom import (
    KEY,
    LIMITS,
    PATIENT_ID,
    PLANES,
    Geometry,
    _multiframe,
    expected_cube,
    series,
)

DCMQI = SAMPLES / "dicom" / "dcmqi"
MASK_LIMITS = dict(max_bytes=LIMITS["max_bytes"], max_voxels=LIMITS["max_voxels"])


def _ct_3slice():
    require_samples()
    files = [(p.name, p.read_bytes()) for p in sorted((DCMQI / "ct-3slice").glob("*.dcm"))]
    return files, load_dicom_series(files, **LIMITS)


def _read_back(path: Path, volume):
    """The written SEG uploaded again as a mask on the same volume, measured as the page would."""
    return uploaded_segmentation(load_label_map([(path.name, path.read_bytes())], volume, **MASK_LIMITS), volume)


def _voxels(segmentation) -> dict[str, int]:
    return {m.name: m.voxels for m in segmentation.measurements}


def test_a_real_ct_series_and_its_overlapping_seg_come_back_the_same_and_reference_each_slice(tmp_path: Path) -> None:
    files, volume = _ct_3slice()
    mask = DCMQI / "seg" / "partial_overlaps.dcm"  # 5 overlapping segments made by dcmqi
    reviewed = uploaded_segmentation(load_label_map([(mask.name, mask.read_bytes())], volume, **MASK_LIMITS), volume)

    path = write_seg(tmp_path / "out" / "seg.dcm", volume, reviewed)
    assert dciodvfy_errors(path) == []
    again = _read_back(path, volume)
    assert _voxels(again) == _voxels(reviewed)
    assert [m.name for m in again.measurements] == ["GREEN", "ORANGE", "PURPLE", "LIGHT_BLUE", "DARK_BLUE"]
    assert {m.volume_ml for m in again.measurements} == {m.volume_ml for m in reviewed.measurements}
    assert oct(path.stat().st_mode & 0o777) != "0o600"  # a file the user's tools (and PACS senders) can read

    import highdicom as hd

    seg = hd.seg.segread(path)
    sources = {pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID: pydicom.dcmread(io.BytesIO(data)) for _, data in files}
    first = next(iter(sources.values()))
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.Modality == "SEG"
    assert seg.StudyInstanceUID == first.StudyInstanceUID  # filed with the study it was drawn on
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    [referenced] = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == first.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == set(sources)
    # Each frame names the source slice at its own position.
    for frame in seg.PerFrameFunctionalGroupsSequence:
        [derivation] = frame.DerivationImageSequence
        [source] = derivation.SourceImageSequence
        slice_ = sources[source.ReferencedSOPInstanceUID]
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        assert np.allclose([float(v) for v in position], [float(v) for v in slice_.ImagePositionPatient], atol=1e-3)
    # An uploaded mask was not made by this app's models: no algorithm named, not called untrained.
    assert {s.SegmentAlgorithmType for s in seg.SegmentSequence} == {"MANUAL"}
    assert "untrained" not in seg.SeriesDescription.lower() and seg.ContentLabel == "AI_SEGMENTATION"


@pytest.mark.parametrize("plane", sorted(PLANES))
def test_each_acquisition_plane_comes_back_on_the_voxels_it_was_drawn_on(plane: str, tmp_path: Path) -> None:
    """Axial, oblique and coronal series: the SEG's frames lie in the series' own planes and the
    mask returns voxel for voxel (the cube the phantom puts at the patient's left, anterior, top)."""
    volume = load_dicom_series(series(Geometry(*PLANES[plane])), **LIMITS)
    reviewed = _cube_segmentation(volume)
    path = write_seg(tmp_path / "seg.dcm", volume, reviewed)
    assert dciodvfy_errors(path) == []
    back = load_label_map([(path.name, path.read_bytes())], volume, **MASK_LIMITS)
    np.testing.assert_array_equal(np.asarray(back.data) > 0, expected_cube(volume))
    seg = pydicom.dcmread(path)
    orientation = [
        float(v) for v in seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    ]
    assert np.allclose(orientation, [*PLANES[plane][0], *PLANES[plane][1]], atol=1e-6)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-geometry", "per-frame-geometry"])
def test_an_enhanced_multiframe_source_is_referenced_as_one_instance(shared: bool, tmp_path: Path) -> None:
    volume = load_volume(
        [("enhanced.dcm", _multiframe(Geometry(*PLANES["oblique-20deg"], slices=9), shared=shared))], **LIMITS
    )
    path = write_seg(tmp_path / "seg.dcm", volume, _cube_segmentation(volume))
    assert dciodvfy_errors(path) == []
    back = load_label_map([(path.name, path.read_bytes())], volume, **MASK_LIMITS)
    np.testing.assert_array_equal(np.asarray(back.data) > 0, expected_cube(volume))
    [referenced] = pydicom.dcmread(path).ReferencedSeriesSequence
    assert [i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence] == [
        volume.dicom_source.sop_instance_uids[0]
    ]


def test_no_patient_identifier_of_the_source_reaches_the_seg(tmp_path: Path) -> None:
    identifiers = {
        "PatientName": "Doe^Jane",
        "PatientID": PATIENT_ID,
        "PatientBirthDate": "19610214",
        "OtherPatientIDs": "OTHER-99812",
        "AccessionNumber": "ACC-5581234",
        "InstitutionName": "St Elsewhere General",
        "ReferringPhysicianName": "House^Gregory",
        "StudyDate": "20240229",
        "StudyID": "STUDY-7788",
        "PatientAddress": "12 Hospital Road",
    }
    files = []
    for name, data in series(Geometry(*PLANES["axial"])):
        ds = pydicom.dcmread(io.BytesIO(data))
        for keyword, value in identifiers.items():
            setattr(ds, keyword, value)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append((name, buffer.getvalue()))
    volume = load_dicom_series(files, **LIMITS)
    path = write_seg(tmp_path / "seg.dcm", volume, _cube_segmentation(volume))
    written = path.read_bytes()
    for keyword, value in identifiers.items():
        for part in {value, *value.split("^")}:
            assert part.encode() not in written, f"{keyword} ({part}) is in the SEG"
    seg = pydicom.dcmread(path)
    assert seg.PatientID == patient_key(PATIENT_ID, KEY)
    assert str(seg.PatientName) == f"{patient_key(PATIENT_ID, KEY)}^"
    assert seg.StudyInstanceUID == "1.2.3.4"  # UIDs stay: PACS files the SEG with the study


def test_a_nifti_volume_gets_a_seg_on_a_stand_in_series_with_the_same_volumes(tmp_path: Path) -> None:
    """The MNI template's grey matter (a real probability map cut at 50 %), 197 x 233 x 189: frames
    whose bits do not end on a byte boundary, which pydicom 3.0's frame iterator misreads."""
    require_samples()
    mri = SAMPLES / "mri"
    volume = load_volume([("mni152_t1.nii.gz", (mri / "mni152_t1.nii.gz").read_bytes())], **LIMITS)
    gm = (mri / "mni152_gm_prob.nii.gz").read_bytes()
    reviewed = uploaded_segmentation(load_label_map([("gm.nii.gz", gm)], volume, threshold=128, **MASK_LIMITS), volume)
    path = write_seg(tmp_path / "gm.dcm", volume, reviewed)
    assert dciodvfy_errors(path) == []
    again = _read_back(path, volume)
    [before], [after] = reviewed.measurements, again.measurements
    assert after.voxels == before.voxels and after.volume_ml == pytest.approx(before.volume_ml, rel=0.005)
    seg = pydicom.dcmread(path)
    assert seg.ContentDescription.endswith("from NIfTI")
    # The same label map of the same volume is the same DICOM object (PACS keeps it once).
    twice = seg_dataset(volume, reviewed)
    assert (twice.SOPInstanceUID, twice.SeriesInstanceUID, twice.StudyInstanceUID) == (
        seg.SOPInstanceUID,
        seg.SeriesInstanceUID,
        seg.StudyInstanceUID,
    )


def test_an_untrained_models_seg_says_so_where_pacs_shows_it(tmp_path: Path) -> None:
    volume = load_dicom_series(series(Geometry(*PLANES["axial"])), **LIMITS)
    uploaded = _cube_segmentation(volume)
    model = ModelIdentity(
        model_id="monai-wholebody-ct-segresnet-3mm", weights_sha256="ab" * 32, trained=False, device="cpu"
    )
    segmentation = type(uploaded)(**{**uploaded.__dict__, "model": model, "params": (("roi", "96x96x96"),)})
    seg = pydicom.dcmread(write_seg(tmp_path / "seg.dcm", volume, segmentation))
    assert seg.SeriesDescription.endswith("untrained: meaningless") and seg.ContentLabel == "UNTRAINED"
    assert seg.ContentDescription.startswith("UNTRAINED: meaningless")
    [segment] = seg.SegmentSequence
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    [algorithm] = segment.SegmentationAlgorithmIdentificationSequence
    assert algorithm.AlgorithmName == "monai-wholebody-ct-segresnet-3mm" and algorithm.AlgorithmVersion == "ab" * 32
    assert "trained=no" in algorithm.AlgorithmParameters and "roi=96x96x96" in algorithm.AlgorithmParameters


def test_the_validator_catches_a_seg_that_breaks_the_standard(tmp_path: Path) -> None:
    """The check above can fail: a SEG without its segments' algorithm type is an error to dciodvfy."""
    volume = load_dicom_series(series(Geometry(*PLANES["axial"])), **LIMITS)
    seg = seg_dataset(volume, _cube_segmentation(volume))
    del seg.SegmentSequence[0].SegmentAlgorithmType
    seg.save_as(tmp_path / "broken.dcm", enforce_file_format=True)
    assert dciodvfy_errors(tmp_path / "broken.dcm")


def _cube_segmentation(volume):
    """The phantom's cube as a one-label NIfTI mask on the volume's grid, uploaded as the page would."""
    import gzip

    import nibabel as nib

    labels = expected_cube(volume).astype(np.uint8)
    data = gzip.compress(nib.Nifti1Image(labels, volume.affine).to_bytes(), mtime=0)
    return uploaded_segmentation(load_label_map([("cube.nii.gz", data)], volume, **MASK_LIMITS), volume)
