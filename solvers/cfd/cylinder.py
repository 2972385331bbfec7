"""Cylinder-flow trajectories for the recipe ``datasets/cylinder_flow.yaml`` (MeshGraphNet's
CylinderFlow task): each trajectory draws its own geometry and inflow, meshes it with gmsh,
runs the Navier-Stokes solver and stores velocity and pressure at the mesh vertices every
``dt_store``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sim.mesh import Trajectory
from solvers.cfd.geometry import Channel, channel_mesh
from solvers.cfd.navier_stokes import CylinderFlow

DEFAULTS: dict[str, Any] = {
    "length": 1.6, "height": 0.41,  # MeshGraphNet's channel
    "cx": [0.15, 0.40], "cy": [0.15, 0.26], "radius": [0.03, 0.07], "u_mean": [0.5, 2.0],
    "reynolds": [50.0, 400.0],
    "mesh_size": 0.028, "mesh_size_min": 0.009,
    "dt_store": 0.01, "max_cfl": 2.0, "num_steps": 50, "warmup": 1.5, "ramp": 0.5,
    "kick": 0.5, "kick_time": 0.6,
}


def _draw(rng: np.random.Generator, value: Any) -> float:
    return float(rng.uniform(*value)) if isinstance(value, (list, tuple)) else float(value)


def generate(params: dict[str, Any], seed: int) -> Trajectory:
    """One trajectory: params override :data:`DEFAULTS` (ranges are [low, high] drawn uniformly)."""
    p = {**DEFAULTS, **params}
    rng = np.random.default_rng(seed)
    radius = _draw(rng, p["radius"])
    if isinstance(p["cy"], (list, tuple)):  # keep a gap of at least 0.04 between cylinder and walls
        margin = radius + 0.04
        cy = float(rng.uniform(max(p["cy"][0], margin), min(p["cy"][1], p["height"] - margin)))
    else:
        cy = float(p["cy"])
    channel = Channel(p["length"], p["height"], _draw(rng, p["cx"]), cy, radius)
    u_mean = _draw(rng, p["u_mean"])
    reynolds = _draw(rng, p["reynolds"])
    nu = u_mean * 2 * radius / reynolds
    mesh = channel_mesh(channel, size=p["mesh_size"], size_min=p["mesh_size_min"])
    tri = mesh.cells["triangle"]
    edges = np.linalg.norm(mesh.points[tri] - np.roll(mesh.points[tri], 1, axis=1), axis=2)
    h_min = float(edges.min())
    # substeps so that 1.5 u_mean dt / (h_min / 2) <= max_cfl (P2 nodes are h / 2 apart)
    substeps = max(1, math.ceil(p["dt_store"] * 1.5 * u_mean / (0.5 * h_min * p["max_cfl"])))
    dt = p["dt_store"] / substeps
    flow = CylinderFlow(mesh, channel, nu=nu, u_mean=u_mean, dt=dt, ramp=p["ramp"], kick=p["kick"] * u_mean,
                        kick_time=p["kick_time"])
    state = flow.initial_state()
    warm = int(round(p["warmup"] / dt))
    for _ in range(warm):
        state = flow.step(state)
    steps = int(p["num_steps"])
    velocity = np.empty((steps, mesh.num_points, 2), dtype=np.float32)
    pressure = np.empty((steps, mesh.num_points), dtype=np.float32)
    for k in range(steps):
        if k:
            for _ in range(substeps):
                state = flow.step(state)
        v, pr = flow.vertex_values(state)
        if not (np.isfinite(v).all() and np.isfinite(pr).all()):
            from solvers import Rejected

            raise Rejected(f"the flow diverged at stored step {k}")
        velocity[k], pressure[k] = v, pr
    times = p["warmup"] + np.arange(steps) * p["dt_store"]
    return Trajectory(mesh, times.astype(np.float64), point_fields={"velocity": velocity, "pressure": pressure},
                      dt=p["dt_store"], params={
                          "length": channel.length, "height": channel.height, "cx": channel.cx, "cy": channel.cy,
                          "radius": radius, "u_mean": u_mean, "reynolds": reynolds, "nu": nu, "dt_solver": dt,
                          "substeps": substeps, "mesh_size": p["mesh_size"], "mesh_size_min": p["mesh_size_min"],
                          "warmup": p["warmup"]})
