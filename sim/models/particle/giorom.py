"""GIOROM time stepper: reduced-order neural operator on a sparse particle graph
("Reduced-Order Neural Operators: Learning Lagrangian Dynamics on Highly Sparse Graphs").

On the radius graph of the sparse particles (positions scaled to the unit box):

1. encoder: node MLP and edge MLP to ``latent`` (features built by
   :class:`~sim.models.particle.simulator.ParticleSimulator`);
2. ``mp_before`` interaction-network layers (:class:`~sim.nn.layers.GraphNetBlock`:
   message MLP([e_ij, h_j, h_i]), sum aggregation, residual node and edge updates);
3. neural-operator stage, **one latent regular grid per sample** (the public code pooled
   every sample of a batch onto one grid; here grid nodes only see particles of their own
   sample):

   .. math::
       g(y) = \\operatorname{lift}\\big([\\mathcal{K}_{p \\to g} h](y), y\\big), \\quad
       g \\leftarrow \\mathcal{P}(g), \\quad
       h_i \\leftarrow h_i + [\\mathcal{K}_{g \\to p}\\, g](x_i)

   with :math:`\\mathcal{K}` graph kernel integrals (:class:`~sim.nn.gno.KernelIntegral`)
   over a ``gno_radius`` ball and :math:`\\mathcal{P}` the grid processor: an FNO
   (:class:`~sim.nn.fno.FNO`, the paper's v1) or a transformer over the grid tokens;
4. ``mp_after`` interaction-network layers;
5. decoder MLP to the normalised acceleration.

Deviation: the grid coordinates are appended to the grid features before the processor
(the FFT is periodic and the box is not).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from sim.graph import bipartite_radius_graph
from sim.models.registry import register_model
from sim.nn.fno import FNO
from sim.nn.gno import KernelIntegral
from sim.nn.layers import GraphNetBlock, mlp

PRESETS: dict[str, dict[str, Any]] = {  # grid and modes left out follow the dimension (GRID, MODES)
    "tiny": {"latent": 16, "mp_before": 1, "mp_after": 1, "grid": 8, "grid_channels": 8, "modes": 3,
             "processor_layers": 1},
    "cpu": {"latent": 64, "mp_before": 2, "mp_after": 2, "grid_channels": 32, "processor_layers": 4},
    "paper": {"latent": 128, "mp_before": 2, "mp_after": 2, "grid_channels": 64, "processor_layers": 4},
}
GRID = {1: 64, 2: 32, 3: 16}  # nodes per axis (the paper: 32^2 in 2D, 16^3 in 3D)
MODES = {1: 16, 2: 12, 3: 6}
PROCESSORS = ("fno", "transformer")


def regular_grid(resolution: int, dim: int) -> torch.Tensor:
    """(resolution ** dim, dim) nodes of a regular grid on [0, 1]^dim, the last axis fastest."""
    axes = [torch.linspace(0.0, 1.0, resolution)] * dim
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, dim)


class GridTransformer(nn.Module):
    """Pre-norm transformer encoder over the grid tokens of each sample (attention never
    crosses samples: the batch dimension separates them).

    Shapes: x (B, channels, n_1, ..., n_dim) -> same shape.
    """

    def __init__(self, channels: int, layers: int, heads: int = 4):
        super().__init__()
        layer = nn.TransformerEncoderLayer(channels, heads, dim_feedforward=2 * channels, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        tokens = x.reshape(b, c, -1).transpose(1, 2)
        return self.encoder(tokens).transpose(1, 2).reshape(x.shape)


@register_model("giorom")
class GIOROM(nn.Module):
    """Args:
        node_in / edge_in / out_dim: feature widths (set by the simulator).
        latent: particle latent width.
        hidden_layers: hidden layers of every MLP.
        mp_before / mp_after: interaction layers before and after the operator stage.
        dim: space dimension (2 or 3).
        grid: grid nodes per axis (default :data:`GRID`: 32 in 2D, 16 in 3D as in the paper).
        grid_channels: grid feature width.
        gno_radius: kernel-integral radius in unit-box coordinates (default 2 grid spacings).
        processor: ``"fno"`` or ``"transformer"``.
        modes: retained Fourier modes per axis (FNO; default :data:`MODES`).
        processor_layers: Fourier layers or transformer layers.
        heads: attention heads (transformer).

    Shapes:
        x (N, node_in), edge_index (2, E), edge_attr (E, edge_in), pos (N, dim) in [0, 1]^dim,
        batch (N,) sample id (sorted) or None -> (N, out_dim).
    """

    presets = PRESETS

    def __init__(self, node_in: int, edge_in: int, out_dim: int, latent: int = 64, hidden_layers: int = 2,
                 mp_before: int = 2, mp_after: int = 2, dim: int = 2, grid: int | None = None,
                 grid_channels: int = 32, gno_radius: float | None = None, processor: str = "fno",
                 modes: int | None = None, processor_layers: int = 4, heads: int = 4):
        super().__init__()
        if processor not in PROCESSORS:
            raise ValueError(f"processor must be one of {PROCESSORS}, got {processor!r}")
        grid = int(grid) if grid is not None else GRID[dim]
        modes = int(modes) if modes is not None else MODES[dim]
        radius = float(gno_radius) if gno_radius is not None else 2.0 / (grid - 1)
        self.config = {"node_in": node_in, "edge_in": edge_in, "out_dim": out_dim, "latent": latent,
                       "hidden_layers": hidden_layers, "mp_before": mp_before, "mp_after": mp_after, "dim": dim,
                       "grid": grid, "grid_channels": grid_channels, "gno_radius": radius, "processor": processor,
                       "modes": modes, "processor_layers": processor_layers, "heads": heads}
        self.node_encoder = mlp(node_in, latent, latent, hidden_layers)
        self.edge_encoder = mlp(edge_in, latent, latent, hidden_layers)
        self.before = nn.ModuleList(GraphNetBlock(latent, hidden_layers) for _ in range(mp_before))
        self.to_grid = KernelIntegral(latent, grid_channels, dim, radius, latent, hidden_layers)
        self.lift = nn.Linear(grid_channels + dim, grid_channels)
        self.processor = (FNO(grid_channels, modes, processor_layers, dim) if processor == "fno"
                          else GridTransformer(grid_channels, processor_layers, heads))
        self.from_grid = KernelIntegral(grid_channels, latent, dim, radius, latent, hidden_layers)
        self.after = nn.ModuleList(GraphNetBlock(latent, hidden_layers) for _ in range(mp_after))
        self.decoder = mlp(latent, latent, out_dim, hidden_layers, layer_norm=False)
        self.register_buffer("grid_nodes", regular_grid(grid, dim), persistent=False)

    @torch.compiler.disable  # host-side neighbour search (KD-tree): compiled models run it eagerly
    def grid_edges(self, pos: torch.Tensor, batch: torch.Tensor | None, samples: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample grid positions (samples * M, dim) and the particle -> grid kernel-integral
        edges (row 0 particles, row 1 grid nodes), never across samples; the grid -> particle
        edges are the same pairs flipped (one KD-tree search)."""
        m = self.grid_nodes.shape[0]
        grid_pos = self.grid_nodes.to(pos.dtype).repeat(samples, 1)
        p = pos.detach().cpu().numpy()
        g = grid_pos.cpu().numpy()
        pb = None if batch is None else batch.detach().cpu().numpy()
        gb = None if batch is None else np.repeat(np.arange(samples), m)
        r = self.config["gno_radius"]
        return grid_pos, torch.from_numpy(bipartite_radius_graph(g, p, r, gb, pb)).to(pos.device)

    def operator(self, h: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor | None,
                 grid_edges: torch.Tensor | None = None) -> torch.Tensor:
        """The neural-operator stage: particles -> per-sample grids -> processor -> particles
        (``grid_edges``: the particle -> grid edges of :meth:`grid_edges`, when
        the caller has them: a traced export, :mod:`sim.export`, takes them as inputs)."""
        samples = 1 if batch is None or batch.numel() == 0 else int(batch.max()) + 1
        if grid_edges is None:
            grid_pos, p2g = self.grid_edges(pos, batch, samples)
        else:
            grid_pos, p2g = self.grid_nodes.to(pos.dtype).repeat(samples, 1), grid_edges
        g2p = p2g.flip(0)  # the same pairs the other way (|x - y| <= r is symmetric)
        c, n, dim = self.config["grid_channels"], self.config["grid"], self.config["dim"]
        g = self.to_grid(h, pos, grid_pos, p2g)
        g = self.lift(torch.cat([g, grid_pos], dim=-1))  # (samples * M, C)
        g = g.reshape(samples, n**dim, c).transpose(1, 2).reshape(samples, c, *([n] * dim))
        g = self.processor(g)
        g = g.reshape(samples, c, n**dim).transpose(1, 2).reshape(samples * n**dim, c)
        return h + self.from_grid(g, grid_pos, pos, g2p)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
                pos: torch.Tensor | None = None, batch: torch.Tensor | None = None,
                grid_edges: torch.Tensor | None = None) -> torch.Tensor:
        if pos is None:
            raise ValueError("GIOROM needs particle positions (pos) for its grid stage")
        if x.shape[-1] != self.config["node_in"] or edge_attr.shape[-1] != self.config["edge_in"]:
            raise ValueError(f"GIOROM expects node features of width {self.config['node_in']} and edge features "
                             f"of width {self.config['edge_in']}, got {x.shape[-1]} and {edge_attr.shape[-1]}")
        h = self.node_encoder(x)
        e = self.edge_encoder(edge_attr)
        for block in self.before:
            h, e = block(h, edge_index, e)
        h = self.operator(h, pos, batch, grid_edges)
        for block in self.after:
            h, e = block(h, edge_index, e)
        return self.decoder(h)
