"""Finding, importing, downloading and hashing model weights.

The app itself only ever loads plain ``state_dict`` files with ``torch.load(weights_only=True)``,
so nothing in the weights directory can run code at load time. The torchxrayvision release file
is a pickled whole model; ``import_weights(..., allow_pickle=True)`` (the CLI's
``weights import --allow-pickle``) unpickles it once, checks it fits the architecture with strict
keys, and writes the plain ``state_dict`` into the weights directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from core.errors import WeightsInvalid, WeightsMissing
from core.settings import Settings
from inference.models.registry import ModelSpec

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]

XRV_CACHE_DIR = Path("~/.torchxrayvision/models_data").expanduser()


def expected_weights_path(spec: ModelSpec, settings: Settings) -> Path:
    return settings.weights_dir / spec.weights_filename


def candidate_paths(spec: ModelSpec, settings: Settings) -> list[Path]:
    """Where the loader looks, in order: our weights directory, then torchxrayvision's cache."""
    return [expected_weights_path(spec, settings), XRV_CACHE_DIR / spec.weights_filename]


def find_weights_file(spec: ModelSpec, settings: Settings) -> Path | None:
    for path in candidate_paths(spec, settings):
        if path.is_file():
            return path
    return None


def missing_weights_error(spec: ModelSpec, settings: Settings) -> WeightsMissing:
    expected = expected_weights_path(spec, settings)
    return WeightsMissing(
        f"Trained weights for {spec.display_name} are missing: expected {expected.name} in "
        f"{expected.parent} (set MODEL_WEIGHTS_DIR to change the folder). Download it from "
        f"{spec.weights_url} and run `python -m inference weights import FILE --allow-pickle`.",
        expected_path=str(expected),
        model_id=spec.model_id,
    )


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path, *, allow_pickle: bool = False) -> dict:
    """Read a weights file as a ``state_dict``.

    Args:
        path: a ``state_dict`` saved with ``torch.save``, or (with ``allow_pickle``) a pickled
            whole model as torchxrayvision publishes it.
        allow_pickle: unpickle arbitrary objects. Only for files from a source you trust.
    """
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # a pickle with objects beyond tensors: a whole model
        if not allow_pickle:
            raise WeightsInvalid(
                f"{path.name} is not a plain state_dict (it looks like a pickled whole model, the "
                "torchxrayvision release format). If it came from the official release, convert "
                f"it with `python -m inference weights import {path} --allow-pickle`."
            ) from exc
        obj = _load_untrusted_format(path)
    except Exception as exc:
        raise WeightsInvalid(f"{path.name} cannot be read as a PyTorch weights file ({type(exc).__name__}).") from exc
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise WeightsInvalid(f"{path.name} does not contain a state_dict (got {type(obj).__name__}).")
    return dict(obj)


def _load_untrusted_format(path: Path):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise WeightsInvalid(f"{path.name} could not be unpickled as a model ({type(exc).__name__}: {exc}).") from exc


def write_state_dict_atomically(state_dict: Mapping, dest: Path) -> None:
    import torch

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name, suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        torch.save(dict(state_dict), tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def import_weights(source: Path, spec: ModelSpec, settings: Settings, *, allow_pickle: bool = False) -> Path:
    """Check ``source`` loads into the architecture with strict keys, then install it.

    Returns the installed path. Nothing is written when the check fails.
    """
    from inference.models.loader import apply_state_dict, build_architecture

    if not source.is_file():
        raise WeightsInvalid(f"No file at {source}.")
    state_dict = read_state_dict(source, allow_pickle=allow_pickle)
    apply_state_dict(build_architecture(spec), state_dict, source_name=source.name)
    dest = expected_weights_path(spec, settings)
    write_state_dict_atomically(state_dict, dest)
    provenance = {
        "model_id": spec.model_id,
        "source_file": source.name,
        "source_sha256": sha256_of_file(source),
        "installed_sha256": sha256_of_file(dest),
        "imported_at": datetime.now(UTC).isoformat(),
    }
    dest.with_suffix(dest.suffix + ".json").write_text(json.dumps(provenance, indent=2))
    log.info("Installed weights for %s at %s", spec.model_id, dest)
    return dest


def download_weights(
    spec: ModelSpec, settings: Settings, progress: ProgressCallback | None = None, timeout_s: float = 20.0
) -> Path:
    """Download the release file, then install it as a plain state_dict (see ``import_weights``)."""
    import requests

    part = settings.weights_dir / (spec.weights_filename + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        with requests.get(spec.weights_url, stream=True, timeout=(timeout_s, 60)) as response:
            response.raise_for_status()
            total = int(response.headers.get("content-length") or 0)
            done = 0
            with part.open("wb") as fh:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    fh.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        fraction = done / total if total else 0.0
                        progress(min(fraction, 1.0), f"{done / 1e6:.1f} MB of {total / 1e6:.1f} MB")
    except requests.RequestException as exc:
        part.unlink(missing_ok=True)
        raise WeightsMissing(
            f"Could not download weights for {spec.display_name} from {spec.weights_url} "
            f"({type(exc).__name__}). On a machine without internet, copy the file here and run "
            "`python -m inference weights import FILE --allow-pickle`.",
            expected_path=str(expected_weights_path(spec, settings)),
            model_id=spec.model_id,
        ) from exc
    try:
        # The file came from the registry's own HTTPS release URL: the trusted source.
        return import_weights(part, spec, settings, allow_pickle=True)
    finally:
        part.unlink(missing_ok=True)
