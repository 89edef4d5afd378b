"""MONAI 3D segmentation: bundle architectures, weights loading rules, and the pipeline end to end
on small synthetic volumes (small rois via ``dataclasses.replace``; the full-size run is manual).

Manual full-size check (not run here; minutes on CPU)::

    python -c "
    import time, numpy as np, torch
    from inference.models.registry import BRATS_SEGRESNET as S
    from inference.models.loader import build_network
    from inference.volume.segment import pad_to_roi, count_windows
    net = build_network(S); x = torch.randn(1, 4, 240, 240, 155)
    assert count_windows(x.shape[2:], S) == 1
    t = time.perf_counter()
    with torch.inference_mode(): y = net(pad_to_roi(x, S))
    print(y.shape, time.perf_counter() - t)"
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import ChannelAssignmentError, WeightsInvalid, WeightsMissing, WrongModality
from core.settings import load_settings
from inference.models.loader import build_network, load_model
from inference.models.registry import BRATS_SEGRESNET, WHOLEBODY_CT_SEGRESNET, get_segmenter, segmenters
from inference.models.weights import candidate_paths, import_weights, installed_weights_path, sha256_of_file
from inference.volume.measure import measure_structures
from inference.volume.segment import (
    brats_labels_from_logits,
    count_windows,
    prepare_input,
    segment,
    segment_brats,
    segment_ct,
)
from inference.volume.types import MultiChannelVolume, Volume, read_only

BRATS_SMALL = dataclasses.replace(BRATS_SEGRESNET, roi_size=(32, 32, 32))
CT_SMALL = dataclasses.replace(WHOLEBODY_CT_SEGRESNET, roi_size=(16, 16, 16))


def _volume(data: np.ndarray, spacing: float = 1.0, modality: str = "MR") -> Volume:
    return Volume(
        data=read_only(np.ascontiguousarray(data, dtype=np.float32)),
        affine=np.diag([spacing, spacing, spacing, 1.0]),
        modality=modality,
        source_format="nifti",
        input_sha256="0" * 64,
        description="synthetic",
        original_axcodes="RAS",
    )


def _brats_case(shape=(48, 48, 40), names=("T1c", "T1", "T2", "FLAIR"), modality="MR") -> MultiChannelVolume:
    rng = np.random.default_rng(0)
    channels = []
    for c in range(len(names)):
        data = np.zeros(shape, np.float32)
        inner = tuple(slice(n // 6, n - n // 6) for n in shape)  # a head in a zero background
        data[inner] = rng.normal(100 + 50 * c, 20, size=data[inner].shape)
        channels.append(_volume(data, modality=modality))
    return MultiChannelVolume(channel_names=tuple(names), channels=tuple(channels), input_sha256="1" * 64)


@pytest.fixture(scope="module")
def brats_state_dict() -> dict:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = build_network(BRATS_SEGRESNET)
    with torch.no_grad():
        model.conv_final[2].conv.bias.fill_(0.25)  # a recognisable value
    return model.state_dict()


# --- registry and architecture -----------------------------------------------------------------


def test_registry_entries_are_consistent() -> None:
    assert {s.model_id for s in segmenters()} == {"monai-brats-segresnet", "monai-wholebody-ct-segresnet-3mm"}
    assert get_segmenter("monai-brats-segresnet") is BRATS_SEGRESNET
    with pytest.raises(KeyError, match="monai-brats-segresnet"):
        get_segmenter("nope")
    for spec in segmenters():
        kwargs = spec.architecture_kwargs()
        assert kwargs["in_channels"] == spec.in_channels
        assert kwargs["out_channels"] == spec.out_channels
        values = [info.value for info in spec.labels]
        assert values == sorted(set(values)) and 0 not in values
        assert all(set(s.values) <= set(values) for s in spec.structures)
    ct = WHOLEBODY_CT_SEGRESNET
    assert len(ct.labels) == 104 and ct.output_channels[0] == "background"
    assert ct.labels[0].name == "spleen" and ct.labels[0].value == 1
    assert ct.labels[-1].name == "urinary_bladder" and ct.labels[-1].value == 104
    assert len({info.color for info in ct.labels}) == 104
    assert BRATS_SEGRESNET.channel_names == ("T1c", "T1", "T2", "FLAIR")
    assert {s.name: s.values for s in BRATS_SEGRESNET.structures}["Whole tumour"] == (1, 2, 4)


@pytest.mark.parametrize(
    ("spec", "n_params", "final_shape"),
    [(BRATS_SEGRESNET, 4_702_227, (3, 16, 1, 1, 1)), (WHOLEBODY_CT_SEGRESNET, 18_799_401, (105, 32, 1, 1, 1))],
)
def test_architecture_matches_bundle(spec, n_params, final_shape) -> None:
    model = build_network(spec)
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert len(state) == 83
    init_filters = spec.architecture_kwargs()["init_filters"]
    assert state["convInit.conv.weight"].shape == (init_filters, spec.in_channels, 3, 3, 3)
    assert state["conv_final.2.conv.weight"].shape == final_shape
    assert "down_layers.3.4.conv2.conv.weight" in state and "up_layers.2.0.conv1.conv.weight" in state


# --- weights -------------------------------------------------------------------------------------


def _where(kind: str, settings) -> Path:
    paths = candidate_paths(BRATS_SEGRESNET, settings)
    return {"installed": paths[0], "bundle": paths[1], "flat": paths[2]}[kind]


@pytest.mark.parametrize(("kind", "nested"), [("installed", False), ("bundle", True), ("flat", False)])
def test_state_dict_where_the_loader_looks_is_loaded(kind, nested, brats_state_dict) -> None:
    settings = load_settings()
    path = _where(kind, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": brats_state_dict} if nested else brats_state_dict, path)
    if kind == "bundle":
        assert path == settings.weights_dir / "brats_mri_segmentation" / "models" / "model.pt"

    loaded = load_model(BRATS_SEGRESNET, settings, allow_untrained=False, device="cpu")

    assert loaded.trained is True
    assert loaded.weights_path == str(path)
    assert loaded.weights_sha256 == sha256_of_file(path)
    assert torch.allclose(loaded.module.conv_final[2].conv.bias, torch.full((3,), 0.25))
    assert not loaded.module.training
    assert not any(p.requires_grad for p in loaded.module.parameters())


def test_ct_bundle_folder_uses_the_lowres_file() -> None:
    settings = load_settings()
    assert candidate_paths(WHOLEBODY_CT_SEGRESNET, settings)[1] == (
        settings.weights_dir / "wholeBody_ct_segmentation" / "models" / "model_lowres.pt"
    )


def test_wrong_shape_is_refused_naming_the_file() -> None:
    settings = load_settings()
    path = _where("flat", settings)
    path.parent.mkdir(parents=True)
    wrong = dataclasses.replace(BRATS_SEGRESNET, architecture=(("in_channels", 4), ("out_channels", 2)))
    torch.save(build_network(wrong).state_dict(), path)
    with pytest.raises(WeightsInvalid, match="brats_mri_segmentation_model.pt"):
        load_model(BRATS_SEGRESNET, settings, allow_untrained=True, device="cpu")


def test_missing_weights_name_the_path_and_the_source() -> None:
    settings = load_settings()
    with pytest.raises(WeightsMissing) as info:
        load_model(WHOLEBODY_CT_SEGRESNET, settings, allow_untrained=False, device="cpu")
    expected = installed_weights_path(WHOLEBODY_CT_SEGRESNET, settings)
    assert info.value.expected_path == str(expected)
    assert info.value.model_id == "monai-wholebody-ct-segresnet-3mm"
    message = str(info.value)
    assert str(expected) in message and "wholeBody_ct_segmentation" in message and "model_lowres" in message


def test_untrained_is_deterministic_and_labelled() -> None:
    settings = load_settings()
    rng_state = torch.get_rng_state()
    first = load_model(BRATS_SEGRESNET, settings, allow_untrained=True, device="cpu")
    second = load_model(BRATS_SEGRESNET, settings, allow_untrained=True, device="cpu")
    assert first.trained is False and first.weights_path is None
    assert first.weights_sha256 == second.weights_sha256
    assert torch.equal(rng_state, torch.get_rng_state())  # the seeded build leaves the caller's RNG alone


@pytest.mark.parametrize("form", ["folder", "zip", "pt"])
def test_import_bundle_folder_zip_or_file(form, tmp_path: Path, brats_state_dict) -> None:
    settings = load_settings()
    bundle = tmp_path / "dl" / "brats_mri_segmentation"
    (bundle / "models").mkdir(parents=True)
    torch.save(brats_state_dict, bundle / "models" / "model.pt")
    (bundle / "configs").mkdir()
    (bundle / "configs" / "metadata.json").write_text("{}")
    if form == "folder":
        source = bundle
    elif form == "zip":
        source = tmp_path / "brats_mri_segmentation_v0.4.2.zip"
        with zipfile.ZipFile(source, "w") as archive:
            for f in bundle.rglob("*"):
                archive.write(f, f.relative_to(bundle.parent).as_posix())
    else:
        source = bundle / "models" / "model.pt"

    dest = import_weights(source, BRATS_SEGRESNET, settings)

    assert dest == installed_weights_path(BRATS_SEGRESNET, settings)
    assert dest.with_suffix(".pt.json").is_file()
    loaded = load_model(BRATS_SEGRESNET, settings, allow_untrained=False, device="cpu")
    assert loaded.trained and loaded.weights_path == str(dest)


def test_import_refuses_a_bundle_of_the_wrong_model(tmp_path: Path, brats_state_dict) -> None:
    settings = load_settings()
    source = tmp_path / "model.pt"
    torch.save(brats_state_dict, source)
    with pytest.raises(WeightsInvalid, match="model.pt"):
        import_weights(source, WHOLEBODY_CT_SEGRESNET, settings)
    assert not installed_weights_path(WHOLEBODY_CT_SEGRESNET, settings).exists()


# --- pipeline ------------------------------------------------------------------------------------


def test_brats_label_derivation() -> None:
    # channels TC, WT, ET as logits; >= 0 means sigmoid >= 0.5
    logits = torch.full((3, 5, 1, 1), -3.0)
    logits[1, 1:] = 2.0  # WT
    logits[0, 2:] = 2.0  # TC
    logits[2, 3:] = 2.0  # ET
    logits[:, 4] = torch.tensor([-1.0, -1.0, 1.0])[:, None, None]  # ET alone still wins
    labels = brats_labels_from_logits(logits)
    assert labels.dtype == torch.uint8
    assert labels[:, 0, 0].tolist() == [0, 2, 1, 4, 4]


def test_normalisation_matches_monai() -> None:
    from monai.transforms import NormalizeIntensity, ScaleIntensity

    case = _brats_case(shape=(20, 18, 16))
    ours = prepare_input(case, BRATS_SEGRESNET)[0]
    stacked = np.stack([v.data for v in case.channels])
    theirs = NormalizeIntensity(nonzero=True, channel_wise=True)(torch.tensor(stacked))
    assert torch.allclose(ours, torch.as_tensor(theirs), atol=1e-4)

    ct = _volume(np.random.default_rng(1).normal(0, 300, (16, 16, 16)), spacing=3.0, modality="CT")
    ours_ct = prepare_input(ct, WHOLEBODY_CT_SEGRESNET)[0]
    theirs_ct = ScaleIntensity(minv=-1.0, maxv=1.0)(NormalizeIntensity(nonzero=True)(torch.tensor(ct.data[None])))
    assert torch.allclose(ours_ct, torch.as_tensor(theirs_ct), atol=1e-4)


def test_channels_are_put_in_bundle_order() -> None:
    case = _brats_case(shape=(12, 12, 8))
    shuffled = MultiChannelVolume(
        channel_names=("flair", "T2", "T1ce", "T1"),
        channels=(case.channels[3], case.channels[2], case.channels[0], case.channels[1]),
        input_sha256=case.input_sha256,
    )
    assert torch.equal(prepare_input(shuffled, BRATS_SEGRESNET), prepare_input(case, BRATS_SEGRESNET))


def test_window_count_full_size_brats_is_one() -> None:
    assert count_windows((240, 240, 155), BRATS_SEGRESNET) == 1
    assert count_windows((48, 48, 40), BRATS_SMALL) == 8


def test_single_window_path_equals_sliding_window() -> None:
    from monai.inferers import sliding_window_inference

    from inference.volume.segment import _run_windows

    spec = dataclasses.replace(BRATS_SEGRESNET, roi_size=(48, 48, 40))
    model = dataclasses.replace(load_model(spec, load_settings(), allow_untrained=True, device="cpu"), spec=spec)
    x = prepare_input(_brats_case(shape=(44, 40, 36)), spec)
    assert count_windows(x.shape[2:], spec) == 1
    calls: list[str] = []
    direct = _run_windows(x, model, 1, lambda f, m: calls.append(m))
    with torch.inference_mode():
        reference = sliding_window_inference(x, spec.roi_size, 1, model.module, overlap=spec.overlap)
    assert direct.shape == (1, 3, 44, 40, 36) and calls == ["window 1 of 1"]
    assert torch.allclose(direct, reference, atol=1e-5)


def test_segment_brats_end_to_end() -> None:
    model = dataclasses.replace(
        load_model(BRATS_SMALL, load_settings(), allow_untrained=True, device="cpu"), spec=BRATS_SMALL
    )
    case = _brats_case()
    calls: list[tuple[float, str]] = []

    result = segment_brats(case, model, progress=lambda f, m: calls.append((f, m)))

    lm = result.label_map
    assert lm.data.shape == (48, 48, 40) and lm.data.dtype == np.uint8 and not lm.data.flags.writeable
    assert set(np.unique(lm.data)) <= {0, 1, 2, 4}
    assert np.array_equal(lm.affine, case.reference.affine)
    assert lm.source == "model:monai-brats-segresnet" and len(lm.sha256) == 64
    assert [i.value for i in lm.labels] == [1, 2, 4]
    assert result.model.model_id == "monai-brats-segresnet" and result.model.trained is False
    assert result.model.weights_sha256 == model.weights_sha256 and result.model.device == "cpu"
    params = result.params_dict()
    assert params["roi"] == "32x32x32" and params["windows"] == "8" and params["channel_order"] == "T1c,T1,T2,FLAIR"
    assert params["resampling"].startswith("none")
    assert result.spacing_mm == (1.0, 1.0, 1.0) and result.timing_ms > 0 and result.measure_ms >= 0
    # The segmentation comes back measured: one measurement per structure, as measuring the map gives.
    assert [m.name for m in result.measurements] == [s.name for s in lm.structures]
    assert result.measurements == measure_structures(lm.data, lm.affine, lm.structures)
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [m for _, m in calls if m.startswith("window")] == [f"window {i} of 8" for i in range(1, 9)]
    assert segment(case, model).label_map.sha256 == lm.sha256  # deterministic, same dispatch


def test_ct_resampling_round_trip_returns_the_input_grid() -> None:
    model = dataclasses.replace(
        load_model(CT_SMALL, load_settings(), allow_untrained=True, device="cpu"), spec=CT_SMALL
    )
    hu = np.random.default_rng(2).normal(0, 200, (40, 36, 30)) - 500
    ct = _volume(hu, spacing=1.5, modality="CT")
    assert prepare_input(ct, CT_SMALL).shape == (1, 1, 20, 18, 15)

    result = segment_ct(ct, model)

    assert result.label_map.data.shape == (40, 36, 30)
    assert result.label_map.data.max() <= 104 and len(result.label_map.labels) == 104
    assert result.spacing_mm == pytest.approx((1.5, 1.5, 1.5))
    assert "-> 3 mm" in result.params_dict()["resampling"]
    assert result.params_dict()["windows"] == "4"


def test_wrong_modality_and_channel_count_are_refused() -> None:
    settings = load_settings()
    brats = load_model(BRATS_SEGRESNET, settings, allow_untrained=True, device="cpu")
    mr = _volume(np.ones((8, 8, 8)), modality="MR")
    three = MultiChannelVolume(("T1c", "T1", "T2"), (mr, mr, mr), "2" * 64)
    with pytest.raises(ChannelAssignmentError, match="4 co-registered MRI sequences"):
        segment_brats(three, brats)
    with pytest.raises(ChannelAssignmentError):
        segment_brats(mr, brats)  # type: ignore[arg-type]
    with pytest.raises(ChannelAssignmentError, match="Assign each uploaded file"):
        segment_brats(_brats_case((8, 8, 8), names=("T1c", "T1", "T2", "DWI")), brats)
    with pytest.raises(WrongModality, match="CT"):
        segment_brats(_brats_case((8, 8, 8), modality="CT"), brats)

    ct_model = dataclasses.replace(brats, spec=WHOLEBODY_CT_SEGRESNET)  # checks run before the network
    with pytest.raises(WrongModality, match="MRI"):
        segment_ct(mr, ct_model)
    with pytest.raises(WrongModality):
        segment(_brats_case((8, 8, 8)), ct_model)
    with pytest.raises(WrongModality):
        segment_ct(_volume(np.ones((8, 8, 8)), modality="CT"), brats)
