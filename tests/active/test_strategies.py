"""The random and variance strategies pick valid, distinct candidates; all three are listed as plugins."""

from __future__ import annotations

import numpy as np
import pytest

from sim.plugins import available_plugins, build_plugin
from sim.plugins.registry import PluginError


class Scorer:
    def __init__(self, var):
        self.var = np.asarray(var, dtype=float)

    def variance(self, features):
        return self.var

    def kernel(self, features, prior=False):
        return np.diag(self.var)

    def noise(self):
        return 1e-3


def test_selection_plugins_are_registered_with_their_papers():
    specs = {s.name: s for s in available_plugins("selection")}
    assert {"kecor", "random", "variance"} <= set(specs)
    assert all(s.paper and s.summary for s in specs.values())


@pytest.mark.parametrize("seed", range(5))
def test_random_picks_distinct_valid_candidates_and_depends_on_the_generator(seed):
    sel = build_plugin("random", "selection")
    picks = sel(None, np.zeros((30, 2)), 7, np.random.default_rng(seed))
    assert picks.shape == (7,) and len(set(picks.tolist())) == 7 and picks.min() >= 0 and picks.max() < 30
    again = sel(None, np.zeros((30, 2)), 7, np.random.default_rng(seed))
    assert picks.tolist() == again.tolist()


def test_variance_picks_the_largest_variances_distinct():
    var = np.array([0.1, 0.9, 0.3, 0.9, 0.05, 0.7])
    picks = build_plugin("variance", "selection")(Scorer(var), np.zeros((6, 2)), 3, np.random.default_rng(0))
    assert picks.tolist() == [1, 3, 5]


def test_with_a_diagonal_kernel_kecor_agrees_with_variance():
    var = np.random.default_rng(1).uniform(0.1, 1.0, 20)
    rng = np.random.default_rng(0)
    kecor = build_plugin("kecor", "selection")(Scorer(var), np.zeros((20, 2)), 5, rng)
    variance = build_plugin("variance", "selection")(Scorer(var), np.zeros((20, 2)), 5, rng)
    assert kecor.tolist() == variance.tolist()


@pytest.mark.parametrize("name", ["random", "variance", "kecor"])
def test_a_batch_larger_than_the_pool_is_refused(name):
    with pytest.raises(PluginError, match="batch 4"):
        build_plugin(name, "selection")(Scorer(np.ones(3)), np.zeros((3, 2)), 4, np.random.default_rng(0))


def test_variance_refuses_variances_of_the_wrong_shape():
    with pytest.raises(PluginError, match="shape"):
        build_plugin("variance", "selection")(Scorer(np.ones(2)), np.zeros((3, 2)), 1, np.random.default_rng(0))
