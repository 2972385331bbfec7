"""A tiny generator for testing the recipe engine (importable by worker processes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.mesh import Mesh, Store, Trajectory
from solvers import Rejected


def generate(params: dict, seed: int) -> Trajectory:
    rng = np.random.default_rng(seed)
    rate = float(rng.uniform(0.0, 1.0))
    if rate < params.get("reject_below", 0.0):
        raise Rejected(f"rate {rate:.3f} too small")
    if params["index"] == params.get("crash_at", -1):
        raise RuntimeError("simulated crash")
    pts = np.array([[0, 0], [1, 0], [0, 1.0]])
    t = np.arange(params["num_steps"]) * 0.1
    u = np.exp(-rate * t)[:, None] * np.ones((1, 3))
    return Trajectory(Mesh(pts, {"triangle": [[0, 1, 2]]}), t, point_fields={"u": u},
                      params={"rate": rate, "scale": params.get("scale", 1.0)})


def statistics(stores: dict[str, Path], params: dict) -> dict:
    values = []
    for path in stores.values():
        with Store(path) as s:
            values += [s.read(n).point_fields["u"].ravel() for n in s.names()]
    allv = np.concatenate(values)
    return {"u_mean": float(allv.mean()), "u_std": float(allv.std()), "count": int(allv.size)}
