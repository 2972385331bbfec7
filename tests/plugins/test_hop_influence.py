"""Hop influence: a k-step message-passing model has exactly zero influence beyond hop k; the
torch_geometric k-hop-subgraph path (with rebuilt edge features) equals the whole-graph Jacobian;
a virtual node reaches past k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim.models.mesh.simulator import MeshSimulator
from sim.plugins.diagnostics.hop_influence import MeshInfluenceModel, hop_influence, influence_png
from tests.plugins.graphs import delaunay_graph


def _simulator(steps: int, plugins=None) -> MeshSimulator:
    torch.manual_seed(steps)
    args = {"latent": 16, "steps": steps}
    if plugins:
        args["plugins"] = plugins
    sim = MeshSimulator("meshgraphnet", args, ["velocity"], [2], 3, predicted_types=[0])
    g = delaunay_graph(150, 9)
    sim(g.state, g.node_type, g.edge_index, g.edge_attr)  # normaliser statistics (training mode)
    return sim.eval()


@pytest.mark.parametrize("k", [1, 3])
def test_curve_of_a_k_step_model_is_exactly_zero_beyond_hop_k(k):
    g = delaunay_graph(150, 1)
    res = hop_influence(_simulator(k), g, max_hops=k + 4, num_seeds=6)
    assert res.mode == "subgraph"  # auto: the receptive field (k) is within max_hops
    assert res.curve[0] == 1.0
    assert (res.per_seed[:, k + 1:] == 0).all()
    assert (res.per_seed[:, : k + 1] > 0).all()
    assert 0 < res.range_score < k


def test_subgraph_wrapper_equals_the_whole_graph_jacobian():
    g = delaunay_graph(150, 2)
    sim = _simulator(3)
    wrapped = MeshInfluenceModel(sim, sim.step_inputs(g), 2)
    with torch.no_grad():  # the rebuilt edge features are the mesh graph's own
        torch.testing.assert_close(wrapped(wrapped.pack(g.state), g.edge_index),
                                   sim(g.state, g.node_type, g.edge_index, g.edge_attr))
    a = hop_influence(sim, g, max_hops=6, num_seeds=5, mode="subgraph")
    b = hop_influence(sim, g, max_hops=6, num_seeds=5, mode="full")
    assert a.seeds == b.seeds
    np.testing.assert_allclose(a.per_seed, b.per_seed, rtol=1e-5, atol=1e-9)
    assert b.beyond == 0.0
    h = np.arange(7)
    assert a.range_score == pytest.approx((h * a.curve).sum() / a.curve.sum())


def test_a_virtual_node_reaches_beyond_the_message_passing_depth(tmp_path):
    g = delaunay_graph(150, 3)
    local = hop_influence(_simulator(2), g, max_hops=6, num_seeds=5, mode="full")
    vn = hop_influence(_simulator(2, [{"name": "virtual_nodes", "at": [1]}]), g, max_hops=6, num_seeds=5)
    assert vn.mode == "full"  # auto: a virtual node reaches the whole graph
    assert (local.per_seed[:, 3:] == 0).all() and local.beyond == 0
    assert (vn.per_seed[:, 3:] > 0).all() and vn.beyond > 0
    assert vn.range_score > local.range_score
    influence_png(tmp_path / "c.png", {"mgn": local, "mgn + virtual node": vn})
    assert (tmp_path / "c.png").stat().st_size > 5000


@pytest.mark.parametrize("network,args", [
    ("meshgraphnet", {"latent": 8, "steps": 2, "plugins": [{"name": "sheaf_diffusion", "stalk_dim": 2, "at": 0},
                                                            {"name": "dagnn", "hops": 2}]}),
    ("meshgraphnet", {"latent": 8, "steps": 3, "plugins": [{"name": "sheaf_diffusion", "maps": "general"}]}),
    ("graph_transformer", {"dim": 8, "layers": 3, "heads": 2, "dilation": [1, 3, 2]}),
])
def test_receptive_hops_subgraph_reproduces_the_output(network, args):
    """The declared receptive radius is what the diagnostics rely on: a node's output on its
    r-hop subgraph equals its output on the whole mesh (one hop less would not do)."""
    from torch_geometric.utils import k_hop_subgraph

    torch.manual_seed(0)
    sim = MeshSimulator(network, args, ["velocity"], [2], 3).double().eval()  # float64: tiny far effects show
    g = delaunay_graph(300, 6)
    g.state, g.edge_attr, g.mesh_pos = g.state.double(), g.edge_attr.double(), g.mesh_pos.double()
    r = sim.receptive_hops
    shorter_differs = []
    with torch.no_grad():
        full = sim(g.state, g.node_type, g.edge_index, g.edge_attr, pos=g.mesh_pos)
        for v in (0, 37, 150):
            for radius in (r, r - 1):
                subset, ei, mapping, mask = k_hop_subgraph(v, radius, g.edge_index, relabel_nodes=True,
                                                           num_nodes=300)
                out = sim(g.state[subset], g.node_type[subset], ei, g.edge_attr[mask], pos=g.mesh_pos[subset])
                same = torch.allclose(out[mapping[0]], full[v], rtol=0, atol=1e-12)
                if radius == r:
                    assert same, (v, radius)
                else:
                    shorter_differs.append(not same)
    assert any(shorter_differs)  # the declared radius is not loose
