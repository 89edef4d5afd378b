"""Similar prior cases: one search of the server's index holding 100,000 stored embeddings of the
chest X-ray model's size (1,024 values), as a case page asks for its similar reviewed cases."""

from __future__ import annotations

import statistics
import time

import numpy as np

GOALS = {"similar_query_ms <= 50 for 100,000 vectors": lambda r: r["similar_query_ms"] <= 50.0}


def similar_timings(vectors: int = 100_000, dim: int = 1024, queries: int = 50) -> dict:
    from analytics.similar import SimilarIndex

    rng = np.random.default_rng(0)
    data = rng.standard_normal((vectors, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    index = SimilarIndex("bench", "0" * 64)
    started = time.perf_counter()
    for start in range(0, vectors, 10_000):  # as refreshes add them
        index.add(np.arange(start, start + 10_000), data[start : start + 10_000])
    filled = time.perf_counter() - started
    timings = []
    for i in range(queries):
        query = data[rng.integers(vectors)] + 0.01 * rng.standard_normal(dim).astype(np.float32)
        started = time.perf_counter()
        found = index.search(query / np.linalg.norm(query), 200, exclude={i})
        timings.append((time.perf_counter() - started) * 1000)
        assert len(found) == 200
    return {
        "similar_query_ms": statistics.median(timings),
        "similar_query_p95_ms": float(np.percentile(timings, 95)),
        "similar_index_fill_s": filled,
        "similar_vectors": vectors,
    }


if __name__ == "__main__":
    print(similar_timings())
