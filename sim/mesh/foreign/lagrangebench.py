"""LagrangeBench datasets: ``<split>.h5`` with ``metadata.json`` beside it.

The HDF5 file holds one group per trajectory (``00000``, ``00001``, ...), each with
``position`` (T, N, D) and ``particle_type`` (N,). ``metadata.json`` describes the whole
dataset: ``dim``, the solver step ``dt`` and ``write_every`` (frames are ``dt *
write_every`` apart; ``write_every`` is 1 when absent), ``bounds`` (D, 2),
``periodic_boundary_conditions`` (three flags whatever ``dim``), ``default_connectivity_radius``,
``sequence_length_*``, ``num_particles_max``, and the GNS statistics ``vel_mean``/``vel_std``/
``acc_mean``/``acc_std``, in displacement per frame (velocity times frame step) and its
difference per frame.

What goes where in the sim store (as our MPM recipes write particle stores):

==============================  =========================================================
LagrangeBench                   sim store
==============================  =========================================================
group ``<key>``                 entry ``<key>``
``position`` (T, N, D)          ``positions``; ``points`` = the first frame
``particle_type`` (N,)          ``point_data/particle_type``, the same codes (0 fluid,
                                1 solid wall, 2 moving wall, 3 rigid body), named in the
                                entry's ``params["particle_types"]``
other (T, N, ...) / (N, ...)    ``point_fields/<name>`` / ``point_data/<name>``
other arrays                    ``field_data/<name>``
``dt * write_every``            entry ``dt``; ``times`` = frame * dt
``metadata.json``               store metadata ``lagrangebench`` (all of it), and the
                                entry ``params``: ``dim``, ``bounds``,
                                ``periodic_boundary_conditions`` (plus the group's
                                HDF5 attributes, if any)
statistics                      store metadata ``statistics`` in our units (per second:
                                ``vel_*`` / dt, ``acc_*`` / dt**2), ``dt`` the frame step,
                                ``bounds``, ``default_connectivity_radius``, which our
                                particle family reads (:mod:`sim.data.particles`)
==============================  =========================================================

The statistics are the dataset's own (LagrangeBench computes them on its training split,
with periodic displacements), converted, not recomputed, so every split converts with the
same ones. Without ``vel_mean`` ... ``default_connectivity_radius`` in ``metadata.json``
the store has no ``statistics`` and our particle family says so when training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sim.errors import FileFormatError, SimError
from sim.mesh.core import Mesh, Trajectory
from sim.mesh.foreign.splits import split_file
from sim.mesh.store import FORMAT_NAME, check_entry_name

META = "metadata.json"
#: LagrangeBench's particle (node) types.
PARTICLE_TYPES = {0: "fluid", 1: "solid_wall", 2: "moving_wall", 3: "rigid_body"}
STATISTICS = ("vel_mean", "vel_std", "acc_mean", "acc_std", "bounds", "default_connectivity_radius")


def looks_like_lagrangebench(path: str | os.PathLike) -> bool:
    """An HDF5 file that is not a sim store and whose first group holds ``position`` (cheap)."""
    try:
        with h5py.File(path, "r") as f:
            if "sim_format" in f.attrs:
                return False
            first = next(iter(f.values()), None)
            return isinstance(first, h5py.Group) and isinstance(first.get("position"), h5py.Dataset)
    except (OSError, ValueError):
        return False


def _json_value(value: Any) -> Any:
    """An HDF5 attribute as JSON (numbers, strings, lists)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()] if value.dtype.kind in "SO" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _number(meta: dict[str, Any], key: str, where: Path, positive: bool = True) -> float:
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (positive and not v > 0):
        raise FileFormatError(f"{key!r} must be a {'positive ' if positive else ''}number, got {v!r}", where)
    return float(v)


class LagrangeBenchDataset:
    """The trajectories of one LagrangeBench split, read one group at a time.

    Args:
        path: ``<split>.h5``; ``metadata.json`` must be beside it.
    """

    format = "lagrangebench"

    def __init__(self, path: str | os.PathLike):
        self.path = split_file(path, "train.h5")
        meta_path = self.path.parent / META
        if not meta_path.is_file():
            raise FileFormatError(f"no {META} beside it: a LagrangeBench dataset keeps {META} (dt, bounds, "
                                  f"statistics, ...) in the folder of its <split>.h5", self.path)
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise FileFormatError(f"cannot be read as JSON ({exc})", meta_path) from None
        if not isinstance(meta, dict):
            raise FileFormatError("must hold a JSON object", meta_path)
        self.meta = meta
        dim = meta.get("dim")
        if dim not in (1, 2, 3) or isinstance(dim, bool):
            raise FileFormatError(f"'dim' must be 1, 2 or 3, got {dim!r}", meta_path)
        self.dim = int(dim)
        every = meta.get("write_every", 1)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise FileFormatError(f"'write_every' must be a positive integer, got {every!r}", meta_path)
        self.dt = _number(meta, "dt", meta_path) * every
        bounds = meta.get("bounds")
        if bounds is not None and np.shape(bounds) != (self.dim, 2):
            raise FileFormatError(f"'bounds' must be {self.dim} pairs [low, high], got {bounds!r}", meta_path)
        self.metadata: dict[str, Any] = {"source": {"format": "lagrangebench", "file": self.path.name},
                                         "lagrangebench": meta}
        if all(k in meta for k in STATISTICS):
            self.metadata["statistics"] = self._statistics(meta_path)
        self.params: dict[str, Any] = {"dim": self.dim}
        for key in ("bounds", "periodic_boundary_conditions"):
            if key in meta:
                self.params[key] = meta[key]
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            text = str(exc)
            why = ("the HDF5 file is truncated (an interrupted copy or write?)" if "truncated" in text else
                   "not an HDF5 file" if "signature" in text else f"cannot be opened as HDF5 ({text})")
            raise FileFormatError(why, self.path) from None
        try:
            self._check_layout()
        except BaseException:
            self._file.close()
            raise

    def _statistics(self, meta_path: Path) -> dict[str, Any]:
        meta, d, dt = self.meta, self.dim, self.dt
        out: dict[str, Any] = {"dim": d, "dt": dt}
        for key, power in (("vel_mean", 1), ("vel_std", 1), ("acc_mean", 2), ("acc_std", 2)):
            v = meta[key]
            if np.shape(v) != (d,) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                raise FileFormatError(f"{key!r} must be {d} numbers, got {v!r}", meta_path)
            out[key] = [float(x) / dt**power for x in v]
        out["bounds"] = [[float(lo), float(hi)] for lo, hi in meta["bounds"]]
        out["default_connectivity_radius"] = _number(meta, "default_connectivity_radius", meta_path)
        out["units"] = "per second (LagrangeBench's per-frame values over the frame step dt)"
        return out

    def _check_layout(self) -> None:
        f = self._file
        if "sim_format" in f.attrs and str(_json_value(f.attrs["sim_format"])) == FORMAT_NAME:
            raise FileFormatError("is a sim store already, not a LagrangeBench dataset", self.path)
        if not len(f):
            raise FileFormatError("holds no trajectories (no groups)", self.path)
        for key, item in f.items():
            if not isinstance(item, h5py.Group):
                raise FileFormatError(f"{key!r} is a dataset at the top level; a LagrangeBench file holds one group "
                                      "per trajectory (with position and particle_type)", self.path)
            check_entry_name(key, self.path)
        if f.attrs:
            self.metadata["lagrangebench_file_attrs"] = {k: _json_value(v) for k, v in f.attrs.items()}

    def names(self) -> list[str]:
        return list(self._file.keys())

    def __len__(self) -> int:
        return len(self._file)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "LagrangeBenchDataset":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple[str, Trajectory]]:
        for key in self.names():
            yield key, self.read(key)

    def read(self, key: str) -> Trajectory:
        """Trajectory ``key`` (one group) in memory."""
        g = self._file[key]
        where = f"trajectory {key!r}"
        try:
            return self._trajectory(g)
        except FileFormatError:
            raise
        except SimError as exc:
            raise FileFormatError(f"{where}: {exc.message}", self.path) from None
        except (OSError, KeyError) as exc:  # a damaged dataset inside a readable file
            raise FileFormatError(f"{where} cannot be read ({exc})", self.path) from None

    def _trajectory(self, g: h5py.Group) -> Trajectory:
        for need in ("position", "particle_type"):
            if not isinstance(g.get(need), h5py.Dataset):
                raise SimError(f"has no {need!r} dataset (has {sorted(g)})")
        pos = g["position"][()]
        if pos.ndim != 3 or pos.shape[2] != self.dim or pos.dtype.kind != "f" or pos.shape[0] < 1:
            raise SimError(f"'position' has shape {pos.shape} and dtype {pos.dtype}; expected float "
                           f"(T, N, {self.dim}) (dim {self.dim} in {META})")
        T, n = pos.shape[:2]
        types = g["particle_type"][()]
        if types.shape != (n,) or types.dtype.kind not in "iu":
            raise SimError(f"'particle_type' has shape {types.shape} and dtype {types.dtype}; expected integer ({n},)")
        point_data = {"particle_type": types}
        point_fields, field_data = {}, {}
        for name, item in g.items():
            if name in ("position", "particle_type"):
                continue
            if not isinstance(item, h5py.Dataset):
                raise SimError(f"holds the group {name!r}, which has no place in a particle trajectory")
            a = item[()]
            if a.dtype.kind not in "biuf":
                raise SimError(f"dataset {name!r} has dtype {a.dtype}, which the store does not hold")
            if a.ndim >= 2 and a.shape[:2] == (T, n):
                point_fields[name] = a
            elif a.ndim >= 1 and a.shape[0] == n:
                point_data[name] = a
            else:
                field_data[name] = a
        codes = sorted(int(c) for c in np.unique(types))
        params = {**self.params, "particle_types": {str(c): PARTICLE_TYPES.get(c, f"type {c}") for c in codes}}
        if g.attrs:
            params["attrs"] = {k: _json_value(v) for k, v in g.attrs.items()}
        mesh = Mesh(pos[0].copy(), point_data=point_data, field_data=field_data)
        return Trajectory(mesh, np.arange(T, dtype=np.float64) * self.dt, point_fields=point_fields,
                          positions=pos, dt=self.dt, params=params).validate()
