"""Numeric evaluation of a system's right-hand side ``f(u)`` with ``u = (x0, ..., x_{d-1})``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import sympy as sp


def state_symbols(dim: int) -> tuple[sp.Symbol, ...]:
    """The state symbols ``x0 .. x_{dim-1}`` used by every stored equation."""
    return tuple(sp.symbols(f"x0:{dim}")) if dim > 1 else (sp.Symbol("x0"),)


def rhs_function(exprs: Sequence[sp.Expr], dim: int) -> Callable[[np.ndarray], np.ndarray]:
    """Vectorised numeric right-hand side f(u) for u of shape (d,) or (d, n).

    Components that do not depend on the state (constants) are broadcast to the shape of u.
    The result is float64 (complex only if an expression contains complex constants).
    """
    fn = sp.lambdify([state_symbols(dim)], list(exprs), modules="numpy")

    def f(u: np.ndarray) -> np.ndarray:
        vals = [np.asarray(v) for v in fn(u)]
        dtype = np.result_type(np.float64, *vals)  # float64, or complex when an expression leaves the reals
        return np.array([np.broadcast_to(v, np.shape(u)[1:]) for v in vals], dtype=dtype)

    return f
