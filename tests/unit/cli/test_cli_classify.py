"""`python -m inference classify | models | train` as a user runs them: real slices from the samples,
the shipped brain MRI models, a real process, JSON lines and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file

from tests.conftest import SAMPLES, require_samples
from tests.unit.cli.test_cli import run_cli, run_in_process

TUMOUR = SAMPLES / "mri_tumour"


@pytest.fixture(scope="module")
def slices() -> list[Path]:
    require_samples()
    return [
        sorted((TUMOUR / "test" / folder).iterdir())[1] for folder in ("meningioma", "glioma")
    ]  # the first meningioma is the one it misreads


def test_classify_prints_each_slices_classes_bands_and_model_and_refuses_a_ct(slices, tmp_path: Path) -> None:
    ct = Path(get_testdata_file("CT_small.dcm"))
    mr = Path(get_testdata_file("MR_small.dcm"))
    volume = SAMPLES / "mri" / "mni152_t1.nii.gz"
    files = [*slices, ct, mr, volume]
    done = run_cli(
        "classify", *map(str, files), "--model", "brain-tumour-4class", "--json", "--tta",
        "--cam-dir", str(tmp_path / "cams"),
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(p) for p in files]
    meningioma, glioma, refused, dicom_mr, whole = lines
    assert refused["error"].startswith("CT_small.dcm is a CT image (Modality CT), not an MR image.")
    for result in (meningioma, glioma, dicom_mr):
        assert result["model"]["id"] == "brain-tumour-4class" and result["model"]["trained"] is True
        assert [c["label"] for c in result["classes"]] == ["Glioma", "Meningioma", "Pituitary tumour", "No tumour"]
        assert sum(c["score"] for c in result["classes"]) == pytest.approx(1.0, abs=1e-4)
        assert {c["band"] for c in result["classes"]} <= {"negative", "indeterminate", "positive", "critical"}
        spread = result["uncertainty"]["classes"]
        assert len(spread) == 4 and any(c["std"] > 0 for c in spread)
    assert dicom_mr["modality"] == "MR" and meningioma["modality"] == "image"
    assert meningioma["prediction"] == "Meningioma" and glioma["prediction"] == "Glioma"
    # The MNI T1 (189 axial slices) slice by slice: every slice with content scored, and per class
    # the volume's score by the card's aggregation with the slice that drives it.
    assert whole["modality"] == "MR" and whole["aggregate"]["method"] == "top-k mean"
    scored = [s["index"] for s in whole["slices"]]
    assert len(scored) + whole["aggregate"]["skipped_slices"] == 189 and scored == sorted(scored)
    assert all(len(s["scores"]) == 4 for s in whole["slices"])
    for c in whole["classes"]:
        driving = whole["aggregate"]["slice"][c["label"]]
        k = [s["scores"][[x["label"] for x in whole["classes"]].index(c["label"])] for s in whole["slices"]]
        assert driving in scored and c["score"] == pytest.approx(float(np.mean(sorted(k)[-5:])), abs=1e-5)
    cams = sorted((tmp_path / "cams").glob("*.png"))
    assert len(cams) == 12 and not any("UNTRAINED" in c.name for c in cams)


def test_models_lists_every_model_and_the_shipped_cards_test_figures() -> None:
    done = run_cli("models", "--json")
    assert done.returncode == 0, done.stderr
    models = {m["id"]: m for m in map(json.loads, done.stdout.splitlines())}
    assert {"xrv-densenet121-res224-all", "brain-tumour-4class", "brain-dementia-4class"} <= set(models)
    for model_id in ("brain-tumour-4class", "brain-dementia-4class"):
        entry = models[model_id]
        assert entry["task"] == "classification" and entry["trained"] is True and len(entry["labels"]) == 4
        assert entry["weights_sha256"] == entry["card"]["weights"]["sha256"]
        evaluation = entry["card"]["evaluation"]
        assert evaluation["split"] == "test" and evaluation["n"] in (160, 312)
        assert {"accuracy", "balanced_accuracy", "macro_auc", "ece"} <= set(evaluation)


def test_train_on_a_tiny_labelled_folder_writes_weights_that_load_and_a_card(tmp_path: Path, monkeypatch) -> None:
    """The training command CI can afford: four classes, six slices each, one epoch; then a second
    checkpoint (another seed) joins the card as an ensemble, whose spread is the mean and standard
    deviation of the two checkpoints' own calibrated scores."""
    require_samples()
    data = tmp_path / "data"
    for split, per_class in (("train", 6), ("test", 2)):
        for folder in ("glioma", "meningioma", "pituitary", "notumor"):
            (data / split / folder).mkdir(parents=True)
            for path in sorted((TUMOUR / split / folder).iterdir())[:per_class]:
                (data / split / folder / path.name).symlink_to(path)
    out = tmp_path / "out"
    args = ["train", "--model", "brain-tumour-4class", "--data", str(data), "--epochs", "1", "--batch-size", "4"]
    done = run_in_process(*args, "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads(done.stdout.splitlines()[-1])
    assert card["training"]["train"]["n"] + card["training"]["validation"]["n"] == 24
    assert card["training"]["validation"]["per_class"] == {
        "Glioma": 1,
        "Meningioma": 1,
        "Pituitary tumour": 1,
        "No tumour": 1,
    }
    assert card["evaluation"]["n"] == 8 and len(card["evaluation"]["confusion"]) == 4
    assert card["calibration"]["temperature"] > 0 and card["training"]["seed"] == 0
    assert "epoch 1 of 1" in done.stderr  # the progress bar
    weights = out / "brain-tumour-4class.pt"
    state = torch.load(weights, weights_only=True)
    from inference.models.adapters import apply_state_dict
    from inference.models.loader import build_network
    from inference.models.registry import BRAIN_TUMOUR

    apply_state_dict(BRAIN_TUMOUR, build_network(BRAIN_TUMOUR), state, source_name=weights.name)  # strict keys
    assert json.loads((out / "brain-tumour-4class.card.json").read_text()) == card

    missing = run_in_process(
        "train", "--model", "brain-tumour-4class", "--data", str(tmp_path / "nowhere"), "--out", str(out)
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "No 'train' folder" in missing.stderr

    member = run_in_process(*args, "--out", str(out), "--seed", "1", "--ensemble-member")
    assert member.returncode == 0, member.stderr[-2000:]
    assert "ensemble: 2 checkpoints (seeds 0, 1)" in member.stdout
    again = run_in_process(*args, "--out", str(out), "--seed", "1", "--ensemble-member")
    assert again.returncode == 2 and "seed 1 is already in the card" in again.stderr
    card = json.loads((out / "brain-tumour-4class.card.json").read_text())
    (entry,) = card["weights"]["ensemble"]
    assert entry["file"] == "brain-tumour-4class.seed1.pt" and entry["seed"] == 1 and entry["evaluation"]["n"] == 8

    _two_checkpoints_average(out, entry, monkeypatch)


def _two_checkpoints_average(out: Path, entry: dict, monkeypatch) -> None:
    import inference.models.cards
    import inference.models.spec
    from core.errors import WeightsInvalid
    from core.settings import load_settings
    from inference.images.bands import load_band_config
    from inference.images.ingest import load_image
    from inference.models.adapters import as_input
    from inference.models.loader import load_model
    from inference.models.registry import BRAIN_TUMOUR
    from pipelines.classify import TTA_VIEWS, expected_image, tta_inputs, uncertainty

    for module in (inference.models.spec, inference.models.cards):
        monkeypatch.setattr(module, "SHIPPED_DIR", out)
    settings = load_settings()
    loaded = load_model(BRAIN_TUMOUR, settings, allow_untrained=False, device="cpu")
    (second,) = loaded.ensemble
    assert second.seed == 1 and second.weights_sha256 == entry["sha256"] and second.temperature == entry["temperature"]
    path = sorted((TUMOUR / "test" / "glioma").iterdir())[0]
    image = load_image(
        path.read_bytes(),
        path.name,
        max_bytes=10**8,
        max_pixels=10**8,
        hash_key=b"k",
        expected=expected_image(BRAIN_TUMOUR),
    )
    bands = load_band_config(settings.bands_file)

    def own_scores(spec, module) -> np.ndarray:
        with torch.inference_mode():
            return loaded.adapter.score(spec, module, as_input(tta_inputs(image, spec), "cpu")).numpy()

    from dataclasses import replace

    first = own_scores(BRAIN_TUMOUR, loaded.module)
    other = own_scores(replace(BRAIN_TUMOUR, temperature=entry["temperature"]), second.module)
    spread = uncertainty(loaded, image, bands, augment=False)
    assert spread is not None and spread.method == "ensemble of 2 checkpoints" and spread.views == ("original",)
    assert spread.checkpoints == (loaded.weights_sha256, entry["sha256"])
    np.testing.assert_allclose(spread.mean, (first[0] + other[0]) / 2, atol=1e-5)
    np.testing.assert_allclose(spread.std, np.abs(first[0] - other[0]) / 2, atol=1e-5)
    both = uncertainty(loaded, image, bands, augment=True)
    assert (
        both is not None
        and both.method == f"ensemble of 2 checkpoints × test-time augmentation ({len(TTA_VIEWS)} views)"
    )
    np.testing.assert_allclose(both.mean, np.concatenate([first, other]).mean(axis=0), atol=1e-5)
    # The views the analysis scored in its own batch (one pass fewer) give the same spread.
    from pipelines.analyze import analyze

    analysis = analyze(loaded, image, bands, augment=True)
    np.testing.assert_allclose(analysis.scored, first, atol=1e-5)
    np.testing.assert_allclose([f.score for f in analysis.prediction.findings], first[0], atol=1e-5)
    reused = uncertainty(loaded, image, bands, augment=True, scored=analysis.scored)
    assert reused is not None
    np.testing.assert_allclose(reused.mean, both.mean, atol=1e-5)
    np.testing.assert_allclose(reused.std, both.std, atol=1e-5)
    with pytest.raises(ValueError, match="views"):
        uncertainty(loaded, image, bands, augment=True, scored=analysis.scored[:1])
    assert uncertainty(replace(loaded, ensemble=()), image, bands, augment=False) is None

    (out / entry["file"]).write_bytes(b"changed")  # a checkpoint that is not the card's is refused
    with pytest.raises(WeightsInvalid, match="not the checkpoint its model card lists"):
        load_model(BRAIN_TUMOUR, settings, allow_untrained=False, device="cpu")
