"""Rules for elementwise nonlinearities: relu, leaky_relu, elu, tanh, sigmoid, gelu and silu.

Each gives an enclosure of the output over the input enclosure and one of the Clarke
generalised derivative, which both the backward pass and the centred form multiply by (ReLU:
{1} where surely active, {0} where surely inactive, [0, 1] where unstable).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

from sim.verify.centred import jmul_interval
from sim.verify.interval import BoundError, Interval, rule
from sim.verify.pairs import grad_times


def elementwise(x: Interval, lo: torch.Tensor, hi: torch.Tensor, dlo: torch.Tensor, dhi: torch.Tensor, op: str,
                fn: Callable[[torch.Tensor], torch.Tensor]) -> Interval:
    """The interval [lo, hi] of ``fn(x)``, whose derivative lies in [dlo, dhi] over ``x``."""
    cen = None if x.cen is None else (fn(x.cen[0]), *jmul_interval(dlo, dhi, x.cen[1], x.cen[2]))
    return Interval(lo, hi, x.tape, (x,), lambda g: (grad_times(g, dlo, dhi),), op, cen=cen)


@rule(torch.relu, F.relu, torch.Tensor.relu)
def relu(x: Interval, inplace: bool = False) -> Interval:
    d_lo = (x.lo > 0).to(x.dtype)
    d_hi = (x.hi >= 0).to(x.dtype)  # Clarke derivative at 0 is [0, 1]
    return elementwise(x, x.lo.clamp(min=0), x.hi.clamp(min=0), d_lo, d_hi, "relu", torch.relu)


@rule(F.leaky_relu)
def leaky_relu(x: Interval, negative_slope: float = 0.01, inplace: bool = False) -> Interval:
    s = float(negative_slope)
    if s < 0:
        raise BoundError("leaky_relu with a negative slope is not monotone; not supported")
    f = lambda t: F.leaky_relu(t, s)  # noqa: E731
    lo_s, hi_s = min(s, 1.0), max(s, 1.0)
    dlo = torch.where(x.lo > 0, 1.0, torch.where(x.hi < 0, s, lo_s)).to(x.dtype)
    dhi = torch.where(x.lo > 0, 1.0, torch.where(x.hi < 0, s, hi_s)).to(x.dtype)
    return elementwise(x, f(x.lo), f(x.hi), dlo, dhi, "leaky_relu", f)


def _even_bump(x: Interval, f: Callable, df: Callable, op: str) -> Interval:
    """Monotone f whose derivative is even and largest at 0 (tanh, sigmoid)."""
    d_lo, d_hi = df(x.lo), df(x.hi)
    contains0 = (x.lo <= 0) & (x.hi >= 0)
    dmax = torch.where(contains0, df(torch.zeros_like(x.lo)), torch.maximum(d_lo, d_hi))
    return elementwise(x, f(x.lo), f(x.hi), torch.minimum(d_lo, d_hi), dmax, op, f)


@rule(torch.tanh, F.tanh, torch.Tensor.tanh)
def tanh(x: Interval) -> Interval:
    return _even_bump(x, torch.tanh, lambda t: 1 - torch.tanh(t) ** 2, "tanh")


@rule(torch.sigmoid, F.sigmoid, torch.Tensor.sigmoid)
def sigmoid(x: Interval) -> Interval:
    return _even_bump(x, torch.sigmoid, lambda t: torch.sigmoid(t) * (1 - torch.sigmoid(t)), "sigmoid")


@rule(F.elu)
def elu(x: Interval, alpha: float = 1.0, inplace: bool = False) -> Interval:
    if not 0 <= alpha <= 1:
        raise BoundError("elu bounds need 0 <= alpha <= 1 (a monotone derivative)")
    df = lambda t: torch.where(t > 0, torch.ones_like(t), alpha * torch.exp(t.clamp(max=0)))  # noqa: E731
    dlo = df(x.lo)
    dhi = torch.where((x.lo <= 0) & (x.hi >= 0), torch.ones_like(x.hi), df(x.hi))  # derivative jumps at 0
    return elementwise(x, F.elu(x.lo, alpha), F.elu(x.hi, alpha), dlo, dhi, "elu", lambda t: F.elu(t, alpha))


def _bisect(fn: Callable[[float], float], a: float, b: float, iters: int = 200) -> float:
    """A root of ``fn`` in [a, b], where it changes sign."""
    fa = fn(a)
    for _ in range(iters):
        m = (a + b) / 2
        if (fn(m) > 0) == (fa > 0):
            a, fa = m, fn(m)
        else:
            b = m
    return (a + b) / 2


def _phi(t: float) -> float:
    return math.exp(-t * t / 2) / math.sqrt(2 * math.pi)


def _sig(t: float) -> float:
    return 1 / (1 + math.exp(-t))


# Critical points: the minimum of f, and the extrema of f' (for the derivative enclosures).
_GELU_MIN = _bisect(lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2))) + t * _phi(t), -2.0, 0.0)
_GELU_DCRIT = (-math.sqrt(2.0), math.sqrt(2.0))  # f'' = phi(t) (2 - t^2)
_SILU_MIN = _bisect(lambda t: _sig(t) * (1 + t * (1 - _sig(t))), -3.0, 0.0)
_SILU_D = _bisect(lambda t: 2 + t * (1 - 2 * _sig(t)), 0.5, 5.0)
_SILU_DCRIT = (-_SILU_D, _SILU_D)


def _smooth(x: Interval, f: Callable, df: Callable, f_min: float, d_crit: Sequence[float], op: str) -> Interval:
    """f with one minimum at ``f_min`` (decreasing left of it), f' with extrema at ``d_crit``."""
    inside = (x.lo <= f_min) & (x.hi >= f_min)
    fmin_val = f(torch.full_like(x.lo, f_min))
    lo = torch.where(inside, fmin_val, torch.minimum(f(x.lo), f(x.hi)))
    hi = torch.maximum(f(x.lo), f(x.hi))
    cands = [df(x.lo), df(x.hi)]
    for c in d_crit:
        val = df(torch.full_like(x.lo, c))
        cin = (x.lo <= c) & (x.hi >= c)
        cands.append(torch.where(cin, val, cands[0]))
    d = torch.stack(cands)
    return elementwise(x, lo, hi, d.amin(0), d.amax(0), op, f)


@rule(F.gelu)
def gelu(x: Interval, approximate: str = "none") -> Interval:
    if approximate != "none":
        raise BoundError("gelu bounds are implemented for approximate='none'")

    def df(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1 + torch.erf(t / math.sqrt(2))) + t * torch.exp(-t * t / 2) / math.sqrt(2 * math.pi)

    return _smooth(x, F.gelu, df, _GELU_MIN, _GELU_DCRIT, "gelu")


@rule(F.silu)
def silu(x: Interval, inplace: bool = False) -> Interval:
    def df(t: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(t)
        return s * (1 + t * (1 - s))

    return _smooth(x, F.silu, df, _SILU_MIN, _SILU_DCRIT, "silu")
