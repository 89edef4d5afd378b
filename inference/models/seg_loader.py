"""Build a MONAI segmentation network, find and load its weights, and say which weights are in it.

Same rules as the chest X-ray loader: only plain ``state_dict`` files, read with
``torch.load(weights_only=True)`` and loaded with strict keys; no weights means ``WeightsMissing``
unless untrained mode was asked for explicitly, in which case the seeded random network is
labelled ``trained=False``.
"""

from __future__ import annotations

import json
import logging
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import WeightsInvalid, WeightsMissing
from core.settings import Settings
from inference.models.seg_registry import SegModelSpec
from inference.models.weights import sha256_of_file, write_state_dict_atomically

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

UNTRAINED_SEED = 0
MAX_ZIP_MEMBER_BYTES = 2 * 1024**3  # the largest weights file read out of a bundle zip


@dataclass(frozen=True)
class LoadedSegModel:
    """A segmentation network ready for inference plus the facts every result must carry."""

    spec: SegModelSpec
    module: "torch.nn.Module" = field(repr=False)
    weights_sha256: str
    trained: bool
    weights_path: str | None
    device: str


def installed_weights_path(spec: SegModelSpec, settings: Settings) -> Path:
    """Where ``import_seg_weights`` writes, and the first place the loader looks."""
    return settings.weights_dir / spec.model_id / "model.pt"


def candidate_paths(spec: SegModelSpec, settings: Settings) -> list[Path]:
    """Where the loader looks, in order: installed file, unpacked bundle folder, flat file."""
    return [
        installed_weights_path(spec, settings),
        settings.weights_dir / spec.bundle_name / Path(spec.bundle_weights_path),
        settings.weights_dir / spec.weights_filename,
    ]


def find_seg_weights(spec: SegModelSpec, settings: Settings) -> Path | None:
    for path in candidate_paths(spec, settings):
        if path.is_file():
            return path
    return None


def missing_seg_weights_error(spec: SegModelSpec, settings: Settings) -> WeightsMissing:
    expected = installed_weights_path(spec, settings)
    bundle_file = candidate_paths(spec, settings)[1]
    hint = ""
    if spec.bundle_weights_path != "models/model.pt" and (bundle_file.parent / "model.pt").is_file():
        hint = (
            f" {bundle_file.parent / 'model.pt'} exists but is the bundle's other resolution; "
            f"this model needs {bundle_file.name}."
        )
    return WeightsMissing(
        f"Trained weights for {spec.display_name} are missing: expected {expected} (or an unpacked "
        f"bundle at {bundle_file}, or {settings.weights_dir / spec.weights_filename}; set "
        f"MODEL_WEIGHTS_DIR to change the folder). Get them from the {spec.weights_source} and copy "
        f"the bundle folder into {settings.weights_dir}.{hint}",
        expected_path=str(expected),
        model_id=spec.model_id,
    )


def build_seg_architecture(spec: SegModelSpec) -> "torch.nn.Module":
    """The bundle's network with randomly initialised weights (no download)."""
    from monai.networks.nets import SegResNet

    return SegResNet(**spec.network_kwargs_dict()).eval()


def _unwrap(obj: object, source_name: str) -> dict:
    # CheckpointSaver with a one-entry save_dict writes the bare state_dict; accept one level of
    # {"model": ...} / {"state_dict": ...} nesting for checkpoints saved by hand.
    if isinstance(obj, Mapping) and len(obj) == 1:
        ((key, inner),) = obj.items()
        if key in ("model", "state_dict", "network") and isinstance(inner, Mapping):
            obj = inner
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise WeightsInvalid(f"{source_name} does not contain a state_dict (got {type(obj).__name__}).")
    return dict(obj)


def read_seg_state_dict(source, source_name: str) -> dict:
    """Read a plain ``state_dict`` (path or binary file object) with ``weights_only=True``."""
    import torch

    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsInvalid(
            f"{source_name} is not a plain state_dict (it holds pickled objects beyond tensors). "
            "Use the bundle's models/*.pt checkpoint, not a TorchScript or whole-model file."
        ) from exc
    except Exception as exc:
        raise WeightsInvalid(f"{source_name} cannot be read as a PyTorch weights file ({type(exc).__name__}).") from exc
    return _unwrap(obj, source_name)


def apply_seg_state_dict(model: "torch.nn.Module", state_dict: dict, spec: SegModelSpec, *, source_name: str) -> None:
    """Load with strict keys and shapes; ``WeightsInvalid`` naming the file otherwise."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:400]
        raise WeightsInvalid(
            f"{source_name} does not fit the {spec.display_name} architecture "
            f"({spec.bundle_name} {spec.bundle_weights_path}): {detail}"
        ) from exc


def state_dict_sha256(model: "torch.nn.Module") -> str:
    from inference.models.loader import state_dict_sha256 as _sha

    return _sha(model)


def _untrained_seg_model(spec: SegModelSpec) -> "torch.nn.Module":
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        return build_seg_architecture(spec)


def load_seg_model(
    spec: SegModelSpec, settings: Settings, *, allow_untrained: bool, device: str | None = None
) -> LoadedSegModel:
    """Load trained weights from disk, or (only when asked) the labelled untrained network.

    Raises:
        WeightsMissing: no weights file and ``allow_untrained`` is False.
        WeightsInvalid: a weights file exists but does not fit; never replaced silently.
    """
    from inference.models.loader import UNTRAINED_LABEL, pick_device

    device = device or pick_device()
    path = find_seg_weights(spec, settings)
    if path is not None:
        model = build_seg_architecture(spec)
        apply_seg_state_dict(model, read_seg_state_dict(path, path.name), spec, source_name=path.name)
        sha, trained, where = sha256_of_file(path), True, str(path)
        log.info("Loaded trained weights for %s from %s", spec.model_id, path)
    elif allow_untrained:
        model = _untrained_seg_model(spec)
        sha, trained, where = state_dict_sha256(model), False, None
        log.warning("Running %s with UNTRAINED weights (%s)", spec.model_id, UNTRAINED_LABEL)
    else:
        raise missing_seg_weights_error(spec, settings)
    model = model.to(device).eval()
    model.requires_grad_(False)
    return LoadedSegModel(
        spec=spec, module=model, weights_sha256=sha, trained=trained, weights_path=where, device=device
    )


def _state_dict_from_zip(source: Path, spec: SegModelSpec) -> dict:
    wanted = spec.bundle_weights_path
    try:
        with zipfile.ZipFile(source) as archive:
            members = [
                m
                for m in archive.infolist()
                if not m.is_dir() and (m.filename == wanted or m.filename.endswith("/" + wanted))
            ]
            if len(members) != 1:
                raise WeightsInvalid(
                    f"{source.name} should hold exactly one {wanted} (a {spec.bundle_name} bundle); "
                    f"found {len(members)}."
                )
            member = members[0]
            if member.file_size > MAX_ZIP_MEMBER_BYTES:
                raise WeightsInvalid(f"{member.filename} in {source.name} is too large to be these weights.")
            with tempfile.TemporaryFile() as tmp, archive.open(member) as fh:
                copied = 0
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    copied += len(chunk)
                    if copied > MAX_ZIP_MEMBER_BYTES:
                        raise WeightsInvalid(f"{member.filename} in {source.name} is too large to be these weights.")
                    tmp.write(chunk)
                tmp.seek(0)
                return read_seg_state_dict(tmp, f"{source.name}:{member.filename}")
    except zipfile.BadZipFile as exc:
        raise WeightsInvalid(f"{source.name} is not a readable zip file.") from exc


def _read_import_source(source: Path, spec: SegModelSpec) -> dict:
    if source.is_dir():
        for candidate in (source / spec.bundle_weights_path, source / spec.bundle_name / spec.bundle_weights_path):
            if candidate.is_file():
                return read_seg_state_dict(candidate, str(candidate))
        raise WeightsInvalid(
            f"{source} is not a {spec.bundle_name} bundle folder: no {spec.bundle_weights_path} in it."
        )
    # torch.save files are zip archives too: only a ``.zip`` is read as a bundle archive.
    if source.is_file() and source.suffix.lower() == ".zip":
        return _state_dict_from_zip(source, spec)
    if source.is_file():
        return read_seg_state_dict(source, source.name)
    raise WeightsInvalid(f"No file or folder at {source}.")


def import_seg_weights(source: Path, spec: SegModelSpec, settings: Settings) -> Path:
    """Check a bundle folder, bundle zip or ``.pt`` file fits the architecture, then install it.

    Writes the plain ``state_dict`` to ``installed_weights_path`` (atomically) with a provenance
    JSON beside it, and returns that path. Nothing is written when the check fails.
    """
    source = Path(source)
    state_dict = _read_import_source(source, spec)
    apply_seg_state_dict(build_seg_architecture(spec), state_dict, spec, source_name=source.name)
    dest = installed_weights_path(spec, settings)
    write_state_dict_atomically(state_dict, dest)
    provenance = {
        "model_id": spec.model_id,
        "bundle": spec.bundle_name,
        "source": source.name,
        "source_sha256": sha256_of_file(source) if source.is_file() else None,
        "installed_sha256": sha256_of_file(dest),
        "imported_at": datetime.now(UTC).isoformat(),
    }
    dest.with_suffix(dest.suffix + ".json").write_text(json.dumps(provenance, indent=2))
    log.info("Installed weights for %s at %s", spec.model_id, dest)
    return dest
