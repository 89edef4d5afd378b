"""Similar prior cases (a retrieval trace): each classification run's embedding in a vector index
per model and weights, searched for the cases most like a new one. Exact inner-product search
(faiss) over unit vectors at half precision: the similarity is the cosine of the two embeddings,
1 for the same image; the planted near-duplicate is always found, as no approximate index promises.

An index is filled from the stored embeddings and then only with those stored since, so a server
keeps one per model and weights and a search never rebuilds it. "Since" reaches back a window of
rows before the last one seen: on PostgreSQL a row with a lower id can commit after a higher one
(ids are handed out at insert), and it must not be missed for the life of the server."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from storage.features import embeddings_after

LATE_WINDOW = 1000  # rows before the last one seen, read again at each refresh


@dataclass(frozen=True)
class Neighbour:
    run_id: int
    similarity: float  # cosine of the two embeddings, 1 for the same image


class SimilarIndex:
    """The embeddings of one model's weights, searchable; safe to share between sessions."""

    def __init__(self, model_id: str, weights_sha256: str) -> None:
        self.model_id = model_id
        self.weights_sha256 = weights_sha256
        self._index = None  # built at the first vectors, when their dimension is known
        self._lock = threading.Lock()
        self.last_row = 0  # the last stored row in the index
        self.size = 0
        self._runs: set[int] = set()

    def add(self, run_ids: np.ndarray, vectors: np.ndarray) -> None:
        import faiss

        new = np.array([int(r) not in self._runs for r in run_ids], dtype=bool)
        run_ids, vectors = np.asarray(run_ids)[new], np.asarray(vectors)[new]
        if not len(run_ids):
            return
        self._runs.update(int(r) for r in run_ids)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self._index is None:
            quantised = faiss.IndexScalarQuantizer(
                vectors.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
            )
            self._index = faiss.IndexIDMap(quantised)
        self._index.add_with_ids(vectors, np.ascontiguousarray(run_ids, dtype=np.int64))
        self.size += len(run_ids)

    def refresh(self, session: Session) -> None:
        """Add what was stored since the last refresh."""
        with self._lock:
            new = embeddings_after(session, self.model_id, self.weights_sha256, max(0, self.last_row - LATE_WINDOW))
            if len(new.ids):
                self.add(new.run_ids, new.vectors)  # those already in are skipped
                self.last_row = max(self.last_row, int(new.ids[-1]))

    def search(self, vector: np.ndarray, k: int, exclude: frozenset[int] | set[int] = frozenset()) -> list[Neighbour]:
        """The ``k`` runs most like ``vector``, most similar first, leaving out ``exclude``."""
        with self._lock:
            if self._index is None or not self.size:
                return []
            wanted = min(self.size, k + len(exclude))
            scores, ids = self._index.search(np.ascontiguousarray(vector, dtype=np.float32)[None, :], wanted)
        found = [Neighbour(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0 and int(i) not in exclude]
        return found[:k]
