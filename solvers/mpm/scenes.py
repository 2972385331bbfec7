"""Random MPM scenes (blocks of one material with random initial velocities) and the
GNS-style dataset statistics of the ``datasets/mpm_*.yaml`` recipes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim.errors import SimError
from sim.mesh import Mesh, Store, Trajectory
from solvers import Rejected
from solvers.mpm.mls_mpm import MATERIALS, Material, MPMSolver

DEFAULTS: dict[str, Any] = {
    "dim": 2, "material": "water", "n_grid": 64, "ppc": 2, "blocks": [1, 3], "block_size": [0.12, 0.3],
    "speed": [0.0, 2.0], "frames": 50, "frame_dt": 0.005, "wall": "slip", "gravity": -9.8, "cfl": 0.4,
    "E": None, "nu": None, "density": 1e3, "yield_stress": 5e3, "friction_deg": 25.0, "viscosity": 1.0,
}
MATERIAL_DEFAULTS = {  # (E, nu): near GIOROM/NCLAW, water and sand softened to keep dt practical
    "jelly": (1e5, 0.2), "plasticine": (3e5, 0.3), "sand": (3e5, 0.3), "water": (3e4, 0.3),
}


def _range(rng: np.random.Generator, v: Any) -> float:
    return float(rng.uniform(*v)) if isinstance(v, (list, tuple)) else float(v)


def sample_blocks(rng: np.random.Generator, dim: int, p: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Non-overlapping axis-aligned boxes (low corner, size) inside [0.1, 0.9]^dim."""
    lo_n, hi_n = p["blocks"] if isinstance(p["blocks"], (list, tuple)) else (p["blocks"], p["blocks"])
    count = int(rng.integers(lo_n, hi_n + 1))
    boxes: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(200):
        if len(boxes) == count:
            break
        size = np.array([_range(rng, p["block_size"]) for _ in range(dim)])
        low = rng.uniform(0.1, 0.9 - size)
        if all(np.any(low + size + 0.02 < b_lo) or np.any(b_lo + b_size + 0.02 < low) for b_lo, b_size in boxes):
            boxes.append((low, size))
    if not boxes:
        raise Rejected("no block fits")
    return boxes


def generate(params: dict[str, Any], seed: int) -> Trajectory:
    """One trajectory of particles: positions (T, N, d) every ``frame_dt``."""
    p = {**DEFAULTS, **params}
    if p["material"] not in MATERIALS:
        raise SimError(f"unknown material {p['material']!r} (known: {', '.join(MATERIALS)})")
    dim = int(p["dim"])
    rng = np.random.default_rng(seed)
    E_default, nu_default = MATERIAL_DEFAULTS[p["material"]]
    material = Material(p["material"], E=p["E"] or E_default, nu=p["nu"] or nu_default, density=p["density"],
                        yield_stress=p["yield_stress"], friction_deg=p["friction_deg"],
                        viscosity=p["viscosity"] if p["material"] == "water" else 0.0)
    solver = MPMSolver(dim, int(p["n_grid"]), [material], gravity=p["gravity"], wall=p["wall"], cfl=p["cfl"])
    spacing = solver.dx / int(p["ppc"])
    xs, vs = [], []
    for low, size in sample_blocks(rng, dim, p):
        axes = [np.arange(low[a] + spacing / 2, low[a] + size[a], spacing) for a in range(dim)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim)
        pts += rng.uniform(-0.25, 0.25, pts.shape) * spacing  # jitter breaks the lattice symmetry
        speed = _range(rng, p["speed"])
        direction = rng.standard_normal(dim)
        xs.append(pts)
        vs.append(np.broadcast_to(speed * direction / np.linalg.norm(direction), pts.shape))
    x0 = np.concatenate(xs)
    state = simulate(solver, x0, np.concatenate(vs), spacing, material.density, int(p["frames"]), p["frame_dt"])
    positions, substeps = state
    return Trajectory(Mesh(x0.copy(), point_data={"particle_type": np.zeros(len(x0), dtype=np.int64)}),
                      np.arange(int(p["frames"])) * float(p["frame_dt"]), positions=positions,
                      dt=float(p["frame_dt"]), params={
                          "dim": dim, "material": material.kind, "E": material.E, "nu": material.nu,
                          "density": material.density, "yield_stress": material.yield_stress,
                          "friction_deg": material.friction_deg, "viscosity": material.viscosity,
                          "n_grid": int(p["n_grid"]), "ppc": int(p["ppc"]),
                          "wall": p["wall"], "gravity": p["gravity"], "bounds": [[0.0, 1.0]] * dim,
                          "num_particles": int(len(x0)), "substeps_total": int(substeps),
                          "particle_types": {"0": material.kind}})


def simulate(solver: MPMSolver, x0: np.ndarray, v0: np.ndarray, spacing: float, density: float, frames: int,
             frame_dt: float, volume: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Run from (x0, v0); returns positions (frames, N, d) float32 and the number of substeps.
    Each particle carries the volume ``spacing**d`` (a lattice of that spacing) unless ``volume``
    gives one per particle (:func:`coarse_sample`)."""
    dtype = solver.dtype
    x = torch.as_tensor(x0, dtype=dtype)
    v = torch.as_tensor(np.ascontiguousarray(v0), dtype=dtype)
    n, d = x.shape
    C = torch.zeros(n, d, d, dtype=dtype)
    F = torch.eye(d, dtype=dtype).repeat(n, 1, 1)
    mat = torch.zeros(n, dtype=torch.long)
    vol = torch.full((n,), spacing**d, dtype=dtype) if volume is None else torch.as_tensor(volume, dtype=dtype)
    if vol.shape != (n,):
        raise SimError(f"volume has shape {tuple(vol.shape)}; expected one value per particle ({n})")
    mass = vol * density
    out = np.empty((frames, n, d), dtype=np.float32)
    out[0] = x0
    total = 0
    with torch.no_grad():
        for f in range(1, frames):
            dt_max = solver.max_dt(v)
            k = max(1, math.ceil(frame_dt / dt_max))
            for _ in range(k):
                x, v, C, F, _ = solver.substep(x, v, C, F, mat, mass, vol, frame_dt / k)
            total += k
            if not torch.isfinite(x).all():
                raise Rejected(f"the simulation diverged at frame {f}")
            solver.check_inside(x)
            out[f] = x.numpy()
    return out, total



def coarse_sample(x0: np.ndarray, spacing: float, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """A sample of the particles ``x0`` (sampled about ``spacing`` apart) for a solve ``factor``
    times coarser: one particle per cell of a lattice of spacing ``factor * spacing`` (the one
    nearest the mean of the cell's particles), carrying the volume of every particle of its
    cell. Returns (indices into ``x0``, volumes): the sample keeps each body's mass and,
    at the coarse grid's spacing, the particles per cell of the fine solve (factor 1: every
    particle with the volume ``spacing**d``)."""
    x0 = np.asarray(x0, dtype=np.float64)
    if factor < 1:
        raise SimError(f"the coarsening factor must be a positive integer, got {factor}")
    if factor == 1:
        return np.arange(len(x0)), np.full(len(x0), spacing ** x0.shape[1])
    cell = np.floor(x0 / (factor * spacing)).astype(np.int64)
    _, owner, count = np.unique(cell, axis=0, return_inverse=True, return_counts=True)
    owner = owner.ravel()
    mean = np.zeros((len(count), x0.shape[1]))
    np.add.at(mean, owner, x0)
    mean /= count[:, None]
    order = np.lexsort((np.linalg.norm(x0 - mean[owner], axis=1), owner))  # by cell, then distance to its mean
    first = np.r_[True, owner[order][1:] != owner[order][:-1]]
    index = order[first]
    return index, count[owner[index]] * spacing ** x0.shape[1]


def dataset_statistics(stores: dict[str, Path], params: dict[str, Any]) -> dict[str, Any]:
    """GNS metadata pooled over every frame of every training trajectory: mean and std of
    velocities and accelerations (finite differences of positions over frame dt), plus a
    default connectivity radius. Sums and sums of squares are pooled, not per-trajectory stds."""
    paths = [stores["train"]] if "train" in stores else list(stores.values())
    sums: dict[str, np.ndarray] = {}
    count = {"vel": 0, "acc": 0}
    dim = None
    dt = None
    for path in paths:
        with Store(path) as s:
            for name in s.names():
                e = s.entry(name)
                pos = e.positions[()].astype(np.float64)
                dt = float(e.attrs["dt"])
                vel = np.diff(pos, axis=0) / dt
                acc = np.diff(vel, axis=0) / dt
                dim = pos.shape[-1]
                for key, arr in (("vel", vel), ("acc", acc)):
                    flat = arr.reshape(-1, dim)
                    sums[key + "_s"] = sums.get(key + "_s", 0) + flat.sum(0)
                    sums[key + "_q"] = sums.get(key + "_q", 0) + (flat**2).sum(0)
                    count[key] += len(flat)
    if dim is None:
        raise SimError("no trajectories to compute statistics from")
    out: dict[str, Any] = {"dim": dim, "dt": dt}
    for key in ("vel", "acc"):
        mean = sums[key + "_s"] / count[key]
        std = np.sqrt(np.maximum(sums[key + "_q"] / count[key] - mean**2, 0.0))
        out[f"{key}_mean"], out[f"{key}_std"] = mean.tolist(), std.tolist()
    n_grid = int(params.get("n_grid", DEFAULTS["n_grid"]))
    out["default_connectivity_radius"] = 1.5 / n_grid
    out["bounds"] = [[0.0, 1.0]] * dim
    return out
