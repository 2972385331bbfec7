"""MeshGraphNet: message passing equals a hand-written loop; the model learns; the registry rebuilds it."""

from __future__ import annotations

import pytest
import torch

from sim.errors import SimError
from sim.graph import mesh_graph
from sim.models import MeshGraphNet, available_models, build_model
from sim.nn.layers import GraphNetBlock
from tests.conftest import mixed_2d_mesh


def test_block_matches_a_loop_over_edges():
    torch.manual_seed(0)
    block = GraphNetBlock(latent=4)
    g = mesh_graph(mixed_2d_mesh())
    x = torch.randn(6, 4)
    e = torch.randn(g.edge_index.shape[1], 4)
    x_new, e_new = block(x, g.edge_index, e)
    # the same update, one edge and one node at a time
    messages = []
    agg = torch.zeros(6, 4)
    for k, (j, i) in enumerate(g.edge_index.T.tolist()):
        m = block.edge_mlp(torch.cat([e[k], x[j], x[i]]))
        messages.append(e[k] + m)
        agg[i] += m
    for i in range(6):
        torch.testing.assert_close(x_new[i], x[i] + block.node_mlp(torch.cat([x[i], agg[i]])))
    torch.testing.assert_close(e_new, torch.stack(messages))


def test_node_update_sums_only_incoming_edges():
    """A node with no incoming edges gets zero aggregated messages."""
    torch.manual_seed(1)
    block = GraphNetBlock(latent=3)
    x = torch.randn(3, 3)
    ei = torch.tensor([[0, 1], [1, 0]])  # node 2 is isolated
    e = torch.randn(2, 3)
    x_new, _ = block(x, ei, e)
    torch.testing.assert_close(x_new[2], x[2] + block.node_mlp(torch.cat([x[2], torch.zeros(3)])))


def test_permutation_equivariance():
    torch.manual_seed(2)
    model = MeshGraphNet(node_in=5, edge_in=3, out_dim=2, latent=16, steps=2)
    g = mesh_graph(mixed_2d_mesh())
    x = torch.randn(6, 5)
    out = model(x, g.edge_index, g.edge_attr)
    perm = torch.randperm(6)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(6)
    out_p = model(x[perm], inv[g.edge_index], g.edge_attr)
    torch.testing.assert_close(out_p, out[perm], rtol=1e-5, atol=1e-5)


def test_tiny_model_learns_a_graph_laplacian():
    """Loss falls by a large factor on a target that needs message passing (neighbour averages)."""
    torch.manual_seed(3)
    from scipy.spatial import Delaunay
    import numpy as np
    from sim.mesh import Mesh

    pts = np.random.default_rng(0).random((60, 2))
    g = mesh_graph(Mesh(pts, {"triangle": Delaunay(pts).simplices}))
    x = torch.randn(200, 60, 1)
    s, r = g.edge_index
    deg = torch.zeros(60).index_add_(0, r, torch.ones(len(r)))
    target = torch.zeros_like(x).index_add_(1, r, x[:, s]) / deg[None, :, None] - x
    model = MeshGraphNet(node_in=1, edge_in=3, out_dim=1, latent=32, steps=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for it in range(150):
        b = it % 200
        loss = torch.nn.functional.mse_loss(model(x[b], g.edge_index, g.edge_attr), target[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.2 * sum(losses[:10]) / 10


def test_registry_rebuilds_and_refuses_unknown_names():
    assert "meshgraphnet" in available_models()
    m = build_model("meshgraphnet", node_in=3, edge_in=3, out_dim=2, latent=8, steps=1)
    assert isinstance(m, MeshGraphNet) and build_model("meshgraphnet", **m.config).config == m.config
    with pytest.raises(SimError, match=r"unknown model 'mgn' \(available: .*meshgraphnet"):
        build_model("mgn")


def test_wrong_feature_width_is_a_clear_error():
    model = MeshGraphNet(node_in=4, edge_in=3, out_dim=2, latent=8, steps=1)
    g = mesh_graph(mixed_2d_mesh())
    with pytest.raises(ValueError, match="node features of width 4"):
        model(torch.randn(6, 5), g.edge_index, g.edge_attr)
