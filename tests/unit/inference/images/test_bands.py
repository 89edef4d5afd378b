from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from inference.images.bands import Band, Thresholds, load_band_config, parse_band_config
from inference.models.registry import CXR_DENSENET


def test_band_edges_follow_the_documented_rule() -> None:
    t = Thresholds(low=0.3, high=0.5, critical=0.8)
    assert t.band_of(0.0) is Band.NEGATIVE
    assert t.band_of(0.2999) is Band.NEGATIVE
    assert t.band_of(0.3) is Band.INDETERMINATE
    assert t.band_of(0.4999) is Band.INDETERMINATE
    assert t.band_of(0.5) is Band.POSITIVE
    assert t.band_of(0.7999) is Band.POSITIVE
    assert t.band_of(0.8) is Band.CRITICAL
    assert t.band_of(1.0) is Band.CRITICAL


def test_default_file_covers_every_finding(bands) -> None:
    assert bands.version
    for label in CXR_DENSENET.labels:
        t = bands.thresholds("cxr", label)
        assert 0 <= t.low < t.high < t.critical <= 1
    assert bands.thresholds("cxr", "Pneumothorax").critical < bands.thresholds("cxr", "Nodule").critical
    snapshot = bands.snapshot("cxr", list(CXR_DENSENET.labels))
    assert set(snapshot) == set(CXR_DENSENET.labels)
    assert json.loads(json.dumps(snapshot)) == snapshot


@pytest.mark.parametrize(
    "bad, phrase",
    [
        ({"low": 0.6, "high": 0.5, "critical": 0.8}, "low < high < critical"),
        ({"low": 0.1, "high": 0.5, "critical": 1.5}, "critical <= 1"),
        ({"low": "x", "high": 0.5, "critical": 0.8}, "not a number"),
        ({"low": 0.1, "high": 0.5}, "exactly the keys"),
    ],
)
def test_bad_thresholds_name_the_bad_value(bad: dict, phrase: str) -> None:
    data = {
        "version": "t",
        "modalities": {"cxr": {"default": {"low": 0.3, "high": 0.5, "critical": 0.8}, "findings": {"Mass": bad}}},
    }
    with pytest.raises(ConfigError, match=phrase) as info:
        parse_band_config(data, "bands.json")
    assert "Mass" in str(info.value) or "critical" in str(info.value)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_band_config(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_band_config(broken)
    unversioned = tmp_path / "v.json"
    unversioned.write_text(json.dumps({"modalities": {}}))
    with pytest.raises(ConfigError, match="version"):
        load_band_config(unversioned)


def test_unknown_modality_is_an_error(bands) -> None:
    with pytest.raises(ConfigError, match="modality 'mri'"):
        bands.thresholds("mri", "Mass")


def test_an_edit_without_a_new_version_still_changes_the_identity() -> None:
    base = {"version": "same", "modalities": {"cxr": {"default": {"low": 0.3, "high": 0.5, "critical": 0.8}}}}
    edited = {"version": "same", "modalities": {"cxr": {"default": {"low": 0.3, "high": 0.5, "critical": 0.9}}}}
    first, second = parse_band_config(base, "a"), parse_band_config(edited, "b")
    assert first.version == second.version and first.identity != second.identity
    assert parse_band_config(base, "c").identity == first.identity


def test_bands_validated_at_a_site_warn_when_the_weights_change() -> None:
    from inference.images.bands import to_document

    document = {
        "version": "site-1",
        "modalities": {
            "cxr": {
                "default": {"low": 0.35, "high": 0.5, "critical": 0.85},
                "validated_with": {"model_id": "xrv-densenet121-res224-all", "weights_sha256": "a" * 64},
            }
        },
    }
    config = parse_band_config(document, "site")
    assert parse_band_config(to_document(config), "again").validated_with == config.validated_with  # kept on save
    assert config.validation_warning("cxr", "xrv-densenet121-res224-all", "a" * 64) is None
    said = config.validation_warning("cxr", "xrv-densenet121-res224-all", "b" * 64)
    assert said is not None and "validated on xrv-densenet121-res224-all weights aaaaaaaaaaaa" in said
    assert "now runs weights bbbbbbbbbbbb" in said and "site calibration again" in said
    assert config.validation_warning("mri_brain", "brain-tumour-4class", "c" * 64) is None  # never validated
    document["modalities"]["cxr"]["validated_with"] = {"model_id": "x"}
    with pytest.raises(ConfigError, match="validated_with needs a model_id and a weights_sha256"):
        parse_band_config(document, "site")
