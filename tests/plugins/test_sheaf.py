"""Neural sheaf diffusion: the sheaf Laplacian's defining properties, and the layer's sparse
diffusion equals the dense normalised Laplacian."""

from __future__ import annotations

import pytest
import torch

from sim.plugins import PluginError
from sim.plugins.layers.sheaf import SheafDiffusion, apply_sheaf_laplacian, reverse_edges, sheaf_laplacian
from tests.plugins.graphs import delaunay_edges



@pytest.fixture(autouse=True, scope="module")
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _learned_maps(kind: str, n: int = 20, d: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    ei = delaunay_edges(n, seed)
    layer = SheafDiffusion(channels=d * 2, stalk_dim=d, maps=kind)
    x = torch.randn(n, d * 2)
    return layer, layer.maps(x, ei).detach(), ei, x


@pytest.mark.parametrize("kind", ["diagonal", "orthogonal", "general"])
def test_sheaf_laplacian_is_symmetric_psd_and_a_sum_of_edge_disagreements(kind):
    _, maps, ei, _ = _learned_maps(kind)
    n, d = 20, 3
    lap = sheaf_laplacian(maps, ei, n)
    torch.testing.assert_close(lap, lap.T)
    assert torch.linalg.eigvalsh(lap).min() > -1e-10
    norm = sheaf_laplacian(maps, ei, n, normalized=True, kind=kind)
    torch.testing.assert_close(norm, norm.T)
    assert torch.linalg.eigvalsh(norm).min() > -1e-10
    x = torch.randn(n, d)
    rev = reverse_edges(ei, n)
    s, r = ei
    undirected = s < r  # each undirected edge once
    disagreement = (maps[undirected] @ x[r[undirected], :, None] - maps[rev][undirected] @ x[s[undirected], :, None])
    torch.testing.assert_close(x.reshape(-1) @ lap @ x.reshape(-1), (disagreement**2).sum())
    if kind == "orthogonal":
        torch.testing.assert_close(maps.transpose(1, 2) @ maps, torch.eye(d).expand_as(maps))
    # the normalised Laplacian has the spectrum of D^-1 L (a generalised eigenproblem), in [0, 2]
    ev = torch.linalg.eigvalsh(norm)
    assert ev.max() < 2 + 1e-9
    dblocks = torch.block_diag(*[lap[i * d:(i + 1) * d, i * d:(i + 1) * d] for i in range(n)])
    gen = torch.linalg.eigvals(torch.linalg.solve(dblocks, lap)).real.sort().values
    torch.testing.assert_close(gen, ev.sort().values)


def test_one_dimensional_identity_sheaf_is_the_normalised_graph_laplacian():
    n = 25
    ei = delaunay_edges(n, 3)
    maps = torch.ones(ei.shape[1], 1, 1)
    adj = torch.zeros(n, n)
    adj[ei[1], ei[0]] = 1.0
    deg = adj.sum(1)
    torch.testing.assert_close(sheaf_laplacian(maps, ei, n), torch.diag(deg) - adj)
    dinv = torch.diag(deg.rsqrt())
    for kind in ("diagonal", "orthogonal", "general"):  # every normalisation agrees on this sheaf
        torch.testing.assert_close(sheaf_laplacian(maps, ei, n, normalized=True, kind=kind),
                                   torch.eye(n) - dinv @ adj @ dinv)


@pytest.mark.parametrize("kind", ["diagonal", "orthogonal", "general"])
def test_layer_diffusion_equals_the_dense_normalised_laplacian(kind):
    layer, maps, ei, x = _learned_maps(kind, seed=1)
    n, d, f = 20, 3, 2
    y = torch.randn(n, d, f)
    sparse = apply_sheaf_laplacian(maps, reverse_edges(ei, n), ei, y, normalized=True, kind=kind)
    dense = sheaf_laplacian(maps, ei, n, normalized=True, kind=kind) @ y.reshape(n * d, f)
    torch.testing.assert_close(sparse.reshape(n * d, f), dense)
    # the layer's update is (1 + tanh eps) X - ELU(Delta (I (x) W1) X W2)
    with torch.no_grad():
        layer.epsilon.fill_(0.3)
        out = layer(x, ei)
        w1, w2 = layer.w1.weight, layer.w2.weight
        xs = x.reshape(n, d, f)
        step = sheaf_laplacian(maps, ei, n, normalized=True, kind=kind) @ (w1 @ xs @ w2.T).reshape(n * d, f)
        expected = (1 + torch.tanh(torch.tensor(0.3))) * xs - torch.nn.functional.elu(step.reshape(n, d, f))
    torch.testing.assert_close(out, expected.reshape(n, d * f))


def test_one_directional_edges_and_bad_widths_are_refused():
    layer = SheafDiffusion(channels=4, stalk_dim=2)
    with pytest.raises(PluginError, match="both directions"):
        layer(torch.randn(3, 4), torch.tensor([[0, 1], [1, 2]]))
    with pytest.raises(PluginError, match="not divisible by stalk_dim 3"):
        SheafDiffusion(channels=8, stalk_dim=3)
