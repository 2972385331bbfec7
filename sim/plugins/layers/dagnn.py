r"""Deep Adaptive Graph Neural Network (Liu, Gao, Ji, KDD 2020, "Towards Deeper Graph Neural
Networks").

Transformation and propagation are decoupled: the features are transformed once, then
propagated K steps with the GCN operator, and every node weighs its K + 1 hop
representations with its own learned scores:

.. math::
    Z = \operatorname{MLP}(X), \qquad H_\ell = \hat A^\ell Z \ (\ell = 0..K), \qquad
    \hat A = \tilde D^{-1/2} (A + I) \tilde D^{-1/2},

.. math::
    S_{v\ell} = \sigma(H_{\ell, v} \cdot s), \qquad
    \operatorname{out}_v = \sum_{\ell=0}^{K} \frac{S_{v\ell}}{\sum_{\ell'} S_{v\ell'}} H_{\ell, v}.

On a connected graph :math:`\hat A^\ell` converges to :math:`\Pi_{ij} = \sqrt{\tilde d_i
\tilde d_j} / (2m + n)` (Theorem 3.1 of the paper; m edges, n nodes), so deep propagation
smooths towards a degree-weighted average and the adaptive scores let each node stop
early.

Our deviations: the transformation is one linear layer on the host model's latents (the
host's processor is the deep transformation); the per-node scores are normalised over
hops (a convex combination) instead of the paper's raw sigmoid weights, which keeps the
latent scale for the host's decoder and makes K = 0 return Z exactly.

Shapes:
    x (N, C), edge_index (2, E) -> (N, C)
"""

from __future__ import annotations

import torch
from torch import nn

from sim.plugins.registry import PluginError, register_plugin


def gcn_operator(edge_index: torch.Tensor, num_nodes: int, dtype: torch.dtype = torch.float32
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge weights of :math:`\\hat A` (E,) and its self-loop weights (N,).

    :math:`\\hat A_{ij} = 1 / \\sqrt{\\tilde d_i \\tilde d_j}` on edges and
    :math:`1 / \\tilde d_i` on the diagonal, with :math:`\\tilde d = \\deg + 1`.
    """
    s, r = edge_index
    deg = torch.ones(num_nodes, dtype=dtype, device=edge_index.device).index_add_(
        0, r, torch.ones(r.shape[0], dtype=dtype, device=edge_index.device))
    inv_sqrt = deg.rsqrt()
    return inv_sqrt[s] * inv_sqrt[r], 1.0 / deg


def gcn_propagate(z: torch.Tensor, edge_index: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor]
                  ) -> torch.Tensor:
    """One step :math:`\\hat A z`. Shapes: z (N, ...) -> (N, ...)."""
    w_edge, w_self = weights
    s, r = edge_index
    shape = (-1,) + (1,) * (z.dim() - 1)
    out = z * w_self.to(z.dtype).reshape(shape)
    return out.index_add(0, r, z[s] * w_edge.to(z.dtype).reshape(shape))


@register_plugin("dagnn", "layer",
                 paper="Liu, Gao, Ji 2020, Towards Deeper Graph Neural Networks (KDD)",
                 summary="decoupled K-step GCN propagation with learned per-node adaptive hop weights (a deep head)",
                 at="head")
class DAGNN(nn.Module):
    """Args:
        channels: node latent width C.
        hops: propagation steps K (0: the transformed features).
    """

    def __init__(self, channels: int, hops: int = 10):
        super().__init__()
        if hops < 0:
            raise PluginError(f"dagnn: hops must be >= 0, got {hops}")
        self.hops = hops
        self.transform = nn.Linear(channels, channels)
        self.score = nn.Linear(channels, 1, bias=False)

    @property
    def receptive_hops(self) -> int:
        return self.hops

    @property
    def structural_hops(self) -> int:
        # the GCN weights of a node K hops away need its degree, i.e. its neighbours
        return self.hops + 1

    def propagations(self, z: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """(K + 1, N, C) stack of :math:`\\hat A^\\ell Z`."""
        weights = gcn_operator(edge_index, z.shape[0], z.dtype)
        hs = [z]
        for _ in range(self.hops):
            hs.append(gcn_propagate(hs[-1], edge_index, weights))
        return torch.stack(hs)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None,
                pos: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        z = self.transform(x)
        h = self.propagations(z, edge_index)  # (K + 1, N, C)
        s = torch.sigmoid(self.score(h))  # (K + 1, N, 1)
        return (s * h).sum(0) / s.sum(0)
