"""Particle windows for learned Lagrangian simulators (GNS, GIOROM).

A sample is a history of ``H`` positions (default 6, so 5 velocities) of the particles of
one trajectory (all of them, or a fixed sparse subset, see :mod:`sim.data.sampling`) and
the next position. With frame step :math:`\\Delta t`:

.. math::
    v_k = \\frac{x_k - x_{k-1}}{\\Delta t}, \\qquad
    a_t = \\frac{x_{t+1} - 2 x_t + x_{t-1}}{\\Delta t^2}, \\qquad
    x_{t+1} = x_t + \\Delta t\\,(v_t + \\Delta t\\, a_t)

(the last identity is semi-implicit Euler; it inverts the acceleration target exactly).
Velocities and accelerations are normalised with the statistics the MPM recipes write into
the store metadata (``statistics``: means and stds pooled over every frame and particle of
the training split, not averaged per trajectory). Distances to the walls of the domain are
divided by the connectivity radius and clipped to [-1, 1] (GNS).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from sim.data.sampling import (
    SAMPLE_RULES,
    particle_spacing,
    spacing_ratio,
    sparse_subset,
    trajectory_seed,
)
from sim.data.store_dataset import StoreDataset
from sim.errors import SimError
from sim.graph import knn_bipartite
from sim.mesh import Store

PARTICLE_TYPE = "particle_type"


@dataclass
class ParticleStatistics:
    """Pooled dataset statistics (physical units: length / s and length / s^2)."""

    vel_mean: list[float]
    vel_std: list[float]
    acc_mean: list[float]
    acc_std: list[float]
    dt: float
    bounds: list[list[float]]
    connectivity_radius: float

    @property
    def dim(self) -> int:
        return len(self.vel_mean)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ParticleStatistics":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    @classmethod
    def from_store(cls, path: str | os.PathLike) -> "ParticleStatistics":
        """Read the ``statistics`` the recipe's hook wrote into the store metadata."""
        with Store(path) as store:
            stats = store.metadata.get("statistics")
        need = ("vel_mean", "vel_std", "acc_mean", "acc_std", "dt", "bounds", "default_connectivity_radius")
        if not isinstance(stats, dict):
            raise SimError("the store metadata has no particle statistics; generate the data with an MPM recipe "
                           "(datasets/mpm_*.yaml) or add them with its statistics hook", path)
        missing = [k for k in need if k not in stats]
        if missing:
            raise SimError(f"the particle statistics in the store metadata lack {missing}", path)
        return cls(vel_mean=[float(x) for x in stats["vel_mean"]], vel_std=[float(x) for x in stats["vel_std"]],
                   acc_mean=[float(x) for x in stats["acc_mean"]], acc_std=[float(x) for x in stats["acc_std"]],
                   dt=float(stats["dt"]), bounds=[[float(lo), float(hi)] for lo, hi in stats["bounds"]],
                   connectivity_radius=float(stats["default_connectivity_radius"]))


def velocities(history: torch.Tensor, dt: float) -> torch.Tensor:
    """(N, H, d) positions -> (N, H - 1, d) finite-difference velocities."""
    return (history[:, 1:] - history[:, :-1]) / dt


def acceleration_target(history: torch.Tensor, next_position: torch.Tensor, dt: float) -> torch.Tensor:
    """(N, H, d) history and (N, d) next positions -> (N, d) acceleration at the last frame."""
    return (next_position - 2 * history[:, -1] + history[:, -2]) / dt**2


def semi_implicit_euler(history: torch.Tensor, acceleration: torch.Tensor, dt: float) -> torch.Tensor:
    """Next positions (N, d): v = (x_t - x_{t-1}) / dt + dt a, x_{t+1} = x_t + dt v."""
    velocity = (history[:, -1] - history[:, -2]) / dt + dt * acceleration
    return history[:, -1] + dt * velocity


def wall_distances(position: torch.Tensor, bounds: torch.Tensor, radius: float) -> torch.Tensor:
    """(N, d) positions, (d, 2) box -> (N, 2 d) distances to the lower and upper walls over
    ``radius``, clipped to [-1, 1]."""
    lower = (position - bounds[:, 0]) / radius
    upper = (bounds[:, 1] - position) / radius
    return torch.cat([lower, upper], dim=-1).clamp(-1.0, 1.0)


class ParticleWindowDataset(StoreDataset):
    """(history, next position) windows of every trajectory of a particle store.

    Args:
        path: store file (entries with ``positions`` (T, N, d)).
        history: positions per window (6: five velocities).
        sample_ratio: fraction of each trajectory's particles kept (1: all, GNS baseline).
        sampling: ``"fps"`` or ``"random"`` (see :mod:`sim.data.sampling`).
        seed: base seed of the per-trajectory subsets.
        sample_rule: ``"ratio"`` (``sample_ratio`` of every trajectory's particles) or
            ``"spacing"`` (the sparse nodes as far apart as ``sample_ratio`` makes them on
            particles ``reference_spacing`` apart: :func:`~sim.data.sampling.spacing_ratio`).
        reference_spacing: for ``"spacing"``, default: the median particle spacing of the
            store's trajectories (their first frames), kept as :attr:`reference_spacing`.
        dense_queries: when > 0, each sample also carries up to this many particles of the
            full set at the last frame (for training the dense decoder): their reference
            positions, displacements and their ``decoder_neighbors`` nearest sparse nodes
            in the reference configuration (computed once per trajectory).
        entries: entry names (default: all).
        cache: trajectories kept in memory per worker.

    Each item is a ``Data`` with ``history`` (n, H, d), ``target`` (n, d) next positions,
    ``reference`` (n, d) first-frame positions, ``particle_type`` (n,), ``dt`` (1,), and
    with dense queries ``query_reference`` (Q, d), ``query_displacement`` (Q, d) and
    ``decoder_index`` (k, Q) (sparse node ids, shifted by PyG batching like an edge index).
    """

    def __init__(self, path: str | os.PathLike, history: int = 6, sample_ratio: float = 1.0, sampling: str = "fps",
                 seed: int = 0, dense_queries: int = 0, decoder_neighbors: int = 16,
                 entries: list[str] | None = None, cache: int = 64, sample_rule: str = "ratio",
                 reference_spacing: float | None = None):
        if history < 3:
            raise ValueError("a particle window needs at least 3 positions (2 velocities)")
        self.path = Path(path)
        self.history, self.sample_ratio, self.sampling, self.seed = history, sample_ratio, sampling, seed
        self.dense_queries, self.decoder_neighbors, self.cache = dense_queries, decoder_neighbors, cache
        if sample_rule not in SAMPLE_RULES:
            raise ValueError(f"unknown sample rule {sample_rule!r} (known: {', '.join(SAMPLE_RULES)})")
        self.sample_rule = sample_rule
        self.reference_spacing = reference_spacing
        self.statistics = ParticleStatistics.from_store(self.path)
        self.index: list[tuple[str, int]] = []
        spacings = []
        with Store(self.path) as store:
            for name in (entries if entries is not None else store.names()):
                e = store.entry(name)
                if e.positions is None:
                    raise SimError(f"entry {name!r} has no moving positions (not a particle trajectory)", self.path)
                if e.positions.shape[-1] != self.statistics.dim:
                    raise SimError(f"entry {name!r} is {e.positions.shape[-1]}D but the statistics are "
                                   f"{self.statistics.dim}D", self.path)
                dt = e.attrs.get("dt")
                if dt is not None and not np.isclose(float(dt), self.statistics.dt, rtol=1e-6):
                    raise SimError(f"entry {name!r} has frame step {float(dt):g} but the statistics were computed "
                                   f"with {self.statistics.dt:g}", self.path)
                self.index += [(name, t) for t in range(history - 1, e.num_steps - 1)]
                if sample_rule == "spacing" and reference_spacing is None and len(spacings) < 16:
                    spacings.append(particle_spacing(e.positions[0]))
        if spacings:
            self.reference_spacing = float(np.median(spacings))
        if not self.index:
            raise SimError(f"no trajectory has the {history + 1} frames a window needs", self.path)
        self._reset_store()

    @property
    def dim(self) -> int:
        return self.statistics.dim

    def trajectory(self, name: str) -> dict[str, np.ndarray]:
        """Positions, particle types, sparse subset (and decoder neighbours) of one entry."""
        if name not in self._cache:
            entry = self._open().entry(name)
            pos = np.asarray(entry.positions[()], dtype=np.float32)
            mesh = entry.mesh()
            types = mesh.point_data.get(PARTICLE_TYPE, np.zeros(mesh.num_points, dtype=np.int64))
            ratio = self.sample_ratio if self.sample_rule == "ratio" else \
                spacing_ratio(pos[0], self.sample_ratio, self.reference_spacing)
            sparse = sparse_subset(pos[0], ratio, self.sampling, trajectory_seed(self.seed, name))
            item = {"positions": pos, "types": np.asarray(types, dtype=np.int64), "sparse": sparse}
            if self.dense_queries > 0:
                item["neighbors"], _ = knn_bipartite(pos[0], pos[0][sparse], min(self.decoder_neighbors, len(sparse)))
            self._cache[name] = item
            if len(self._cache) > self.cache:
                self._cache.popitem(last=False)
        self._cache.move_to_end(name)
        return self._cache[name]

    def __getitem__(self, k: int) -> Data:
        name, t = self.index[k]
        tr = self.trajectory(name)
        pos, sparse = tr["positions"], tr["sparse"]
        window = pos[t - self.history + 1: t + 2][:, sparse]  # (H + 1, n, d)
        data = Data(history=torch.from_numpy(np.ascontiguousarray(window[:-1].transpose(1, 0, 2))),
                    target=torch.from_numpy(np.ascontiguousarray(window[-1])),
                    reference=torch.from_numpy(pos[0][sparse]),
                    particle_type=torch.from_numpy(tr["types"][sparse]),
                    dt=torch.tensor([self.statistics.dt]), num_nodes=len(sparse), entry=name, step=t)
        if self.dense_queries > 0:
            n = pos.shape[1]
            rng = np.random.default_rng([self.seed, k])
            q = np.sort(rng.choice(n, size=min(self.dense_queries, n), replace=False))
            data.query_reference = torch.from_numpy(pos[0][q])
            data.query_displacement = torch.from_numpy(pos[t][q] - pos[0][q])
            data.decoder_index = torch.from_numpy(np.ascontiguousarray(tr["neighbors"][q].T))
        return data

