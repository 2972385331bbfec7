"""Graph kernel integral between two point sets (graph neural operator, Li et al. 2020).

.. math::
    g(y_i) = \\frac{1}{|\\mathcal{N}(i)|} \\sum_{j \\in \\mathcal{N}(i)}
        \\kappa_\\theta\\Big(\\frac{x_j - y_i}{r}, \\frac{\\lVert x_j - y_i \\rVert}{r}, f(x_j)\\Big),
    \\qquad \\mathcal{N}(i) = \\{ j : \\lVert x_j - y_i \\rVert \\le r \\}

a Monte-Carlo estimate of :math:`\\int_{B_r(y)} \\kappa(x - y, f(x))\\, dx`: the mean (not
the sum) keeps the result independent of how densely the sources sample the body, which
is what lets GIOROM change resolution. A query with no source within ``r`` gets zero.
"""

from __future__ import annotations

import torch
from torch import nn

from sim.nn.layers import mlp, scatter_sum


class KernelIntegral(nn.Module):
    """Args:
        in_channels: source feature width.
        out_channels: output width per query point.
        dim: coordinate dimension.
        radius: the neighbourhood radius ``r`` (coordinates are divided by it).
        hidden: kernel MLP width.
        hidden_layers: kernel MLP hidden layers.

    Shapes:
        f (S, in_channels), source_pos (S, dim), query_pos (Q, dim), edge_index (2, E) with
        row 0 sources and row 1 queries -> (Q, out_channels).
    """

    def __init__(self, in_channels: int, out_channels: int, dim: int, radius: float, hidden: int = 64,
                 hidden_layers: int = 2):
        super().__init__()
        self.radius = radius
        self.kernel = mlp(dim + 1 + in_channels, hidden, out_channels, hidden_layers, layer_norm=False,
                          activation=nn.GELU)

    def forward(self, f: torch.Tensor, source_pos: torch.Tensor, query_pos: torch.Tensor,
                edge_index: torch.Tensor) -> torch.Tensor:
        src, dst = edge_index
        rel = (source_pos[src] - query_pos[dst]) / self.radius
        msg = self.kernel(torch.cat([rel, torch.linalg.vector_norm(rel, dim=-1, keepdim=True), f[src]], dim=-1))
        q = query_pos.shape[0]
        total = scatter_sum(msg, dst, q)
        count = torch.zeros(q, dtype=msg.dtype, device=msg.device).index_add_(
            0, dst, torch.ones_like(dst, dtype=msg.dtype))
        return total / count.clamp(min=1.0)[:, None]
