"""Rules for gathers and scatters: indexing (basic slices, a 1-D index tensor or boolean mask on
the first dimension), ``index_select`` and ``index_add`` / ``index_add_``.

They are the linear maps they look like: a gather's backward is the transposed scatter and a
scatter's the transposed gather, so message passing needs no rule of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sim.verify.centred import all_cen, jfull, num_symbols
from sim.verify.interval import BoundError, Interval, Pair, operand, rule, tape_of
from sim.verify.pairs import imul_const


def _basic(idx: Any) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in items)


def getitem(x: Interval, idx: Any) -> Interval:
    shape = x.shape
    if _basic(idx):
        full = (slice(None),) + (idx if isinstance(idx, tuple) else (idx,))

        def back(g: Pair) -> Sequence[Pair]:
            zl = g[0].new_zeros((g[0].shape[0],) + tuple(shape))
            zh = zl.clone()
            zl[full] = g[0]
            zh[full] = g[1]
            return ((zl, zh),)

        cen = None
        if x.cen is not None:
            c0, jm, jr = x.cen
            jidx = (idx if isinstance(idx, tuple) else (idx,)) + (slice(None),)
            cen = (c0[idx], None if jm is None else jm[jidx], None if jr is None else jr[jidx])
        return Interval(x.lo[idx], x.hi[idx], x.tape, (x,), back, "getitem", cen=cen)
    index = idx
    if isinstance(index, list):
        index = torch.as_tensor(index, device=x.device)
    if isinstance(index, torch.Tensor) and index.dtype == torch.bool:
        if index.dim() != 1:
            raise BoundError("only 1-D boolean masks on the first dimension are supported")
        index = torch.nonzero(index).squeeze(-1)
    if isinstance(index, torch.Tensor) and index.dim() == 1:
        return index_select(x, 0, index)
    raise BoundError(f"indexing an interval with {type(idx).__name__} is not supported (use basic slices or a 1-D "
                     f"index tensor on the first dimension)")


rule(torch.Tensor.__getitem__)(getitem)


@rule(torch.index_select, torch.Tensor.index_select)
def index_select(x: Interval, dim: int, index: torch.Tensor) -> Interval:
    shape = x.shape
    d = dim % len(shape)

    def back(g: Pair) -> Sequence[Pair]:
        zl = g[0].new_zeros((g[0].shape[0],) + tuple(shape)).index_add_(d + 1, index, g[0])
        zh = g[1].new_zeros((g[1].shape[0],) + tuple(shape)).index_add_(d + 1, index, g[1])
        return ((zl, zh),)

    cen = None
    if x.cen is not None:
        c0, jm, jr = x.cen
        cen = (c0.index_select(d, index), None if jm is None else jm.index_select(d, index),
               None if jr is None else jr.index_select(d, index))
    return Interval(x.lo.index_select(d, index), x.hi.index_select(d, index), x.tape, (x,), back, "gather", cen=cen)


def index_add(base: Any, dim: int, index: torch.Tensor, source: Any, alpha: float = 1) -> Interval:
    tape = tape_of(base, source)
    like = base if isinstance(base, Interval) else source
    blo, bhi, nb = operand(base, like)
    slo, shi, ns = operand(source, like)
    if alpha != 1:
        slo, shi = imul_const(slo, shi, float(alpha))
    d = dim % blo.dim()
    lo = blo.index_add(d, index, slo)
    hi = bhi.index_add(d, index, shi)

    def back(g: Pair) -> Sequence[Pair | None]:
        gs = (g[0].index_select(d + 1, index), g[1].index_select(d + 1, index))
        if alpha != 1:
            gs = imul_const(gs[0], gs[1], float(alpha))
        return (g, gs)

    cen = None
    cens = all_cen(base, source, like=like)
    if cens is not None:
        (cb, jmb, jrb), (cs, jms, jrs) = cens
        k = num_symbols(tape)
        bm, br = jfull((cb, jmb, jrb), lo.shape, k, lo)
        sm, sr = jfull((cs, jms, jrs), slo.shape, k, slo)
        a = float(alpha)
        cen = (cb.index_add(d, index, cs * a), bm.index_add(d, index, sm * a), br.index_add(d, index, sr * abs(a)))
    return Interval(lo, hi, tape, (nb, ns), back, "scatter", cen=cen)


@rule(torch.Tensor.index_add_)
def index_add_inplace(base: Any, dim: int, index: torch.Tensor, source: Any, alpha: float = 1) -> Interval:
    if isinstance(base, Interval):
        return base.index_add_(dim, index, source, alpha)
    return index_add(base, dim, index, source, alpha)  # a constant buffer becomes an interval: use the result


rule(torch.index_add, torch.Tensor.index_add)(index_add)
