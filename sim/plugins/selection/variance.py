"""Maximum predictive variance: the candidates the surrogate is least sure about.

The ``batch`` candidates with the largest ``scorer.variance`` (for MMGP: the latent
posterior variance of each field's GP, in units of that field's training spread, averaged
over the fields; see :class:`sim.active.adapters.MMGPAdapter`), taken together from one
ranking. Candidates are not conditioned on each other, so a batch may cluster where the
variance is high; :mod:`~sim.plugins.selection.kecor` is the batch-aware version (its first
pick is this strategy's first pick).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.plugins.registry import PluginError, register_plugin
from sim.plugins.selection.base import check_batch


@register_plugin("variance", "selection", paper="uncertainty sampling (e.g. Settles 2009, Active Learning Literature "
                                                "Survey; MacKay 1992 for Gaussian processes)",
                 summary="the candidates of largest predictive variance of the surrogate (MMGP: its GP posterior)")
class MaxVariance:
    """Shapes: ``features`` (P, d) -> indices (batch,), by decreasing variance (ties: lower index)."""

    def __call__(self, scorer: Any, features: np.ndarray, batch: int, rng: np.random.Generator) -> np.ndarray:
        pool = len(features)
        check_batch("variance selection", batch, pool)
        var = np.asarray(scorer.variance(features), dtype=np.float64).reshape(-1)
        if var.shape != (pool,) or not np.all(np.isfinite(var)):
            raise PluginError(f"variance selection: the scorer gave variances of shape {var.shape} "
                              f"(finite: {bool(np.all(np.isfinite(var)))}) for {pool} candidates")
        return np.argsort(-var, kind="stable")[:batch].astype(np.int64)
