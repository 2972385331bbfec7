r"""The :class:`Interval` type: an elementwise enclosure ``lo <= x <= hi`` of a tensor over an
input box, which a model's own ``forward`` can run on.

:meth:`Interval.box` makes the input box and chooses how it is propagated (``mode``); every
interval computed from it shares its :class:`Tape`, which carries that mode, so boxes of
different modes can be used side by side. ``Interval`` implements ``__torch_function__``:
each torch function it meets is looked up in a table of rules (filled by the other modules
of :mod:`sim.verify` through :func:`rule`); a function without a rule raises
:class:`BoundError` naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from sim.errors import SimError

#: How an input box is propagated: ``"ibp"`` interval arithmetic only; ``"crown"`` the same,
#: with linear layers at the end of a ``linear -> relu -> ... -> linear`` chain tightened by
#: CROWN; ``"centred"`` CROWN plus the forward-mode centred form (Jacobian enclosures carried
#: along, every enclosure tightened by the mean value theorem, no tape for a backward pass).
MODES = ("ibp", "crown", "centred")

Pair = tuple[torch.Tensor, torch.Tensor]

# Centred part of an interval: (value at the box centre, Jacobian midpoint, Jacobian radius). The
# Jacobians have a trailing axis of K symbols (the perturbed inputs); a constant's is None (zero).
Cen = tuple[torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"]


class BoundError(SimError, AttributeError):
    """The model uses an operation bound propagation has no rule for, or the box is invalid (an
    AttributeError too, so ``hasattr`` probes on an :class:`Interval` answer False)."""


class Tape:
    """The intervals computed from one input box, in creation (topological) order, and the
    box's propagation mode.

    In ``"centred"`` mode no interval is kept (their Jacobians would all stay in memory).

    Attributes:
        mode: one of :data:`MODES`.
        record: whether intervals are kept (for :func:`~sim.verify.jacobian.jacobian_rows`).
        radius: (K,) box radius of each perturbed input in ``"centred"`` mode, else None.
    """

    def __init__(self, mode: str = "crown", radius: torch.Tensor | None = None) -> None:
        if mode not in MODES:
            raise BoundError(f"the propagation mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.record = mode != "centred"
        self.radius = radius
        self.nodes: list[Interval] = []

    @property
    def crown(self) -> bool:
        """Whether linear layers are tightened by CROWN."""
        return self.mode != "ibp"

    def add(self, node: "Interval") -> None:
        node.index = len(self.nodes)
        if self.record:
            self.nodes.append(node)


class _Light:
    """What CROWN needs of an ancestor (bounds, operation, parents), without its Jacobian."""

    def __init__(self, node: Any):
        self.lo, self.hi, self.op, self.info = node.lo, node.hi, node.op, node.info
        self.parents = node.parents

    @property
    def shape(self) -> torch.Size:
        return self.lo.shape


def _light(node: Any) -> Any:
    return node if node is None or isinstance(node, _Light) else _Light(node)


_RULES: dict[Any, Callable[..., Any]] = {}


def rule(*funcs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``fn`` is the interval rule of each torch function in ``funcs``."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for f in funcs:
            _RULES[f] = fn
        return fn

    return register


def apply_rule(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run the rule of torch function ``func`` on arguments that include an Interval."""
    handler = _RULES.get(func)
    if handler is None:
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
        raise BoundError(f"bound propagation has no rule for {name} (supported: linear, relu-like and smooth "
                         f"activations, layer_norm, arithmetic, cat/stack, indexing, index_add, sum/mean, reshape)")
    return handler(*args, **kwargs)


def _via(func: Any) -> Callable[..., Any]:
    """A method that runs the rule of torch function ``func`` with the interval first."""

    def method(self: "Interval", *args: Any, **kwargs: Any) -> Any:
        return apply_rule(func, self, *args, **kwargs)

    method.__name__ = getattr(func, "__name__", "method")
    return method


class Interval:
    """Elementwise enclosure ``lo <= x <= hi`` of a tensor over the input box, on a tape.

    Attributes:
        lo, hi: bounds (same shape).
        tape: the :class:`Tape` of the input box it was computed from.
        parents: the Intervals it was computed from (``None`` for constant arguments).
        backward: maps an enclosure (glo, ghi) of shape (R, *shape) to one per parent.
        op, info: the operation and what CROWN needs to walk back through it.
        cen: the centred part (``"centred"`` mode), else None.
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
    def box(cls, center: torch.Tensor, radius: torch.Tensor | float, mode: str = "crown") -> "Interval":
        """The input box ``center ± radius`` (radius 0 = not perturbed), on a new tape that
        propagates it in ``mode`` (one of :data:`MODES`)."""
        radius = torch.as_tensor(radius, dtype=center.dtype, device=center.device).expand_as(center)
        if (radius < 0).any():
            raise BoundError("the box radius must be >= 0")
        if mode != "centred":
            return cls(center - radius, center + radius, Tape(mode))
        flat = radius.reshape(-1)
        sym = torch.nonzero(flat > 0).squeeze(-1)
        jac = torch.zeros((flat.numel(), sym.numel()), dtype=center.dtype, device=center.device)
        jac[sym, torch.arange(sym.numel(), device=center.device)] = 1.0
        jac = jac.reshape(tuple(center.shape) + (sym.numel(),))
        tape = Tape(mode, radius=flat[sym])
        return cls(center - radius, center + radius, tape, cen=(center, jac, torch.zeros_like(jac)))

    @property
    def mode(self) -> str:
        """The propagation mode of the box this interval was computed from."""
        return self.tape.mode

    def jacobian(self) -> Pair:
        """Enclosure (lo, hi) of d self / d (perturbed inputs), shape (*shape, K) (``"centred"`` mode)."""
        if self.cen is None or self.cen[1] is None:
            raise BoundError("no centred form: build the input with Interval.box(..., mode='centred')")
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
        return apply_rule(func, *args, **(kwargs or {}))

    # Operators and methods run the rule of the matching torch function.
    __getitem__ = _via(torch.Tensor.__getitem__)
    __add__ = __radd__ = _via(torch.Tensor.__add__)
    __sub__ = _via(torch.Tensor.__sub__)
    __rsub__ = _via(torch.Tensor.__rsub__)
    __neg__ = _via(torch.Tensor.__neg__)
    __mul__ = __rmul__ = _via(torch.Tensor.__mul__)
    __truediv__ = _via(torch.Tensor.__truediv__)
    __rtruediv__ = _via(torch.Tensor.__rtruediv__)
    index_add = _via(torch.Tensor.index_add)
    index_select = _via(torch.Tensor.index_select)
    reshape = view = _via(torch.Tensor.reshape)
    unsqueeze = _via(torch.Tensor.unsqueeze)
    relu = _via(torch.Tensor.relu)
    tanh = _via(torch.Tensor.tanh)
    sigmoid = _via(torch.Tensor.sigmoid)
    reciprocal = _via(torch.Tensor.reciprocal)

    def sum(self, dim: Any = None, keepdim: bool = False, **kw: Any) -> "Interval":
        return apply_rule(torch.Tensor.sum, self, dim, keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False, **kw: Any) -> "Interval":
        return apply_rule(torch.Tensor.mean, self, dim, keepdim)

    def index_add_(self, dim: int, index: torch.Tensor, source: Any, alpha: float = 1) -> "Interval":
        new = self.index_add(dim, index, source, alpha=alpha)
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


def operand(x: Any, like: Interval | None = None) -> tuple[torch.Tensor, torch.Tensor, Interval | None]:
    """(lo, hi, the Interval or None) of an argument; a constant is converted like ``like``."""
    if isinstance(x, Interval):
        return x.lo, x.hi, x
    t = torch.as_tensor(x, dtype=like.dtype if like is not None else None,
                        device=like.device if like is not None else None)
    return t, t, None


def tape_of(*xs: Any) -> Tape:
    """The tape of the first Interval among the arguments (looking into lists and tuples)."""
    for x in xs:
        if isinstance(x, Interval):
            return x.tape
        if isinstance(x, (list, tuple)):
            for y in x:
                if isinstance(y, Interval):
                    return y.tape
    raise BoundError("no interval among the arguments")
