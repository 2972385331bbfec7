"""Subgraph permutation-equivariant layer: ego-subgraph bags, equivariance, past 1-WL, reach."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from graphs import delaunay_edges, ring_edges

from sim.plugins import PluginError, build_plugin
from sim.plugins.layers import SubgraphEquivariantLayer, ego_pairs


def _layer(channels=8, hops=1, seed=0):
    torch.manual_seed(seed)
    return SubgraphEquivariantLayer(channels, hops=hops).double()


@pytest.mark.parametrize("hops", [1, 2])
def test_ego_pairs_match_networkx_ego_graphs(hops):
    e = delaunay_edges(40, seed=1).numpy()
    g = nx.Graph(list(map(tuple, e.T)))
    bag = ego_pairs(e, 40, hops)
    for v in range(40):
        sel = bag["root"] == v
        want = nx.single_source_shortest_path_length(g, v, cutoff=hops)
        assert dict(zip(bag["member"][sel].tolist(), bag["dist"][sel].tolist())) == want
    # internal edges: exactly the graph edges with both ends in the root's ego subgraph
    src, dst = bag["src"], bag["dst"]
    assert (bag["root"][src] == bag["root"][dst]).all()
    got = {(int(bag["root"][d]), int(bag["member"][s]), int(bag["member"][d])) for s, d in zip(src, dst)}
    want = {(v, a, b) for v in range(40) for a, b in nx.ego_graph(g, v, radius=hops).edges for a, b in [(a, b), (b, a)]}
    assert got == want


def test_equivariant_to_node_permutations():
    layer = _layer(hops=2)
    e = delaunay_edges(50, seed=3)
    x = torch.randn(50, 8, dtype=torch.float64)
    p = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    inv = torch.empty_like(p)
    inv[p] = torch.arange(50)
    out = layer(x, e)
    e2 = inv[e][:, torch.randperm(e.shape[1])]  # node i becomes inv[i]; edges shuffled
    out2 = layer(x[p], e2)
    torch.testing.assert_close(out2, out[p])


def test_separates_two_triangles_from_a_hexagon():
    tri = torch.tensor([[0, 1], [1, 2], [2, 0], [3, 4], [4, 5], [5, 3]]).T
    tri = torch.cat([tri, tri.flip(0)], dim=1)
    hexagon = ring_edges(6)
    x = torch.ones(6, 8, dtype=torch.float64)
    layer = _layer()
    a, b = layer(x, tri), layer(x, hexagon)
    assert (a - b).abs().max() > 1e-3
    # a sum-aggregation message-passing step cannot tell them apart (both 2-regular)
    def mp(edges):
        return torch.zeros_like(x).index_add_(0, edges[1], x[edges[0]])
    torch.testing.assert_close(mp(tri), mp(hexagon))


@pytest.mark.parametrize("hops", [1, 2])
def test_output_reach_is_2k(hops):
    layer = _layer(hops=hops)
    e = ring_edges(30)
    x = torch.randn(30, 8, dtype=torch.float64)
    base = layer(x, e)
    for d in (2 * hops, 2 * hops + 1):
        y = x.clone()
        y[d] += 1.0  # node d is d hops from node 0 on the ring
        changed = not torch.allclose(layer(y, e)[0], base[0])
        assert changed == (d <= 2 * hops), (d, changed)
    assert layer.receptive_hops == 2 * hops


def test_placed_by_config_and_parameter_errors():
    layer = build_plugin({"name": "spen", "hops": 2}, "layer", channels=8)
    assert isinstance(layer, SubgraphEquivariantLayer) and layer.hops == 2
    with pytest.raises(PluginError, match="hops must be an integer >= 1"):
        build_plugin({"name": "spen", "hops": 0}, "layer", channels=8)
    with pytest.raises(PluginError, match="layer plugin 'spen'.*radius"):
        build_plugin({"name": "spen", "radius": 2}, "layer", channels=8)
    assert np.isfinite(layer(torch.randn(10, 8), ring_edges(10)).detach().numpy()).all()
