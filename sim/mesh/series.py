"""Time series shared by the PVD and XDMF readers and writers.

Writers stream: the caller hands over one step at a time and nothing but the current step
is held in memory. Readers rebuild a :class:`~sim.mesh.Trajectory` from the steps; which
arrays are time-dependent is recorded by our writers (``sim_meta``) and, for foreign
series, inferred: an array that differs between steps is a time-dependent field, one that
does not is static data. A series whose connectivity changes between steps cannot be a
Trajectory and is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.errors import FileFormatError, MeshError
from sim.mesh import validate as _v
from sim.mesh.core import Mesh, Trajectory, same_array_dicts

#: Static point array in which our writers keep a moving series' reference configuration
#: (it need not equal the first step's positions, nor share their dtype).
REFERENCE_POINTS = "sim_reference_points"


def trajectory_from_frames(frames: list[Mesh], times: np.ndarray, meta: dict[str, Any], label: str) -> Trajectory:
    """Assemble a Trajectory from per-step meshes of one series."""
    if not frames:
        raise FileFormatError("the series has no time steps", label)
    first = frames[0]
    for i, fr in enumerate(frames[1:], start=1):
        if list(fr.cells) != list(first.cells) or any(
            not np.array_equal(fr.cells[k], first.cells[k]) for k in first.cells
        ):
            raise FileFormatError(
                f"the connectivity changes at step {i}; a trajectory needs fixed cells (convert steps separately)",
                label,
            )
        for kind in ("point_data", "cell_data"):
            if set(getattr(fr, kind)) != set(getattr(first, kind)):
                missing = set(getattr(first, kind)) ^ set(getattr(fr, kind))
                raise FileFormatError(f"step {i} does not have the same arrays as step 0 ({sorted(missing)})", label)
        if not same_array_dicts(fr.field_data, first.field_data):
            raise FileFormatError(f"field data changes at step {i}; only point and cell arrays may vary", label)

    def varying(kind: str, name: str) -> bool:
        a0 = getattr(first, kind)[name]
        return any(not np.array_equal(getattr(fr, kind)[name], a0, equal_nan=a0.dtype.kind == "f") for fr in frames[1:])

    if "time_point_fields" in meta:
        tpf = list(meta["time_point_fields"])
        tcf = list(meta.get("time_cell_fields", []))
        moving = bool(meta.get("moving", False))
    else:
        tpf = [k for k in first.point_data if varying("point_data", k)]
        tcf = [k for k in first.cell_data if varying("cell_data", k)]
        moving = any(not np.array_equal(fr.points, first.points) for fr in frames[1:])
    if first.node_type is not None and any(not np.array_equal(fr.node_type, first.node_type) for fr in frames[1:]):
        raise FileFormatError("node types change between steps; they must be static", label)
    reference = first.points
    if REFERENCE_POINTS in first.point_data:
        reference = first.point_data[REFERENCE_POINTS]
        for fr in frames:
            fr.point_data.pop(REFERENCE_POINTS, None)

    mesh = Mesh(
        points=reference,
        cells=first.cells,
        point_data={k: v for k, v in first.point_data.items() if k not in tpf},
        cell_data={k: v for k, v in first.cell_data.items() if k not in tcf},
        field_data=first.field_data,
        node_type=first.node_type,
    )
    return Trajectory(
        mesh=mesh,
        times=np.asarray(times, dtype=np.float64),
        point_fields={k: np.stack([fr.point_data[k] for fr in frames]) for k in tpf},
        cell_fields={k: np.stack([fr.cell_data[k] for fr in frames]) for k in tcf},
        positions=np.stack([fr.points for fr in frames]) if moving else None,
        dt=meta.get("dt"),
        params=meta.get("params", {}),
    )


def series_meta(traj_like: "SeriesLayout") -> dict[str, Any]:
    """The metadata our series writers record so readers restore the trajectory exactly."""
    meta: dict[str, Any] = {
        "time_point_fields": list(traj_like.point_fields),
        "time_cell_fields": list(traj_like.cell_fields),
        "moving": traj_like.moving,
        "params": traj_like.params,
    }
    if traj_like.dt is not None:
        meta["dt"] = traj_like.dt
    return meta


class SeriesLayout:
    """What a streaming series writer needs to know before the first step.

    Args:
        mesh: static mesh (reference points, cells, static data, node types).
        point_fields / cell_fields: names of the time-dependent arrays each step will carry.
        moving: whether each step carries its own point positions.
        dt / params: recorded in the file for an exact round trip.
    """

    def __init__(self, mesh: Mesh, point_fields: list[str] = (), cell_fields: list[str] = (),
                 moving: bool = False, dt: float | None = None, params: dict[str, Any] | None = None):
        self.mesh = mesh
        self.point_fields = list(point_fields)
        self.cell_fields = list(cell_fields)
        self.moving = moving
        self.dt = dt
        self.params = dict(params or {})

    def check_step(self, time: float, point_fields: dict[str, Any], cell_fields: dict[str, Any],
                   positions: Any, previous_time: float | None, label: str) -> None:
        """One readable error when a step does not match the layout announced at the start."""
        if set(point_fields) != set(self.point_fields) or set(cell_fields) != set(self.cell_fields):
            raise FileFormatError(
                f"step at t={time!r} carries fields {sorted(point_fields) + sorted(cell_fields)}, "
                f"expected {sorted(self.point_fields) + sorted(self.cell_fields)}", label)
        if (positions is None) == self.moving:
            raise FileFormatError(
                "positions must be given at every step of a moving series and never otherwise", label)
        if previous_time is not None and not time > previous_time:
            raise FileFormatError(f"time {time!r} does not increase (previous step {previous_time!r})", label)
        if not np.isfinite(time):
            raise FileFormatError(f"time {time!r} is not finite", label)
        m = self.mesh
        try:
            for k, a in point_fields.items():
                _v.check_rows("point field", k, a, m.num_points, "points")
            for k, a in cell_fields.items():
                _v.check_rows("cell field", k, a, m.num_cells, "cells")
            if positions is not None:
                Mesh(np.asarray(positions), m.cells).validate()
                if np.shape(positions) != m.points.shape:
                    raise MeshError(f"positions have shape {np.shape(positions)}; expected {m.points.shape}")
        except MeshError as exc:
            raise MeshError(f"step at t={time!r}: {exc.message}", label) from None

    @classmethod
    def of(cls, traj: Trajectory) -> "SeriesLayout":
        return cls(traj.mesh, list(traj.point_fields), list(traj.cell_fields), traj.positions is not None,
                   traj.dt, traj.params)


def step_arrays(traj: Trajectory, t: int) -> dict[str, Any]:
    """Keyword arguments of a series writer's ``write`` for step ``t`` of ``traj``."""
    return {
        "time": float(traj.times[t]),
        "point_fields": {k: v[t] for k, v in traj.point_fields.items()},
        "cell_fields": {k: v[t] for k, v in traj.cell_fields.items()},
        "positions": None if traj.positions is None else traj.positions[t],
    }
