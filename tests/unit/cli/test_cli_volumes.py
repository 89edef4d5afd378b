"""`python -m inference segment` and `measure`: JSON out, masks written on the input's grid, and one
JSON error line per bad input with exit 1."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from cli.main import main
from tests.conftest import SAMPLES, require_samples
from tests.support.dicom_validator import dciodvfy_errors
from tests.unit.inference.volume.test_volume_dicom import PLANES, Geometry, series

MRI = SAMPLES / "mri"


def run(*argv: str) -> tuple[int, list[dict]]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


@pytest.fixture
def small_rois(monkeypatch: pytest.MonkeyPatch):
    """Rois that fit these small test volumes: same networks and rules, seconds instead of minutes."""
    import inference.models.registry as registry

    for name, roi in (("BRATS_SEGRESNET", (40, 48, 32)), ("WHOLEBODY_CT_SEGRESNET", (32, 32, 32))):
        small = dataclasses.replace(getattr(registry, name), roi_size=roi)
        monkeypatch.setattr(registry, name, small)
        monkeypatch.setitem(registry.MODELS, small.model_id, small)


def _brats_case(folder: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    x, y, z = np.ogrid[:40, :48, :32]
    brain = ((x - 20) / 15.0) ** 2 + ((y - 24) / 19.0) ** 2 + ((z - 16) / 13.0) ** 2 <= 1
    # Stored LPS-first (as many converters write), to check the mask comes back in that orientation.
    affine = np.array([[-1.0, 0, 0, 20], [0, -1.0, 0, 30], [0, 0, 1.0, -10], [0, 0, 0, 1]])
    paths = []
    for i, suffix in enumerate(("t1ce", "t1", "t2", "flair")):
        data = (brain * (300.0 + 30 * i) + rng.normal(0, 8, brain.shape) * brain).astype(np.float32)
        path = folder / f"BraTS2021_00042_{suffix}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), path)
        paths.append(path)
    return paths


def test_measure_gives_the_grey_matter_volume_of_the_mni_template(tmp_path: Path):
    require_samples()
    code, [result] = run(
        "measure", str(MRI / "mni152_t1.nii.gz"), str(MRI / "mni152_gm_prob.nii.gz"), "--threshold", "128", "--json"
    )
    assert code == 0, result
    assert result["spacing_mm"] == [1.0, 1.0, 1.0] and result["shape"] == [197, 233, 189]
    gm = nib.load(MRI / "mni152_gm_prob.nii.gz")
    expected_ml = float((np.asarray(gm.dataobj) >= 128).sum()) / 1000.0  # 1 mm voxels: 1000 per mL
    assert result["volumes_ml"]["Label 1"] == pytest.approx(expected_ml, rel=1e-6)
    assert result["voxel_counts"]["Label 1"] == round(expected_ml * 1000)


def test_segment_a_brats_case_writes_the_mask_with_the_inputs_affine(tmp_path: Path, small_rois):
    paths = _brats_case(tmp_path)
    out = tmp_path / "out" / "mask.nii.gz"
    code, [result] = run("segment", *map(str, paths[::-1]), "--allow-untrained", "--json", "--mask-out", str(out))
    assert code == 0, result
    assert result["model_id"] == "monai-brats-segresnet" and result["trained"] is False
    assert list(result["volumes_ml"]) == ["Tumour core", "Whole tumour", "Enhancing tumour", "Necrotic core", "Oedema"]
    assert result["spacing_mm"] == [1.0, 1.0, 1.0]
    assert {"read", "segment", "measure"} <= set(result["timing_ms"])
    written = nib.load(out)
    source = nib.load(paths[0])
    assert np.allclose(written.affine, source.affine) and written.shape == source.shape
    values = np.asarray(written.dataobj)
    assert set(np.unique(values)) <= {0, 1, 2, 4}
    # The file's whole-tumour voxels are the ones the JSON counted.
    assert int((values > 0).sum()) == result["voxel_counts"]["Whole tumour"]
    assert json.loads((tmp_path / "out" / "mask.labels.json").read_text())[0]["name"] == "Necrotic core (NCR)"


def test_segment_a_ct_dicom_series_folder_with_the_whole_body_model(tmp_path: Path, small_rois):
    folder = tmp_path / "series"
    folder.mkdir()
    geometry = Geometry(*PLANES["axial"], rows=30, cols=28, spacing=(3.0, 3.0), gap=3.0, slices=20)
    for name, data in series(geometry, modality="CT", rescale=(1.0, -1024.0)):
        (folder / name).write_bytes(data)
    seg = tmp_path / "out" / "ct-seg.dcm"
    code, [result] = run(
        "segment",
        str(folder),
        "--allow-untrained",
        "--json",
        "--mask-out",
        str(tmp_path / "ct.nii"),
        "--seg-out",
        str(seg),
    )
    assert code == 0, result
    assert result["model_id"] == "monai-wholebody-ct-segresnet-3mm" and result["modality"] == "CT"
    assert len(result["volumes_ml"]) == 104
    assert result["shape"] == [28, 30, 20]
    written = nib.load(tmp_path / "ct.nii")
    assert nib.aff2axcodes(written.affine) == ("L", "P", "S")  # back in the series' own (LPS) order

    # The DICOM SEG: valid, says the network was untrained, and measured again as an uploaded mask
    # it gives the same volumes (within 0.5 %: here to the voxel).
    assert result["seg_out"] == str(seg) and dciodvfy_errors(seg) == []
    header = pydicom.dcmread(seg, stop_before_pixels=True)
    assert header.SeriesDescription.endswith("untrained: meaningless") and header.ContentLabel == "UNTRAINED"
    code, [again] = run("measure", str(folder), str(seg), "--json")
    assert code == 0, again
    present = {name: ml for name, ml in result["volumes_ml"].items() if ml > 0}
    assert present and {name: again["volumes_ml"][name] for name in present} == pytest.approx(present, rel=0.005)


def test_each_bad_input_gets_one_json_error_line_and_exit_1(tmp_path: Path):
    require_samples()
    png = SAMPLES / "cxr" / "nih_00000001_000.png"
    code, lines = run("segment", str(png), "--allow-untrained", "--json")
    assert code == 1 and len(lines) == 1 and "nih_00000001_000.png" in lines[0]["error"]

    code, [line] = run("segment", str(MRI / "mni152_t1.nii.gz"), "--allow-untrained", "--json")
    assert code == 1 and "4 BraTS channels" in line["error"]

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../../etc/slice.dcm", b"x")
    code, [line] = run("segment", str(evil), "--allow-untrained", "--json")
    assert code == 1 and "../../etc/slice.dcm" in line["error"]

    cropped = tmp_path / "cropped.nii.gz"
    gm = nib.load(MRI / "mni152_gm_prob.nii.gz")
    nib.save(nib.Nifti1Image((np.asarray(gm.dataobj)[5:] >= 128).astype(np.uint8), gm.affine), cropped)
    code, [line] = run("measure", str(MRI / "mni152_t1.nii.gz"), str(cropped), "--json")
    assert code == 1 and "192x233x189" in line["error"]


def test_missing_segmentation_weights_stop_with_where_they_go(tmp_path: Path):
    require_samples()
    code, [line] = run("segment", str(MRI / "mni152_t1.nii.gz"), "--model", "monai-brats-segresnet", "--json")
    assert code == 1
    assert "4 channels" in line["error"] or "model.pt" in line["error"]


def test_weights_import_installs_a_bundle_folder_for_a_segmentation_model(tmp_path: Path, monkeypatch):
    import torch

    from core.settings import load_settings
    from inference.models.loader import build_network
    from inference.models.registry import BRATS_SEGRESNET
    from inference.models.weights import find_weights_file

    bundle = tmp_path / "brats_mri_segmentation" / "models"
    bundle.mkdir(parents=True)
    torch.save(build_network(BRATS_SEGRESNET).state_dict(), bundle / "model.pt")
    out = io.StringIO()
    assert main(["weights", "import", str(bundle.parent), "--model", "monai-brats-segresnet"], out=out) == 0
    assert find_weights_file(BRATS_SEGRESNET, load_settings()) is not None
    status = io.StringIO()
    main(["weights", "status"], out=status)
    assert "monai-brats-segresnet" in status.getvalue()


def test_measure_refuses_a_damaged_zip_or_mask_in_one_line_naming_it(tmp_path: Path):
    """A zip whose directory points outside it ("negative seek value" from zipfile), and a label map
    cut short: one error line each (JSON or not), naming the file, exit 1."""
    folder = tmp_path / "series"
    folder.mkdir()
    geometry = Geometry(*PLANES["axial"], slices=6)
    members = series(geometry)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    damaged = bytearray(buffer.getvalue())
    end = damaged.rfind(b"PK\x05\x06")
    damaged[end + 12 : end + 16] = (len(damaged) * 2).to_bytes(4, "little")  # central directory size
    bad_zip = tmp_path / "series.zip"
    bad_zip.write_bytes(bytes(damaged))
    mask = tmp_path / "mask.nii.gz"
    mask.write_bytes(b"\x1f\x8b" + b"\x00" * 40)
    code, lines = run("measure", str(bad_zip), str(mask), "--json")
    assert code == 1 and len(lines) == 1
    assert lines[0]["error"].startswith("series.zip is not a readable zip archive")

    for name, data in members:
        (folder / name).write_bytes(data)
    out = io.StringIO()
    code = main(["measure", str(folder), str(mask)], out=out)
    assert code == 1
    assert out.getvalue().count("\n") == 1 and out.getvalue().startswith("error: mask.nii.gz ")
