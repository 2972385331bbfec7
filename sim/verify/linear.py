r"""The rule for ``F.linear`` (and so ``nn.Linear``) on an interval input with constant weights.

Forward: centre/radius form, :math:`c' = W c + b`, :math:`r' = |W| r` (exact for one affine
layer), intersected with the CROWN bound of :mod:`~sim.verify.crown` when the box's mode
asks for it. Backward: the same centre/radius product on the rows of the Jacobian.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

from sim.verify.crown import crown_linear
from sim.verify.interval import BoundError, Interval, Pair, rule


@rule(F.linear)
def linear(x: Any, weight: Any, bias: Any = None) -> Interval:
    """``F.linear(x, weight, bias)`` for an interval ``x``."""
    if isinstance(weight, Interval) or isinstance(bias, Interval):
        raise BoundError("bounds over perturbed weights are not supported")
    if not isinstance(x, Interval):
        return F.linear(x, weight, bias)
    w_abs = weight.abs()
    mid = F.linear(x.mid, weight, bias)
    rad = F.linear(x.rad, w_abs)
    lo, hi = mid - rad, mid + rad
    if x.tape.crown:
        tight = crown_linear(x, weight, bias)
        if tight is not None:
            lo, hi = torch.maximum(lo, tight[0]), torch.minimum(hi, tight[1])
            hi = torch.maximum(hi, lo)  # rounding can cross them by an ulp

    def back(g: Pair) -> Sequence[Pair]:
        c, r = (g[0] + g[1]) / 2, (g[1] - g[0]) / 2
        cm, rm = c @ weight, r @ w_abs
        return ((cm - rm, cm + rm),)

    cen = None
    if x.cen is not None:
        c0, jm, jr = x.cen
        if jm is not None:
            jm, jr = torch.einsum("...ik,oi->...ok", jm, weight), torch.einsum("...ik,oi->...ok", jr, w_abs)
        cen = (F.linear(c0, weight, bias), jm, jr)
    return Interval(lo, hi, x.tape, (x,), back, "linear", info=(weight, bias), cen=cen)
