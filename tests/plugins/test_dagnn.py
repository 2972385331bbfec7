"""DAGNN: the propagation operator's powers reach the closed-form limit of Theorem 3.1, and
K = 0 returns the transformed features."""

from __future__ import annotations

import torch

from sim.plugins.layers.dagnn import DAGNN, gcn_operator, gcn_propagate
from tests.plugins.graphs import delaunay_edges


def test_propagation_powers_converge_to_the_theorem_3_1_limit():
    n = 30
    ei = delaunay_edges(n, 2)  # a triangulation: connected
    weights = gcn_operator(ei, n, torch.float64)
    p = torch.eye(n, dtype=torch.float64)
    for _ in range(400):
        p = gcn_propagate(p, ei, weights)
    d_tilde = torch.zeros(n, dtype=torch.float64).index_add_(0, ei[1], torch.ones(ei.shape[1], dtype=torch.float64)) + 1
    m = ei.shape[1] // 2
    limit = torch.sqrt(d_tilde[:, None] * d_tilde[None, :]) / (2 * m + n)
    torch.testing.assert_close(p, limit, rtol=0, atol=1e-10)
    # and a handful of steps is still far from it (the test would catch an operator that is already the limit)
    q = torch.eye(n, dtype=torch.float64)
    for _ in range(2):
        q = gcn_propagate(q, ei, weights)
    assert (q - limit).abs().max() > 0.05


def test_zero_hops_returns_the_transformed_features():
    torch.manual_seed(0)
    ei = delaunay_edges(20, 1)
    layer = DAGNN(channels=8, hops=0)
    x = torch.randn(20, 8)
    torch.testing.assert_close(layer(x, ei), layer.transform(x))


def test_output_is_a_per_node_convex_combination_of_the_hop_representations():
    torch.manual_seed(1)
    ei = delaunay_edges(20, 1)
    layer = DAGNN(channels=4, hops=5)
    x = torch.randn(20, 4)
    h = layer.propagations(layer.transform(x), ei)  # (K + 1, N, C)
    s = torch.sigmoid(layer.score(h))
    torch.testing.assert_close(layer(x, ei), (s / s.sum(0) * h).sum(0))
    out = layer(x, ei)
    assert ((out >= h.amin(0) - 1e-6) & (out <= h.amax(0) + 1e-6)).all()
