"""Enclosures of values and Jacobians: every sampled output and autograd Jacobian lies inside,
one affine layer is exact, CROWN is never looser than intervals alone, and the centred form
is much tighter for smooth activations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sim.models.mesh.simulator import MeshSimulator
from sim.verify import Interval, jacobian_rows
from tests.plugins.graphs import delaunay_graph


def _mlp(act: type[nn.Module]) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(5, 24), act(), nn.Linear(24, 24), act(), nn.Linear(24, 3), nn.LayerNorm(3),
                         nn.Linear(3, 2)).double()


def _samples(x0: torch.Tensor, eps: float, n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        yield x0 + (torch.rand(x0.shape, generator=gen, dtype=torch.float64) * 2 - 1) * eps


def _row_norms(jlo: torch.Tensor, jhi: torch.Tensor, rows: int) -> torch.Tensor:
    """max over the box of ||row||_1, per Jacobian row."""
    return torch.maximum(jlo.abs(), jhi.abs()).reshape(rows, -1).sum(1)


def test_one_linear_layer_is_exact():
    torch.manual_seed(0)
    lin = nn.Linear(7, 4).double()
    x0 = torch.randn(3, 7, dtype=torch.float64)
    with torch.no_grad():
        for mode in ("ibp", "crown", "centred"):
            out = lin(Interval.box(x0, 0.5, mode=mode))
            mid, rad = lin(x0), 0.5 * lin.weight.abs().sum(1)
            torch.testing.assert_close(out.lo, mid - rad, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(out.hi, mid + rad, rtol=1e-12, atol=1e-12)
        box = Interval.box(x0, 0.5)
        jlo, jhi = jacobian_rows(lin(box), torch.tensor([0, 5]), box)  # rows 0 and 5: (0, 0) and (1, 1)
    expected = torch.zeros(2, 3, 7, dtype=torch.float64)
    expected[0, 0], expected[1, 1] = lin.weight[0], lin.weight[1]
    assert torch.equal(jlo, expected) and torch.equal(jhi, expected)


@pytest.mark.parametrize("act", [nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU, nn.ELU, nn.Sigmoid, nn.LeakyReLU])
@pytest.mark.parametrize("mode", ["ibp", "crown", "centred"])
def test_values_and_jacobians_of_sampled_points_lie_inside(act, mode):
    model = _mlp(act)
    x0 = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    eps = 0.05
    with torch.no_grad():
        box = Interval.box(x0, eps, mode=mode)
        out = model(box)
        jlo, jhi = out.jacobian() if mode == "centred" else jacobian_rows(out, torch.arange(out.numel()), box)
    for x in _samples(x0, eps, 20, 5):
        jac = torch.autograd.functional.jacobian(model, x)  # (6, 2, 6, 5)
        assert (jac >= jlo.reshape(jac.shape) - 1e-12).all() and (jac <= jhi.reshape(jac.shape) + 1e-12).all()
        y = model(x)
        assert (y >= out.lo - 1e-12).all() and (y <= out.hi + 1e-12).all()


@pytest.mark.parametrize("eps", [1e-3, 0.05, 0.5])
def test_crown_is_never_looser_than_intervals_alone(eps):
    model = _mlp(nn.ReLU)
    x0 = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ibp, crown = (model[:5](Interval.box(x0, eps, mode=m)) for m in ("ibp", "crown"))
    assert (crown.lo >= ibp.lo - 1e-12).all() and (crown.hi <= ibp.hi + 1e-12).all()
    if eps == 0.5:  # unstable ReLUs: CROWN is strictly tighter somewhere
        assert ((crown.hi - crown.lo) < (ibp.hi - ibp.lo) - 1e-9).any()


def test_centred_form_is_tighter_for_smooth_activations():
    model = _mlp(nn.Tanh)
    x0 = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        centred = model(Interval.box(x0, 0.02, mode="centred"))
        box = Interval.box(x0, 0.02, mode="crown")
        crown = model(box)
        rows = crown.numel()
        crown_norms = _row_norms(*jacobian_rows(crown, torch.arange(rows), box), rows)
    centred_norms = _row_norms(*centred.jacobian(), rows)
    assert centred_norms.max() < 0.5 * crown_norms.max()
    assert (centred.hi - centred.lo).sum() < (crown.hi - crown.lo).sum()


def _mesh_simulator() -> MeshSimulator:
    torch.manual_seed(3)
    sim = MeshSimulator("meshgraphnet", {"latent": 12, "steps": 2}, ["velocity"], [2], 3, predicted_types=[0])
    g = delaunay_graph(40, 4)
    sim.train()
    for _ in range(3):  # normaliser statistics
        sim(g.state * 2 + 1, g.node_type, g.edge_index, g.edge_attr)
        sim.output_normalizer(torch.randn(40, 2) * 0.1)
    return sim.eval().double()


@pytest.mark.parametrize("mode", ["ibp", "crown", "centred"])
def test_message_passing_enclosures_contain_every_sampled_output(mode):
    sim = _mesh_simulator()
    g = delaunay_graph(40, 4)
    x0, ea = g.state.double(), g.edge_attr.double()
    with torch.no_grad():
        out = sim(Interval.box(x0, 0.05, mode=mode), g.node_type, g.edge_index, ea)
        for x in _samples(x0, 0.05, 20, 0):
            y = sim(x, g.node_type, g.edge_index, ea)
            assert (y >= out.lo - 1e-12).all() and (y <= out.hi + 1e-12).all()
