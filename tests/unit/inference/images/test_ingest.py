"""Ingest of real radiographs and of the bad inputs a reading room actually sees."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from core.errors import (
    CorruptImage,
    EmptyInput,
    FormatMismatch,
    InputTooLarge,
    NoPixelData,
    UnsupportedFormat,
    WrongModality,
)
from inference.images.ingest import load_image
from tests.conftest import load

KEY = b"test-key-0123456789abcdef"


def ingest(data: bytes, name: str, **kw):
    return load_image(
        data, name, max_bytes=kw.get("max_bytes", 50_000_000), max_pixels=kw.get("max_pixels", 64_000_000), hash_key=KEY
    )


@pytest.mark.parametrize(
    "name, shape, fmt",
    [
        ("nih_00000001_000.png", (512, 512), "png"),
        ("padchest_16747_3_1.jpg", (885, 1036), "jpeg"),
        ("tbx11k_h0001.png", (512, 512), "png"),
        ("siim_sample.dcm", (1024, 1024), "dicom"),
    ],
)
def test_real_samples_decode_to_grayscale(samples: Path, name: str, shape, fmt: str) -> None:
    image = load(samples / name)
    assert image.shape == shape
    assert image.pixels.dtype == np.float32 and image.pixels.ndim == 2
    assert 0.0 <= image.pixels.min() and image.pixels.max() <= 255.0
    assert image.pixels.std() > 20, "a radiograph has contrast"
    assert image.facts.source_format == fmt
    assert len(image.facts.input_sha256) == 64


def test_rgb_png_becomes_luminance(samples: Path) -> None:
    rgb = np.asarray(Image.open(samples / "tbx11k_h0001.png").convert("RGB"), dtype=np.float32)
    expected = np.asarray(Image.open(samples / "tbx11k_h0001.png").convert("L"), dtype=np.float32)
    image = load(samples / "tbx11k_h0001.png")
    assert rgb.ndim == 3
    np.testing.assert_array_equal(image.pixels, expected)


def test_rgba_png_is_composited_and_gray(samples: Path) -> None:
    gray = Image.open(samples / "nih_00000001_000.png").convert("L")
    rgba = Image.merge("RGBA", (gray, gray, gray, Image.new("L", gray.size, 255)))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    image = ingest(buffer.getvalue(), "rgba.png")
    np.testing.assert_allclose(image.pixels, np.asarray(gray, dtype=np.float32), atol=1)


def test_16_bit_png_is_scaled_not_clipped() -> None:
    ramp = (np.linspace(0, 4095, 256 * 256).reshape(256, 256)).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    image = ingest(buffer.getvalue(), "twelve_bit.png")
    assert image.pixels.max() == pytest.approx(255.0, abs=0.1)
    assert image.pixels.min() == 0.0
    assert len(np.unique(image.pixels)) > 200


def _dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _siim(samples: Path) -> pydicom.Dataset:
    return pydicom.dcmread(samples / "siim_sample.dcm")


def test_dicom_keeps_only_non_identifying_facts(samples: Path) -> None:
    ds = _siim(samples)
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-123456"
    ds.PatientBirthDate = "19700101"
    ds.AccessionNumber = "ACC-987"
    image = ingest(_dicom_bytes(ds), "case.dcm")
    facts = repr(image.facts)
    for identifier in ("Doe", "Jane", "MRN-123456", "19700101", "ACC-987"):
        assert identifier not in facts
    assert image.facts.patient_key and image.facts.patient_key.startswith("pk-")
    assert image.facts.modality == "CR" and image.facts.view_position == "PA"
    other = ds.copy()
    other.PatientID = "MRN-000001"
    assert ingest(_dicom_bytes(other), "b.dcm").facts.patient_key != image.facts.patient_key


def test_monochrome1_is_inverted(samples: Path) -> None:
    ds = _siim(samples)
    normal = ingest(_dicom_bytes(ds), "m2.dcm").pixels
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = ingest(_dicom_bytes(ds), "m1.dcm").pixels
    np.testing.assert_allclose(inverted, 255.0 - normal, atol=1e-3)


def test_rescale_and_window_are_applied(samples: Path) -> None:
    ds = _siim(samples)
    raw = ds.pixel_array.astype(np.float32)
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    ds.WindowCenter, ds.WindowWidth = 100, 200  # covers stored values 50..150 after rescale
    image = ingest(_dicom_bytes(ds), "windowed.dcm").pixels
    values = raw * 2 - 100
    assert np.all(image[values <= 0] == 0)
    assert np.all(image[values >= 200] == 255)
    middle = (values > 20) & (values < 180)
    expected = ((values[middle] - 99.5) / 199 + 0.5) * 255
    np.testing.assert_allclose(image[middle], expected, atol=1e-3)


def test_voi_lut_sequence_takes_precedence(samples: Path) -> None:
    ds = _siim(samples)
    item = pydicom.Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.add_new("LUTData", "US", list(range(255, -1, -1)))  # an inverting LUT, 8-bit out
    ds.VOILUTSequence = pydicom.Sequence([item])
    ds.WindowCenter, ds.WindowWidth = 10, 5
    image = ingest(_dicom_bytes(ds), "lut.dcm").pixels
    np.testing.assert_allclose(image, 255.0 - ds.pixel_array.astype(np.float32), atol=1e-3)


def test_sixteen_bit_dx_dicom(samples: Path) -> None:
    ds = _siim(samples)
    pixels = ds.pixel_array.astype(np.uint16) * 16  # 12-bit range in 16-bit storage
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelData = pixels.tobytes()
    ds.Modality = "DX"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    image = ingest(_dicom_bytes(ds), "dx16.dcm")
    assert image.facts.modality == "DX"
    assert image.pixels.max() == pytest.approx(255.0) and image.pixels.min() == 0.0


@pytest.mark.parametrize(
    "testfile, error, phrase",
    [
        # One sentence a reader can act on: where a CT or MR image is read instead.
        ("CT_small.dcm", WrongModality, r"is a CT image \(Modality CT\), not a chest radiograph\. .*MRI/CT page\.$"),
        (
            "MR_small.dcm",
            WrongModality,
            r"not a chest radiograph\. The chest X-ray model reads CR or DX radiographs only; ",
        ),
        ("test-SR.dcm", NoPixelData, "without an image"),
        ("rtplan_truncated.dcm", NoPixelData, "without an image"),
    ],
)
def test_pydicom_files_that_are_not_chest_radiographs(testfile: str, error, phrase: str) -> None:
    with pytest.raises(error, match=phrase):
        ingest(Path(get_testdata_file(testfile)).read_bytes(), testfile)


def test_truncated_chest_dicom(samples: Path) -> None:
    data = (samples / "siim_sample.dcm").read_bytes()
    with pytest.raises(CorruptImage, match="truncated"):
        ingest(data[: len(data) // 2], "truncated.dcm")


def test_png_renamed_dcm_says_what_it_is(samples: Path) -> None:
    with pytest.raises(FormatMismatch, match="named as a DICOM file but contains a PNG image"):
        ingest(NIH_BYTES(samples), "chest.dcm")


def NIH_BYTES(samples: Path) -> bytes:
    return (samples / "nih_00000001_000.png").read_bytes()


def test_non_image_bytes_and_empty_file() -> None:
    with pytest.raises(UnsupportedFormat, match="not a PNG, JPEG or DICOM"):
        ingest(b"%PDF-1.7 this is a report", "report.png")
    with pytest.raises(EmptyInput, match="empty"):
        ingest(b"", "empty.png")


def test_truncated_png(samples: Path) -> None:
    data = NIH_BYTES(samples)
    with pytest.raises(CorruptImage, match="could not be decoded"):
        ingest(data[: len(data) // 3], "cut.png")


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [10_000, 40_000])  # 100 MP (over our limit), 1600 MP (Pillow's own bomb check)
def test_decompression_bomb_is_refused_before_decoding(side: int) -> None:
    with pytest.raises(InputTooLarge, match="megapixel"):
        ingest(_png_claiming(side, side), "bomb.png")


def test_upload_over_byte_limit(samples: Path) -> None:
    with pytest.raises(InputTooLarge, match="upload limit"):
        ingest(NIH_BYTES(samples), "big.png", max_bytes=1000)


def test_non_finite_pixels_are_refused(samples: Path) -> None:
    ds = _siim(samples)
    values = ds.pixel_array.astype(np.float32)
    values[10, 10] = np.nan
    ds.FloatPixelData = values.tobytes()
    del ds.PixelData
    ds.BitsAllocated = 32
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    with pytest.raises(CorruptImage, match="invalid pixel values"):
        ingest(_dicom_bytes(ds), "nan.dcm")


def test_multi_frame_size_counts_every_frame(samples: Path) -> None:
    ds = _siim(samples)
    ds.decompress()
    frame = ds.pixel_array
    ds.NumberOfFrames = 3
    ds.PixelData = np.stack([frame, frame, frame]).tobytes()
    data = _dicom_bytes(ds)
    image = ingest(data, "three_frames.dcm")
    assert image.shape == (1024, 1024) and any("3 frames" in n for n in image.facts.notes)
    with pytest.raises(InputTooLarge, match="3 frame"):
        ingest(data, "three_frames.dcm", max_pixels=2 * 1024 * 1024)


def test_decoding_leaves_the_warning_filters_alone(samples: Path) -> None:
    import warnings

    before = list(warnings.filters)
    data = (samples / "siim_sample.dcm").read_bytes()
    ingest(data, "ok.dcm")
    with pytest.raises(CorruptImage):
        ingest(data[: len(data) // 2], "cut.dcm")
    with pytest.raises(InputTooLarge):
        ingest(_png_claiming(10_000, 10_000), "bomb.png")
    assert list(warnings.filters) == before


# ---- damaged files: one line naming the file, never a library's internals -------------------


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def test_a_dicom_whose_meta_length_does_not_fit_its_vr_is_refused_naming_it(samples: Path) -> None:
    # (0002,0000) is a UL (4 bytes); claiming 7 made pydicom raise BytesLengthException past the readers.
    data = (samples / "siim_sample.dcm").read_bytes()
    assert data[132:138] == b"\x02\x00\x00\x00UL"
    with pytest.raises(CorruptImage) as refused:
        ingest(_patch(data, 138, struct.pack("<H", 7)), "meta.dcm")
    message = str(refused.value)
    assert message.startswith("meta.dcm is a damaged or truncated DICOM file") and "\n" not in message


def test_a_dicom_with_a_garbled_element_deep_in_its_header_is_refused_naming_it(samples: Path) -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    rows = data.find(b"\x28\x00\x10\x00US")  # Rows: a US (2 bytes) said to be 255 long
    with pytest.raises(CorruptImage, match=r"^rows.dcm is a damaged or truncated DICOM file .*BytesLengthException"):
        ingest(_patch(data, rows + 6, struct.pack("<H", 255)), "rows.dcm")


@pytest.mark.parametrize(
    "name, patch",
    [
        ("chest.png", lambda d: d[:8] + b"\x00\x00\x00\x0dIHDX" + d[16:]),  # the first chunk is not IHDR
        (
            "chest.jpg",
            lambda d: d[: d.find(b"\xff\xc0") + 2] + b"\x00\x00" + d[d.find(b"\xff\xc0") + 4 :],
        ),  # SOF length 0
    ],
)
def test_unreadable_png_and_jpeg_are_named_without_object_reprs(samples: Path, name: str, patch) -> None:
    source = "nih_00000001_000.png" if name.endswith(".png") else "padchest_16747_3_1.jpg"
    with pytest.raises(CorruptImage) as refused:
        ingest(patch((samples / source).read_bytes()), name)
    message = str(refused.value)
    assert message.startswith(f"{name} could not be decoded as a")
    assert "object at 0x" not in message and "BytesIO" not in message


def test_a_scan_or_zip_uploaded_as_a_radiograph_says_what_it_is() -> None:
    with pytest.raises(UnsupportedFormat, match=r"^scan.png \(named as a PNG image\) is a zip archive, not a PNG"):
        ingest(b"PK\x03\x04" + b"\x00" * 100, "scan.png")
    with pytest.raises(UnsupportedFormat, match=r"^brain.nii.gz is a gzip-compressed file, not a PNG, JPEG"):
        ingest(b"\x1f\x8b" + b"\x00" * 100, "brain.nii.gz")


def test_a_damaged_private_element_is_dropped_and_the_image_read(samples: Path) -> None:
    """Vendors' private tags are not read here: one that cannot be decoded does not refuse the file."""
    ds = _siim(samples)
    ds.add_new(0x00091001, "US", 5)
    data = _dicom_bytes(ds)
    at = data.find(struct.pack("<HHcc", 0x0009, 0x1001, b"U", b"S"))
    # 3 bytes where a US needs 2 or 4: pydicom raises BytesLengthException when it decodes the value
    damaged = data[: at + 6] + struct.pack("<H", 3) + data[at + 8 : at + 10] + b"\x00" + data[at + 10 :]
    image = ingest(damaged, "private.dcm")
    assert image.shape == (1024, 1024) and image.facts.modality == "CR"
