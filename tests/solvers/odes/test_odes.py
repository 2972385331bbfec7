"""ODE families: stored equations reproduce the stored derivatives; prefix round trips; draws."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from solvers import Rejected
from solvers.odes import SYSTEMS, from_prefix, generate, rhs_function, to_prefix


def fourth_order_derivative(u: np.ndarray, dt: float) -> np.ndarray:
    """Centred 4th-order finite differences on the interior points: (T - 4, d)."""
    return (-u[4:] + 8 * u[3:-1] - 8 * u[1:-3] + u[:-4]) / (12 * dt)


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_stored_equations_reproduce_the_stored_derivatives(name):
    """On a fine grid (t in [0, 1], 801 points) the 4th-order difference error (dt^4 f^(5) / 30
    ~ 1e-9 f^(5)) and the amplified solver error (rtol 1e-8 here / dt) are far below 1e-4 of |f|,
    so both stored forms of the equations must match the data to that tolerance."""
    for seed in range(20):
        try:
            traj = generate({"systems": [name], "t_end": 1.0, "num_points": 801, "rtol": 1e-10, "atol": 1e-10},
                            seed)
            break
        except Rejected:
            continue
    u = traj.point_fields["state"][:, 0, :]
    fd = fourth_order_derivative(u, traj.dt)
    dim = traj.params["dim"]
    from_srepr = tuple(sp.sympify(eval(s, {**vars(sp)})) for s in traj.params["srepr"])  # noqa: S307 (sympy srepr)
    for exprs in (from_prefix(traj.params["prefix"]), from_srepr):
        f = rhs_function(exprs, dim)(u[2:-2].T).T
        rel = np.linalg.norm(f - fd) / np.linalg.norm(f)
        assert rel < 1e-4, (name, rel)


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_prefix_round_trip_is_exact(name):
    system = SYSTEMS[name]
    exprs = system.substituted(system.params)
    back = from_prefix(to_prefix(exprs))
    for a, b in zip(exprs, back):
        assert sp.simplify(a - b) == 0


def test_parameters_are_drawn_within_ten_percent_and_rounded():
    for seed in range(30):
        try:
            traj = generate({"systems": ["aizawa", "lorenz", "double_pendulum"]}, seed)
        except Rejected:
            continue
        nominal = SYSTEMS[traj.params["system"]].params
        for k, v in traj.params["parameters"].items():
            half_unit = 0.5 * 10 ** (np.floor(np.log10(abs(v))) - 2)  # rounding to 3 significant digits
            assert abs(v - nominal[k]) <= 0.1 * abs(nominal[k]) + half_unit + 1e-12
            assert float(f"{v:.2e}") == v  # three significant digits


def test_deterministic_per_seed_and_grid():
    a, b = generate({}, 5), generate({}, 5)
    assert a.equals(b)
    assert a.num_steps == 192 and a.times[-1] == 6.0
    assert a.point_fields["state"].shape == (192, 1, a.params["dim"])


def test_blow_up_is_rejected():
    with pytest.raises(Rejected, match="left"):
        # Lorenz from |u| <= 2 stays below 60; a blow-up threshold of 5 is crossed at once
        generate({"systems": ["lorenz"], "blowup": 5.0}, 0)


def test_noise_has_the_stated_relative_size():
    traj = generate({"systems": ["lorenz"], "noise": 0.02}, 3)
    clean, noisy = traj.point_fields["state"], traj.point_fields["state_noisy"]
    rms_noise = np.sqrt(((noisy - clean) ** 2).mean())
    rms_clean = np.sqrt((clean**2).mean())
    assert rms_noise / rms_clean == pytest.approx(0.02, rel=0.15)


def test_unknown_system_is_a_clear_error():
    from sim.errors import SimError

    with pytest.raises(SimError, match="unknown ODE system"):
        generate({"systems": ["lorenz63"]}, 0)
