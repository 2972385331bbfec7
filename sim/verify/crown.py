"""CROWN (Zhang et al. 2018, "Efficient Neural Network Robustness Certification with General
Activation Functions"): bounds of a linear layer at the end of a ``linear -> relu -> linear
[-> relu -> linear ...]`` chain by back-substitution of linear relaxations of the ReLUs.

Each output row is written as a linear function of the input of the chain: active ReLUs
(``lo >= 0``) pass their input through, inactive ones (``hi <= 0``) drop it, and an unstable
one is bounded above by the chord ``hi (z - lo) / (hi - lo)`` and below by ``z`` or 0,
whichever is nearer the chord. The linear function is then bounded over the box at the start
of the chain. The rule for ``linear`` intersects this with its interval bound when the box's
mode is ``"crown"`` or ``"centred"``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sim.verify.interval import Pair


def crown_chain(x: Any) -> tuple[list[tuple[Any, torch.Tensor, torch.Tensor | None]], Any] | None:
    """Walk back ``relu <- linear <- relu <- linear ...`` from ``x``: ([(pre-activation, W, b)], the
    interval at the start of the chain), or None when ``x`` is not a ReLU of a linear layer."""
    chain = []
    cur = x
    while cur.op == "relu" and cur.parents[0] is not None and cur.parents[0].op == "linear":
        z = cur.parents[0]
        w, b = z.info
        chain.append((z, w, b))
        cur = z.parents[0]
    return (chain, cur) if chain else None


def crown_linear(x: Any, weight: torch.Tensor, bias: torch.Tensor | None, rows_per_chunk: int = 512
                 ) -> Pair | None:
    """CROWN bounds (lo, hi) of ``linear(x, weight, bias)`` when ``x`` ends a linear-relu chain,
    else None. Rows (all but the last axis) are processed ``rows_per_chunk`` at a time."""
    found = crown_chain(x)
    if found is None:
        return None
    chain, start = found
    lead = x.shape[:-1]
    n_rows = int(math.prod(lead))
    s_lo = start.lo.reshape(n_rows, -1)
    s_hi = start.hi.reshape(n_rows, -1)
    zs = [(z.lo.reshape(n_rows, -1), z.hi.reshape(n_rows, -1), w, b) for z, w, b in chain]
    out_lo, out_hi = [], []
    for r0 in range(0, n_rows, rows_per_chunk):
        sl = slice(r0, min(n_rows, r0 + rows_per_chunk))
        m = sl.stop - sl.start
        lam_u = weight.expand(m, *weight.shape)
        lam_l = lam_u
        c_u = (bias if bias is not None else weight.new_zeros(weight.shape[0])).expand(m, -1)
        c_l = c_u
        for z_lo, z_hi, w, b in zs:
            lo, hi = z_lo[sl], z_hi[sl]
            active, inactive = lo >= 0, hi <= 0
            unstable = ~active & ~inactive
            width = torch.where(unstable, hi - lo, torch.ones_like(hi))
            s_up = torch.where(active, 1.0, torch.where(inactive, 0.0, hi / width)).to(lo.dtype)
            t_up = torch.where(unstable, -hi * lo / width, torch.zeros_like(lo))
            s_low = torch.where(active, 1.0, torch.where(inactive, 0.0, (hi > -lo).to(lo.dtype))).to(lo.dtype)
            pu, nu = lam_u.clamp(min=0), lam_u.clamp(max=0)
            pl, nl = lam_l.clamp(min=0), lam_l.clamp(max=0)
            c_u = c_u + (pu * t_up[:, None, :]).sum(-1)
            c_l = c_l + (nl * t_up[:, None, :]).sum(-1)
            lam_u = pu * s_up[:, None, :] + nu * s_low[:, None, :]
            lam_l = pl * s_low[:, None, :] + nl * s_up[:, None, :]
            if b is not None:
                c_u = c_u + lam_u @ b
                c_l = c_l + lam_l @ b
            lam_u = lam_u @ w
            lam_l = lam_l @ w
        mid = ((s_lo[sl] + s_hi[sl]) / 2)[:, :, None]
        rad = ((s_hi[sl] - s_lo[sl]) / 2)[:, :, None]
        out_hi.append((lam_u @ mid + lam_u.abs() @ rad).squeeze(-1) + c_u)
        out_lo.append((lam_l @ mid - lam_l.abs() @ rad).squeeze(-1) + c_l)
    shape = lead + (weight.shape[0],)
    return torch.cat(out_lo).reshape(shape), torch.cat(out_hi).reshape(shape)
