"""KECOR's greedy batch: within 1 - 1/e of the best batch, and its incremental gains are exact."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from sim.plugins import build_plugin, get_plugin
from sim.plugins.registry import PluginError
from sim.plugins.selection import KECOR, greedy_logdet, logdet_coding_rate


def random_psd(rng: np.random.Generator, pool: int, rank: int) -> np.ndarray:
    """A kernel matrix of ``pool`` candidates with features of dimension ``rank`` (PSD, rank-deficient when
    rank < pool), scaled unevenly so that variances differ."""
    z = rng.standard_normal((pool, rank)) * rng.uniform(0.2, 2.0, (pool, 1))
    return z @ z.T / rank


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("batch", [2, 3, 4])
def test_greedy_logdet_is_within_1_minus_1_over_e_of_brute_force_and_exact(seed, batch):
    rng = np.random.default_rng(seed)
    kernel = random_psd(rng, pool=10, rank=int(rng.integers(2, 12)))
    sigma2 = float(rng.choice([0.01, 0.1, 1.0]))
    picks, gains = greedy_logdet(kernel, batch, sigma2)
    assert len(set(picks.tolist())) == batch and np.all(gains >= 0)
    greedy = logdet_coding_rate(kernel, picks, sigma2)
    # the incremental (Cholesky / Schur-complement) gains add up to the from-scratch log-determinant
    assert greedy == pytest.approx(gains.sum(), rel=1e-9, abs=1e-9)
    # ... and each partial sum is the log-determinant of the partial batch
    for t in range(1, batch + 1):
        assert logdet_coding_rate(kernel, picks[:t], sigma2) == pytest.approx(gains[:t].sum(), rel=1e-9, abs=1e-9)
    best = max(logdet_coding_rate(kernel, s, sigma2) for s in combinations(range(10), batch))
    assert greedy >= (1 - 1 / np.e) * best - 1e-12
    assert greedy <= best + 1e-9


def test_first_pick_is_the_largest_variance_and_duplicates_are_avoided():
    # candidates 0 and 1 are the same point (perfectly correlated): after picking one, the other gains little
    z = np.array([[3.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    kernel = z @ z.T
    picks, _ = greedy_logdet(kernel, 2, 1e-3)
    assert picks[0] in (0, 1) and picks[1] not in (0, 1)


def test_kecor_plugin_uses_the_scorer_kernel_and_noise():
    rng = np.random.default_rng(0)
    kernel = random_psd(rng, 12, 4)

    class Scorer:
        asked = {}

        def kernel(self, features, prior=False):
            self.asked["prior"] = prior
            return kernel

        def noise(self):
            return 0.05

    scorer = Scorer()
    sel = build_plugin("kecor", "selection")
    picks = sel(scorer, np.zeros((12, 3)), 4, rng)
    assert picks.tolist() == greedy_logdet(kernel, 4, 0.05)[0].tolist() and sel.sigma2_ == 0.05
    assert scorer.asked["prior"] is False
    build_plugin({"name": "kecor", "kernel": "prior", "sigma2": 0.5}, "selection")(scorer, np.zeros((12, 3)), 2, rng)
    assert scorer.asked["prior"] is True
    assert "ICCV" in get_plugin("kecor").paper


@pytest.mark.parametrize("bad", [{"sigma2": 0.0}, {"kernel": "ntk"}])
def test_kecor_refuses_bad_parameters(bad):
    with pytest.raises(PluginError, match="kecor"):
        KECOR(**bad)


def test_greedy_refuses_a_batch_larger_than_the_pool():
    with pytest.raises(PluginError, match="batch 5"):
        greedy_logdet(np.eye(3), 5, 1.0)
