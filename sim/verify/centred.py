r"""The centred form: the algebra of the centred parts carried in ``"centred"`` mode.

A box made with ``Interval.box(x0, eps, mode="centred")`` gives every interval z a centred
part: its value at the centre, :math:`z(x_0)`, and an enclosure, in midpoint-radius form, of
its Jacobian :math:`\partial z / \partial x` over the box, with one column per perturbed
input. A linear map multiplies the Jacobian; a nonlinearity multiplies it by the enclosure of
its Clarke derivative. By the mean value theorem (Lebourg's, for Clarke Jacobians)
:math:`|z(x) - z(x_0)| \le \sum_k \sup |\partial z / \partial x_k|\, \varepsilon_k`, which
:class:`~sim.verify.interval.Interval` intersects with every enclosure; unlike intervals alone
this keeps the cancellations between paths, so deep networks do not blow up. It costs one
Jacobian column per perturbed input, and the Jacobian of the output is read off directly
(:meth:`~sim.verify.interval.Interval.jacobian`), without a backward pass.

Here: the centred part of an argument, broadcasting, and sums and products of Jacobian
enclosures. A Jacobian given as ``(None, None)`` is zero (a constant).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sim.verify.interval import Cen, Interval, Tape

MaybeJac = tuple["torch.Tensor | None", "torch.Tensor | None"]


def cen_of(x: Any, like: Interval) -> Cen | None:
    """Centred part of an argument: an Interval's own (None if it has none), or (constant, None, None)."""
    if isinstance(x, Interval):
        return x.cen
    return torch.as_tensor(x, dtype=like.dtype, device=like.device), None, None


def all_cen(*args: Any, like: Interval) -> list[Cen] | None:
    """The centred parts of all arguments, or None when an Interval among them has none."""
    cens = [cen_of(a, like) for a in args]
    return None if any(c is None for c in cens) else cens


def jfull(cen: Cen, shape: Sequence[int], k: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Jacobian of a centred part broadcast to ``shape`` (zeros for constants)."""
    if cen[1] is None:
        z = like.new_zeros(tuple(shape) + (k,))
        return z, z
    return torch.broadcast_to(cen[1], tuple(shape) + (k,)), torch.broadcast_to(cen[2], tuple(shape) + (k,))


def num_symbols(tape: Tape) -> int:
    """K, the number of perturbed inputs (Jacobian columns) of a centred tape."""
    return 0 if tape.radius is None else tape.radius.numel()


def jscale(jm: torch.Tensor | None, jr: torch.Tensor | None, c: torch.Tensor) -> MaybeJac:
    """J * c for a constant c broadcast over the value axes."""
    if jm is None:
        return None, None
    c = c[..., None]
    return jm * c, jr * c.abs()


def jmul_interval(dlo: torch.Tensor, dhi: torch.Tensor, jm: torch.Tensor | None, jr: torch.Tensor | None
                  ) -> MaybeJac:
    """J * d for d in [dlo, dhi] (value-shaped), in midpoint-radius arithmetic."""
    if jm is None:
        return None, None
    dm, dr = ((dlo + dhi) / 2)[..., None], ((dhi - dlo) / 2)[..., None]
    return dm * jm, dm.abs() * jr + dr * (jm.abs() + jr)


def jadd(a: MaybeJac, b: MaybeJac, sign: float = 1.0) -> MaybeJac:
    """a + sign * b for Jacobian enclosures (sign is +1 or -1)."""
    (am, ar), (bm, br) = a, b
    if am is None:
        return (None, None) if bm is None else (sign * bm, br)
    if bm is None:
        return am, ar
    return am + sign * bm, ar + br


def cen_sum(a: Any, b: Any, like: Interval, shape: torch.Size, sign: float) -> Cen | None:
    """Centred part of ``a + sign * b`` (either may be a constant), broadcast to ``shape``."""
    cens = all_cen(a, b, like=like)
    if cens is None:
        return None
    (ca, jma, jra), (cb, jmb, jrb) = cens
    k = num_symbols(like.tape)
    ja = jfull((ca, jma, jra), shape, k, ca) if jma is not None else (None, None)
    jb = jfull((cb, jmb, jrb), shape, k, cb) if jmb is not None else (None, None)
    jm, jr = jadd(ja, jb, sign)
    return ca + sign * cb, jm, jr
