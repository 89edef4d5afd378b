"""Closed-form Grad-CAM against pytorch-grad-cam for every registered classifier, and hook safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from inference.images.preprocess import model_input
from pipelines.analyze import analyze
from tests.conftest import load
from xai.cam import CAM_METHODS, heatmap_problem, pgc_cam


@pytest.fixture(scope="module")
def nih_analysis(untrained_model, bands):
    from tests.conftest import NIH_PNG, require_samples

    require_samples()
    image = load(NIH_PNG)
    return analyze(untrained_model, image, bands), model_input(image.pixels, 224)


def test_closed_form_equals_pytorch_grad_cam_for_all_18(untrained_model, nih_analysis) -> None:
    analysis, x = nih_analysis
    flat = 0
    for index, label in enumerate(untrained_model.spec.labels):
        reference = pgc_cam(untrained_model, x, "Grad-CAM", index)
        ours = analysis.gradcam.map_for(label)
        assert ours.shape == reference.shape == (224, 224)
        assert np.abs(ours - reference).max() <= 0.01, label
        assert ours.min() == pytest.approx(0.0, abs=1e-6)
        if ours.max() == 0.0:  # no region raised this score: both implementations give a flat map
            flat += 1
            assert reference.max() <= 0.01
        else:
            assert ours.max() == pytest.approx(1.0, abs=1e-3)
    assert flat < 6


def _classifiers() -> list[str]:
    from inference.models.registry import all_models
    from inference.models.spec import ClassifierSpec

    return [spec.model_id for spec in all_models() if isinstance(spec, ClassifierSpec)]


@pytest.fixture(scope="module", params=_classifiers())
def any_classifier(request):
    """Each registered classifier, with its trained weights where it has them, on an image it reads."""
    from core.settings import load_settings
    from inference.models.loader import load_model
    from inference.models.registry import get_classifier
    from tests.conftest import NIH_PNG, SAMPLES, require_samples

    require_samples()
    spec = get_classifier(request.param)
    loaded = load_model(spec, load_settings(), allow_untrained=True, device="cpu")
    path = NIH_PNG if spec.bands_key == "cxr" else SAMPLES / "mri_tumour" / "test" / "meningioma"
    if path.is_dir():
        path = sorted(path.iterdir())[0]
    image = load(path)
    return loaded, model_input(image.pixels, spec.input_size, spec.normalisation)


def test_every_classifiers_closed_form_is_pytorch_grad_cam(any_classifier) -> None:
    """The one-pass maps of the review page are Grad-CAM for each architecture (to 1e-4), not a
    formula derived for another one."""
    from pipelines.forward import closed_form_gradcam, forward_with_features

    loaded, x = any_classifier
    _, features = forward_with_features(loaded, x)
    maps = closed_form_gradcam(loaded, features[0])
    drawn = 0
    for index, label in enumerate(loaded.classifier_spec.labels):
        reference = pgc_cam(loaded, x, "Grad-CAM", index)
        assert np.abs(maps[index] - reference).max() <= 1e-4, (loaded.spec.model_id, label)
        drawn += heatmap_problem(maps[index]) is None
    assert drawn >= len(loaded.classifier_spec.labels) // 2


@pytest.mark.parametrize("method", CAM_METHODS)
def test_every_method_works_for_every_classifier(any_classifier, method: str) -> None:
    loaded, x = any_classifier
    size = loaded.classifier_spec.input_size
    cam = pgc_cam(loaded, x, method, 0)
    assert cam.shape == (size, size) and np.isfinite(cam).all()
    assert 0.0 <= cam.min() and cam.max() <= 1.0 + 1e-6


def test_maps_differ_between_findings(nih_analysis) -> None:
    maps = nih_analysis[0].gradcam.maps
    assert np.abs(maps[0] - maps[10]).max() > 0.2


@pytest.mark.parametrize("method", CAM_METHODS)
def test_every_offered_method_gives_a_drawable_map(untrained_model, nih_analysis, method: str) -> None:
    cam = pgc_cam(untrained_model, nih_analysis[1], method, 3)
    assert cam.shape == (224, 224) and np.isfinite(cam).all()
    assert 0.0 <= cam.min() and cam.max() <= 1.0 + 1e-6


def test_hook_based_cams_from_concurrent_sessions_do_not_mix(untrained_model, samples) -> None:
    """Two sessions computing CAMs on the shared model at once get exactly their own maps."""
    inputs = {
        name: model_input(load(samples / name).pixels, 224)
        for name in ("nih_00000001_000.png", "tbx11k_h0001.png", "padchest_16747_3_1.jpg")
    }
    jobs = [(name, method, label) for name in inputs for method in ("Grad-CAM++", "Layer-CAM") for label in (0, 7)]
    expected = {job: pgc_cam(untrained_model, inputs[job[0]], job[1], job[2]) for job in jobs}
    results: dict = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def work(job) -> None:
        try:
            barrier.wait()
            results[job] = pgc_cam(untrained_model, inputs[job[0]], job[1], job[2])
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for job in jobs:
        np.testing.assert_allclose(results[job], expected[job], atol=1e-5, err_msg=str(job))
    assert not untrained_model.module.features.norm5._forward_hooks, "no hook is left on the shared model"


def test_hook_based_cams_are_not_disturbed_by_other_sessions_plain_forwards(untrained_model, samples) -> None:
    """Another session analysing a different image while a pgc CAM runs must not change that CAM."""
    from pipelines.forward import forward_with_features

    mine = model_input(load(samples / "nih_00000001_000.png").pixels, 224)
    other = model_input(load(samples / "tbx11k_h0001.png").pixels, 224)
    expected = {m: pgc_cam(untrained_model, mine, m, 2) for m in ("Grad-CAM++", "Layer-CAM")}
    stop = threading.Event()

    def other_session() -> None:
        while not stop.is_set():
            forward_with_features(untrained_model, other)

    thread = threading.Thread(target=other_session)
    thread.start()
    try:
        for _ in range(3):
            for method, reference in expected.items():
                np.testing.assert_allclose(pgc_cam(untrained_model, mine, method, 2), reference, atol=1e-5)
    finally:
        stop.set()
        thread.join()


def test_pgc_sees_post_relu_activations_whatever_the_device(untrained_model) -> None:
    layer = untrained_model.hooked_copy().features.cam_relu
    x = torch.tensor([-1.0, 2.0])
    assert torch.equal(layer(x), torch.tensor([0.0, 2.0])) and layer(x) is not x
    assert not hasattr(untrained_model.module.features, "cam_relu"), "the shared module is unchanged"


def test_flat_and_invalid_heatmaps_are_reported_not_drawn() -> None:
    assert heatmap_problem(np.zeros((8, 8), np.float32)).startswith("The heatmap is flat")
    bad = np.ones((8, 8), np.float32)
    bad[0, 0] = np.nan
    assert "invalid values" in heatmap_problem(bad)
    assert heatmap_problem(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)) is None
