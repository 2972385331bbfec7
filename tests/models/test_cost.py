"""Parameter and FLOP counts: exact for hand-countable models, linear in edges for graph models."""

from __future__ import annotations

import torch
from torch import nn

from sim.graph import mesh_graph
from sim.models import GraphTransformer, MeshGraphNet
from sim.models.cost import count_flops, model_cost, parameter_count
from tests.conftest import mixed_2d_mesh


def test_linear_layer_flops_are_two_per_multiply_add():
    lin = nn.Linear(10, 5)
    x = torch.randn(7, 10)
    cost = model_cost(lin, (x,), loss=lambda: lin(x).sum())
    assert cost.params == 10 * 5 + 5
    assert cost.forward_flops == 2 * 7 * 10 * 5
    # backward: gradient w.r.t. the weight only (x needs no gradient) = one more product
    assert cost.train_flops == 2 * (2 * 7 * 10 * 5)


def test_meshgraphnet_flops_match_the_hand_count():
    n_in, e_in, out, latent, steps = 11, 3, 2, 8, 3
    model = MeshGraphNet(n_in, e_in, out, latent=latent, steps=steps)
    g = mesh_graph(mixed_2d_mesh())
    n, e = g.num_nodes, g.edge_index.shape[1]
    x = torch.randn(n, n_in)
    lat = latent
    expected = (2 * n * (n_in * lat + 2 * lat * lat)  # node encoder
                + 2 * e * (e_in * lat + 2 * lat * lat)  # edge encoder
                + steps * (2 * e * lat * lat  # first edge layer on e (node terms per node:)
                           + 2 * n * (2 * lat) * lat
                           + 2 * e * 2 * lat * lat  # the edge MLP's other two layers
                           + 2 * n * (2 * lat * lat + 2 * lat * lat))  # node MLP
                + 2 * n * (2 * lat * lat + lat * out))  # decoder
    assert count_flops(lambda: model(x, g.edge_index, g.edge_attr)) == expected
    assert parameter_count(model) == sum(p.numel() for p in model.parameters())


def test_graph_transformer_flops_grow_linearly_with_the_graph():
    """Two disjoint copies of a mesh cost exactly twice one copy (no N^2 term anywhere)."""
    model = GraphTransformer(11, 3, 2, dim=16, layers=2, heads=2)
    g = mesh_graph(mixed_2d_mesh())
    n = g.num_nodes
    x = torch.randn(n, 11)
    one = count_flops(lambda: model(x, g.edge_index))
    two_ei = torch.cat([g.edge_index, g.edge_index + n], dim=1)
    two = count_flops(lambda: model(torch.cat([x, x]), two_ei))
    assert one > 0 and two == 2 * one
