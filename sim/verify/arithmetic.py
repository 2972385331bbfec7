"""Rules for elementwise arithmetic: ``+``, ``-``, ``*`` and ``/`` between intervals and constants
(with broadcasting), negation and the reciprocal.

Sums are exact on bounds; a product with a constant is taken in midpoint-radius form, a
product of two intervals over the four corner products; the reciprocal needs an interval that
does not contain 0.
"""

from __future__ import annotations

from typing import Any

import torch

from sim.verify.centred import all_cen, cen_sum, jadd, jfull, jmul_interval, jscale, num_symbols
from sim.verify.interval import BoundError, Interval, Tape, operand, rule, tape_of
from sim.verify.pairs import grad_times, imul, imul_const, unbroadcast_pair


def _operands(a: Any, b: Any) -> tuple[Tape, Interval, tuple, tuple]:
    """The tape, the Interval that constants are converted like, and (lo, hi, Interval or None) of
    each argument of a binary operation."""
    like = a if isinstance(a, Interval) else b
    return tape_of(a, b), like, operand(a, like), operand(b, like)


def add(a: Any, b: Any) -> Interval:
    """a + b."""
    tape, like, (alo, ahi, na), (blo, bhi, nb) = _operands(a, b)
    sa, sb = alo.shape, blo.shape
    lo, hi = alo + blo, ahi + bhi
    return Interval(lo, hi, tape, (na, nb), lambda g: (unbroadcast_pair(g, sa), unbroadcast_pair(g, sb)), "add",
                    cen=cen_sum(a, b, like, lo.shape, 1.0))


def sub(a: Any, b: Any) -> Interval:
    """a - b."""
    tape, like, (alo, ahi, na), (blo, bhi, nb) = _operands(a, b)
    sa, sb = alo.shape, blo.shape
    lo, hi = alo - bhi, ahi - blo
    return Interval(lo, hi, tape, (na, nb),
                    lambda g: (unbroadcast_pair(g, sa), unbroadcast_pair((-g[1], -g[0]), sb)), "sub",
                    cen=cen_sum(a, b, like, lo.shape, -1.0))


def mul(a: Any, b: Any) -> Interval:
    """a * b."""
    tape, like, (alo, ahi, na), (blo, bhi, nb) = _operands(a, b)
    sa, sb = alo.shape, blo.shape
    if nb is None or na is None:
        (x, c) = (a, blo) if nb is None else (b, alo)
        lo, hi = imul_const(x.lo, x.hi, c)
        sx = x.shape
        cen = None
        if x.cen is not None:
            c0, jm, jr = x.cen
            cb = torch.broadcast_to(c, lo.shape)
            jm, jr = jfull((c0, jm, jr), lo.shape, num_symbols(tape), c0) if jm is not None else (None, None)
            cen = (c0 * c, *jscale(jm, jr, cb))
        return Interval(lo, hi, tape, (x,), lambda g: (unbroadcast_pair(imul_const(g[0], g[1], c), sx),), "mul_const",
                        info=c, cen=cen)
    lo, hi = imul(alo, ahi, blo, bhi)
    cen = None
    cens = all_cen(a, b, like=like)
    if cens is not None:  # d(ab) = b da + a db, with a, b over the box
        k = num_symbols(tape)
        ja = jmul_interval(*torch.broadcast_tensors(blo, bhi, lo)[:2], *jfull(cens[0], lo.shape, k, lo))
        jb = jmul_interval(*torch.broadcast_tensors(alo, ahi, lo)[:2], *jfull(cens[1], lo.shape, k, lo))
        cen = (cens[0][0] * cens[1][0], *jadd(ja, jb))
    return Interval(lo, hi, tape, (na, nb),
                    lambda g: (unbroadcast_pair(imul(g[0], g[1], blo, bhi), sa),
                               unbroadcast_pair(imul(g[0], g[1], alo, ahi), sb)), "mul", cen=cen)


def reciprocal(x: Interval) -> Interval:
    """1 / x, for an interval that does not contain 0."""
    if not bool(((x.lo > 0) | (x.hi < 0)).all()):
        raise BoundError("division by an interval that contains 0 (the bound is infinite)")
    lo, hi = 1.0 / x.hi, 1.0 / x.lo
    d2 = torch.stack([x.lo**2, x.hi**2])
    dlo, dhi = -1.0 / d2.amin(0), -1.0 / d2.amax(0)  # d/dx (1/x) = -1/x^2
    cen = None if x.cen is None else (1.0 / x.cen[0], *jmul_interval(dlo, dhi, x.cen[1], x.cen[2]))
    return Interval(lo, hi, x.tape, (x,), lambda g: (grad_times(g, dlo, dhi),), "reciprocal", cen=cen)


def div(a: Any, b: Any) -> Interval:
    """a / b."""
    if isinstance(b, Interval):
        return mul(a, reciprocal(b))
    like = a if isinstance(a, Interval) else None
    return mul(a, 1.0 / torch.as_tensor(b, dtype=like.dtype if like else None, device=like.device if like else None))


rule(torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__)(
    lambda a, b, alpha=1: add(a, b) if alpha == 1 else add(a, mul(b, alpha)))
rule(torch.sub, torch.Tensor.sub, torch.Tensor.__sub__)(
    lambda a, b, alpha=1: sub(a, b) if alpha == 1 else sub(a, mul(b, alpha)))
rule(torch.Tensor.__rsub__)(lambda a, b: sub(b, a))
rule(torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__)(mul)
rule(torch.div, torch.Tensor.div, torch.Tensor.__truediv__)(lambda a, b: div(a, b))
rule(torch.Tensor.__rtruediv__)(lambda a, b: mul(reciprocal(a), b))
rule(torch.neg, torch.Tensor.neg, torch.Tensor.__neg__)(lambda a: mul(a, -1.0))
rule(torch.reciprocal, torch.Tensor.reciprocal)(reciprocal)
