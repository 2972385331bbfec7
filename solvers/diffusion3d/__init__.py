"""Transient heat conduction / advection-diffusion on tetrahedral meshes (3D and large-mesh
data for every graph model): a box with a cylindrical hole, Gaussian heat sources, a hot
hole surface and a cold face, insulated elsewhere.

Mesh size controls the node count (measured: ``mesh_size`` 0.06 -> ~5k nodes,
0.012 -> ~300k nodes, see docs/datasets.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.mesh import Mesh, NodeType, Trajectory
from solvers.diffusion3d.heat import HeatSolver
from solvers.meshing import gmsh_elements

DEFAULTS: dict[str, Any] = {"mesh_size": 0.06, "num_steps": 20, "dt": 0.01, "kappa": [0.02, 0.1],
                            "sources": [1, 3], "source_strength": [5.0, 20.0], "source_width": [0.05, 0.15],
                            "hole_radius": [0.08, 0.2], "hole_temperature": [0.5, 1.5], "advection": [0.0, 0.5],
                            "height": 0.5}


def _draw(rng: np.random.Generator, v: Any) -> float:
    return float(rng.uniform(*v)) if isinstance(v, (list, tuple)) else float(v)


def box_with_hole(cx: float, cy: float, radius: float, height: float, size: float) -> Mesh:
    """Tetrahedral mesh of [0,1] x [0,1] x [0,height] minus a vertical cylinder, by gmsh."""
    import gmsh

    gmsh.initialize(["-noenv"], readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.option.setNumber("General.NumThreads", 1)
        occ = gmsh.model.occ
        box = occ.addBox(0, 0, 0, 1, 1, height)
        hole = occ.addCylinder(cx, cy, 0, 0, 0, height, radius)
        occ.cut([(3, box)], [(3, hole)])
        occ.synchronize()
        gmsh.option.setNumber("Mesh.MeshSizeMax", size)
        gmsh.model.mesh.generate(3)
        pts, tets = gmsh_elements(3)  # VTK-positive tetrahedra
    finally:
        gmsh.finalize()
    return Mesh(pts, {"tetra": tets})


@dataclass
class HeatCase:
    """One drawn case, ready to step: ``mesh`` (with node types, FIXED on Dirichlet nodes, and the
    ``source`` density and ``advection`` velocity as point data), its ``solver``, the initial
    temperature ``initial`` (0, the Dirichlet values on their nodes), the Dirichlet values
    ``boundary`` (in the order of ``solver.fixed``) and the trajectory ``params``."""

    mesh: Mesh
    solver: HeatSolver
    initial: np.ndarray
    boundary: np.ndarray
    params: dict[str, Any]

    def run(self, steps: int) -> np.ndarray:
        """(steps, N) temperatures: the initial one and ``steps - 1`` solver steps."""
        out = np.empty((steps, self.mesh.num_points), dtype=np.float32)
        T = self.initial.copy()
        out[0] = T
        for k in range(1, steps):
            T = self.solver.step(T, self.boundary)
            out[k] = T
        return out


def heat_case(params: dict[str, Any], seed: int) -> HeatCase:
    """The case ``generate`` draws for ``params`` and ``seed``, not yet solved. The draws do not
    depend on ``mesh_size``: one seed at two mesh sizes is the same case at two resolutions."""
    p = {**DEFAULTS, **params}
    rng = np.random.default_rng(seed)
    radius = _draw(rng, p["hole_radius"])
    cx, cy = rng.uniform(0.2 + radius, 0.8 - radius, 2)
    mesh = box_with_hole(cx, cy, radius, float(p["height"]), float(p["mesh_size"]))
    x = mesh.points
    on_hole = np.abs(np.hypot(x[:, 0] - cx, x[:, 1] - cy) - radius) < 1e-6
    cold = x[:, 0] < 1e-9
    dirichlet = on_hole | cold
    t_hole = _draw(rng, p["hole_temperature"])
    source = np.zeros(len(x))
    lo, hi = p["sources"] if isinstance(p["sources"], (list, tuple)) else (p["sources"], p["sources"])
    for _ in range(int(rng.integers(lo, hi + 1))):
        c = np.array([rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9) * p["height"]])
        w = _draw(rng, p["source_width"])
        source += _draw(rng, p["source_strength"]) * np.exp(-((x - c) ** 2).sum(1) / (2 * w**2))
    speed = _draw(rng, p["advection"])
    angle = rng.uniform(0, 2 * np.pi)
    velocity = np.array([speed * np.cos(angle), speed * np.sin(angle), 0.0])
    kappa = _draw(rng, p["kappa"])
    solver = HeatSolver(x, mesh.cells["tetra"], kappa, float(p["dt"]), dirichlet, velocity, source)
    T = np.zeros(len(x))
    bc = np.where(on_hole, t_hole, 0.0)[dirichlet]
    T[dirichlet] = bc
    nt = np.where(dirichlet, NodeType.FIXED, NodeType.INTERIOR).astype(np.int32)
    advection = np.broadcast_to(velocity.astype(np.float32), x.shape).copy()  # uniform here; a field in general
    mesh = Mesh(mesh.points, mesh.cells, point_data={"source": source.astype(np.float32), "advection": advection},
                node_type=nt)
    return HeatCase(mesh, solver, T, bc, {
        "hole_centre": [float(cx), float(cy)], "hole_radius": radius, "hole_temperature": t_hole, "kappa": kappa,
        "velocity": velocity.tolist(), "mesh_size": float(p["mesh_size"]), "height": float(p["height"]),
        "dt": float(p["dt"])})


def generate(params: dict[str, Any], seed: int) -> Trajectory:
    p = {**DEFAULTS, **params}
    case = heat_case(p, seed)
    steps = int(p["num_steps"])
    out = case.run(steps)
    return Trajectory(case.mesh, np.arange(steps) * float(p["dt"]), point_fields={"temperature": out},
                      dt=float(p["dt"]), params={k: v for k, v in case.params.items() if k != "dt"})


__all__ = ["HeatCase", "HeatSolver", "box_with_hole", "generate", "heat_case"]
