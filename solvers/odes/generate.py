"""Generate ODE trajectories: drawn parameters (+/-10 % of nominal, 3 significant digits),
initial conditions, ``solve_ivp`` (RK45, rtol 1e-5, atol 1e-6) on a fixed time grid."""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp

from sim.errors import SimError
from sim.mesh import Mesh, Trajectory
from sim.symbolic import rhs_function, to_prefix
from solvers import Rejected
from solvers.odes.catalogue import SYSTEMS

DEFAULTS: dict[str, Any] = {"systems": "all", "t_end": 6.0, "num_points": 192, "param_spread": 0.1,
                            "noise": 0.0, "blowup": 1e3, "rtol": 1e-5, "atol": 1e-6}


def round_sig(x: float, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits."""
    return 0.0 if x == 0 else float(f"{x:.{digits - 1}e}")


def generate(params: dict[str, Any], seed: int) -> Trajectory:
    p = {**DEFAULTS, **params}
    names = list(SYSTEMS) if p["systems"] == "all" else list(p["systems"])
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        raise SimError(f"unknown ODE system(s) {unknown} (known: {', '.join(SYSTEMS)})")
    rng = np.random.default_rng(seed)
    system = SYSTEMS[names[int(rng.integers(len(names)))]]
    spread = float(p["param_spread"])
    values = {k: round_sig(v * (1 + rng.uniform(-spread, spread))) for k, v in system.params.items()}
    exprs = system.substituted(values)
    f = rhs_function(exprs, system.dim)
    u0 = rng.uniform(system.ic_low, system.ic_high, system.dim)
    for i, v in system.ic_fixed.items():
        u0[i] = v
    t = np.linspace(0.0, float(p["t_end"]), int(p["num_points"]))
    blowup = float(p["blowup"])

    def escape(_t: float, u: np.ndarray) -> float:
        return blowup - np.abs(u).max()

    escape.terminal = True
    sol = solve_ivp(lambda _t, u: f(u), (t[0], t[-1]), u0, t_eval=t, rtol=p["rtol"], atol=p["atol"],
                    events=escape)
    if sol.status != 0 or sol.y.shape[1] != len(t) or not np.isfinite(sol.y).all():
        raise Rejected(f"{system.name}: the solution failed or left |u| < {blowup} ({sol.message})")
    states = sol.y.T  # (T, d)
    fields = {"state": states[:, None, :].astype(np.float64)}
    if p["noise"]:
        scale = float(p["noise"]) * np.linalg.norm(states) / np.sqrt(states.size)
        fields["state_noisy"] = fields["state"] + scale * rng.standard_normal(fields["state"].shape)
    mesh = Mesh(np.zeros((1, 1)))
    return Trajectory(mesh, t, point_fields=fields, dt=float(t[1] - t[0]), params={
        "system": system.name, "dim": system.dim, "parameters": values, "initial_condition": u0.tolist(),
        "prefix": to_prefix(exprs), "srepr": [sp.srepr(e) for e in exprs], "noise": float(p["noise"]),
        "source": system.source})
