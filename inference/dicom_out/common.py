"""What every DICOM object this app writes shares: who made it, UIDs derived from what it holds,
and the patient and study attributes (the keyed patient hash, never an identifier)."""

from __future__ import annotations

import uuid

MANUFACTURER = "Radiology AI review dashboard"
MODEL_NAME = "review-dashboard (research and demonstration use, not a medical device)"[:64]
SOFTWARE_VERSION = "1"
SEG_SERIES_NUMBER = 9701
SR_SERIES_NUMBER = 9702
STORAGE_CLASSES = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
LO = 64  # the longest DICOM LO value
PRIVATE_SCHEME = "99RVW"  # this app's own codes (a "99" coding scheme is private by the standard)


def derived_uid(*parts: str) -> str:
    """A UID that is the same whenever the same parts are given: the same result exported twice is
    one DICOM object, which PACS stores once. A name-based UUID under the 2.25 root (DICOM PS3.5
    B.2), so no organisation root is needed."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'review-dashboard:' + '|'.join(parts)).int}"


def patient_and_study(
    sop_class_uid: str, sop_instance_uid: str, study_uid: str, series_uid: str, modality: str, patient_key: str | None
):
    """A header-only dataset for highdicom to copy the patient and study modules from: the keyed
    patient hash as ID and name, the study UID, and every other identifying attribute empty."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.PatientID = patient_key or "anonymous"
    ds.PatientName = f"{patient_key or 'anonymous'}^"  # a family name alone (PN): the keyed hash
    for empty in ("PatientBirthDate", "PatientSex", "StudyID", "StudyDate", "StudyTime", "AccessionNumber"):
        setattr(ds, empty, "")
    ds.ReferringPhysicianName = ""
    return ds


def part10_bytes(dataset) -> bytes:
    """A dataset as a DICOM Part 10 file's bytes (a download, a STOW-RS request)."""
    import io

    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
