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


def generate(params: dict[str, Any], seed: int) -> Mesh:
    """One sample: a shape from ``family``, bottom clamped, uniform upward traction ``load``
    on top. Point data ``u`` (N, 2) and ``von_mises`` (N,); field data: inputs ``E``,
    ``nu``, ``load`` and outputs ``max_abs_uy_top``, ``max_von_mises``, plus ``family``."""
    p = {**DEFAULTS, **params}
    rng = np.random.default_rng(seed)
    mesh = sample_shape(rng, p["family"], float(p["mesh_size"]))
    E, nu, load = _draw(rng, p["E"]), _draw(rng, p["nu"]), _draw(rng, p["load"])
    res = solve_plane_stress(mesh.points, mesh.cells["triangle"], E, nu,
                             clamped=lambda x: x[1] < 1e-9, loaded=lambda x: x[1] > HEIGHT - 1e-9,
                             traction=(0.0, load))
    top = mesh.points[:, 1] > HEIGHT - 1e-9
    mesh.point_data.update(u=res.displacement, von_mises=res.von_mises)
    mesh.field_data.update(E=np.array([E]), nu=np.array([nu]), load=np.array([load]),
                           max_abs_uy_top=np.array([np.abs(res.displacement[top, 1]).max()]),
                           max_von_mises=np.array([res.von_mises.max()]), family=p["family"])
    return mesh


__all__ = ["FAMILIES", "ElasticResult", "generate", "sample_shape", "solve_plane_stress"]
