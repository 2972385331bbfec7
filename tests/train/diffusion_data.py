"""Small learnable datasets on one triangulated square: explicit graph-Laplacian diffusion (first
order in time) and the discrete wave equation (second order)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import Delaunay

from sim.graph import cell_edges
from sim.mesh import Mesh, NodeType, StoreWriter, Trajectory


def square_mesh(n: int = 7) -> Mesh:
    g = np.linspace(0, 1, n)
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    tri = Delaunay(pts).simplices
    a = pts[tri]
    signed = (a[:, 1, 0] - a[:, 0, 0]) * (a[:, 2, 1] - a[:, 0, 1]) - (a[:, 2, 0] - a[:, 0, 0]) * (a[:, 1, 1] - a[:, 0, 1])
    tri[signed < 0] = tri[signed < 0][:, [0, 2, 1]]
    boundary = (pts.min(1) == 0) | (pts.max(1) == 1)
    nt = np.where(boundary, NodeType.WALL, NodeType.INTERIOR).astype(np.int32)
    return Mesh(pts, {"triangle": tri}, node_type=nt)


def _square_setup(seed: int) -> tuple[Mesh, np.ndarray, np.ndarray, np.random.Generator]:
    """The square mesh, its edges, its wall mask and the generator of a store's draws."""
    mesh = square_mesh()
    return mesh, cell_edges(mesh.cells, mesh.num_points), mesh.node_type == NodeType.WALL, np.random.default_rng(seed)


def _laplacian(u: np.ndarray, ei: np.ndarray) -> np.ndarray:
    lap = np.zeros(len(u))
    np.add.at(lap, ei[1], u[ei[0]] - u[ei[1]])
    return lap


def diffusion_store(path: Path, trajectories: int = 4, steps: int = 12, seed: int = 0,
                    kappas: list[float] | None = None) -> Path:
    """Trajectories of ``u <- u + kappa * L u`` (kappa 0.08, or ``kappas[i]`` for trajectory i,
    recorded in its params as ``kappa``) with zero walls."""
    mesh = square_mesh()
    ei = cell_edges(mesh.cells, mesh.num_points)
    n = mesh.num_points
    rng = np.random.default_rng(seed)
    with StoreWriter(path) as w:
        for i in range(trajectories):
            kappa = 0.08 if kappas is None else float(kappas[i % len(kappas)])
            u = np.zeros((steps, n), dtype=np.float32)
            u[0] = rng.random(n)
            u[0][mesh.node_type == NodeType.WALL] = 0.0
            for t in range(1, steps):
                u[t] = u[t - 1] + kappa * _laplacian(u[t - 1], ei)
                u[t][mesh.node_type == NodeType.WALL] = 0.0
            w.append(Trajectory(mesh, np.arange(steps) * 0.1, point_fields={"u": u},
                                params={} if kappas is None else {"kappa": kappa}))
    return path


def source_store(path: Path, trajectories: int = 4, steps: int = 12, seed: int = 0, rate: float = 0.3) -> Path:
    """Trajectories of ``u <- u + 0.08 L u + rate * s`` with zero walls, ``s`` a random source field of
    each trajectory stored as static point data ``source`` of its mesh: without the source the
    one-step map is ambiguous (two trajectories from one state part ways)."""
    base, ei, wall, rng = _square_setup(seed)
    n = base.num_points
    with StoreWriter(path) as w:
        for _ in range(trajectories):
            centre = rng.uniform(0.2, 0.8, 2)
            source = np.exp(-((base.points - centre) ** 2).sum(1) / 0.05).astype(np.float32)
            mesh = Mesh(base.points, base.cells, point_data={"source": source}, node_type=base.node_type)
            u = np.zeros((steps, n), dtype=np.float32)
            u[0] = rng.random(n)
            u[0][wall] = 0.0
            for t in range(1, steps):
                u[t] = u[t - 1] + 0.08 * _laplacian(u[t - 1], ei) + rate * source
                u[t][wall] = 0.0
            w.append(Trajectory(mesh, np.arange(steps) * 0.1, point_fields={"u": u}))
    return path


def wave_store(path: Path, trajectories: int = 4, steps: int = 12, seed: int = 0, c2: float = 0.05) -> Path:
    """Trajectories of the discrete wave equation ``u_{t+1} = 2 u_t - u_{t-1} + c2 L u_t`` with zero
    walls, from a random state and a random first change: second order in time, so one frame
    does not determine the next (the velocity is not stored) and two frames do."""
    mesh, ei, wall, rng = _square_setup(seed)
    n = mesh.num_points
    with StoreWriter(path) as w:
        for _ in range(trajectories):
            u = np.zeros((steps, n), dtype=np.float32)
            u[0] = rng.random(n)
            u[1] = u[0] + rng.uniform(-0.1, 0.1, n)
            u[:2, wall] = 0.0
            for t in range(1, steps - 1):
                u[t + 1] = 2 * u[t] - u[t - 1] + c2 * _laplacian(u[t], ei)
                u[t + 1][wall] = 0.0
            w.append(Trajectory(mesh, np.arange(steps) * 0.1, point_fields={"u": u}))
    return path


def train_tiny(data: Path, out: Path, steps: int = 150, **model: Any) -> list[float]:
    """Train a tiny MeshGraphNet (latent 16, 2 steps) on field ``u`` of ``data`` into ``out`` with
    the given ``model`` section entries (e.g. ``pushforward``); returns the logged losses."""
    from sim.families import train
    from sim.train import Config

    cfg = Config.from_dict({
        "model": {"network_args": {"latent": 16, "steps": 2}, "fields": ["u"], "noise_std": 0.001, **model},
        "data": {"train": str(data), "batch_size": 2},
        "optim": {"lr": 3e-3, "lr_final": 3e-4},
        "train": {"steps": steps, "out": str(out), "log_every": 10, "checkpoint_every": 1000,
                  "normalizer_accumulation_steps": 20},
    })
    train(cfg, progress=False)
    return [float(r.split(",")[1]) for r in (out / "metrics.csv").read_text().splitlines()[1:]]
