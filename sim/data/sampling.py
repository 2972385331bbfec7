"""Sparse subsets of a particle set, fixed per trajectory (GIOROM's reduced-order nodes).

- ``"random"``: a uniform random subset;
- ``"fps"``: farthest-point sampling: start from a random particle, then repeatedly add
  the particle farthest from the ones chosen so far, which covers the body evenly;

both in the reference configuration (the first frame), with ``ceil(ratio * N)`` particles
(at least ``minimum``). The seed of a trajectory comes from a base seed and the entry
name, so training, validation and rollout pick the same subset of a trajectory.

A fixed ratio keeps the sparse nodes' count proportional to the particles': a set sampled
twice as finely (in 2D, four times the particles) gets four times the nodes, half as far
apart, and a network trained on the first sees a graph of another resolution. The
``"spacing"`` rule (:func:`spacing_ratio`) keeps the nodes as far apart as in training
instead: the ratio shrinks with the particles' spacing, so the network's cost stays that of
the training resolution and only the dense decoding grows with the particles.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

METHODS = ("random", "fps")


def farthest_point_sampling(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (count,) of a farthest-point sample of ``points`` (N, d), first point random.

    Cost O(N * count): one distance update per chosen point.
    """
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if not 1 <= count <= n:
        raise ValueError(f"cannot choose {count} of {n} points")
    chosen = np.empty(count, dtype=np.int64)
    chosen[0] = rng.integers(n)
    dist = np.sum((points - points[chosen[0]]) ** 2, axis=1)
    for k in range(1, count):
        chosen[k] = int(np.argmax(dist))
        np.minimum(dist, np.sum((points - points[chosen[k]]) ** 2, axis=1), out=dist)
    return chosen


def subset_size(num_points: int, ratio: float, minimum: int = 8) -> int:
    """``ceil(ratio * N)``, at least ``minimum`` (and at most N)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"the sampling ratio must be in (0, 1], got {ratio}")
    return min(num_points, max(minimum, math.ceil(ratio * num_points)))


SAMPLE_RULES = ("ratio", "spacing")


def particle_spacing(points: np.ndarray) -> float:
    """The median distance from a particle to its nearest neighbour (0 for fewer than 2)."""
    from scipy.spatial import cKDTree

    points = np.asarray(points, dtype=np.float64)
    if len(points) < 2:
        return 0.0
    d, _ = cKDTree(points).query(points, k=2)
    return float(np.median(d[:, 1]))


def spacing_ratio(points: np.ndarray, ratio: float, reference_spacing: float) -> float:
    """The sampling ratio that keeps sparse nodes as far apart on ``points`` (N, d) as ``ratio``
    keeps them on particles ``reference_spacing`` apart: ``ratio * (s / reference_spacing) ** d``
    for particles ``s`` apart (:func:`particle_spacing`), at most 1."""
    if not reference_spacing > 0:
        raise ValueError(f"the reference spacing must be > 0, got {reference_spacing}")
    s = particle_spacing(points)
    return min(1.0, max(ratio * (s / reference_spacing) ** np.shape(points)[1], 1e-9))


def trajectory_seed(seed: int, name: str) -> int:
    """A seed for one trajectory from a base seed and its entry name (stable across runs)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, zlib.crc32(name.encode())]).generate_state(1)[0])


def sparse_subset(reference: np.ndarray, ratio: float, method: str = "fps", seed: int = 0,
                  minimum: int = 8) -> np.ndarray:
    """Sorted indices of the sparse particles of a trajectory.

    Args:
        reference: (N, d) reference positions (first frame).
        ratio: fraction of the particles to keep (GIOROM: 0.01 - 0.25); 1 keeps all.
        method: ``"random"`` or ``"fps"``.
        seed: per-trajectory seed (see :func:`trajectory_seed`).
        minimum: smallest subset (a graph needs a few nodes).
    """
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r} (known: {', '.join(METHODS)})")
    n = len(reference)
    count = subset_size(n, ratio, minimum)
    if count == n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if method == "random":
        idx = rng.choice(n, size=count, replace=False)
    else:
        idx = farthest_point_sampling(reference, count, rng)
    return np.sort(idx).astype(np.int64)
