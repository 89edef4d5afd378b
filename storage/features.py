"""Run features: the embedding and patch features of each classification run's image (vectors,
never pixels), stored once with the run and read back per model and weights, in the order stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
from sqlalchemy import Table, exists, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.types import ImageFeatures
from storage.models import RunFeatures, utcnow


@dataclass(frozen=True)
class Embeddings:
    """Stored embeddings of one model's weights after a given row: their row ids (the last is where
    the next read starts), their runs, and the vectors (N, K) float32."""

    ids: np.ndarray
    run_ids: np.ndarray
    vectors: np.ndarray


def store_features(session: Session, run_id: int, model_id: str, weights_sha256: str, features: ImageFeatures) -> None:
    """Keep a run's features, once: a run analysed again keeps the features first stored."""
    if session.scalar(select(exists().where(RunFeatures.run_id == run_id))):
        return
    try:
        # In a savepoint: another process storing the same run's features at the same moment
        # (the page and the API analysing one image) must not abort the run's own transaction.
        with session.begin_nested():
            _insert(session, run_id, model_id, weights_sha256, features)
    except IntegrityError:
        pass  # stored by the other: the same image through the same weights


def _insert(session: Session, run_id: int, model_id: str, weights_sha256: str, features: ImageFeatures) -> None:
    session.execute(
        insert(cast(Table, RunFeatures.__table__)).values(
            run_id=run_id,
            model_id=model_id,
            weights_sha256=weights_sha256,
            dim=int(features.embedding.shape[0]),
            embedding=np.ascontiguousarray(features.embedding, dtype=np.float32).tobytes(),
            grid_rows=features.grid[0],
            grid_cols=features.grid[1],
            patches=np.ascontiguousarray(features.patches, dtype=np.float16).tobytes(),
            created_at=utcnow(),
        )
    )


def embeddings_after(session: Session, model_id: str, weights_sha256: str, after_id: int = 0) -> Embeddings:
    rows = session.execute(
        select(RunFeatures.id, RunFeatures.run_id, RunFeatures.dim, RunFeatures.embedding)
        .where(
            RunFeatures.model_id == model_id,
            RunFeatures.weights_sha256 == weights_sha256,
            RunFeatures.id > after_id,
        )
        .order_by(RunFeatures.id)
    ).all()
    if not rows:
        return Embeddings(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
    vectors = np.stack([np.frombuffer(r.embedding, dtype=np.float32, count=r.dim) for r in rows])
    return Embeddings(np.array([r.id for r in rows], np.int64), np.array([r.run_id for r in rows], np.int64), vectors)


def run_features(session: Session, run_ids: Sequence[int]) -> dict[int, ImageFeatures]:
    """The stored features of these runs (those that have them)."""
    rows = session.scalars(select(RunFeatures).where(RunFeatures.run_id.in_(list(run_ids))))
    out = {}
    for r in rows:
        patches = np.frombuffer(r.patches, dtype=np.float16).reshape(r.grid_rows * r.grid_cols, r.dim)
        out[r.run_id] = ImageFeatures(
            np.frombuffer(r.embedding, dtype=np.float32).copy(), patches.copy(), (r.grid_rows, r.grid_cols)
        )
    return out
