"""Random spatial networks: the generated graphs follow the model's degrees and edge lengths."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sim.plugins import PluginError, get_plugin
from sim.plugins.generators import random_spatial_network


@pytest.mark.parametrize("kernel,params", [("gaussian", {}), ("exponential", {}),
                                           ("power", {"scale": 0.06, "exponent": 5.0, "mean_degree": 4.0})])
def test_mean_degree_and_edge_lengths_match_the_model(kernel, params):
    g = random_spatial_network(4000, kernel=kernel, seed=3, **params)
    kappa = params.get("mean_degree", 6.0)
    deg = g.degrees()
    # the number of edges is a sum of independent Bernoullis: mean degree within 4 standard errors
    assert abs(deg.mean() - kappa) < 4 * np.sqrt(2 * kappa / g.num_nodes)
    one_way = g.lengths[: g.edge_index.shape[1] // 2]
    assert stats.kstest(one_way, g.length_cdf).pvalue > 1e-3
    # a wrong kernel scale is rejected by the same test
    wrong = random_spatial_network(4000, kernel=kernel, seed=3, **{**params, "scale": 1.2 * g.scale})
    assert stats.kstest(wrong.lengths[: wrong.edge_index.shape[1] // 2], g.length_cdf).pvalue < 1e-6


def test_expected_degree_per_node_and_3d():
    g = random_spatial_network(6000, dim=3, mean_degree=5.0, degree_cv=0.4, scale=0.09, seed=1)
    deg = g.degrees()
    # E[deg_u] = kappa_u: the slope of degree on kappa is 1 and the residual is Poisson-like
    slope, intercept = np.polyfit(g.expected_degree, deg, 1)
    assert abs(slope - 1) < 0.08 and abs(intercept) < 0.6
    assert abs(deg.mean() - g.expected_degree.mean()) < 4 * np.sqrt(2 * 5.0 / g.num_nodes)
    assert abs(np.var(deg - g.expected_degree) / g.expected_degree.mean() - 1) < 0.15


def test_graph_structure_and_errors():
    g = random_spatial_network(500, seed=0)
    src, dst = g.edge_index
    assert (src != dst).all()
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert all((b, a) in pairs for a, b in pairs)  # both directions of every edge, no duplicates
    assert len(pairs) == g.edge_index.shape[1]
    assert (g.lengths <= g.cutoff).all()
    np.testing.assert_array_equal(random_spatial_network(500, seed=0).edge_index, g.edge_index)
    assert get_plugin("random_spatial_network", "generator").factory is random_spatial_network
    with pytest.raises(PluginError, match="edge probabilities reach .* > 1"):
        random_spatial_network(1000, mean_degree=20.0, scale=0.005)
    with pytest.raises(PluginError, match="unknown kernel 'cauchy'"):
        random_spatial_network(100, kernel="cauchy")
    with pytest.raises(PluginError, match="exceeds half the periodic box"):
        random_spatial_network(100, kernel="power", scale=0.1, cutoff=0.8)
