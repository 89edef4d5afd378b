"""Weights files of every model: find, read, hash, verify, install (import or download).

One set of rules for classifiers and segmentation networks alike. The app itself only ever loads
plain ``state_dict`` files with ``torch.load(weights_only=True)``, so nothing in the weights
directory can run code at load time. A release published as a pickled whole model (the
torchxrayvision one) is unpickled once, by ``import_weights(..., allow_pickle=True)`` (the CLI's
``weights import --allow-pickle``), checked to fit the architecture with strict keys, and
installed as a plain ``state_dict``. A model distributed as a MONAI bundle is accepted as the
bundle folder, its zip, or the bare ``.pt``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from core.errors import WeightsInvalid, WeightsMissing
from core.settings import Settings
from inference.models.adapters import adapter_for, apply_state_dict
from inference.models.registry import CXR_DENSENET
from inference.models.spec import ModelSpec

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]

HOME = Path.home()  # other tools' caches (``WeightsSource.home_dirs``) are looked for under it
MAX_ZIP_MEMBER_BYTES = 2 * 1024**3  # the largest weights file read out of a bundle zip


def installed_weights_path(spec: ModelSpec, settings: Settings) -> Path:
    """Where ``import_weights`` writes, and the first place the loader looks."""
    return settings.weights_dir / spec.weights.installed


def candidate_paths(spec: ModelSpec, settings: Settings) -> list[Path]:
    """Where the loader looks, in order."""
    return spec.weights.candidates(settings.weights_dir, HOME)


def find_weights_file(spec: ModelSpec, settings: Settings) -> Path | None:
    for path in candidate_paths(spec, settings):
        if path.is_file():
            return path
    return None


def import_command(spec: ModelSpec) -> str:
    """The CLI command that installs a downloaded weights file for ``spec``."""
    if spec.weights.bundle_member:
        return f"`python -m inference weights import BUNDLE_FOLDER_OR_ZIP_OR_PT --model {spec.model_id}`"
    pickle_flag = " --allow-pickle" if spec.weights.pickled_release else ""
    model_flag = "" if spec.model_id == CXR_DENSENET.model_id else f" --model {spec.model_id}"
    return f"`python -m inference weights import FILE{pickle_flag}{model_flag}`"


def missing_weights_error(spec: ModelSpec, settings: Settings) -> WeightsMissing:
    """Exactly which file is missing, where else the loader looked, and how to install it."""
    expected, *others = candidate_paths(spec, settings)
    elsewhere = f" (or {', '.join(str(p) for p in others)})" if others else ""
    hint = ""
    member = spec.weights.bundle_member
    if member and Path(member).name != "model.pt":
        bundle_folder = settings.weights_dir / spec.weights.also[0] if spec.weights.also else None
        if bundle_folder is not None and (bundle_folder.parent / "model.pt").is_file():
            hint = (
                f" {bundle_folder.parent / 'model.pt'} exists but is the bundle's other resolution; "
                f"this model needs {bundle_folder.name}."
            )
    return WeightsMissing(
        f"Trained weights for {spec.display_name} are missing: expected {expected}{elsewhere}; set "
        f"MODEL_WEIGHTS_DIR to change the folder. Get them from the {spec.weights.description} and "
        f"install them with {import_command(spec)}.{hint}",
        expected_path=str(installed_weights_path(spec, settings)),
        model_id=spec.model_id,
    )


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_published_sha256(spec: ModelSpec, path: Path) -> None:
    """Refuse a downloaded or imported release file whose sha256 is not the registry's."""
    if spec.weights.sha256 is None:
        return
    actual = sha256_of_file(path)
    if actual != spec.weights.sha256:
        raise WeightsInvalid(
            f"{path.name} is not the published weights file for {spec.display_name}: its sha256 is "
            f"{actual}, the registry expects {spec.weights.sha256}."
        )


def _unwrap(obj: object, source_name: str) -> dict:
    if hasattr(obj, "state_dict") and callable(obj.state_dict):  # a whole model (allow_pickle only)
        obj = obj.state_dict()
    # Accept one level of {"model"|"state_dict"|"network": ...} nesting (checkpoint savers, hand-saved files).
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "network"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and (key == "state_dict" or len(obj) == 1):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise WeightsInvalid(f"{source_name} does not contain a state_dict (got {type(obj).__name__}).")
    return dict(obj)


def read_state_dict(
    source: Path | IO[bytes], spec: ModelSpec, *, source_name: str | None = None, allow_pickle: bool = False
) -> dict:
    """Read a weights file (path or binary file object) as a ``state_dict``.

    Args:
        allow_pickle: unpickle arbitrary objects (a release published as a whole model). Only for
            files from a source you trust.
    """
    import torch

    name = source_name or (source.name if isinstance(source, Path) else "the weights file")
    try:
        obj: Any = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # a pickle with objects beyond tensors: a whole model
        if not allow_pickle:
            if spec.weights.pickled_release:
                raise WeightsInvalid(
                    f"{name} is not a plain state_dict (it looks like a pickled whole model, the "
                    "format of the official release). If it came from the official release, convert "
                    f"it with `python -m inference weights import {source if isinstance(source, Path) else 'FILE'} "
                    "--allow-pickle`."
                ) from exc
            raise WeightsInvalid(
                f"{name} is not a plain state_dict (it holds pickled objects beyond tensors). "
                "Use the bundle's models/*.pt checkpoint, not a TorchScript or whole-model file."
            ) from exc
        obj = _load_untrusted(source, name)
    except Exception as exc:
        raise WeightsInvalid(f"{name} cannot be read as a PyTorch weights file ({type(exc).__name__}).") from exc
    return _unwrap(obj, name)


def _load_untrusted(source: Path | IO[bytes], name: str) -> Any:
    import torch

    if not isinstance(source, Path):
        source.seek(0)
    try:
        return torch.load(source, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise WeightsInvalid(f"{name} could not be unpickled as a model ({type(exc).__name__}: {exc}).") from exc


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


def _from_bundle_zip(source: Path, spec: ModelSpec) -> dict:
    wanted = spec.weights.bundle_member
    assert wanted is not None
    try:
        with zipfile.ZipFile(source) as archive:
            members = [
                m
                for m in archive.infolist()
                if not m.is_dir() and (m.filename == wanted or m.filename.endswith("/" + wanted))
            ]
            if len(members) != 1:
                raise WeightsInvalid(
                    f"{source.name} should hold exactly one {wanted} (a bundle of {spec.display_name}); "
                    f"found {len(members)}."
                )
            member = members[0]
            too_large = WeightsInvalid(f"{member.filename} in {source.name} is too large to be these weights.")
            if member.file_size > MAX_ZIP_MEMBER_BYTES:
                raise too_large
            with tempfile.TemporaryFile() as tmp, archive.open(member) as fh:
                copied = 0
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    copied += len(chunk)
                    if copied > MAX_ZIP_MEMBER_BYTES:
                        raise too_large
                    tmp.write(chunk)
                tmp.seek(0)
                return read_state_dict(tmp, spec, source_name=f"{source.name}:{member.filename}")
    except zipfile.BadZipFile as exc:
        raise WeightsInvalid(f"{source.name} is not a readable zip file.") from exc


def _read_import_source(source: Path, spec: ModelSpec, allow_pickle: bool) -> dict:
    member = spec.weights.bundle_member
    if source.is_dir():
        if member is None:
            raise WeightsInvalid(f"{source} is a folder; {spec.display_name} installs from one weights file.")
        for candidate in (source / member, *(source / p for p in spec.weights.also)):
            if candidate.is_file():
                return read_state_dict(candidate, spec, source_name=str(candidate))
        raise WeightsInvalid(f"{source} is not a bundle folder of {spec.display_name}: no {member} in it.")
    # torch.save files are zip archives too: only a ``.zip`` is read as a bundle archive.
    if source.is_file() and member is not None and source.suffix.lower() == ".zip":
        return _from_bundle_zip(source, spec)
    if source.is_file():
        return read_state_dict(source, spec, allow_pickle=allow_pickle)
    raise WeightsInvalid(f"No file or folder at {source}.")


def import_weights(source: Path, spec: ModelSpec, settings: Settings, *, allow_pickle: bool = False) -> Path:
    """Check ``source`` loads into the architecture with strict keys, then install it.

    Writes the plain ``state_dict`` to ``installed_weights_path`` (atomically) with a provenance
    JSON beside it and returns that path. Nothing is written when a check fails.
    """
    source = Path(source)
    state_dict = _read_import_source(source, spec, allow_pickle)
    apply_state_dict(spec, adapter_for(spec).build(spec), state_dict, source_name=source.name)
    dest = installed_weights_path(spec, settings)
    write_state_dict_atomically(state_dict, dest)
    provenance = {
        "model_id": spec.model_id,
        "source": source.name,
        "source_sha256": sha256_of_file(source) if source.is_file() else None,
        "installed_sha256": sha256_of_file(dest),
        "imported_at": datetime.now(UTC).isoformat(),
    }
    dest.with_suffix(dest.suffix + ".json").write_text(json.dumps(provenance, indent=2))
    log.info("Installed weights for %s at %s", spec.model_id, dest)
    return dest


def download_weights(
    spec: ModelSpec, settings: Settings, progress: ProgressCallback | None = None, timeout_s: float = 20.0
) -> Path:
    """Download the published file, verify it, then install it as a plain state_dict."""
    import requests

    part = settings.weights_dir / (spec.weights.filename + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        with requests.get(spec.weights.url, stream=True, timeout=(timeout_s, 60)) as response:
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
            f"Could not download weights for {spec.display_name} from {spec.weights.url} "
            f"({type(exc).__name__}). On a machine without internet, copy the file here and run "
            f"{import_command(spec)}.",
            expected_path=str(installed_weights_path(spec, settings)),
            model_id=spec.model_id,
        ) from exc
    try:
        verify_published_sha256(spec, part)
        # The file came from the registry's own HTTPS URL and matches its hash where one is known.
        return import_weights(part, spec, settings, allow_pickle=spec.weights.pickled_release)
    finally:
        part.unlink(missing_ok=True)
