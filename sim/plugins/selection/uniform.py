"""Uniform random selection: the baseline every active-learning strategy is measured against.

Registered as ``random``: ``batch`` candidates drawn uniformly without replacement from the
pool, ignoring the surrogate (what a plain dataset recipe does with the same budget).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.plugins.registry import register_plugin
from sim.plugins.selection.base import check_batch


@register_plugin("random", "selection", paper="baseline: passive learning by uniform sampling (Settles 2009, Active "
                                              "Learning Literature Survey)",
                 summary="uniform draws without replacement from the candidate pool (the active-learning baseline)")
class UniformSelection:
    """Shapes: ``features`` (P, d) -> indices (batch,); only their count is used, so the loop
    passes (P, 0) (``uses_features = False``) instead of embedding the pool."""

    uses_features = False

    def __call__(self, scorer: Any, features: np.ndarray, batch: int, rng: np.random.Generator) -> np.ndarray:
        pool = len(features)
        check_batch("random selection", batch, pool)
        return np.asarray(rng.choice(pool, size=batch, replace=False), dtype=np.int64)
