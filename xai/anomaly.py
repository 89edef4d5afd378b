"""An anomaly map against the site's own normals, PatchCore-style (Roth et al., 2022): the patch
features of images that readers confirmed as normal form a memory bank, reduced by greedy coreset
selection (each step takes the patch farthest from those taken, so the bank still covers every kind
of normal patch); a new image's anomaly map is each patch's distance to its nearest patch in the
bank, and its anomaly score the largest of those.

The image as a whole is judged against the normals themselves: each normal image's mean patch
distance to a bank built without it (k-fold, the same coreset selection) sets what a normal looks
like here, and an image whose mean is above the highest of those (with a margin) is "unlike
anything reviewed here": abnormal, or not the kind of image the model reads at all. The mean,
not the largest patch: a whole image of another kind moves every patch a little, a lesion few a lot. Features are vectors from the classifier's last feature layer,
never pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_NORMALS = 10
MAX_NORMALS = 200  # the most recent confirmed normals: the bank is built in seconds, once per set
CORESET_SHARE = 0.25  # of all normal patches, at most
CORESET_MAX = 2_500
PROJECTED_DIM = 128  # coreset selection's random projection (distances kept approximately)
FOLDS = 5
MARGIN = 1.0  # "unlike anything reviewed here" above the highest out-of-fold mean of a normal, times this


@dataclass(frozen=True)
class AnomalyResult:
    grid: np.ndarray  # float32 (h, w): each patch's distance to its nearest normal patch
    score: float  # the largest of them: the image's anomaly score (PatchCore's)
    typical: float  # their mean: how unlike the normals the image is as a whole
    threshold: float  # a ``typical`` above it is unlike every normal the bank was built from
    normals: int  # confirmed normal images behind the bank

    @property
    def unusual(self) -> bool:
        return self.typical > self.threshold


def greedy_coreset(patches: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Indices of ``size`` patches chosen greedily, each the farthest (in a random projection)
    from those already chosen."""
    n = len(patches)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    dim = patches.shape[1]
    projection = rng.standard_normal((dim, min(PROJECTED_DIM, dim))).astype(np.float32) / np.sqrt(dim)
    projected = patches.astype(np.float32) @ projection
    chosen = [int(rng.integers(n))]
    nearest = np.linalg.norm(projected - projected[chosen[0]], axis=1)
    for _ in range(size - 1):
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(projected - projected[pick], axis=1))
    return np.array(chosen)


class _Bank:
    def __init__(self, patches: np.ndarray, seed: int = 0) -> None:
        import faiss

        size = min(CORESET_MAX, max(1, int(len(patches) * CORESET_SHARE)))
        chosen = greedy_coreset(patches, size, seed)
        kept = np.ascontiguousarray(patches[chosen], dtype=np.float32)
        self.index = faiss.IndexFlatL2(kept.shape[1])
        self.index.add(kept)

    def distances(self, patches: np.ndarray) -> np.ndarray:
        found, _ = self.index.search(np.ascontiguousarray(patches, dtype=np.float32), 1)
        return np.sqrt(np.maximum(found[:, 0], 0.0))


class NormalBank:
    """The memory bank of one model's weights, from its confirmed normal images' patch features."""

    def __init__(self, normals: Sequence[np.ndarray], seed: int = 0) -> None:
        """``normals``: each normal image's patches (h * w, K)."""
        if len(normals) < MIN_NORMALS:
            raise ValueError(f"an anomaly bank needs {MIN_NORMALS} normal images; {len(normals)} given")
        self.normals = len(normals)
        self._bank = _Bank(np.concatenate(normals))
        # Each normal scored against a bank without it: what a normal's score looks like here.
        folds = np.random.default_rng(seed).permutation(len(normals)) % FOLDS
        held_out = []
        for fold in range(FOLDS):
            rest = np.concatenate([p for p, f in zip(normals, folds) if f != fold])
            bank = _Bank(rest, seed=seed + fold)
            held_out += [float(bank.distances(p).mean()) for p, f in zip(normals, folds) if f == fold]
        self.normal_typical = np.array(held_out)
        self.threshold = float(self.normal_typical.max() * MARGIN)

    def score(self, patches: np.ndarray, grid: tuple[int, int]) -> AnomalyResult:
        distances = self._bank.distances(patches).reshape(grid).astype(np.float32)
        return AnomalyResult(distances, float(distances.max()), float(distances.mean()), self.threshold, self.normals)


def upsampled(grid: np.ndarray, size: int) -> np.ndarray:
    """The patch grid as a map on the model's input square (size x size), scaled to [0, 1] by its own
    range, for drawing over the image as a heatmap."""
    import cv2

    low, high = float(grid.min()), float(grid.max())
    scaled = (grid - low) / (high - low) if high > low else np.zeros_like(grid)
    return cv2.resize(scaled.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
