"""Sparse multi-head attention restricted to a mask of (sender, receiver) pairs.

Cost and memory are linear in the number of mask pairs: scores exist only on the pairs,
the softmax runs over each receiver's senders with scatter operations (torch's own
``scatter_reduce`` / ``index_add_``; no torch-scatter), and no N x N matrix is formed.

.. math::
    \\alpha_{ij} = \\operatorname{softmax}_{j \\in \\mathcal{M}(i)}
        \\frac{q_i \\cdot k_j}{\\sqrt{d_h}}, \\qquad
    \\operatorname{out}_i = W_o \\sum_{j \\in \\mathcal{M}(i)} \\alpha_{ij} v_j

A receiver with no sender in the mask gets zero output (its residual carries it).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def segment_softmax(scores: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Softmax of ``scores`` (E, H) over the entries that share a receiver ``index`` (E,)."""
    h = scores.shape[1]
    idx = index[:, None].expand(-1, h)
    smax = scores.new_full((num_nodes, h), float("-inf")).scatter_reduce(0, idx, scores, "amax", include_self=True)
    ex = torch.exp(scores - smax.index_select(0, index))
    denom = scores.new_zeros((num_nodes, h)).index_add_(0, index, ex)
    return ex / denom.index_select(0, index).clamp(min=torch.finfo(scores.dtype).tiny)


def rotary(x: torch.Tensor, pos: torch.Tensor, base: float = 100.0) -> torch.Tensor:
    """Rotary positional encoding from coordinates (RoFormer, applied per axis).

    The head dimension is split into ``dim`` equal parts, one per coordinate axis; within a
    part, channel pairs are rotated by ``pos_axis * base ** (-2k / part)`` so that
    ``q_i . k_j`` depends on ``pos_i - pos_j``. Shapes: x (N, H, Dh), pos (N, dim).
    """
    n, heads, dh = x.shape
    dim = pos.shape[-1]
    part = (dh // (2 * dim)) * 2
    if part == 0:
        raise ValueError(f"head width {dh} is too small for rotary encoding of {dim}D coordinates")
    out = x.clone()
    half = part // 2
    freqs = base ** (-torch.arange(half, dtype=x.dtype, device=x.device) / half)
    for a in range(dim):
        sl = slice(a * part, (a + 1) * part)
        ang = pos[:, a:a + 1].to(x.dtype) * freqs[None, :]  # (N, half)
        cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
        x1, x2 = x[..., sl][..., :half], x[..., sl][..., half:]
        out[..., sl] = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out


class MaskedAttention(nn.Module):
    """Multi-head attention over a sparse mask.

    Args:
        dim: model width.
        heads: number of heads (``dim`` divisible by it).
        rope: rotate Q and K by node coordinates (needs ``pos`` in forward).

    Shapes:
        x (N, dim), mask_index (2, M) [senders; receivers] -> (N, dim)
    """

    def __init__(self, dim: int, heads: int, rope: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim, self.rope = heads, dim // heads, rope
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask_index: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        q, k, v = self.qkv(x).view(n, 3, self.heads, self.head_dim).unbind(1)
        if self.rope:
            if pos is None:
                raise ValueError("rotary encoding needs node coordinates (pos)")
            q, k = rotary(q, pos), rotary(k, pos)
        send, recv = mask_index
        # index_select rather than advanced indexing: the same gathers, about 2x faster on CPU
        scores = torch.linalg.vecdot(q.index_select(0, recv), k.index_select(0, send)) / math.sqrt(self.head_dim)
        alpha = segment_softmax(scores, recv, n)  # (M, H)
        msg = v.index_select(0, send) * alpha.unsqueeze(-1)  # (M, H, Dh)
        # flatten, not reshape(len(send), -1): a tracer (sim.export) keeps the pair count dynamic
        agg = x.new_zeros((n, self.heads * self.head_dim)).index_add_(0, recv, msg.flatten(1))
        return self.out(agg)
