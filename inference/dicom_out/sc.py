"""A picture (a heatmap over a radiograph, a mask over a slice) as a DICOM Secondary Capture image,
for PACS viewers that show neither SEG nor SR. The picture carries its own labels (the finding or
structure, the run, and a red "untrained" band where the model is untrained): a viewer shows pixels."""

from __future__ import annotations

import numpy as np

from inference.dicom_out.common import LO, MANUFACTURER, derived_uid

SC_SERIES_NUMBER = 9703


def secondary_capture(
    picture: np.ndarray,
    *,
    study_uid: str,
    patient_key: str | None,
    description: str,
    identity: tuple[str, ...],
    instance_number: int,
    orientation: tuple[str, str] = ("L", "P"),
):
    """The RGB uint8 ``picture`` as a Secondary Capture (a pydicom Dataset) in ``study_uid``; its
    UIDs derive from ``identity`` (the same picture of the same result is one object). ``orientation``:
    towards where on the patient its columns and rows run (an axial slice as shown: L, P; a frontal
    radiograph: L, F)."""
    import highdicom as hd

    if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8:
        raise ValueError(f"A secondary capture needs an RGB uint8 picture, got {picture.dtype} {picture.shape}.")
    sc = hd.sc.SCImage(
        pixel_array=np.ascontiguousarray(picture),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=study_uid,
        series_instance_uid=derived_uid("sc-series", study_uid, identity[0]),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=derived_uid("sc", *identity),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        patient_id=patient_key or "anonymous",
        patient_name=f"{patient_key or 'anonymous'}^",
        patient_birth_date="",
        patient_sex="",
        accession_number="",
        study_id="",
        study_date="",
        study_time="",
        referring_physician_name="",
        patient_orientation=orientation,  # where the picture's columns and rows run on the patient
        series_description=description[:LO],
    )
    # Type 2C in the General Series module: present, empty (neither a paired organ nor a side)
    sc.Laterality = ""
    return sc
