"""Selection plugins: which candidate simulations to run next (active learning, ``sim active``).

- :mod:`~sim.plugins.selection.kecor`: KECOR, the batch of largest kernel coding rate
  logdet(I + K_SS / sigma^2), chosen greedily (Luo et al. 2023);
- :mod:`~sim.plugins.selection.variance`: the candidates of largest predictive variance;
- :mod:`~sim.plugins.selection.uniform`: uniform draws (registered as ``random``, the baseline).

The protocol: a selection plugin's factory takes its parameters and returns a selector,
called as ``selector(scorer, features, batch, rng) -> indices``:

- ``features``: (P, d) array, one row per candidate, as the scorer describes them (for MMGP,
  the GP inputs: shape POD coefficients and input scalars, standardised);
- ``scorer``: the current surrogate seen through three methods, ``kernel(features,
  prior=False) -> (P, P)`` (a positive semi-definite covariance of the surrogate's outputs at
  the candidates), ``variance(features) -> (P,)`` (its diagonal) and ``noise() -> float`` (the
  observation noise variance, in the kernel's units);
- ``batch``: how many to pick; ``rng``: a ``numpy.random.Generator`` for strategies that draw.

A selector whose class sets ``uses_features = False`` gets a (P, 0) array instead (embedding a
pool costs a model pass per candidate, wasted on a strategy that only counts them).

It returns ``batch`` distinct row indices (int64), in the order picked. Selectors never see
a model class: :mod:`sim.active` wraps each model family in a scorer, so a strategy works
for every family that has one.
"""

from sim.plugins.selection.kecor import KECOR, greedy_logdet, greedy_pool_rate, logdet_coding_rate, pool_coding_rate
from sim.plugins.selection.uniform import UniformSelection
from sim.plugins.selection.variance import MaxVariance

__all__ = ["KECOR", "MaxVariance", "UniformSelection", "greedy_logdet", "greedy_pool_rate", "logdet_coding_rate",
           "pool_coding_rate"]
