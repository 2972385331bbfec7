"""Tiny particle stores from our MPM solver (a 32-cell grid, a few hundred particles), with the
recipe's pooled statistics in the metadata, for the particle tests."""

from __future__ import annotations

from pathlib import Path

from sim.mesh import StoreWriter
from solvers.mpm import dataset_statistics, generate


def mpm_store(path: Path, material: str = "water", trajectories: int = 2, frames: int = 14, n_grid: int = 32,
              seed: int = 0) -> Path:
    params = {"dim": 2, "material": material, "n_grid": n_grid, "frames": frames, "blocks": [1, 2],
              "block_size": [0.2, 0.3], "speed": [0.5, 1.5]}
    with StoreWriter(path) as w:
        for i in range(trajectories):
            w.append(generate(params, seed + i), name=f"{i:06d}")
    stats = dataset_statistics({"train": path}, params)
    with StoreWriter(path, append=True, metadata={"statistics": stats}):
        pass
    return path
