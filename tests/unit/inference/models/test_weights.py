"""The real loading path, offline: weights saved where the loader looks are loaded with no network;
missing, wrong and pickled files are refused with the fix spelled out; nothing falls back silently."""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import pytest
import torch

from core.errors import WeightsInvalid, WeightsMissing
from core.settings import load_settings
from inference.models.loader import build_network, load_model
from inference.models.registry import CXR_DENSENET
from inference.models.weights import (
    download_weights,
    find_weights_file,
    import_weights,
    installed_weights_path,
    sha256_of_file,
)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _fake_trained_state_dict() -> dict:
    torch.manual_seed(1234)
    model = build_network(CXR_DENSENET)
    with torch.no_grad():
        model.classifier.bias.fill_(0.25)  # a recognisable value
    return model.state_dict()


def test_state_dict_where_the_loader_looks_is_loaded_offline(no_network) -> None:
    settings = load_settings()
    path = installed_weights_path(CXR_DENSENET, settings)
    path.parent.mkdir(parents=True)
    torch.save(_fake_trained_state_dict(), path)

    loaded = load_model(CXR_DENSENET, settings, allow_untrained=True, device="cpu")

    assert loaded.trained is True
    assert loaded.weights_path == str(path)
    assert loaded.weights_sha256 == sha256_of_file(path)
    assert torch.allclose(loaded.module.classifier.bias, torch.full((18,), 0.25))
    assert list(loaded.module.pathologies) == list(CXR_DENSENET.labels)
    assert torch.allclose(loaded.module.op_threshs, torch.tensor(CXR_DENSENET.op_thresholds))


def test_weights_dir_is_configurable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network) -> None:
    monkeypatch.setenv("MODEL_WEIGHTS_DIR", str(tmp_path / "site-weights"))
    settings = load_settings()
    assert installed_weights_path(CXR_DENSENET, settings).parent == tmp_path / "site-weights"
    torch.save(_fake_trained_state_dict(), tmp_path / "src.pt")
    import_weights(tmp_path / "src.pt", CXR_DENSENET, settings)
    assert load_model(CXR_DENSENET, settings, allow_untrained=False, device="cpu").trained


def test_missing_weights_say_where_and_how(no_network) -> None:
    settings = load_settings()
    with pytest.raises(WeightsMissing) as info:
        load_model(CXR_DENSENET, settings, allow_untrained=False, device="cpu")
    message = str(info.value)
    assert CXR_DENSENET.weights_filename in message
    assert str(settings.weights_dir) in message
    assert "python -m inference weights import" in message
    assert info.value.expected_path == str(installed_weights_path(CXR_DENSENET, settings))


def test_untrained_mode_only_when_asked_and_always_flagged(no_network) -> None:
    settings = load_settings()
    loaded = load_model(CXR_DENSENET, settings, allow_untrained=True, device="cpu")
    again = load_model(CXR_DENSENET, settings, allow_untrained=True, device="cpu")
    assert loaded.trained is False and loaded.weights_path is None
    assert loaded.hooked_copy() is not loaded.module, "hook users never touch the shared module"
    assert loaded.weights_sha256 == again.weights_sha256, "untrained weights are seeded and reproducible"


def test_broken_weights_file_is_never_replaced_by_untrained(no_network) -> None:
    settings = load_settings()
    path = installed_weights_path(CXR_DENSENET, settings)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    with pytest.raises(WeightsInvalid):
        load_model(CXR_DENSENET, settings, allow_untrained=True, device="cpu")


def test_import_checks_strict_keys_and_writes_nothing_on_failure(tmp_path: Path) -> None:
    settings = load_settings()
    wrong = _fake_trained_state_dict()
    wrong.pop("classifier.weight")
    wrong["extra.layer"] = torch.zeros(1)
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(WeightsInvalid, match="does not fit"):
        import_weights(tmp_path / "wrong.pt", CXR_DENSENET, settings)
    assert not installed_weights_path(CXR_DENSENET, settings).exists()


def test_pickled_release_format_needs_explicit_trust(tmp_path: Path) -> None:
    settings = load_settings()
    model = build_network(CXR_DENSENET)
    torch.save(model, tmp_path / "release.pt")  # whole pickled model, as torchxrayvision publishes
    with pytest.raises(WeightsInvalid, match="--allow-pickle"):
        import_weights(tmp_path / "release.pt", CXR_DENSENET, settings)
    dest = import_weights(tmp_path / "release.pt", CXR_DENSENET, settings, allow_pickle=True)
    state = torch.load(dest, weights_only=True)  # installed as a plain state_dict
    assert "classifier.weight" in state
    assert dest.with_suffix(".pt.json").is_file()


def test_download_offline_fails_with_instructions(no_network) -> None:
    settings = load_settings()
    with pytest.raises(WeightsMissing, match="weights import"):
        download_weights(CXR_DENSENET, settings, timeout_s=2)
    assert not list(settings.weights_dir.glob("*.part")), "no partial file is left behind"


def test_download_from_a_server_installs_and_reports_progress(tmp_path: Path, monkeypatch) -> None:
    from dataclasses import replace

    served = tmp_path / "served"
    served.mkdir()
    torch.save(build_network(CXR_DENSENET), served / CXR_DENSENET.weights_filename)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Quiet(*a, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{CXR_DENSENET.weights_filename}"
        # A registry that knows the published file's sha256 refuses any other file, installing nothing.
        wrong = replace(CXR_DENSENET, weights=replace(CXR_DENSENET.weights, url=url, sha256="0" * 64))
        with pytest.raises(WeightsInvalid, match="sha256"):
            download_weights(wrong, load_settings())
        assert find_weights_file(CXR_DENSENET, load_settings()) is None
        published = sha256_of_file(served / CXR_DENSENET.weights_filename)
        spec = replace(CXR_DENSENET, weights=replace(CXR_DENSENET.weights, url=url, sha256=published))
        progress: list[float] = []
        dest = download_weights(spec, load_settings(), progress=lambda f, _t: progress.append(f))
    finally:
        server.shutdown()
    assert dest.is_file() and progress and progress[-1] == pytest.approx(1.0)
    assert load_model(CXR_DENSENET, load_settings(), allow_untrained=False, device="cpu").trained


def test_a_sites_own_resnet50_dementia_weights_run_untrained_until_imported(tmp_path: Path, no_network) -> None:
    """The original design's ResNet-50 grader ships no weights: without them it is refused with the
    import command, or runs labelled untrained when asked; a site's state_dict of that architecture,
    imported, makes it a trained model with that file's hash."""
    from inference.models.registry import SITE_DEMENTIA_RESNET50 as spec

    settings = load_settings()
    with pytest.raises(WeightsMissing, match=f"weights import FILE --model {spec.model_id}"):
        load_model(spec, settings, allow_untrained=False, device="cpu")
    assert load_model(spec, settings, allow_untrained=True, device="cpu").trained is False
    site = build_network(spec)
    assert site.conv1.in_channels == 1 and site.fc.out_features == 4
    torch.save(site.state_dict(), tmp_path / "site-resnet50.pt")
    import_weights(tmp_path / "site-resnet50.pt", spec, settings)
    loaded = load_model(spec, settings, allow_untrained=False, device="cpu")
    assert loaded.trained and loaded.weights_sha256 == sha256_of_file(installed_weights_path(spec, settings))
