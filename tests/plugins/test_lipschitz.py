"""Local Lipschitz bounds: exact for an affine map, never below the sampled lower bound, converge
to the exact Jacobian norm; CROWN is never looser than intervals alone. (The enclosures
themselves are tested in tests/verify.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sim.models.mesh.simulator import MeshSimulator
from sim.plugins.diagnostics.lipschitz import local_lipschitz, mesh_lipschitz
from sim.verify import BoundError
from tests.plugins.graphs import delaunay_graph


def test_single_linear_layer_is_exact():
    torch.manual_seed(0)
    lin = nn.Linear(7, 4).double()
    res = local_lipschitz(lin, torch.randn(3, 7, dtype=torch.float64), 0.5)
    exact = lin.weight.abs().sum(1).max().item()
    assert res.upper == pytest.approx(exact, rel=1e-12) and res.lower == pytest.approx(exact, rel=1e-12)
    partial = local_lipschitz(lin, torch.randn(7, dtype=torch.float64), torch.tensor([1.0] * 3 + [0.0] * 4))
    assert partial.upper == pytest.approx(lin.weight[:, :3].abs().sum(1).max().item(), rel=1e-12)


def _mlp(act: type[nn.Module]) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(5, 24), act(), nn.Linear(24, 24), act(), nn.Linear(24, 3), nn.LayerNorm(3),
                         nn.Linear(3, 2)).double()


@pytest.mark.parametrize("act", [nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU, nn.ELU])
@pytest.mark.parametrize("eps", [1e-3, 0.05, 0.5])
def test_upper_bound_is_never_below_the_sampled_lower_bound(act, eps):
    model = _mlp(act)
    x0 = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ibp = local_lipschitz(model, x0, eps, method="ibp", samples=24)
    crown = local_lipschitz(model, x0, eps, method="crown", samples=24)
    centred = local_lipschitz(model, x0, eps, method="centred", samples=24)
    for res in (ibp, crown, centred):
        assert (res.rows_upper >= res.rows_lower).all()
    assert (crown.rows_upper <= ibp.rows_upper * (1 + 1e-9)).all()


def test_centred_form_is_tighter_for_smooth_activations():
    model = _mlp(nn.Tanh)
    x0 = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    centred = local_lipschitz(model, x0, 0.02, method="centred", samples=8)
    crown = local_lipschitz(model, x0, 0.02, method="crown", samples=8)
    assert centred.upper < 0.5 * crown.upper


@pytest.mark.parametrize("act", [nn.ReLU, nn.GELU, nn.Tanh])
def test_bound_converges_to_the_exact_jacobian_norm_as_the_box_shrinks(act):
    model = _mlp(act)
    x0 = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    gaps = [local_lipschitz(model, x0, eps, samples=4) for eps in (1e-4, 1e-6, 1e-8)]
    ratios = [r.upper / r.lower - 1 for r in gaps]
    # the excess shrinks (at least) linearly with the box: an enclosure of the Jacobian, exact in the limit
    assert ratios[2] >= 0 and ratios[2] < 1e-3 and ratios[1] < ratios[0] / 50 and ratios[2] < ratios[1] / 50, ratios


def _trained_like_simulator(plugins=None) -> MeshSimulator:
    torch.manual_seed(3)
    args = {"latent": 12, "steps": 2}
    if plugins:
        args["plugins"] = plugins
    sim = MeshSimulator("meshgraphnet", args, ["velocity"], [2], 3, predicted_types=[0])
    g = delaunay_graph(40, 4)
    sim.train()
    for _ in range(3):  # normaliser statistics
        sim(g.state * 2 + 1, g.node_type, g.edge_index, g.edge_attr)
        sim.output_normalizer(torch.randn(40, 2) * 0.1)
    return sim.eval()


@pytest.mark.parametrize("plugins", [None, [{"name": "virtual_nodes", "adaptive": False}],
                                     [{"name": "dagnn", "hops": 3}]])
def test_mesh_one_step_map_bounds_are_ordered(plugins):
    sim = _trained_like_simulator(plugins)
    g = delaunay_graph(40, 4)
    for eps, method in ((1e-4, "crown"), (1e-2, "crown"), (1e-3, "centred")):
        res = mesh_lipschitz(sim, g, eps=eps, nodes=3, samples=8, method=method)
        assert (res.rows_upper >= res.rows_lower).all() and res.lower > 0
        assert res.extra["map"] == "step" and len(res.extra["nodes"]) == 3
    assert res.extra["receptive_hops"] == (None if plugins and plugins[0]["name"] == "virtual_nodes" else
                                           2 + (3 if plugins else 0))


def test_receptive_field_subgraph_gives_the_whole_graph_bound():
    """A node's bound on its receptive-field subgraph equals the bound on the whole mesh."""
    sim = _trained_like_simulator()
    g = delaunay_graph(40, 4)
    sub = mesh_lipschitz(sim, g, eps=1e-3, nodes=2, samples=4)
    whole = mesh_lipschitz(_NoHops(sim), g, eps=1e-3, nodes=2, samples=4)
    assert sub.extra["receptive_hops"] == 2 and whole.extra["receptive_hops"] is None
    np.testing.assert_allclose(sub.rows_upper, whole.rows_upper, rtol=1e-9)
    assert (whole.rows_lower <= whole.rows_upper).all()


class _NoHops(torch.nn.Module):
    """The same simulator without a declared receptive field (forces the whole graph)."""

    def __init__(self, sim):
        super().__init__()
        self.sim = sim
        self.config = sim.config
        self.node_normalizer, self.output_normalizer = sim.node_normalizer, sim.output_normalizer

    def predicted_mask(self, node_type):
        return self.sim.predicted_mask(node_type)

    def step_inputs(self, sample):
        return self.sim.step_inputs(sample)

    def update(self, state, inputs, normalised=False):
        return self.sim.update(state, inputs, normalised)


def test_unsupported_operations_are_named():
    attn = nn.MultiheadAttention(4, 1, batch_first=True).double()
    with pytest.raises(BoundError, match="no rule for"):
        local_lipschitz(lambda x: attn(x, x, x)[0], torch.randn(1, 3, 4, dtype=torch.float64), 0.1)
