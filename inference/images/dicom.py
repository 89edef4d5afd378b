"""DICOM radiographs and single MR or CT slices to display-ready grayscale, keeping only non-identifying facts.

Order of operations follows the DICOM grayscale pipeline: modality LUT (rescale slope and
intercept), then VOI (VOI LUT sequence, else the first window centre/width, else the full range),
then MONOCHROME1 inversion so that dense tissue is always white.
"""

from __future__ import annotations

import logging

import numpy as np

from core.deid import patient_key
from core.errors import CorruptImage, InputTooLarge, NoPixelData, UnsupportedFormat, WrongModality
from core.types import CaseFacts, Image2D
from inference.formats import cannot_decode, dicom_count, dicom_errors, library_reason, one_line, read_dicom
from inference.images.expected import CHEST_RADIOGRAPH, ExpectedImage

log = logging.getLogger(__name__)

_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _read_dataset(data: bytes, filename: str):
    return read_dicom(data, filename)


def _check_modality(ds, filename: str, expected: ExpectedImage) -> tuple[str, ...]:
    if "SOPClassUID" not in ds and "Modality" not in ds and "Rows" not in ds:
        # pydicom returns an empty dataset when the file is cut inside its pixel data.
        raise CorruptImage(
            f"{filename} is a damaged or truncated DICOM file (no readable content). Export it again from PACS."
        )
    if not any(tag in ds for tag in _PIXEL_TAGS):
        if "Rows" in ds and "Columns" in ds:
            raise CorruptImage(
                f"{filename} describes a {dicom_count(ds, 'Columns', filename, 0)}x{dicom_count(ds, 'Rows', filename, 0)} "
                "image but its pixel data is missing "
                "(a truncated file?). Export it again from PACS."
            )
        sop = one_line(str(getattr(getattr(ds, "SOPClassUID", None), "name", None) or "unknown object type"), 80)
        raise NoPixelData(f"{filename} is a DICOM without an image ({sop}). Upload {expected.what} itself.")
    modality = one_line(str(getattr(ds, "Modality", "") or ""), 16).upper()
    notes: list[str] = []
    if not modality:
        notes.append(f"The DICOM does not record its modality; check that it is {expected.what}.")
    elif modality not in expected.modalities:
        raise WrongModality(expected.refusal(filename, modality))
    body_part = one_line(str(getattr(ds, "BodyPartExamined", "") or ""), 16).upper()
    if body_part and expected.body_parts and body_part not in expected.body_parts:
        notes.append(f"Body part is recorded as {body_part}; the model was trained on {expected.what} only.")
    return tuple(notes)


def _pixels(ds, filename: str, max_pixels: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Stored pixel values of the (first) frame; colour images come back already as 0..255 gray."""
    rows, cols = dicom_count(ds, "Rows", filename, 0), dicom_count(ds, "Columns", filename, 0)
    frames = dicom_count(ds, "NumberOfFrames", filename, 1) or 1
    if rows * cols * frames > max_pixels:
        raise InputTooLarge(
            f"{filename} holds {frames} frame(s) of {cols}x{rows} pixels, over the {max_pixels / 1e6:.0f} "
            "megapixel limit."
        )
    try:
        from pydicom.pixels import pixel_array

        arr = pixel_array(ds, index=0) if frames > 1 else ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        if not cannot_decode(exc):
            raise CorruptImage(
                f"{filename} has damaged compressed pixel data that could not be decoded. Export it again from PACS."
            ) from None
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = one_line(str(getattr(syntax, "name", syntax)), 80)
        raise UnsupportedFormat(
            f"{filename} is compressed as {name}, which this installation cannot decode. "
            "Export it uncompressed (Explicit VR Little Endian) from PACS."
        ) from None
    except dicom_errors() as exc:
        raise CorruptImage(
            f"{filename} has damaged or truncated pixel data ({library_reason(exc)}). Export it again from PACS."
        ) from None
    notes: list[str] = []
    if frames > 1:
        notes.append(f"Multi-frame DICOM ({frames} frames): the first frame is shown and analysed.")
    if arr.ndim == 3:  # colour radiograph (RGB after pydicom's YBR conversion)
        rgb = arr[..., :3].astype(np.float32)
        gray = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
        return np.clip(gray, 0, 255).astype(np.float32), tuple(notes)
    try:
        return to_display_gray(arr, ds, filename), tuple(notes)
    except dicom_errors() as exc:
        raise CorruptImage(
            f"{filename} has a damaged rescale or window (VOI LUT) description ({library_reason(exc)}). "
            "Export it again from PACS."
        ) from None


def window_linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 linear VOI function, output 0..255."""
    width = max(float(width), 1.0)
    out = ((values - (center - 0.5)) / (width - 1.0) + 0.5) if width > 1 else (values >= center).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32) * 255.0


def _first(value) -> float:
    try:
        return float(value[0])
    except (TypeError, IndexError):
        return float(value)


def to_display_gray(arr: np.ndarray, ds, filename: str = "The DICOM") -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi

    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    if not np.isfinite(values).all():
        raise CorruptImage(f"{filename} has invalid pixel values (NaN or infinity) and cannot be analysed.")
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        rescaled = (
            float(getattr(ds, "RescaleSlope", 1) or 1) != 1 or float(getattr(ds, "RescaleIntercept", 0) or 0) != 0
        )
        # The VOI LUT is indexed by modality values, which are integers in practice.
        lut_input = np.rint(values).astype(np.int32) if rescaled and "ModalityLUTSequence" not in ds else arr
        lut = np.asarray(apply_voi(lut_input, ds), dtype=np.float32)
        out_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        gray = np.clip(lut / float(2**out_bits - 1), 0, 1) * 255.0
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        gray = window_linear(values, _first(ds.WindowCenter), _first(ds.WindowWidth))
    else:
        lo, hi = float(values.min()), float(values.max())
        gray = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        gray = 255.0 - gray
    return gray.astype(np.float32)


def decode_dicom(
    data: bytes,
    filename: str,
    sha256: str,
    *,
    max_pixels: int,
    hash_key: bytes,
    expected: ExpectedImage = CHEST_RADIOGRAPH,
    retain_characteristics: bool = False,
) -> Image2D:
    """``retain_characteristics``: keep the patient's sex and age band with the acquisition facts
    (de-identification's "retain patient characteristics" option, off unless the site turns it on)."""
    ds = _read_dataset(data, filename)
    notes = _check_modality(ds, filename, expected)
    gray, more_notes = _pixels(ds, filename, max_pixels)
    facts = CaseFacts(
        input_sha256=sha256,
        source_format="dicom",
        modality=str(getattr(ds, "Modality", "") or "unknown").upper(),
        view_position=_short_text(getattr(ds, "ViewPosition", None)),
        body_part=_short_text(getattr(ds, "BodyPartExamined", None)),
        patient_key=patient_key(getattr(ds, "PatientID", None), hash_key),
        notes=notes + more_notes,
        dicom_uids=_uids(ds),
        acquisition=_acquisition(ds) + (characteristics(ds) if retain_characteristics else ()),
    )
    return Image2D(pixels=gray, facts=facts)


def characteristics(ds) -> tuple[tuple[str, str], ...]:
    """The patient's sex (M, F or O) and age band (a decade; 90 and over as one band, as HIPAA's
    safe harbour asks), from PatientAge, else the birth date and the study date; never the dates."""
    found = []
    sex = str(getattr(ds, "PatientSex", "") or "").strip().upper()
    if sex in ("M", "F", "O"):
        found.append(("sex", sex))
    years = _age_years(ds)
    if years is not None and 0 <= years < 150:
        found.append(("age_band", "90+" if years >= 90 else f"{years // 10 * 10}-{years // 10 * 10 + 9}"))
    return tuple(found)


def _age_years(ds) -> int | None:
    text = str(getattr(ds, "PatientAge", "") or "").strip().upper()
    if len(text) == 4 and text[:3].isdigit() and text[3] in "DWMY":
        value = int(text[:3])
        return {"D": value // 365, "W": value // 52, "M": value // 12, "Y": value}[text[3]]
    if text.isdigit() and len(text) <= 3:  # "62": not the standard's "062Y", but what some exports write
        return int(text)
    born = str(getattr(ds, "PatientBirthDate", "") or "").strip()
    seen = str(getattr(ds, "StudyDate", "") or getattr(ds, "AcquisitionDate", "") or "").strip()
    if len(born) >= 8 and len(seen) >= 8 and born[:8].isdigit() and seen[:8].isdigit():
        return int(seen[:4]) - int(born[:4]) - int(seen[4:8] < born[4:8])  # not yet had this year's birthday
    return None


def _acquisition(ds) -> tuple[tuple[str, str], ...]:
    """The equipment and sampling facts drift monitoring compares: the manufacturer (the maker, not
    the site), the pixel spacing in mm and the bits stored, where the header has them."""
    found = []
    maker = str(getattr(ds, "Manufacturer", "") or "").strip()[:32]
    if maker:
        found.append(("manufacturer", maker))
    spacing = getattr(ds, "PixelSpacing", None) or getattr(ds, "ImagerPixelSpacing", None)
    try:
        if spacing:
            found.append(("pixel_spacing_mm", f"{float(spacing[0]):.4g}"))
    except (TypeError, ValueError, IndexError):
        pass  # a malformed spacing is no fact
    bits = getattr(ds, "BitsStored", None)
    if isinstance(bits, int):
        found.append(("bits_stored", str(bits)))
    return tuple(found)


def _uids(ds) -> tuple[str, str, str, str] | None:
    """The image's study, series, instance and class UIDs, or None when any is missing."""
    found = tuple(
        str(getattr(ds, keyword, "") or "").strip()[:64]
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
    )
    return found if all(found) else None  # type: ignore[return-value]


def _short_text(value) -> str | None:
    """A coded DICOM string (CS, at most 16 characters) or None; never free text."""
    text = str(value).strip() if value is not None else ""
    return text[:16] or None
