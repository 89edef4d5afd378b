"""Threshold bands: where a calibrated score sits between negative and critical.

Bands live in a versioned JSON file (``config/bands.json`` by default, ``BANDS_CONFIG`` to point
elsewhere). Every stored run records the version and the exact thresholds the reviewer saw.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from core.errors import ConfigError
from core.vocabulary import Band


@dataclass(frozen=True)
class Thresholds:
    low: float
    high: float
    critical: float

    def __post_init__(self) -> None:
        values = (self.low, self.high, self.critical)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise ConfigError(f"Band thresholds must be finite numbers, got {values}.")
        if not 0.0 <= self.low < self.high < self.critical <= 1.0:
            raise ConfigError(
                "Band thresholds must satisfy 0 <= low < high < critical <= 1, "
                f"got low={self.low}, high={self.high}, critical={self.critical}."
            )

    def band_of(self, score: float) -> Band:
        if score >= self.critical:
            return Band.CRITICAL
        if score >= self.high:
            return Band.POSITIVE
        if score >= self.low:
            return Band.INDETERMINATE
        return Band.NEGATIVE

    def as_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high, "critical": self.critical}


@dataclass(frozen=True)
class BandConfig:
    version: str
    source: str
    default: Mapping[str, Thresholds]
    per_finding: Mapping[str, Mapping[str, Thresholds]]
    fingerprint: str = ""  # hash of the thresholds themselves
    # bands key -> (model id, weights sha256) the thresholds were validated on at this site (saved
    # from a calibration of the readers' verdicts); absent for bands nobody validated here
    validated_with: Mapping[str, tuple[str, str]] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def identity(self) -> str:
        """What runs record: the file's version plus a hash of its content, so an edit that forgot
        to bump the version still gives a new identity (and never reuses an old run)."""
        return f"{self.version}+{self.fingerprint}" if self.fingerprint else self.version

    def thresholds(self, modality: str, finding: str) -> Thresholds:
        if modality not in self.default:
            raise ConfigError(f"No threshold bands are configured for modality {modality!r}.")
        return self.per_finding.get(modality, {}).get(finding, self.default[modality])

    def validation_warning(self, bands_key: str, model_id: str, weights_sha256: str) -> str | None:
        """What to say when the bands in force for ``bands_key`` were validated on another model or
        weights than the one running now; None when they match or were never validated here."""
        validated = self.validated_with.get(bands_key)
        if validated is None or validated == (model_id, weights_sha256):
            return None
        return (
            f"The bands in force ({self.version}) were validated on {validated[0]} weights {validated[1][:12]}…; "
            f"{model_id} now runs weights {weights_sha256[:12]}…. Check the site calibration again before relying on them."
        )

    def snapshot(self, modality: str, findings: list[str]) -> dict[str, dict[str, float]]:
        """The thresholds for these findings, as plain data to store with a run."""
        return {f: self.thresholds(modality, f).as_dict() for f in findings}


def _thresholds(raw: object, where: str) -> Thresholds:
    if not isinstance(raw, dict) or set(raw) != {"low", "high", "critical"}:
        raise ConfigError(f"{where} must have exactly the keys low, high, critical; got {raw!r}.")
    try:
        return Thresholds(float(raw["low"]), float(raw["high"]), float(raw["critical"]))
    except (TypeError, ValueError):
        raise ConfigError(f"{where} has a threshold that is not a number: {raw!r}.") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_band_config(data: object, source: str) -> BandConfig:
    if not isinstance(data, dict) or not isinstance(data.get("version"), str) or not data["version"]:
        raise ConfigError(f"{source}: the bands file needs a non-empty string 'version'.")
    modalities = data.get("modalities")
    if not isinstance(modalities, dict) or not modalities:
        raise ConfigError(f"{source}: the bands file needs a 'modalities' object.")
    default: dict[str, Thresholds] = {}
    per_finding: dict[str, Mapping[str, Thresholds]] = {}
    validated_with: dict[str, tuple[str, str]] = {}
    for modality, entry in modalities.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: modality {modality!r} must be an object.")
        default[modality] = _thresholds(entry.get("default"), f"{source}: {modality}.default")
        findings = entry.get("findings", {})
        if not isinstance(findings, dict):
            raise ConfigError(f"{source}: {modality}.findings must be an object.")
        per_finding[modality] = MappingProxyType(
            {name: _thresholds(t, f"{source}: {modality}.findings.{name}") for name, t in findings.items()}
        )
        validated = entry.get("validated_with")
        if validated is not None:
            if not (
                isinstance(validated, dict)
                and isinstance(validated.get("model_id"), str)
                and isinstance(validated.get("weights_sha256"), str)
            ):
                raise ConfigError(f"{source}: {modality}.validated_with needs a model_id and a weights_sha256.")
            validated_with[modality] = (validated["model_id"], validated["weights_sha256"])
    canonical = json.dumps(modalities, sort_keys=True, separators=(",", ":"))
    return BandConfig(
        version=data["version"],
        source=source,
        default=MappingProxyType(default),
        per_finding=MappingProxyType(per_finding),
        fingerprint=hashlib.sha256(canonical.encode()).hexdigest()[:8],
        validated_with=MappingProxyType(validated_with),
    )


def load_band_config(path: Path) -> BandConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Threshold bands file not found at {path} (set BANDS_CONFIG).") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: line {exc.lineno}: {exc.msg}.") from None
    return parse_band_config(data, str(path))


def to_document(config: BandConfig) -> dict:
    """The JSON document for a configuration (the inverse of ``parse_band_config``)."""
    return {
        "version": config.version,
        "scale": "calibrated: 0.5 is each finding's operating point (torchxrayvision op_norm)",
        "modalities": {
            modality: {
                "default": config.default[modality].as_dict(),
                "findings": {name: t.as_dict() for name, t in config.per_finding.get(modality, {}).items()},
                **(
                    {
                        "validated_with": {
                            "model_id": config.validated_with[modality][0],
                            "weights_sha256": config.validated_with[modality][1],
                        }
                    }
                    if modality in config.validated_with
                    else {}
                ),
            }
            for modality in config.default
        },
    }


def save_band_config(config: BandConfig, path: Path) -> None:
    """Write atomically (a reader never sees half a file)."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".bands-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(to_document(config), fh, indent=2)
    os.replace(tmp, path)
