"""A third model from data alone: a registry entry for a torchvision ResNet-18 classifier (1-channel
input, two labels) runs through the shared loader and weights rules, the analysis pipeline, the
review page, its verdict panel and storage, with no code of its own.

Its weights are a state_dict saved where the loader looks, with a known answer built in: the head's
weights are zero and its biases +3 and -3, so whatever the image, "Blob" scores sigmoid(3) and
"Other" sigmoid(-3). Untrained or wrongly loaded weights would give other scores.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from sqlalchemy import create_engine, text

from core.settings import load_settings
from core.vocabulary import Band, Modality
from inference.models import registry
from inference.models.spec import ClassifierSpec, WeightsSource
from tests.app.conftest import chosen_verdicts, click_verdict, confirm_radiograph, new_app, texts, verdict_items
from tests.conftest import load

TINY = ClassifierSpec(
    model_id="test-resnet18-two-findings",
    modality=Modality.CHEST_XRAY,
    display_name="Test ResNet-18 (two findings)",
    adapter="torchvision",
    architecture=(("name", "resnet18"), ("in_channels", 1), ("first_conv", "conv1"), ("head", "fc")),
    labels=("Blob", "Other"),
    input_size=64,
    normalisation="unit",
    cam_target_layer="layer4",
    bands_key="cxr",
    weights=WeightsSource(
        description="this test's own file",
        url="http://127.0.0.1:9/never-downloaded.pt",
        filename="test-resnet18-two-findings.pt",
        installed="test-resnet18-two-findings.pt",
    ),
)
BLOB, OTHER = 1 / (1 + math.exp(-3.0)), 1 / (1 + math.exp(3.0))


@pytest.fixture
def third_model(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register the entry, point the chest X-ray review at it and install its weights file."""
    from inference.models.loader import build_network
    from inference.models.weights import installed_weights_path, sha256_of_file

    monkeypatch.setitem(registry.MODELS, TINY.model_id, TINY)
    monkeypatch.setenv("CXR_MODEL_ID", TINY.model_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        network = build_network(TINY)
    with torch.no_grad():
        network.fc.weight.zero_()
        network.fc.bias.copy_(torch.tensor([3.0, -3.0]))
    path = installed_weights_path(TINY, load_settings())
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return sha256_of_file(path)


def test_the_shared_loader_and_pipeline_run_it(third_model: str, samples: Path, bands) -> None:
    from inference.models.loader import load_model
    from pipelines.analyze import analyze

    loaded = load_model(TINY, load_settings(), allow_untrained=False, device="cpu")
    assert loaded.trained and loaded.weights_sha256 == third_model
    assert loaded.identity.model_id == TINY.model_id
    image = load(samples / "nih_00000001_000.png")
    analysis = analyze(loaded, image, bands)
    scores = {f.label: f.score for f in analysis.prediction.findings}
    assert scores == pytest.approx({"Blob": BLOB, "Other": OTHER}, abs=1e-5)
    assert analysis.prediction.finding("Blob").band is Band.CRITICAL
    assert analysis.prediction.finding("Other").band is Band.NEGATIVE
    assert analysis.prediction.model == loaded.identity
    assert analysis.gradcam.maps.shape == (2, 64, 64) and analysis.gradcam.labels == TINY.labels
    assert analysis.model_input.shape == (1, 1, 64, 64) and 0.0 <= analysis.model_input.min() <= 1.0


def test_the_review_page_shows_it_and_stores_its_verdicts(third_model: str, samples: Path) -> None:
    at = new_app()
    at.run()
    assert not at.exception, at.exception
    path = samples / "nih_00000001_000.png"
    at.file_uploader[0].set_value((path.name, path.read_bytes(), "image/png")).run()
    confirm_radiograph(at)
    assert not at.exception, at.exception
    said = texts(at)
    assert "Untrained weights" not in said, "trained weights were installed"
    assert verdict_items(at) == ["Blob", "Other"]  # critical first, then by score
    click_verdict(at, "Blob", "agree")
    click_verdict(at, "Other", "disagree")
    assert chosen_verdicts(at) == {"Blob": "agree", "Other": "disagree"}

    engine = create_engine(load_settings().database_url)
    try:
        with engine.connect() as connection:
            runs = list(connection.execute(text("SELECT id, model_id, weights_sha256, trained FROM analysis_runs")))
            findings = list(connection.execute(text("SELECT label, score, band FROM run_findings ORDER BY position")))
            verdicts = list(connection.execute(text("SELECT verdict FROM verdicts ORDER BY id")))
    finally:
        engine.dispose()
    [(run_id, model_id, weights_sha256, trained)] = runs
    assert (model_id, weights_sha256, bool(trained)) == (TINY.model_id, third_model, True)
    assert [(label, band) for label, _score, band in findings] == [("Blob", "critical"), ("Other", "negative")]
    assert [v for (v,) in verdicts] == ["agree", "disagree"]
