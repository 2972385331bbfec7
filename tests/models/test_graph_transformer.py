"""Graph transformer: sparse attention equals dense masked attention; hop masks, global tokens,
random edges and rotary encoding behave as specified."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import shortest_path
from scipy.spatial import Delaunay

from sim.graph import adjacency, cell_edges
from sim.models import GraphTransformer, build_model
from sim.nn.attention import MaskedAttention


def _mesh_edges(n: int = 40, seed: int = 0):
    pts = np.random.default_rng(seed).random((n, 2))
    ei = cell_edges({"triangle": Delaunay(pts).simplices}, n)
    return torch.from_numpy(pts).float(), torch.from_numpy(ei)


def _dense_reference(attn: MaskedAttention, x, mask, pos=None):
    n = x.shape[0]
    q, k, v = attn.qkv(x).view(n, 3, attn.heads, attn.head_dim).unbind(1)
    if attn.rope:
        from sim.nn.attention import rotary

        q, k = rotary(q, pos), rotary(k, pos)
    scores = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(attn.head_dim)
    allowed = torch.zeros(n, n, dtype=torch.bool)
    allowed[mask[1], mask[0]] = True  # (receiver, sender)
    scores = scores.masked_fill(~allowed, float("-inf"))
    w = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)  # rows without senders -> 0
    out = torch.einsum("hij,jhd->ihd", w, v).reshape(n, -1)
    return attn.out(out)


@pytest.mark.parametrize("rope", [False, True])
def test_sparse_attention_equals_dense_masked_attention(rope):
    torch.manual_seed(0)
    pos, ei = _mesh_edges()
    attn = MaskedAttention(16, 4, rope=rope)
    x = torch.randn(40, 16)
    mask = ei[:, ei[1] != 5]  # node 5 has no senders at all
    torch.testing.assert_close(attn(x, mask, pos), _dense_reference(attn, x, mask, pos), rtol=1e-5, atol=1e-5)


def test_rotary_scores_depend_only_on_relative_position():
    torch.manual_seed(1)
    attn = MaskedAttention(16, 2, rope=True)
    x = torch.randn(2, 16)
    mask = torch.tensor([[0], [1]])
    pos = torch.tensor([[0.1, 0.3], [0.5, -0.2]])
    a = attn.qkv(x).view(2, 3, 2, 8)
    from sim.nn.attention import rotary

    def score(p):
        q, k = rotary(a[:, 0], p), rotary(a[:, 1], p)
        return (q[1] * k[0]).sum(-1)

    torch.testing.assert_close(score(pos), score(pos + torch.tensor([3.0, -7.0])), rtol=1e-4, atol=1e-5)
    del mask


@pytest.mark.parametrize("kwargs, expected", [
    ({"k_hop": 2}, [{1, 2}] * 3),
    ({"dilation": [1, 2, 4]}, [{1}, {2}, {4}]),
    ({"hops": [[1], [1, 3], [2]]}, [{1}, {1, 3}, {2}]),
])
def test_layer_masks_hold_exactly_the_intended_hop_sets(kwargs, expected):
    pos, ei = _mesh_edges()
    model = GraphTransformer(node_in=3, edge_in=3, out_dim=1, dim=8, layers=3, heads=2, **kwargs)
    dist = shortest_path(adjacency(ei.numpy(), 40), unweighted=True)
    for mask, hops in zip(model.masks(ei, 40), expected):
        got = set(zip(mask[0].tolist(), mask[1].tolist()))
        want = {(j, i) for i, j in zip(*np.nonzero(np.isin(dist, list(hops))))}
        assert got == want


def _influence(model, ei, far, near, n=40):
    x = torch.randn(n, 3, requires_grad=True)
    out = model(x, ei)
    grad, = torch.autograd.grad(out[near].sum(), x)
    return grad[far].abs().sum().item()


def test_global_nodes_reach_every_node_in_one_layer():
    torch.manual_seed(2)
    pos, ei = _mesh_edges()
    glob = GraphTransformer(3, 3, 1, dim=8, layers=1, heads=2, global_nodes=3)
    plain = GraphTransformer(3, 3, 1, dim=8, layers=1, heads=2)
    plain.load_state_dict(glob.state_dict())
    g = int(glob.global_node_ids(ei.numpy(), 40)[1])
    dist = shortest_path(adjacency(ei.numpy(), 40), unweighted=True)
    far = int(np.argmax(dist[g]))
    assert dist[g, far] >= 3
    # every node's output depends on the global node, and the global node's output on every node
    x = torch.randn(40, 3, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda inp: glob(inp, ei).sum(-1), x).abs().sum(-1)  # (out, in)
    assert (jac[:, g] > 0).all() and (jac[g, :] > 0).all()
    assert _influence(plain, ei, g, far) == 0.0 and _influence(glob, ei, g, far) > 0.0


def test_global_tokens_link_every_pair_in_two_layers():
    torch.manual_seed(2)
    pos, ei = _mesh_edges()
    dist = shortest_path(adjacency(ei.numpy(), 40), unweighted=True)
    near, far = np.unravel_index(np.argmax(dist), dist.shape)  # the two most distant nodes
    assert dist[near, far] >= 4
    plain = GraphTransformer(3, 3, 1, dim=8, layers=2, heads=2)
    glob = GraphTransformer(3, 3, 1, dim=8, layers=2, heads=2, global_tokens=2)
    assert _influence(plain, ei, far, near) == 0.0
    assert _influence(glob, ei, far, near) > 0.0


def test_global_tokens_do_not_mix_graphs_of_a_batch():
    torch.manual_seed(3)
    pos, ei = _mesh_edges(20)
    both = torch.cat([ei, ei + 20], dim=1)
    batch = torch.repeat_interleave(torch.arange(2), 20)
    model = GraphTransformer(3, 3, 1, dim=8, layers=2, heads=2, global_tokens=2)
    x = torch.randn(40, 3, requires_grad=True)
    out = model(x, both, batch=batch)
    grad, = torch.autograd.grad(out[:20].sum(), x)
    assert grad[20:].abs().sum() == 0 and grad[:20].abs().sum() > 0


def test_random_edges_are_deterministic_and_stay_within_each_graph():
    pos, ei = _mesh_edges(20)
    both = torch.cat([ei, ei + 20], dim=1)
    batch = torch.repeat_interleave(torch.arange(2), 20)
    m = GraphTransformer(3, 3, 1, dim=8, layers=1, heads=2, random_edges=3, seed=5)
    m2 = GraphTransformer(3, 3, 1, dim=8, layers=1, heads=2, random_edges=3, seed=5)
    a, b = m.masks(both, 40, batch)[0], m2.masks(both, 40, batch)[0]
    assert torch.equal(a, b) and a.shape[1] > both.shape[1]
    assert (batch[a[0]] == batch[a[1]]).all()


def test_permutation_equivariance():
    torch.manual_seed(4)
    pos, ei = _mesh_edges()
    model = GraphTransformer(3, 3, 2, dim=16, layers=2, heads=2, k_hop=2, coord_dim=2, rope=True)
    x = torch.randn(40, 3)
    out = model(x, ei, pos=pos)
    perm = torch.randperm(40)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(40)
    torch.testing.assert_close(model(x[perm], inv[ei], pos=pos[perm]), out[perm], rtol=1e-4, atol=1e-5)


def test_presets_registry_and_checkpointing_gradients_match():
    torch.manual_seed(5)
    pos, ei = _mesh_edges()
    m = build_model("graph_transformer", node_in=3, edge_in=3, out_dim=1, dim=16, layers=2, heads=2)
    m2 = build_model("graph_transformer", node_in=3, edge_in=3, out_dim=1, dim=16, layers=2, heads=2,
                     checkpointing=True)
    m2.load_state_dict(m.state_dict())
    x = torch.randn(40, 3)
    g1 = torch.autograd.grad(m(x, ei).sum(), list(m.parameters()))
    g2 = torch.autograd.grad(m2(x, ei).sum(), list(m2.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
