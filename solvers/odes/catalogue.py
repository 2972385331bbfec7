"""Parametric ODE systems with symbolic right-hand sides (the data of PROSE).

Each system is ``du/dt = f(u; p)`` with ``u = (x0, ..., x_{d-1})`` and named parameters ``p``
whose nominal values come from the literature (cited per system). The right-hand side is
a sympy expression in the state symbols and parameter symbols; generation substitutes
drawn parameter values and evaluates it through ``sympy.lambdify``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

X = sp.symbols("x0:6")


@dataclass(frozen=True)
class ODESystem:
    """Args:
        name: identifier used in recipes.
        dim: state dimension.
        params: parameter name -> nominal value.
        rhs: one sympy expression per component, in ``X[:dim]`` and the parameter symbols.
        source: where the nominal values come from.
        ic_low / ic_high: initial conditions are drawn uniformly in [ic_low, ic_high]^dim,
            except where ``ic_fixed`` pins a component (e.g. time as a state starts at 0).
    """

    name: str
    dim: int
    params: dict[str, float]
    rhs: tuple[sp.Expr, ...]
    source: str
    ic_low: float = -2.0
    ic_high: float = 2.0
    ic_fixed: dict[int, float] = field(default_factory=dict)

    @property
    def param_symbols(self) -> dict[str, sp.Symbol]:
        return {k: sp.Symbol(k) for k in self.params}

    def substituted(self, values: dict[str, float]) -> tuple[sp.Expr, ...]:
        """The right-hand side with numbers in place of the parameters (exactly the given values)."""
        subs = {sp.Symbol(k): sp.Float(str(v)) if not float(v).is_integer() else sp.Integer(int(v))
                for k, v in values.items()}
        return tuple(sp.sympify(e).subs(subs) for e in self.rhs)


def _s(*names: str) -> tuple[sp.Symbol, ...]:
    return sp.symbols(names)


def _systems() -> dict[str, ODESystem]:
    x0, x1, x2, x3, x4 = X[:5]
    out: dict[str, ODESystem] = {}

    def add(sys_: ODESystem) -> None:
        out[sys_.name] = sys_

    s, r, b = _s("sigma", "rho", "beta")
    add(ODESystem("lorenz", 3, {"sigma": 10.0, "rho": 28.0, "beta": 2.67},
                  (s * (x1 - x0), x0 * (r - x2) - x1, x0 * x1 - b * x2), "Lorenz 1963 (beta = 8/3)"))
    (b,) = _s("b")
    add(ODESystem("thomas", 3, {"b": 0.208},
                  (sp.sin(x1) - b * x0, sp.sin(x2) - b * x1, sp.sin(x0) - b * x2), "Thomas 1999"))
    a, b, c = _s("a", "b", "c")
    add(ODESystem("rossler", 3, {"a": 0.2, "b": 0.2, "c": 5.7},
                  (-x1 - x2, x0 + a * x1, b + x2 * (x0 - c)), "Rossler 1976"))
    a, b, c, d, e, f = _s("a", "b", "c", "d", "e", "f")
    add(ODESystem("aizawa", 3, {"a": 0.95, "b": 0.7, "c": 0.6, "d": 3.5, "e": 0.25, "f": 0.1},
                  ((x2 - b) * x0 - d * x1, d * x0 + (x2 - b) * x1,
                   c + a * x2 - x2**3 / 3 - (x0**2 + x1**2) * (1 + e * x2) + f * x2 * x0**3),
                  "Aizawa attractor (Langford 1984 form)", -1.0, 1.0))
    a, b, c = _s("a", "b", "c")
    add(ODESystem("chen_lee", 3, {"a": 5.0, "b": -10.0, "c": -0.38},
                  (a * x0 - x1 * x2, b * x1 + x0 * x2, c * x2 + x0 * x1 / 3), "Chen & Lee 2004"))
    a, b, c, d, e = _s("a", "b", "c", "d", "e")
    add(ODESystem("dadras", 3, {"a": 3.0, "b": 2.7, "c": 1.7, "d": 2.0, "e": 9.0},
                  (x1 - a * x0 + b * x1 * x2, c * x1 - x0 * x2 + x2, d * x0 * x1 - e * x2), "Dadras & Momeni 2009"))
    (a,) = _s("a")
    add(ODESystem("halvorsen", 3, {"a": 1.89},
                  (-a * x0 - 4 * x1 - 4 * x2 - x1**2, -a * x1 - 4 * x2 - 4 * x0 - x2**2,
                   -a * x2 - 4 * x0 - 4 * x1 - x0**2), "Halvorsen (Sprott 2003)"))
    al, ga = _s("alpha", "gamma")
    add(ODESystem("fabrikant_rabinovich", 3, {"alpha": 0.98, "gamma": 0.1},
                  (x1 * (x2 - 1 + x0**2) + ga * x0, x0 * (3 * x2 + 1 - x0**2) + ga * x1, -2 * x2 * (al + x0 * x1)),
                  "Rabinovich & Fabrikant 1979", -1.0, 1.0))
    a, b, c = _s("a", "b", "c")
    add(ODESystem("sprott_b", 3, {"a": 0.4, "b": 1.2, "c": 1.0},
                  (a * x1 * x2, x0 - b * x1, c - x0 * x1), "Sprott 1994 (case B, parametrised)"))
    (a,) = _s("a")
    add(ODESystem("sprott_linz_f", 3, {"a": 0.5},
                  (x1 + x2, -x0 + a * x1, x0**2 - x2), "Sprott & Linz 2000 (case F)"))
    a, b, c = _s("a", "b", "c")
    add(ODESystem("four_wing", 3, {"a": 0.2, "b": 0.01, "c": -0.4},
                  (a * x0 + x1 * x2, b * x0 + c * x1 - x0 * x2, -x2 - x0 * x1), "Wang & Chen four-wing attractor"))
    de, al, be, ga, om = _s("delta", "alpha", "beta", "gamma", "omega")
    add(ODESystem("duffing", 3, {"delta": 0.3, "alpha": -1.0, "beta": 1.0, "gamma": 0.5, "omega": 1.2},
                  (x1, -de * x1 - al * x0 - be * x0**3 + ga * sp.cos(om * x2), sp.Integer(1)),
                  "Forced Duffing oscillator (Guckenheimer & Holmes); x2 is time", ic_fixed={2: 0.0}))
    (F,) = _s("F")
    for d in (4, 5):
        comps = tuple((X[(i + 1) % d] - X[(i - 2) % d]) * X[(i - 1) % d] - X[i] + F for i in range(d))
        add(ODESystem(f"lorenz96_{d}d", d, {"F": 8.0}, comps, "Lorenz 1996"))
    g, l1, l2, m1, m2 = _s("g", "l1", "l2", "m1", "m2")
    th1, th2, w1, w2 = x0, x1, x2, x3
    den = 2 * m1 + m2 - m2 * sp.cos(2 * th1 - 2 * th2)
    add(ODESystem("double_pendulum", 4, {"g": 9.81, "l1": 1.0, "l2": 1.0, "m1": 1.0, "m2": 1.0},
                  (w1, w2,
                   (-g * (2 * m1 + m2) * sp.sin(th1) - m2 * g * sp.sin(th1 - 2 * th2)
                    - 2 * sp.sin(th1 - th2) * m2 * (w2**2 * l2 + w1**2 * l1 * sp.cos(th1 - th2))) / (l1 * den),
                   2 * sp.sin(th1 - th2) * (w1**2 * l1 * (m1 + m2) + g * (m1 + m2) * sp.cos(th1)
                                            + w2**2 * l2 * m2 * sp.cos(th1 - th2)) / (l2 * den)),
                  "Double pendulum, point masses on massless rods (Lagrangian mechanics)"))
    return out


SYSTEMS: dict[str, ODESystem] = _systems()
