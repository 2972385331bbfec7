"""Interval arithmetic on plain ``(lo, hi)`` tensor pairs, shared by the forward rules and the
backward (Jacobian) rules.

Backward enclosures carry a leading row axis R: a pair of shape (R, *shape) encloses R rows
of a Jacobian with respect to a tensor of shape ``shape``.
"""

from __future__ import annotations

import torch

from sim.verify.interval import Pair


def unbroadcast(g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a gradient (R, *out_shape) down to (R, *shape) over broadcast dimensions."""
    extra = g.dim() - 1 - len(shape)
    if extra > 0:
        g = g.sum(dim=tuple(range(1, 1 + extra)))
    dims = tuple(i + 1 for i, s in enumerate(shape) if s == 1 and g.shape[i + 1] != 1)
    return g.sum(dim=dims, keepdim=True) if dims else g


def unbroadcast_pair(g: Pair, shape: torch.Size) -> Pair:
    """:func:`unbroadcast` of both bounds."""
    return unbroadcast(g[0], shape), unbroadcast(g[1], shape)


def imul(alo: torch.Tensor, ahi: torch.Tensor, blo: torch.Tensor, bhi: torch.Tensor) -> Pair:
    """Enclosure of the elementwise product of two intervals."""
    p = torch.stack(torch.broadcast_tensors(alo * blo, alo * bhi, ahi * blo, ahi * bhi))
    return p.amin(0), p.amax(0)


def imul_const(lo: torch.Tensor, hi: torch.Tensor, c: torch.Tensor | float) -> Pair:
    """Enclosure of the elementwise product of an interval and a constant (in midpoint-radius form)."""
    c = torch.as_tensor(c, dtype=lo.dtype, device=lo.device)
    mid, rad = (lo + hi) / 2 * c, (hi - lo) / 2 * c.abs()
    return mid - rad, mid + rad


def grad_times(g: Pair, lo: torch.Tensor, hi: torch.Tensor) -> Pair:
    """Enclosure of g * d for d in [lo, hi] (broadcast over the leading row axis)."""
    if torch.equal(lo, hi):
        return imul_const(g[0], g[1], lo)
    return imul(g[0], g[1], lo, hi)
