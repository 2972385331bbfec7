"""KECOR's greedy batch: within 1 - 1/e of the best batch, and its incremental gains are exact."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from sim.plugins import build_plugin, get_plugin
from sim.plugins.registry import PluginError
from sim.plugins.selection import KECOR, greedy_logdet, greedy_pool_rate, logdet_coding_rate, pool_coding_rate
from sim.plugins.selection.kecor import greedy_weighted_variance, weighted_variance_reduction


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


@pytest.mark.parametrize("distortion", [0.05, 1.0, float("inf")])
@pytest.mark.parametrize("seed", range(4))
def test_greedy_pool_gains_are_exact_and_each_pick_is_the_best_next_one(seed, distortion):
    rng = np.random.default_rng(seed)
    kernel = random_psd(rng, pool=9, rank=int(rng.integers(2, 10)))
    sigma2 = float(rng.choice([0.01, 0.1]))
    picks, gains = greedy_pool_rate(kernel, 4, sigma2, distortion)
    assert len(set(picks.tolist())) == 4 and np.all(gains > 0)
    for t in range(1, 5):
        # the incremental (determinant-lemma) gains add up to the from-scratch reduction ...
        assert pool_coding_rate(kernel, picks[:t], sigma2, distortion) == pytest.approx(gains[:t].sum(), rel=1e-8)
        # ... and pick t is the candidate that raises it most
        before = picks[: t - 1].tolist()
        best = max(pool_coding_rate(kernel, before + [j], sigma2, distortion) for j in range(9) if j not in before)
        assert pool_coding_rate(kernel, picks[:t], sigma2, distortion) == pytest.approx(best, rel=1e-8)


def test_the_pool_objective_picks_what_informs_the_pool_not_an_isolated_outlier():
    # ten candidates in a tight cluster and one far away with a larger variance of its own
    z = np.vstack([np.full((10, 1), 1.0) + 0.01 * np.arange(10)[:, None], [[0.0]]])
    kernel = 0.5 * np.exp(-0.5 * (z - z.T) ** 2 / 0.3**2)
    kernel[10, 10] = 0.8  # an isolated candidate: largest own variance, uncorrelated with the rest
    batch_first = greedy_logdet(kernel, 1, 1e-3)[0][0]
    pool_first = greedy_pool_rate(kernel, 1, 1e-3, 0.1)[0][0]
    alc_first = greedy_pool_rate(kernel, 1, 1e-3, float("inf"))[0][0]
    assert batch_first == 10 and pool_first < 10 and alc_first < 10


def test_kecor_pool_objective_distortions():
    rng = np.random.default_rng(1)
    kernel = random_psd(rng, 12, 4)

    class Scorer:
        def kernel(self, features, prior=False):
            return kernel

        def noise(self):
            return 0.05

    sel = build_plugin({"name": "kecor", "objective": "pool", "distortion": "mean"}, "selection")
    picks = sel(Scorer(), np.zeros((12, 3)), 3, rng)
    tau = float(np.mean(np.diag(kernel)))
    assert sel.distortion_ == pytest.approx(tau)
    assert picks.tolist() == greedy_pool_rate(kernel, 3, 0.05, tau)[0].tolist()
    sel = KECOR(objective="pool")  # the summed variance by default
    assert sel(Scorer(), np.zeros((12, 3)), 3, rng).tolist() == greedy_pool_rate(kernel, 3, 0.05, np.inf)[0].tolist()
    assert sel.distortion_ == np.inf


@pytest.mark.parametrize("seed", range(4))
def test_error_weighted_gains_are_exact_and_each_pick_is_the_best_next_one(seed):
    rng = np.random.default_rng(seed)
    terms = [(random_psd(rng, 9, int(rng.integers(2, 9))), rng.uniform(0.0, 3.0, 9), float(rng.choice([0.01, 0.3])))
             for _ in range(2)]
    picks, gains = greedy_weighted_variance(terms, 4)
    assert len(set(picks.tolist())) == 4
    for t in range(1, 5):
        assert weighted_variance_reduction(terms, picks[:t]) == pytest.approx(gains[:t].sum(), rel=1e-9, abs=1e-12)
        before = weighted_variance_reduction(terms, picks[:t - 1])
        others = [weighted_variance_reduction(terms, [*picks[:t - 1], j]) for j in range(9) if j not in picks[:t]]
        assert gains[t - 1] >= max(others) - before - 1e-12


def test_error_weighting_with_one_unit_term_is_the_pool_objective_and_weights_steer_the_picks():
    rng = np.random.default_rng(3)
    kernel = random_psd(rng, 12, 5)
    one = greedy_weighted_variance([(kernel, np.ones(12), 0.05)], 4)
    ref = greedy_pool_rate(kernel, 4, 0.05, np.inf)
    assert one[0].tolist() == ref[0].tolist() and one[1] == pytest.approx(ref[1])
    # two blocks of candidates that share nothing: only the weighted block's variance counts
    block = np.zeros((12, 12))
    block[:6, :6], block[6:, 6:] = kernel[:6, :6], 4.0 * kernel[6:, 6:]
    weights = np.r_[np.ones(6), np.zeros(6)]
    assert set(greedy_weighted_variance([(block, weights, 0.05)], 3)[0].tolist()) <= set(range(6))
    assert set(greedy_weighted_variance([(block, np.ones(12), 0.05)], 1)[0].tolist()) <= set(range(6, 12))


def test_kecor_error_weighting_reads_the_scorer_terms_and_refuses_a_scorer_without_them():
    rng = np.random.default_rng(4)
    terms = [(random_psd(rng, 10, 4), rng.uniform(0.5, 2.0, 10), 0.1), (random_psd(rng, 10, 3), np.ones(10), 0.02)]

    class Scorer:
        def error_terms(self, features, prior=False):
            return terms

    sel = build_plugin({"name": "kecor", "objective": "pool", "weighting": "error"}, "selection")
    assert sel(Scorer(), np.zeros((10, 2)), 3, rng).tolist() == greedy_weighted_variance(terms, 3)[0].tolist()
    assert sel.sigma2_ == [0.1, 0.02]

    class Plain:
        def kernel(self, features, prior=False):
            return terms[0][0]

        def noise(self):
            return 0.1

    with pytest.raises(PluginError, match="error_terms"):
        sel(Plain(), np.zeros((10, 2)), 3, rng)
    with pytest.raises(PluginError, match="weights"):
        greedy_weighted_variance([(terms[0][0], -np.ones(10), 0.1)], 2)


@pytest.mark.parametrize("bad", [{"sigma2": 0.0}, {"kernel": "ntk"}, {"objective": "test"}, {"distortion": 0.0},
                                 {"distortion": "max"}, {"weighting": "loss"}, {"weighting": "error"},
                                 {"weighting": "error", "objective": "pool", "distortion": "mean"}])
def test_kecor_refuses_bad_parameters(bad):
    with pytest.raises(PluginError, match="kecor"):
        KECOR(**bad)


def test_greedy_refuses_a_batch_larger_than_the_pool():
    with pytest.raises(PluginError, match="batch 5"):
        greedy_logdet(np.eye(3), 5, 1.0)
