"""Cylinder-flow trajectories for the recipe ``datasets/cylinder_flow.yaml`` (MeshGraphNet's
CylinderFlow task): each trajectory draws its own geometry and inflow, meshes it with gmsh,
runs the Navier-Stokes solver and stores velocity and pressure at the mesh vertices every
``dt_store``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sim.mesh import Mesh, NodeType, Trajectory
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


GEOMETRY = ("length", "height", "cx", "cy", "radius", "u_mean", "reynolds", "nu", "mesh_size", "mesh_size_min")


def draw(params: dict[str, Any], seed: int) -> Mesh:
    """The trajectory ``generate(params, seed)`` simulates, without simulating it: the meshed
    channel, its drawn geometry and inflow in ``field_data`` (length, height, cx, cy, radius,
    u_mean, reynolds, nu, mesh sizes), and a first guess of the flow in ``point_data``
    (``velocity``: the parabolic inflow profile carried through the channel, zero on the walls and
    the cylinder; ``pressure``: zero) that a surrogate can embed the candidate with. Meshing takes
    well under a second; the solve takes minutes, so an active-learning loop draws a pool of these
    and simulates only the ones it picks (:func:`solve`)."""
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
    y = mesh.points[:, 1]
    guess = np.zeros((mesh.num_points, 2), dtype=np.float32)
    guess[:, 0] = 6.0 * u_mean * y * (channel.height - y) / channel.height ** 2  # peak 1.5 u_mean
    if mesh.node_type is not None:
        guess[np.isin(mesh.node_type, (int(NodeType.WALL), int(NodeType.OBSTACLE)))] = 0.0
    mesh.point_data["velocity"] = guess
    mesh.point_data["pressure"] = np.zeros(mesh.num_points, dtype=np.float32)
    values = {"length": channel.length, "height": channel.height, "cx": channel.cx, "cy": channel.cy,
              "radius": radius, "u_mean": u_mean, "reynolds": reynolds, "nu": nu, "mesh_size": float(p["mesh_size"]),
              "mesh_size_min": float(p["mesh_size_min"])}
    for k, v in values.items():
        mesh.field_data[k] = np.array([v], dtype=np.float64)
    return mesh


def solver_substeps(mesh: Mesh, u_mean: float, dt_store: float, max_cfl: float) -> int:
    """Solver steps per stored step: enough that 1.5 u_mean dt / (h_min / 2) <= max_cfl (the
    peak inflow speed over the smallest edge's P2 node spacing)."""
    tri = mesh.cells["triangle"]
    edges = np.linalg.norm(mesh.points[tri] - np.roll(mesh.points[tri], 1, axis=1), axis=2)
    return max(1, math.ceil(dt_store * 1.5 * u_mean / (0.5 * float(edges.min()) * max_cfl)))


def case_flow(mesh: Mesh, channel: Channel, u_mean: float, nu: float, params: dict[str, Any] | None = None
              ) -> tuple[CylinderFlow, int]:
    """The solver of one case on ``mesh`` with the recipe's time settings (``params`` over
    :data:`DEFAULTS`: dt_store, max_cfl, ramp, kick, kick_time) and its substeps per stored step."""
    p = {**DEFAULTS, **(params or {})}
    substeps = solver_substeps(mesh, u_mean, p["dt_store"], p["max_cfl"])
    return CylinderFlow(mesh, channel, nu=nu, u_mean=u_mean, dt=p["dt_store"] / substeps, ramp=p["ramp"],
                        kick=p["kick"] * u_mean, kick_time=p["kick_time"]), substeps


def solve(drawn: Mesh, params: dict[str, Any] | None = None) -> Trajectory:
    """Simulate a drawn candidate (:func:`draw`): its geometry and inflow from ``field_data``, the
    time settings (dt_store, max_cfl, warmup, ramp, kick, num_steps) from ``params``."""
    p = {**DEFAULTS, **(params or {})}
    missing = [k for k in GEOMETRY if k not in drawn.field_data]
    if missing:
        raise ValueError(f"the drawn sample has no field_data {missing} (draw it with solvers.cfd.cylinder.draw)")
    g = {k: float(np.asarray(drawn.field_data[k]).reshape(-1)[0]) for k in GEOMETRY}
    channel = Channel(g["length"], g["height"], g["cx"], g["cy"], g["radius"])
    mesh = Mesh(drawn.points, drawn.cells, node_type=drawn.node_type)
    u_mean, nu = g["u_mean"], g["nu"]
    flow, substeps = case_flow(mesh, channel, u_mean, nu, p)
    dt = flow.dt
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
                          "radius": g["radius"], "u_mean": u_mean, "reynolds": g["reynolds"], "nu": nu,
                          "dt_solver": dt, "substeps": substeps, "mesh_size": g["mesh_size"],
                          "mesh_size_min": g["mesh_size_min"], "warmup": p["warmup"]})


def generate(params: dict[str, Any], seed: int) -> Trajectory:
    """One trajectory: params override :data:`DEFAULTS` (ranges are [low, high] drawn uniformly).
    The same as ``solve(draw(params, seed), params)``; the two stages are also reachable as
    ``generate.draw`` and ``generate.solve`` (what :mod:`sim.active` looks for)."""
    return solve(draw(params, seed), params)


generate.draw, generate.solve = draw, solve  # type: ignore[attr-defined]  # the two stages (sim.active)
