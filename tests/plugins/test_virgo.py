"""Virgo: at initialisation, forward and backward variances stay closer to constant across a deep
GNN on a mesh graph than with PyTorch's default initialisation; on a regular graph it is the
harmonic mean of the two Kaiming variances; mesh models accept `init: virgo`."""

from __future__ import annotations

import math

import torch
from torch import nn

from sim.models import MeshGraphNet
from sim.plugins.init import AggregationSite, sum_operator, virgo_init_, virgo_variances
from sim.plugins.layers.dagnn import gcn_operator, gcn_propagate
from tests.plugins.graphs import delaunay_edges, ring_edges


class GCNStack(nn.Module):
    """h <- act(A_hat h W): the paper's setting (GCN with self-loops and symmetric normalisation)."""

    def __init__(self, width: int, depth: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth - 1))
        self.layers.append(nn.Sequential(nn.Linear(width, width)))

    @staticmethod
    def operator(edge_index: torch.Tensor, n: int):
        w_edge, w_self = gcn_operator(edge_index, n, torch.float64)
        loops = torch.arange(n)
        ei = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
        return sum_operator(ei, n, torch.cat([w_edge, w_self]))

    def aggregation_sites(self, edge_index, num_nodes, batch=None):
        fwd, adj = self.operator(edge_index, num_nodes)
        return [AggregationSite(seq[0], None, fwd, adj) for seq in self.layers]

    def forward(self, x, edge_index):
        weights = gcn_operator(edge_index, x.shape[0], x.dtype)
        hs = [x]
        for seq in self.layers:
            hs.append(seq(gcn_propagate(hs[-1], edge_index, weights)))
        return hs


def _log_ratios(model, x, ei):
    hs = model(x, ei)
    for h in hs[1:]:
        h.retain_grad()
    (hs[-1] * torch.randn_like(hs[-1])).sum().backward()
    fwd = [math.log(hs[i + 1].var().item() / hs[i].var().item()) for i in range(1, len(hs) - 1)]
    bwd = [math.log(hs[i].grad.var().item() / hs[i + 1].grad.var().item()) for i in range(1, len(hs) - 1)]
    return fwd, bwd


def test_variance_ratios_stay_closer_to_one_than_default_init_on_a_mesh():
    n, width, depth = 300, 64, 12
    ei = delaunay_edges(n, 4)
    x = torch.rand(n, width, generator=torch.Generator().manual_seed(0))
    measured = {}
    for name in ("default", "virgo"):
        per_seed = []
        for seed in range(3):
            torch.manual_seed(seed)
            model = GCNStack(width, depth)
            if name == "virgo":
                virgo_init_(model, ei, n, x=x, generator=torch.Generator().manual_seed(seed))
            fwd, bwd = _log_ratios(model, x, ei)
            per_seed.append((sum(abs(v) for v in fwd) / len(fwd), sum(abs(v) for v in bwd) / len(bwd),
                             sum(fwd), sum(bwd)))
        measured[name] = [sum(v) / len(v) for v in zip(*per_seed)]
    d_fwd, d_bwd, d_total_f, d_total_b = measured["default"]
    v_fwd, v_bwd, v_total_f, v_total_b = measured["virgo"]
    # per layer, |log(variance ratio)| is smaller with Virgo, forward and backward
    assert v_fwd < d_fwd and v_bwd < d_bwd, measured
    # over the 10 inner layers: default init loses gradients by > 1e6; Virgo keeps both within 1e2
    assert d_total_b < math.log(1e-6), measured
    assert abs(v_total_f) < math.log(1e2) and abs(v_total_b) < math.log(1e2), measured
    assert abs(v_total_f) < abs(d_total_f) and abs(v_total_b) < abs(d_total_b), measured


def test_on_a_regular_graph_virgo_is_the_harmonic_mean_of_kaiming_variances():
    n = 50
    ei = ring_edges(n)  # 2-regular: the normalised operator keeps constants
    model = GCNStack(16, 4)
    ratios = virgo_variances(model, ei, n)
    assert all(abs(r - 1) < 1e-12 for r in ratios["forward"] + ratios["backward"])
    report = virgo_init_(model, ei, n)
    assert math.isclose(report["layers.0.0"], 2.0 / 16, rel_tol=1e-12)  # ReLU follows: 2 / fan
    assert math.isclose(report["layers.3.0"], 1.0 / 16, rel_tol=1e-12)  # linear output: 1 / fan
    w = model.layers[0][0].weight
    assert w.abs().max() <= math.sqrt(3 * 2.0 / 16) + 1e-7 and model.layers[0][0].bias.abs().max() == 0


def test_meshgraphnet_with_init_virgo_scales_the_aggregated_messages():
    torch.manual_seed(0)
    n = 60
    ei = delaunay_edges(n, 5)
    model = MeshGraphNet(node_in=4, edge_in=3, out_dim=2, latent=32, steps=3, init="virgo")
    before = model.processor[0].node_mlp[0].weight.detach().clone()
    model.initialize(ei, n, x=torch.rand(n, 4))
    w = model.processor[0].node_mlp[0].weight.detach()
    assert not torch.equal(before, w)
    own, agg = w[:, :32].var().item(), w[:, 32:].var().item()
    deg = ei.shape[1] / n
    assert agg < own / (0.5 * deg)  # the sum over ~6 incoming messages is scaled down by roughly its growth
    assert model.config["init"] == "virgo"
    plain = MeshGraphNet(node_in=4, edge_in=3, out_dim=2, latent=32, steps=3)
    plain_w = plain.processor[0].node_mlp[0].weight.detach().clone()
    plain.initialize(ei, n)  # no init option: nothing changes
    assert torch.equal(plain_w, plain.processor[0].node_mlp[0].weight) and "init" not in plain.config
