"""GIOROM: the dense decoder's exactness and learning, per-sample grids, the Fourier layer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sim.data.sampling import sparse_subset
from sim.graph import knn_bipartite
from sim.models.particle.giorom import GIOROM, PRESETS
from sim.nn.dense_decoder import DenseDecoder
from sim.nn.fno import SpectralConv


def _body(n: int, rng: np.random.Generator) -> np.ndarray:
    """Points of a disc-with-a-bite body in the reference configuration."""
    pts = rng.uniform(0.1, 0.9, (4 * n, 2))
    keep = (np.linalg.norm(pts - 0.5, axis=1) < 0.38) & (np.linalg.norm(pts - [0.75, 0.5], axis=1) > 0.12)
    return pts[keep][:n]


def _wave(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random smooth nonlinear displacement field."""
    k = torch.as_tensor(rng.normal(0, 4, (2, 2)), dtype=x.dtype)
    amp = torch.as_tensor(rng.normal(0, 0.01, (2,)), dtype=x.dtype)
    phase = torch.as_tensor(rng.uniform(0, 2 * math.pi, 2), dtype=x.dtype)
    return amp * torch.sin(x @ k + phase)


def test_dense_decoder_reproduces_a_rigid_rotation_plus_stretch_at_unseen_points():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    dense = torch.as_tensor(_body(3000, rng), dtype=torch.float32)
    sparse_ref = dense[sparse_subset(dense.numpy(), 0.05, "fps", 1)]
    decoder = DenseDecoder(2, neighbors=12)
    # train on (sparse, dense) pairs of smooth nonlinear motions, queries = the dense particles
    idx = torch.from_numpy(knn_bipartite(dense.numpy(), sparse_ref.numpy(), 12)[0])
    opt = torch.optim.Adam(decoder.parameters(), lr=3e-3)
    held_out = [_wave(dense, np.random.default_rng(1000 + i)) for i in range(4)]

    def held_out_error() -> float:
        with torch.no_grad():
            return float(np.mean([((decoder(sparse_ref, u[sparse_subset(dense.numpy(), 0.05, 'fps', 1)], dense, idx)
                                    - u) ** 2).mean() for u in held_out]))

    before = held_out_error()
    sub = torch.from_numpy(sparse_subset(dense.numpy(), 0.05, "fps", 1))
    for step in range(60):
        u = _wave(dense, rng)
        loss = ((decoder(sparse_ref, u[sub], dense, idx) - u) ** 2).mean() / 1e-4
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_out_error() < 0.5 * before  # the learned kernels improve on plain (learned-weight) MLS

    # unseen query points at another resolution: a regular grid over the body
    g = np.stack(np.meshgrid(np.linspace(0.12, 0.88, 120), np.linspace(0.12, 0.88, 120)), -1).reshape(-1, 2)
    keep = (np.linalg.norm(g - 0.5, axis=1) < 0.38) & (np.linalg.norm(g - [0.75, 0.5], axis=1) > 0.12)
    queries = torch.as_tensor(g[keep], dtype=torch.float32)
    theta = 0.7
    rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    stretch = torch.tensor([[1.4, 0.2], [0.0, 0.7]])
    shift = torch.tensor([0.05, -0.1])

    def motion(x: torch.Tensor) -> torch.Tensor:  # displacement of x -> R S (x - c) + c + shift
        c = torch.tensor([0.5, 0.5])
        return (x - c) @ (rot @ stretch).T + c + shift - x

    with torch.inference_mode():
        plan = decoder.plan(sparse_ref, queries, chunk=1000)  # several chunks
        got = plan.apply(motion(sparse_ref))
    assert len(queries) > 7000
    err = (got - motion(queries)).abs().max()
    assert err < 1e-5 * motion(queries).abs().max()


def _inputs(n: int, seed: int, dim: int = 2, offset: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    pos = 0.3 + 0.4 * torch.rand(n, dim, generator=g)  # both samples occupy the same region
    x = torch.randn(n, 7, generator=g) + offset
    src = torch.randint(0, n, (4 * n,), generator=g)
    dst = torch.randint(0, n, (4 * n,), generator=g)
    ei = torch.stack([src, dst])
    ea = torch.randn(4 * n, dim + 1, generator=g)
    return x, ei, ea, pos


def test_grid_edges_are_the_particle_grid_pairs_within_the_radius_both_ways():
    model = GIOROM(7, 3, 2, dim=2, **dict(PRESETS["tiny"], gno_radius=0.2))
    rng = np.random.default_rng(0)
    pos = torch.as_tensor(rng.uniform(0.0, 1.0, (50, 2)), dtype=torch.float32)
    batch = torch.as_tensor(np.repeat([0, 1], 25))
    grid_pos, p2g = model.grid_edges(pos, batch, 2)
    g2p = p2g.flip(0)  # what the operator hands the grid -> particle kernel integral
    m = model.grid_nodes.shape[0]
    d = torch.cdist(pos.double(), grid_pos.double())  # (particles, samples * M)
    same = batch[:, None] == torch.arange(2 * m)[None, :] // m
    want = {(int(i), int(j)) for i, j in zip(*torch.nonzero((d <= 0.2) & same, as_tuple=True))}
    assert {(int(s), int(t)) for s, t in p2g.T} == want  # particle -> grid node
    assert {(int(t), int(s)) for s, t in g2p.T} == want  # grid node -> particle
    assert len(want) > 50


@pytest.mark.parametrize("dim, processor", [(2, "fno"), (2, "transformer"), (3, "fno")])
def test_each_sample_gets_its_own_grid_batch_of_two_equals_two_single_runs(dim, processor):
    torch.manual_seed(0)
    args = dict(PRESETS["tiny"], processor=processor, heads=2, gno_radius=0.3)
    model = GIOROM(7, dim + 1, dim, dim=dim, **args).eval()
    with torch.no_grad():  # the property holds for any weights; large ones make the grid stage matter
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    a, b = _inputs(40, 1, dim), _inputs(30, 2, dim, offset=3.0)
    x = torch.cat([a[0], b[0]])
    ei = torch.cat([a[1], b[1] + 40], dim=1)
    ea = torch.cat([a[2], b[2]])
    pos = torch.cat([a[3], b[3]])
    batch = torch.cat([torch.zeros(40, dtype=torch.long), torch.ones(30, dtype=torch.long)])
    with torch.no_grad():
        torch.testing.assert_close(model(x, ei, ea, pos=pos, batch=batch),
                                   torch.cat([model(*a[:3], pos=a[3]), model(*b[:3], pos=b[3])]), rtol=1e-4, atol=1e-5)
        # the operator stage alone (particles -> grid -> processor -> particles), without the residual
        h = torch.cat([torch.randn(40, 16), torch.randn(30, 16) + 2.0])
        grid = model.operator(h, pos, batch) - h
        single = torch.cat([model.operator(h[:40], a[3], None) - h[:40], model.operator(h[40:], b[3], None) - h[40:]])
        pooled = model.operator(h, pos, None) - h  # one grid for the whole batch (the public code's bug)
    scale = single.abs().max()
    torch.testing.assert_close(grid, single, rtol=0, atol=1e-5 * float(scale))
    assert (pooled - single).abs().max() > 0.05 * scale  # the samples overlap: a shared grid would mix them


def test_spectral_layer_keeps_the_retained_modes_of_a_plane_wave():
    # a single low Fourier mode passes through a layer whose weight is the identity on channels
    layer = SpectralConv(1, modes=4, dim=2)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:, 0, 0] = 1.0
    n = 16
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    low = torch.cos(2 * math.pi * (2 * i - 3 * j) / n).float()[None, None]  # mode (2, -3): a negative corner
    high = torch.cos(2 * math.pi * 7 * i / n).float()[None, None]  # mode 7 > 4: removed
    torch.testing.assert_close(layer(low), low, atol=1e-5, rtol=0)
    assert layer(high).abs().max() < 1e-5


@pytest.mark.parametrize("batch", [1, 3, 9])
def test_mode_channel_mixing_equals_the_einsum_it_replaces_with_its_gradients(batch):
    from sim.nn.fno import mix_channels

    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 5, 4, 3, dtype=torch.cfloat, generator=g, requires_grad=True)
    w = torch.randn(5, 6, 4, 3, dtype=torch.cfloat, generator=g, requires_grad=True)
    ref = torch.einsum("bi...,io...->bo...", x, w)
    out = mix_channels(x, w)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    gx, gw = torch.autograd.grad(ref.abs().sum(), (x, w))
    hx, hw = torch.autograd.grad(out.abs().sum(), (x, w))
    torch.testing.assert_close(hx, gx, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(hw, gw, atol=1e-4, rtol=1e-4)
