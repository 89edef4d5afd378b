"""Real sample images through the real pipeline into the app's database and image store, as the
review page or the HTTP API stores them: for tests whose subject starts after the analysis (a
reader study, a worklist), so they need not drive an upload per case."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def store_classified(paths: Sequence[Path], model_id: str = "brain-tumour-4class") -> list[int]:
    """Each image analysed by ``model_id`` (its shipped weights), stored as a run for review with
    its de-identified pixels kept; their run ids, in the order given."""
    from core.deid import load_or_create_key
    from core.settings import load_settings
    from inference.images.bands import load_band_config
    from inference.images.ingest import load_image
    from inference.models.loader import load_model
    from inference.models.registry import get_classifier
    from pipelines.analyze import analyze
    from pipelines.classify import expected_image
    from storage import repository
    from storage.db import open_database
    from storage.image_store import ImageStore

    settings = load_settings()
    spec = get_classifier(model_id)
    loaded = load_model(spec, settings, allow_untrained=False)
    bands = load_band_config(settings.bands_file)
    store = ImageStore(settings.image_store_dir, settings.image_retention_days)
    sessions = open_database(settings.database_url)
    run_ids = []
    try:
        for path in paths:
            image = load_image(
                Path(path).read_bytes(),
                Path(path).name,
                max_bytes=settings.max_upload_mb * 1_000_000,
                max_pixels=settings.max_image_pixels,
                hash_key=load_or_create_key(settings.patient_key_file),
                expected=expected_image(spec),
            )
            analysis = analyze(loaded, image, bands)
            if not store.has(analysis.facts.input_sha256):
                store.put_image(image)
            with sessions.begin() as session:
                run_ids.append(
                    repository.store_analysis(
                        session,
                        analysis.facts,
                        analysis.prediction,
                        "Grad-CAM",
                        params={"input": analysis.input},
                        features=analysis.features,
                    ).run_id
                )
    finally:
        sessions.kw["bind"].dispose()
    return run_ids
