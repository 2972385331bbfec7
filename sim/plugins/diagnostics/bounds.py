r"""Bound propagation through a model's own ``forward``: interval enclosures of every
intermediate tensor over an input box, and enclosures of rows of the Clarke Jacobian.

An :class:`Interval` holds elementwise bounds ``lo <= x <= hi`` and stands in for a tensor:
it implements ``__torch_function__``, so running an unmodified model on an ``Interval``
(``model(Interval.box(x0, eps))``) evaluates it in interval arithmetic and records a tape.
Every supported operation has two rules:

- forward: an enclosure of the output. Affine maps use centre/radius form
  (:math:`c' = W c + b`, :math:`r' = |W| r`, exact for one affine layer); chains
  ``linear -> relu -> linear [-> relu -> linear]`` inside an MLP are tightened by CROWN
  (Zhang et al. 2018): the output is bounded by back-substitution of linear relaxations
  of the ReLUs down to the box at the start of the chain, per row, and intersected with
  the interval bound;
- backward: given an enclosure of rows of :math:`\partial y / \partial \mathrm{out}`,
  an enclosure of the rows of :math:`\partial y / \partial \mathrm{in}`. Nonlinearities
  contribute their Clarke generalised derivative over the input enclosure (ReLU:
  {1} when surely active, {0} when surely inactive, [0, 1] when unstable), so the
  backward pass encloses the Clarke Jacobian for every input in the box (Shi et al. 2022,
  "Efficiently Computing Local Lipschitz Constants of Neural Networks via Bound
  Propagation").

With ``Interval.box(x0, eps, centred=True)`` every interval also carries the *centred
form* (forward mode): its value at the centre, :math:`z(x_0)`, and an interval enclosure
of its Jacobian :math:`\partial z / \partial x` over the box, propagated by the same
rules (a linear map multiplies it, a nonlinearity multiplies it by its Clarke derivative
enclosure). By the mean value theorem (Lebourg's, for Clarke Jacobians)
:math:`|z(x) - z(x_0)| \le \sum_k \sup |\partial z / \partial x_k|\, \varepsilon_k`,
which tightens every enclosure; unlike intervals alone it keeps the cancellations between
paths, so deep networks do not blow up. It costs one Jacobian column per perturbed input
(use it on small inputs, e.g. a node's receptive field); the Jacobian of the output is
then read off directly, without a backward pass (and without a tape).

Gathers (``x[index]``, ``index_select``) and scatters (``index_add``) are the linear maps
they are: their backward is the transposed scatter / gather, so message passing needs no
special rule. Supported: linear, relu, leaky_relu, elu, tanh, sigmoid, gelu, silu,
layer_norm (last dimension), reciprocal, + - * / (interval * interval too), cat, stack,
indexing, index_select, index_add, sum, mean, reshape/view, unsqueeze, and constants
mixed in anywhere. Anything else raises :class:`BoundError` naming the operation.

Soundness holds in exact arithmetic; there is no outward rounding, so run bounds in
float64 (the Lipschitz diagnostic does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn import functional as F

from sim.plugins.registry import PluginError


class BoundError(PluginError, AttributeError):
    """The model uses an operation bound propagation has no rule for (an AttributeError too, so
    ``hasattr`` probes on an :class:`Interval` answer False)."""


Pair = tuple[torch.Tensor, torch.Tensor]


class Tape:
    """Intervals in creation (topological) order (``record=False``: none kept, for the centred
    form, whose intermediate Jacobians would otherwise all stay in memory).

    Attributes:
        radius: (K,) box radius of each perturbed input (the centred form's symbols).
    """

    def __init__(self, record: bool = True, radius: torch.Tensor | None = None) -> None:
        self.nodes: list[Interval] = []
        self.record = record
        self.radius = radius

    def add(self, node: "Interval") -> None:
        node.index = len(self.nodes)
        if self.record:
            self.nodes.append(node)


class _Light:
    """What CROWN needs of an ancestor (bounds, operation, parents) without its Jacobian."""

    def __init__(self, node: Any):
        self.lo, self.hi, self.op, self.info = node.lo, node.hi, node.op, node.info
        self.parents = node.parents

    @property
    def shape(self) -> torch.Size:
        return self.lo.shape


def _light(node: Any) -> Any:
    return node if node is None or isinstance(node, _Light) else _Light(node)


# Centred part: (value at the box centre, Jacobian midpoint, Jacobian radius); Jacobians have a
# trailing axis of K symbols (perturbed inputs). A constant has value c and Jacobian None (zero).
Cen = tuple[torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"]


_HANDLERS: dict[Any, Callable[..., Any]] = {}


def _handles(*funcs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        for f in funcs:
            _HANDLERS[f] = fn
        return fn

    return deco


class Interval:
    """Elementwise enclosure ``lo <= x <= hi`` of a tensor over the input box, on a tape.

    Attributes:
        lo, hi: bounds (same shape).
        parents: the Intervals it was computed from (``None`` for constant arguments).
        backward: maps an enclosure (glo, ghi) of shape (R, *shape) to one per parent.
        op, info: the operation and what CROWN needs to walk back through it.
    """

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor, tape: Tape, parents: Sequence["Interval | None"] = (),
                 backward: Callable[[Pair], Sequence[Pair | None]] | None = None, op: str = "input",
                 info: Any = None, cen: Cen | None = None):
        if cen is not None and tape.radius is not None:  # mean-value tightening
            c0, jm, jr = cen
            if jm is None:
                lo = hi = c0
            else:
                width = ((jm.abs() + jr) * tape.radius).sum(-1)
                lo, hi = torch.maximum(lo, c0 - width), torch.minimum(hi, c0 + width)
                hi = torch.maximum(hi, lo)
        self.lo, self.hi, self.tape = lo, hi, tape
        self.cen = cen
        if not tape.record:
            parents, backward = tuple(_light(p) for p in parents), None
        self.parents, self.backward, self.op, self.info = tuple(parents), backward, op, info
        self.index = -1
        tape.add(self)

    @classmethod
    def box(cls, center: torch.Tensor, radius: torch.Tensor | float, centred: bool = False) -> "Interval":
        """The input box ``center ± radius`` (radius 0 = not perturbed), on a new tape; with
        ``centred`` it carries the centred form over its perturbed entries."""
        radius = torch.as_tensor(radius, dtype=center.dtype, device=center.device).expand_as(center)
        if (radius < 0).any():
            raise BoundError("the box radius must be >= 0")
        if not centred:
            return cls(center - radius, center + radius, Tape())
        flat = radius.reshape(-1)
        sym = torch.nonzero(flat > 0).squeeze(-1)
        jac = torch.zeros((flat.numel(), sym.numel()), dtype=center.dtype, device=center.device)
        jac[sym, torch.arange(sym.numel(), device=center.device)] = 1.0
        jac = jac.reshape(tuple(center.shape) + (sym.numel(),))
        tape = Tape(record=False, radius=flat[sym])
        return cls(center - radius, center + radius, tape, cen=(center, jac, torch.zeros_like(jac)))

    def jacobian(self) -> Pair:
        """Enclosure (lo, hi) of d self / d (perturbed inputs), shape (*shape, K) (centred form)."""
        if self.cen is None or self.cen[1] is None:
            raise BoundError("no centred form: build the input with Interval.box(..., centred=True)")
        _, jm, jr = self.cen
        return jm - jr, jm + jr

    # ----- tensor-like surface -------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.lo.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.lo.dtype

    @property
    def device(self) -> torch.device:
        return self.lo.device

    @property
    def ndim(self) -> int:
        return self.lo.ndim

    def dim(self) -> int:
        return self.lo.ndim

    def size(self, d: int | None = None) -> Any:
        return self.lo.size() if d is None else self.lo.size(d)

    def numel(self) -> int:
        return self.lo.numel()

    @property
    def mid(self) -> torch.Tensor:
        return (self.lo + self.hi) / 2

    @property
    def rad(self) -> torch.Tensor:
        return (self.hi - self.lo) / 2

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise BoundError(f"bound propagation has no rule for the tensor attribute or method {name!r}")

    def __repr__(self) -> str:
        return f"Interval(shape={tuple(self.shape)}, op={self.op}, max width={float((self.hi - self.lo).max()):.3g})"

    def to(self, *args: Any, **kwargs: Any) -> "Interval":
        target = torch.empty(0, dtype=self.dtype, device=self.device).to(*args, **kwargs)
        if target.dtype != self.dtype or target.device != self.device:
            raise BoundError(f"an interval cannot change dtype/device inside the model "
                             f"({self.dtype} -> {target.dtype})")
        return self

    def new_zeros(self, *size: Any, **kwargs: Any) -> torch.Tensor:
        return self.lo.new_zeros(*size, **kwargs)

    def new_ones(self, *size: Any, **kwargs: Any) -> torch.Tensor:
        return self.lo.new_ones(*size, **kwargs)

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        handler = _HANDLERS.get(func)
        if handler is None:
            name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
            raise BoundError(f"bound propagation has no rule for {name} (supported: linear, relu-like and smooth "
                             f"activations, layer_norm, arithmetic, cat/stack, indexing, index_add, sum/mean, reshape)")
        return handler(*args, **(kwargs or {}))

    def __getitem__(self, idx: Any) -> "Interval":
        return _getitem(self, idx)

    def __add__(self, other: Any) -> "Interval":
        return _add(self, other)

    __radd__ = __add__

    def __sub__(self, other: Any) -> "Interval":
        return _sub(self, other)

    def __rsub__(self, other: Any) -> "Interval":
        return _sub(other, self)

    def __neg__(self) -> "Interval":
        return _mul(self, -1.0)

    def __mul__(self, other: Any) -> "Interval":
        return _mul(self, other)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> "Interval":
        return _div(self, other)

    def __rtruediv__(self, other: Any) -> "Interval":
        return _mul(_reciprocal(self), other)

    def index_add_(self, dim: int, index: torch.Tensor, source: Any, alpha: float = 1) -> "Interval":
        new = _index_add(self, dim, index, source, alpha=alpha)
        if not self.tape.record:  # no tape: nothing refers back to the old state
            self.__dict__.update(new.__dict__)
            return self
        # rebind in place: the old state becomes a separate node so the tape stays a DAG
        old = Interval.__new__(Interval)
        old.__dict__.update(self.__dict__)
        self.tape.nodes[old.index] = old
        for node in self.tape.nodes[old.index + 1:]:  # earlier uses of self meant the old state
            node.parents = tuple(old if p is self else p for p in node.parents)
        self.__dict__.update(new.__dict__)
        self.tape.nodes[new.index] = self
        return self

    def index_add(self, dim: int, index: torch.Tensor, source: Any, alpha: float = 1) -> "Interval":
        return _index_add(self, dim, index, source, alpha=alpha)

    def index_select(self, dim: int, index: torch.Tensor) -> "Interval":
        return _index_select(self, dim, index)

    def sum(self, dim: Any = None, keepdim: bool = False, **kw: Any) -> "Interval":
        return _sum(self, dim, keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False, **kw: Any) -> "Interval":
        return _mean(self, dim, keepdim)

    def reshape(self, *shape: Any) -> "Interval":
        return _reshape(self, *shape)

    view = reshape

    def unsqueeze(self, dim: int) -> "Interval":
        return _unsqueeze(self, dim)

    def relu(self) -> "Interval":
        return _relu(self)

    def tanh(self) -> "Interval":
        return _tanh(self)

    def sigmoid(self) -> "Interval":
        return _sigmoid(self)

    def reciprocal(self) -> "Interval":
        return _reciprocal(self)


# ----- helpers ---------------------------------------------------------------------------
def _bounds(x: Any, like: Interval | None = None) -> tuple[torch.Tensor, torch.Tensor, Interval | None]:
    if isinstance(x, Interval):
        return x.lo, x.hi, x
    t = torch.as_tensor(x, dtype=like.dtype if like is not None else None,
                        device=like.device if like is not None else None)
    return t, t, None


def _tape_of(*xs: Any) -> Tape:
    for x in xs:
        if isinstance(x, Interval):
            return x.tape
        if isinstance(x, (list, tuple)):
            for y in x:
                if isinstance(y, Interval):
                    return y.tape
    raise BoundError("no interval among the arguments")


def _unbroadcast(g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a gradient (R, *out_shape) down to (R, *shape) over broadcast dimensions."""
    extra = g.dim() - 1 - len(shape)
    if extra > 0:
        g = g.sum(dim=tuple(range(1, 1 + extra)))
    dims = tuple(i + 1 for i, s in enumerate(shape) if s == 1 and g.shape[i + 1] != 1)
    return g.sum(dim=dims, keepdim=True) if dims else g


def _unbroadcast_pair(g: Pair, shape: torch.Size) -> Pair:
    return _unbroadcast(g[0], shape), _unbroadcast(g[1], shape)


def imul(alo: torch.Tensor, ahi: torch.Tensor, blo: torch.Tensor, bhi: torch.Tensor) -> Pair:
    """Enclosure of the elementwise product of two intervals."""
    p = torch.stack(torch.broadcast_tensors(alo * blo, alo * bhi, ahi * blo, ahi * bhi))
    return p.amin(0), p.amax(0)


def imul_const(lo: torch.Tensor, hi: torch.Tensor, c: torch.Tensor | float) -> Pair:
    c = torch.as_tensor(c, dtype=lo.dtype, device=lo.device)
    mid, rad = (lo + hi) / 2 * c, (hi - lo) / 2 * c.abs()
    return mid - rad, mid + rad


def _grad_times(g: Pair, lo: torch.Tensor, hi: torch.Tensor) -> Pair:
    """Enclosure of g * d for d in [lo, hi] (broadcast over the leading row axis)."""
    if torch.equal(lo, hi):
        return imul_const(g[0], g[1], lo)
    return imul(g[0], g[1], lo, hi)


# ----- centred-form helpers ----------------------------------------------------------------
def _cen_of(x: Any, like: Interval) -> Cen | None:
    """Centred part of an argument: an Interval's own (None if it has none), or (constant, None, None)."""
    if isinstance(x, Interval):
        return x.cen
    return torch.as_tensor(x, dtype=like.dtype, device=like.device), None, None


def _all_cen(*args: Any, like: Interval) -> list[Cen] | None:
    cens = [_cen_of(a, like) for a in args]
    return None if any(c is None for c in cens) else cens


def _jfull(cen: Cen, shape: Sequence[int], k: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Jacobian of a centred part broadcast to ``shape`` (zeros for constants)."""
    if cen[1] is None:
        z = like.new_zeros(tuple(shape) + (k,))
        return z, z
    return torch.broadcast_to(cen[1], tuple(shape) + (k,)), torch.broadcast_to(cen[2], tuple(shape) + (k,))


def _num_symbols(tape: Tape) -> int:
    return 0 if tape.radius is None else tape.radius.numel()


def _jscale(jm: torch.Tensor | None, jr: torch.Tensor | None, c: torch.Tensor
            ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """J * c for a constant c broadcast over the value axes."""
    if jm is None:
        return None, None
    c = c[..., None]
    return jm * c, jr * c.abs()


def _jmul_interval(dlo: torch.Tensor, dhi: torch.Tensor, jm: torch.Tensor | None, jr: torch.Tensor | None
                   ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """J * d for d in [dlo, dhi] (value-shaped), in midpoint-radius arithmetic."""
    if jm is None:
        return None, None
    dm, dr = ((dlo + dhi) / 2)[..., None], ((dhi - dlo) / 2)[..., None]
    return dm * jm, dm.abs() * jr + dr * (jm.abs() + jr)


def _jadd(a: tuple, b: tuple, sign: float = 1.0) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    (am, ar), (bm, br) = a, b
    if am is None:
        return (None, None) if bm is None else (sign * bm, br)
    if bm is None:
        return am, ar
    return am + sign * bm, ar + br


# ----- arithmetic ------------------------------------------------------------------------
def _add(a: Any, b: Any) -> Interval:
    tape = _tape_of(a, b)
    like = a if isinstance(a, Interval) else b
    alo, ahi, na = _bounds(a, like)
    blo, bhi, nb = _bounds(b, like)
    sa, sb = alo.shape, blo.shape
    lo, hi = alo + blo, ahi + bhi
    return Interval(lo, hi, tape, (na, nb), lambda g: (_unbroadcast_pair(g, sa), _unbroadcast_pair(g, sb)), "add",
                    cen=_cen_linear2(a, b, like, lo.shape, 1.0))


def _sub(a: Any, b: Any) -> Interval:
    tape = _tape_of(a, b)
    like = a if isinstance(a, Interval) else b
    alo, ahi, na = _bounds(a, like)
    blo, bhi, nb = _bounds(b, like)
    sa, sb = alo.shape, blo.shape
    lo, hi = alo - bhi, ahi - blo
    return Interval(lo, hi, tape, (na, nb),
                    lambda g: (_unbroadcast_pair(g, sa), _unbroadcast_pair((-g[1], -g[0]), sb)), "sub",
                    cen=_cen_linear2(a, b, like, lo.shape, -1.0))


def _cen_linear2(a: Any, b: Any, like: Interval, shape: torch.Size, sign: float) -> Cen | None:
    cens = _all_cen(a, b, like=like)
    if cens is None:
        return None
    (ca, jma, jra), (cb, jmb, jrb) = cens
    k = _num_symbols(like.tape)
    ja = _jfull((ca, jma, jra), shape, k, ca) if jma is not None else (None, None)
    jb = _jfull((cb, jmb, jrb), shape, k, cb) if jmb is not None else (None, None)
    jm, jr = _jadd(ja, jb, sign)
    return ca + sign * cb, jm, jr


def _mul(a: Any, b: Any) -> Interval:
    tape = _tape_of(a, b)
    like = a if isinstance(a, Interval) else b
    alo, ahi, na = _bounds(a, like)
    blo, bhi, nb = _bounds(b, like)
    sa, sb = alo.shape, blo.shape
    if nb is None or na is None:
        (x, c) = (a, blo) if nb is None else (b, alo)
        lo, hi = imul_const(x.lo, x.hi, c)
        sx = x.shape
        cen = None
        if x.cen is not None:
            c0, jm, jr = x.cen
            cb = torch.broadcast_to(c, lo.shape)
            jm, jr = _jfull((c0, jm, jr), lo.shape, _num_symbols(tape), c0) if jm is not None else (None, None)
            cen = (c0 * c, *_jscale(jm, jr, cb))
        return Interval(lo, hi, tape, (x,), lambda g: (_unbroadcast_pair(imul_const(g[0], g[1], c), sx),), "mul_const",
                        info=c, cen=cen)
    lo, hi = imul(alo, ahi, blo, bhi)
    cen = None
    cens = _all_cen(a, b, like=like)
    if cens is not None:  # d(ab) = b da + a db, with a, b over the box
        k = _num_symbols(tape)
        ja = _jmul_interval(*torch.broadcast_tensors(blo, bhi, lo)[:2], *_jfull(cens[0], lo.shape, k, lo))
        jb = _jmul_interval(*torch.broadcast_tensors(alo, ahi, lo)[:2], *_jfull(cens[1], lo.shape, k, lo))
        cen = (cens[0][0] * cens[1][0], *_jadd(ja, jb))
    return Interval(lo, hi, tape, (na, nb),
                    lambda g: (_unbroadcast_pair(imul(g[0], g[1], blo, bhi), sa),
                               _unbroadcast_pair(imul(g[0], g[1], alo, ahi), sb)), "mul", cen=cen)


def _reciprocal(x: Interval) -> Interval:
    if not bool(((x.lo > 0) | (x.hi < 0)).all()):
        raise BoundError("division by an interval that contains 0 (the bound is infinite)")
    lo, hi = 1.0 / x.hi, 1.0 / x.lo
    d2 = torch.stack([x.lo**2, x.hi**2])
    dlo, dhi = -1.0 / d2.amin(0), -1.0 / d2.amax(0)  # d/dx (1/x) = -1/x^2
    cen = None if x.cen is None else (1.0 / x.cen[0], *_jmul_interval(dlo, dhi, x.cen[1], x.cen[2]))
    return Interval(lo, hi, x.tape, (x,), lambda g: (_grad_times(g, dlo, dhi),), "reciprocal", cen=cen)


def _div(a: Any, b: Any) -> Interval:
    if isinstance(b, Interval):
        return _mul(a, _reciprocal(b))
    like = a if isinstance(a, Interval) else None
    return _mul(a, 1.0 / torch.as_tensor(b, dtype=like.dtype if like else None, device=like.device if like else None))


_handles(torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__)(
    lambda a, b, alpha=1: _add(a, b) if alpha == 1 else _add(a, _mul(b, alpha)))
_handles(torch.sub, torch.Tensor.sub, torch.Tensor.__sub__)(
    lambda a, b, alpha=1: _sub(a, b) if alpha == 1 else _sub(a, _mul(b, alpha)))
_handles(torch.Tensor.__rsub__)(lambda a, b: _sub(b, a))
_handles(torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__)(_mul)
_handles(torch.div, torch.Tensor.div, torch.Tensor.__truediv__)(lambda a, b: _div(a, b))
_handles(torch.Tensor.__rtruediv__)(lambda a, b: _mul(_reciprocal(a), b))
_handles(torch.neg, torch.Tensor.neg, torch.Tensor.__neg__)(lambda a: _mul(a, -1.0))
_handles(torch.reciprocal, torch.Tensor.reciprocal)(_reciprocal)


# ----- linear and CROWN ------------------------------------------------------------------
def _crown_chain(x: Interval) -> tuple[list[tuple[Interval, torch.Tensor, torch.Tensor | None]], Interval] | None:
    """Walk back ``relu <- linear <- relu <- linear ...`` from ``x``: [(pre-activation, W, b)], start box."""
    chain = []
    cur = x
    while cur.op == "relu" and cur.parents[0] is not None and cur.parents[0].op == "linear":
        z = cur.parents[0]
        w, b = z.info
        chain.append((z, w, b))
        cur = z.parents[0]
    return (chain, cur) if chain else None


def _crown_linear(x: Interval, weight: torch.Tensor, bias: torch.Tensor | None, rows_per_chunk: int = 512
                  ) -> Pair | None:
    """CROWN bounds of ``linear(x)`` when ``x`` ends a linear-relu chain, else None."""
    found = _crown_chain(x)
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


CROWN = {"enabled": True}


@_handles(F.linear)
def _linear(x: Any, weight: Any, bias: Any = None) -> Interval:
    if isinstance(weight, Interval) or isinstance(bias, Interval):
        raise BoundError("bounds over perturbed weights are not supported")
    if not isinstance(x, Interval):
        return F.linear(x, weight, bias)
    w_abs = weight.abs()
    mid = F.linear(x.mid, weight, bias)
    rad = F.linear(x.rad, w_abs)
    lo, hi = mid - rad, mid + rad
    if CROWN["enabled"]:
        tight = _crown_linear(x, weight, bias)
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


# ----- elementwise nonlinearities ----------------------------------------------------------
def _elementwise(x: Interval, lo: torch.Tensor, hi: torch.Tensor, dlo: torch.Tensor, dhi: torch.Tensor, op: str,
                 fn: Callable[[torch.Tensor], torch.Tensor]) -> Interval:
    cen = None if x.cen is None else (fn(x.cen[0]), *_jmul_interval(dlo, dhi, x.cen[1], x.cen[2]))
    return Interval(lo, hi, x.tape, (x,), lambda g: (_grad_times(g, dlo, dhi),), op, cen=cen)


def _relu(x: Interval, inplace: bool = False) -> Interval:
    d_lo = (x.lo > 0).to(x.dtype)
    d_hi = (x.hi >= 0).to(x.dtype)  # Clarke derivative at 0 is [0, 1]
    return _elementwise(x, x.lo.clamp(min=0), x.hi.clamp(min=0), d_lo, d_hi, "relu", torch.relu)


_handles(torch.relu, F.relu, torch.Tensor.relu)(_relu)


@_handles(F.leaky_relu)
def _leaky_relu(x: Interval, negative_slope: float = 0.01, inplace: bool = False) -> Interval:
    s = float(negative_slope)
    if s < 0:
        raise BoundError("leaky_relu with a negative slope is not monotone; not supported")
    f = lambda t: F.leaky_relu(t, s)  # noqa: E731
    lo_s, hi_s = min(s, 1.0), max(s, 1.0)
    dlo = torch.where(x.lo > 0, 1.0, torch.where(x.hi < 0, s, lo_s)).to(x.dtype)
    dhi = torch.where(x.lo > 0, 1.0, torch.where(x.hi < 0, s, hi_s)).to(x.dtype)
    return _elementwise(x, f(x.lo), f(x.hi), dlo, dhi, "leaky_relu", f)


def _even_bump(x: Interval, f: Callable, df: Callable, op: str) -> Interval:
    """Monotone f whose derivative is even and largest at 0 (tanh, sigmoid)."""
    d_lo, d_hi = df(x.lo), df(x.hi)
    contains0 = (x.lo <= 0) & (x.hi >= 0)
    dmax = torch.where(contains0, df(torch.zeros_like(x.lo)), torch.maximum(d_lo, d_hi))
    return _elementwise(x, f(x.lo), f(x.hi), torch.minimum(d_lo, d_hi), dmax, op, f)


def _tanh(x: Interval) -> Interval:
    return _even_bump(x, torch.tanh, lambda t: 1 - torch.tanh(t) ** 2, "tanh")


def _sigmoid(x: Interval) -> Interval:
    return _even_bump(x, torch.sigmoid, lambda t: torch.sigmoid(t) * (1 - torch.sigmoid(t)), "sigmoid")


_handles(torch.tanh, F.tanh, torch.Tensor.tanh)(_tanh)
_handles(torch.sigmoid, F.sigmoid, torch.Tensor.sigmoid)(_sigmoid)


@_handles(F.elu)
def _elu(x: Interval, alpha: float = 1.0, inplace: bool = False) -> Interval:
    if not 0 <= alpha <= 1:
        raise BoundError("elu bounds need 0 <= alpha <= 1 (a monotone derivative)")
    df = lambda t: torch.where(t > 0, torch.ones_like(t), alpha * torch.exp(t.clamp(max=0)))  # noqa: E731
    dlo = df(x.lo)
    dhi = torch.where((x.lo <= 0) & (x.hi >= 0), torch.ones_like(x.hi), df(x.hi))  # derivative jumps at 0
    return _elementwise(x, F.elu(x.lo, alpha), F.elu(x.hi, alpha), dlo, dhi, "elu", lambda t: F.elu(t, alpha))


def _bisect(fn: Callable[[float], float], a: float, b: float, iters: int = 200) -> float:
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
    return _elementwise(x, lo, hi, d.amin(0), d.amax(0), op, f)


@_handles(F.gelu)
def _gelu(x: Interval, approximate: str = "none") -> Interval:
    if approximate != "none":
        raise BoundError("gelu bounds are implemented for approximate='none'")

    def df(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1 + torch.erf(t / math.sqrt(2))) + t * torch.exp(-t * t / 2) / math.sqrt(2 * math.pi)

    return _smooth(x, F.gelu, df, _GELU_MIN, _GELU_DCRIT, "gelu")


@_handles(F.silu)
def _silu(x: Interval, inplace: bool = False) -> Interval:
    def df(t: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(t)
        return s * (1 + t * (1 - s))

    return _smooth(x, F.silu, df, _SILU_MIN, _SILU_DCRIT, "silu")


# ----- layer norm --------------------------------------------------------------------------
@_handles(F.layer_norm)
def _layer_norm(x: Interval, normalized_shape: Sequence[int], weight: torch.Tensor | None = None,
                bias: torch.Tensor | None = None, eps: float = 1e-5) -> Interval:
    """y = gamma * (x - mu) / sqrt(var + eps) + beta over the last dimension.

    Forward: c = x - mean(x) exactly in centre/radius form; var within the means of the
    smallest / largest squares of c; xhat = c / sigma by interval division, clipped to
    |xhat| <= sqrt(n - 1). Backward (per row g): with a = g * gamma and s = 1/sigma,
    g_in = s * (a - mean(a) - xhat * (a . xhat) / n).
    """
    if len(normalized_shape) != 1:
        raise BoundError("layer_norm bounds are implemented over the last dimension only")
    n = x.shape[-1]
    c_mid = x.mid - x.mid.mean(-1, keepdim=True)
    c_rad = x.rad * (1 - 2.0 / n) + x.rad.sum(-1, keepdim=True) / n
    c_lo, c_hi = c_mid - c_rad, c_mid + c_rad
    sq_max = torch.maximum(c_lo**2, c_hi**2)
    sq_min = torch.where((c_lo <= 0) & (c_hi >= 0), torch.zeros_like(c_lo), torch.minimum(c_lo**2, c_hi**2))
    sig_lo = torch.sqrt(sq_min.mean(-1, keepdim=True) + eps)
    sig_hi = torch.sqrt(sq_max.mean(-1, keepdim=True) + eps)
    cand = torch.stack([c_lo / sig_lo, c_lo / sig_hi, c_hi / sig_lo, c_hi / sig_hi])
    cap = math.sqrt(max(n - 1, 1))
    xh_lo, xh_hi = cand.amin(0).clamp(min=-cap, max=cap), cand.amax(0).clamp(min=-cap, max=cap)
    gamma = weight if weight is not None else torch.ones(n, dtype=x.dtype, device=x.device)
    lo, hi = imul_const(xh_lo, xh_hi, gamma)
    if bias is not None:
        lo, hi = lo + bias, hi + bias
    s_lo, s_hi = 1.0 / sig_hi, 1.0 / sig_lo

    def back(g: Pair) -> Sequence[Pair]:
        a_lo, a_hi = imul_const(g[0], g[1], gamma)
        a_mid, a_rad = (a_lo + a_hi) / 2, (a_hi - a_lo) / 2
        t_mid = a_mid - a_mid.mean(-1, keepdim=True)
        t_rad = a_rad * (1 - 2.0 / n) + a_rad.sum(-1, keepdim=True) / n
        p_lo, p_hi = imul(a_lo, a_hi, xh_lo, xh_hi)
        dot_lo, dot_hi = p_lo.sum(-1, keepdim=True), p_hi.sum(-1, keepdim=True)
        q_lo, q_hi = imul(xh_lo, xh_hi, dot_lo / n, dot_hi / n)
        u_lo, u_hi = t_mid - t_rad - q_hi, t_mid + t_rad - q_lo
        return (imul(u_lo, u_hi, s_lo, s_hi),)

    cen = None
    if x.cen is not None:
        c0, jm, jr = x.cen
        c_out = F.layer_norm(c0, normalized_shape, weight, bias, eps)
        if jm is not None:  # J' = gamma * s * (J - mean(J) - xhat (xhat . J) / n), per symbol column
            xm, xr = ((xh_lo + xh_hi) / 2)[..., None], ((xh_hi - xh_lo) / 2)[..., None]
            tm = jm - jm.mean(-2, keepdim=True)
            tr = jr * (1 - 2.0 / n) + jr.sum(-2, keepdim=True) / n
            pm, pr = xm * jm, xm.abs() * jr + xr * (jm.abs() + jr)
            dm, dr = pm.sum(-2, keepdim=True) / n, pr.sum(-2, keepdim=True) / n
            qm, qr = xm * dm, xm.abs() * dr + xr * (dm.abs() + dr)
            um, ur = tm - qm, tr + qr
            sm, sr = ((s_lo + s_hi) / 2)[..., None], ((s_hi - s_lo) / 2)[..., None]
            g = gamma[:, None]
            jm, jr = g * sm * um, g.abs() * (sm * ur + sr * (um.abs() + ur))
        cen = (c_out, jm, jr)
    return Interval(lo, hi, x.tape, (x,), back, "layer_norm", cen=cen)


# ----- structure: cat, stack, indexing, scatter, reductions, reshapes -----------------------
@_handles(torch.cat, torch.concat, torch.concatenate)
def _cat(tensors: Sequence[Any], dim: int = 0) -> Interval:
    tape = _tape_of(tensors)
    like = next(t for t in tensors if isinstance(t, Interval))
    parts = [_bounds(t, like) for t in tensors]
    ndim = parts[0][0].dim()
    d = dim % ndim
    sizes = [p[0].shape[d] for p in parts]

    def back(g: Pair) -> Sequence[Pair]:
        lo_parts = torch.split(g[0], sizes, dim=d + 1)
        hi_parts = torch.split(g[1], sizes, dim=d + 1)
        return [(a, b) for a, b in zip(lo_parts, hi_parts)]

    cen = None
    cens = _all_cen(*tensors, like=like)
    if cens is not None:
        k = _num_symbols(tape)
        js = [_jfull(c, p[0].shape, k, p[0]) for c, p in zip(cens, parts)]
        cen = (torch.cat([c[0] for c in cens], d), torch.cat([j[0] for j in js], d), torch.cat([j[1] for j in js], d))
    return Interval(torch.cat([p[0] for p in parts], d), torch.cat([p[1] for p in parts], d), tape,
                    [p[2] for p in parts], back, "cat", cen=cen)


@_handles(torch.stack)
def _stack(tensors: Sequence[Any], dim: int = 0) -> Interval:
    ndim = tensors[0].dim() + 1
    return _cat([_unsqueeze(t, dim % ndim) if isinstance(t, Interval) else t.unsqueeze(dim % ndim)
                 for t in tensors], dim % ndim)


def _basic(idx: Any) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in items)


def _getitem(x: Interval, idx: Any) -> Interval:
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
        return _index_select(x, 0, index)
    raise BoundError(f"indexing an interval with {type(idx).__name__} is not supported (use basic slices or a 1-D "
                     f"index tensor on the first dimension)")


_handles(torch.Tensor.__getitem__)(_getitem)


@_handles(torch.index_select, torch.Tensor.index_select)
def _index_select(x: Interval, dim: int, index: torch.Tensor) -> Interval:
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


def _index_add(base: Any, dim: int, index: torch.Tensor, source: Any, alpha: float = 1) -> Interval:
    tape = _tape_of(base, source)
    like = base if isinstance(base, Interval) else source
    blo, bhi, nb = _bounds(base, like)
    slo, shi, ns = _bounds(source, like)
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
    cens = _all_cen(base, source, like=like)
    if cens is not None:
        (cb, jmb, jrb), (cs, jms, jrs) = cens
        k = _num_symbols(tape)
        bm, br = _jfull((cb, jmb, jrb), lo.shape, k, lo)
        sm, sr = _jfull((cs, jms, jrs), slo.shape, k, slo)
        a = float(alpha)
        cen = (cb.index_add(d, index, cs * a), bm.index_add(d, index, sm * a), br.index_add(d, index, sr * abs(a)))
    return Interval(lo, hi, tape, (nb, ns), back, "scatter", cen=cen)


@_handles(torch.Tensor.index_add_)
def _index_add_inplace(base: Any, dim: int, index: torch.Tensor, source: Any, alpha: float = 1) -> Interval:
    if isinstance(base, Interval):
        return base.index_add_(dim, index, source, alpha)
    return _index_add(base, dim, index, source, alpha)  # a constant buffer becomes an interval: use the result


_handles(torch.index_add, torch.Tensor.index_add)(_index_add)


def _dims(dim: Any, ndim: int) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(ndim))
    return tuple(d % ndim for d in (dim if isinstance(dim, (tuple, list)) else (dim,)))


def _sum(x: Interval, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Interval:
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


def _mean(x: Interval, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Interval:
    count = math.prod(x.shape[d] for d in _dims(dim, x.dim()))
    return _mul(_sum(x, dim, keepdim), 1.0 / count)


_handles(torch.sum, torch.Tensor.sum)(_sum)
_handles(torch.mean, torch.Tensor.mean)(_mean)


def _reshape(x: Interval, *shape: Any) -> Interval:
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


def _unsqueeze(x: Interval, dim: int) -> Interval:
    d = dim % (x.dim() + 1)
    return _reshape(x, tuple(x.shape[:d]) + (1,) + tuple(x.shape[d:]))


_handles(torch.reshape, torch.Tensor.reshape, torch.Tensor.view)(lambda x, *s: _reshape(x, *s))
_handles(torch.unsqueeze, torch.Tensor.unsqueeze)(_unsqueeze)
_handles(torch.zeros_like)(lambda x, **kw: torch.zeros_like(x.lo, **kw))
_handles(torch.Tensor.new_zeros)(lambda x, *s, **kw: x.lo.new_zeros(*s, **kw))


# ----- the Jacobian pass -----------------------------------------------------------------
def jacobian_rows(output: Interval, rows: torch.Tensor, inp: Interval) -> Pair:
    """Enclosure (lo, hi) of rows ``rows`` (flat output indices) of d output / d input over the
    box: shapes (R, *inp.shape)."""
    if output.tape is not inp.tape:
        raise BoundError("the output does not depend on this input box")
    r = rows.numel()
    g0 = torch.zeros((r, output.numel()), dtype=output.dtype, device=output.device)
    g0[torch.arange(r, device=rows.device), rows] = 1.0
    g0 = g0.reshape((r,) + tuple(output.shape))
    grads: dict[int, Pair] = {id(output): (g0, g0)}
    result = None
    for node in reversed(output.tape.nodes[: output.index + 1]):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node is inp:
            result = g
            break
        if node.backward is None:
            continue
        for parent, gp in zip(node.parents, node.backward(g)):
            if parent is None or gp is None:
                continue
            old = grads.get(id(parent))
            grads[id(parent)] = gp if old is None else (old[0] + gp[0], old[1] + gp[1])
    if result is None:
        z = torch.zeros((r,) + tuple(inp.shape), dtype=inp.dtype, device=inp.device)
        return z, z
    return result


def unstable_fraction(output: Interval) -> float:
    """Share of ReLU units on the tape whose sign is not fixed over the box."""
    total = unstable = 0
    for node in output.tape.nodes:
        if node.op == "relu":
            z = node.parents[0]
            total += z.lo.numel()
            unstable += int(((z.lo < 0) & (z.hi > 0)).sum())
    return unstable / total if total else 0.0
