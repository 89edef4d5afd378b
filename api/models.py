"""The API process's models: each loaded once, on first use or at start, and shared by every
request (as ``st.cache_resource`` does for the app's sessions)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.settings import Settings
from inference.models.loader import LoadedModel, load_model
from inference.models.spec import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadRecord:
    model_id: str
    trained: bool
    weights_sha256: str
    device: str
    load_seconds: float


class ModelPool:
    """Loads a registered model once per process, in untrained mode only where the settings
    allow it (``ALLOW_UNTRAINED_WEIGHTS=1`` or ``serve --allow-untrained``), never silently.
    ``on_load`` hears each load."""

    def __init__(
        self, settings: Settings, *, allow_untrained: bool, on_load: Callable[[LoadRecord], None] | None = None
    ) -> None:
        self._settings = settings
        self._allow_untrained = allow_untrained
        self._on_load = on_load
        self._loaded: dict[str, LoadedModel] = {}
        self._records: dict[str, LoadRecord] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, spec: ModelSpec) -> LoadedModel:
        """The loaded model; raises ``WeightsMissing``/``WeightsInvalid`` as the app does."""
        loaded = self._loaded.get(spec.model_id)
        if loaded is not None:
            return loaded
        with self._guard:
            lock = self._locks.setdefault(spec.model_id, threading.Lock())
        with lock:  # two first requests at once load it once
            loaded = self._loaded.get(spec.model_id)
            if loaded is None:
                started = time.perf_counter()
                loaded = load_model(spec, self._settings, allow_untrained=self._allow_untrained)
                record = LoadRecord(
                    model_id=spec.model_id,
                    trained=loaded.trained,
                    weights_sha256=loaded.weights_sha256,
                    device=loaded.device,
                    load_seconds=time.perf_counter() - started,
                )
                log.info(
                    "Loaded %s (%s) in %.1f s",
                    spec.model_id,
                    "trained" if loaded.trained else "UNTRAINED",
                    record.load_seconds,
                )
                self._records[spec.model_id] = record
                self._loaded[spec.model_id] = loaded
                if self._on_load is not None:
                    self._on_load(record)
        return loaded

    def records(self) -> tuple[LoadRecord, ...]:
        return tuple(self._records.values())
