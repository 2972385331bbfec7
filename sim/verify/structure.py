"""Rules that join, reshape and reduce: ``cat`` / ``stack``, ``reshape`` / ``view`` /
``unsqueeze``, ``sum`` / ``mean``, and ``zeros_like`` / ``new_zeros`` (which give constants)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from sim.verify.arithmetic import mul
from sim.verify.centred import all_cen, jfull, num_symbols
from sim.verify.interval import Interval, Pair, operand, rule, tape_of


@rule(torch.cat, torch.concat, torch.concatenate)
def cat(tensors: Sequence[Any], dim: int = 0) -> Interval:
    tape = tape_of(tensors)
    like = next(t for t in tensors if isinstance(t, Interval))
    parts = [operand(t, like) for t in tensors]
    ndim = parts[0][0].dim()
    d = dim % ndim
    sizes = [p[0].shape[d] for p in parts]

    def back(g: Pair) -> Sequence[Pair]:
        lo_parts = torch.split(g[0], sizes, dim=d + 1)
        hi_parts = torch.split(g[1], sizes, dim=d + 1)
        return [(a, b) for a, b in zip(lo_parts, hi_parts)]

    cen = None
    cens = all_cen(*tensors, like=like)
    if cens is not None:
        k = num_symbols(tape)
        js = [jfull(c, p[0].shape, k, p[0]) for c, p in zip(cens, parts)]
        cen = (torch.cat([c[0] for c in cens], d), torch.cat([j[0] for j in js], d), torch.cat([j[1] for j in js], d))
    return Interval(torch.cat([p[0] for p in parts], d), torch.cat([p[1] for p in parts], d), tape,
                    [p[2] for p in parts], back, "cat", cen=cen)


@rule(torch.stack)
def stack(tensors: Sequence[Any], dim: int = 0) -> Interval:
    ndim = tensors[0].dim() + 1
    return cat([unsqueeze(t, dim % ndim) if isinstance(t, Interval) else t.unsqueeze(dim % ndim)
                for t in tensors], dim % ndim)


def _dims(dim: Any, ndim: int) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(ndim))
    return tuple(d % ndim for d in (dim if isinstance(dim, (tuple, list)) else (dim,)))


def sum_over(x: Interval, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Interval:
    shape = x.shape
    dims = _dims(dim, len(shape))

    def back(g: Pair) -> Sequence[Pair]:
        gl, gh = g
        if not keepdim:
            for d in sorted(dims):
                gl, gh = gl.unsqueeze(d + 1), gh.unsqueeze(d + 1)
        full = (g[0].shape[0],) + tuple(shape)
        return ((gl.expand(full), gh.expand(full)),)

    cen = None
    if x.cen is not None:
        c0, jm, jr = x.cen
        cen = (c0.sum(dims, keepdim=keepdim), None if jm is None else jm.sum(dims, keepdim=keepdim),
               None if jr is None else jr.sum(dims, keepdim=keepdim))
    return Interval(x.lo.sum(dims, keepdim=keepdim), x.hi.sum(dims, keepdim=keepdim), x.tape, (x,), back, "sum",
                    cen=cen)


def mean_over(x: Interval, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Interval:
    count = math.prod(x.shape[d] for d in _dims(dim, x.dim()))
    return mul(sum_over(x, dim, keepdim), 1.0 / count)


rule(torch.sum, torch.Tensor.sum)(sum_over)
rule(torch.mean, torch.Tensor.mean)(mean_over)


def reshape(x: Interval, *shape: Any) -> Interval:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        shape = tuple(shape[0])
    old = x.shape

    def back(g: Pair) -> Sequence[Pair]:
        return ((g[0].reshape((g[0].shape[0],) + tuple(old)), g[1].reshape((g[1].shape[0],) + tuple(old))),)

    lo = x.lo.reshape(shape)
    cen = None
    if x.cen is not None:
        c0, jm, jr = x.cen
        jshape = tuple(lo.shape) + (-1,)
        cen = (c0.reshape(shape), None if jm is None else jm.reshape(jshape),
               None if jr is None else jr.reshape(jshape))
    return Interval(lo, x.hi.reshape(shape), x.tape, (x,), back, "reshape", cen=cen)


def unsqueeze(x: Interval, dim: int) -> Interval:
    d = dim % (x.dim() + 1)
    return reshape(x, tuple(x.shape[:d]) + (1,) + tuple(x.shape[d:]))


rule(torch.reshape, torch.Tensor.reshape, torch.Tensor.view)(lambda x, *s: reshape(x, *s))
rule(torch.unsqueeze, torch.Tensor.unsqueeze)(unsqueeze)
rule(torch.zeros_like)(lambda x, **kw: torch.zeros_like(x.lo, **kw))
rule(torch.Tensor.new_zeros)(lambda x, *s, **kw: x.lo.new_zeros(*s, **kw))
