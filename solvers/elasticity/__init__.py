"""2D linear elasticity on families of shapes (MMGP data)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.mesh import Mesh
from solvers.elasticity.shapes import FAMILIES, HEIGHT, sample_shape
from solvers.elasticity.solver import ElasticResult, solve_plane_stress

DEFAULTS: dict[str, Any] = {"family": "notched", "mesh_size": 0.035, "E": [70.0, 130.0], "nu": [0.25, 0.35],
                            "load": [0.5, 1.5]}


def _draw(rng: np.random.Generator, v: Any) -> float:
    return float(rng.uniform(*v)) if isinstance(v, (list, tuple)) else float(v)


def draw(params: dict[str, Any], seed: int) -> Mesh:
    """The sample ``generate(params, seed)`` solves, without solving it: the meshed shape and its
    input scalars ``E``, ``nu``, ``load`` and ``family`` in the field data (no point data).
    Meshing costs a fraction of the solve, so an active-learning loop draws a pool of these and
    solves only the ones it picks (:func:`solve`)."""
    p = {**DEFAULTS, **params}
    rng = np.random.default_rng(seed)
    mesh = sample_shape(rng, p["family"], float(p["mesh_size"]))
    E, nu, load = _draw(rng, p["E"]), _draw(rng, p["nu"]), _draw(rng, p["load"])
    mesh.field_data.update(E=np.array([E]), nu=np.array([nu]), load=np.array([load]), family=p["family"])
    return mesh


def solve(sample: Mesh, params: dict[str, Any] | None = None) -> Mesh:
    """Solve a drawn sample (:func:`draw`): bottom clamped, uniform upward traction ``load`` on
    top. Returns a copy with point data ``u`` (N, 2) and ``von_mises`` (N,) and the outputs
    ``max_abs_uy_top``, ``max_von_mises`` added to its field data."""
    E, nu, load = (float(np.asarray(sample.field_data[k]).reshape(-1)[0]) for k in ("E", "nu", "load"))
    res = solve_plane_stress(sample.points, sample.cells["triangle"], E, nu,
                             clamped=lambda x: x[1] < 1e-9, loaded=lambda x: x[1] > HEIGHT - 1e-9,
                             traction=(0.0, load))
    top = sample.points[:, 1] > HEIGHT - 1e-9
    mesh = Mesh(sample.points, dict(sample.cells), point_data=dict(sample.point_data),
                field_data=dict(sample.field_data), node_type=sample.node_type)
    mesh.point_data.update(u=res.displacement, von_mises=res.von_mises)
    mesh.field_data.update(max_abs_uy_top=np.array([np.abs(res.displacement[top, 1]).max()]),
                           max_von_mises=np.array([res.von_mises.max()]))
    return mesh


def generate(params: dict[str, Any], seed: int) -> Mesh:
    """One sample: a shape from ``family``, bottom clamped, uniform upward traction ``load``
    on top. Point data ``u`` (N, 2) and ``von_mises`` (N,); field data: inputs ``E``,
    ``nu``, ``load`` and outputs ``max_abs_uy_top``, ``max_von_mises``, plus ``family``.

    The same as ``solve(draw(params, seed))``; the two stages are also reachable as
    ``generate.draw`` and ``generate.solve`` (what :mod:`sim.active` looks for)."""
    return solve(draw(params, seed), params)


generate.draw, generate.solve = draw, solve  # type: ignore[attr-defined]  # the two stages (sim.active)

__all__ = ["FAMILIES", "ElasticResult", "draw", "generate", "solve", "sample_shape", "solve_plane_stress"]
