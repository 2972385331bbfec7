"""Step-by-step reading of any series or store ``sim`` reads, one frame at a time, for viewers
and tools that must not hold a whole series in memory.

:func:`open_frames` gives a :class:`Frames`: the steps' times and, per step, the mesh as it is
at that step (positions of a moving mesh or particle set, static and step arrays together).
Series indexes (``.pvd``, ``.series``), XDMF temporal collections and store entries are read
lazily, step by step; any other file ``sim`` reads (a single mesh, a ``.vtkhdf`` series) is
read once.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from sim.errors import FileFormatError, SimError
from sim.mesh.adapters import drop_zero_z
from sim.mesh.core import Mesh, Trajectory


class Frames:
    """A series read step by step. ``frame(i)`` is step ``i`` as a :class:`Mesh` whose points
    are the step's positions and whose point/cell data hold the static and the step's arrays.
    The last few frames read are kept (``cache``)."""

    def __init__(self, label: str, times: np.ndarray, cache: int = 4):
        self.label = label
        self.times = np.asarray(times, dtype=np.float64)
        self._cache: OrderedDict[int, Mesh] = OrderedDict()
        self._cache_size = cache

    def __len__(self) -> int:
        return len(self.times)

    def frame(self, i: int) -> Mesh:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"step {i} of a series of {len(self)} step(s)")
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        try:
            mesh = self._read(i)
        except SimError as exc:
            raise exc.with_path(self.label) from None
        self._cache[i] = mesh
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return mesh

    def _read(self, i: int) -> Mesh:
        raise NotImplementedError

    def close(self) -> None:
        """Release open files (the frames read so far stay usable)."""

    def __enter__(self) -> "Frames":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _at_step(mesh: Mesh, points: np.ndarray | None, point_fields: dict[str, np.ndarray],
             cell_fields: dict[str, np.ndarray]) -> Mesh:
    return Mesh(points=mesh.points if points is None else points, cells=mesh.cells,
                point_data={**mesh.point_data, **point_fields}, cell_data={**mesh.cell_data, **cell_fields},
                field_data=mesh.field_data, node_type=mesh.node_type)


class TrajectoryFrames(Frames):
    """Frames of a trajectory already in memory."""

    def __init__(self, traj: Trajectory | Mesh, label: str):
        self.traj = traj
        super().__init__(label, traj.times if isinstance(traj, Trajectory) else np.zeros(1))

    def _read(self, i: int) -> Mesh:
        t = self.traj
        if isinstance(t, Mesh):
            return t
        return _at_step(t.mesh, None if t.positions is None else t.positions[i],
                        {k: v[i] for k, v in t.point_fields.items()}, {k: v[i] for k, v in t.cell_fields.items()})


class StoreFrames(Frames):
    """Frames of one store entry: the static mesh is read once, each step's arrays on demand."""

    def __init__(self, path: Path, entry: str | None):
        from sim.mesh.store import Store, check_entry_name

        self.store = Store(path)
        try:
            names = self.store.names()
            if not names:
                raise SimError("the store has no entries", path)
            if entry is None:
                if len(names) != 1:
                    listed = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
                    raise SimError(f"the store holds {len(names)} entries; choose one with --entry ({listed})", path)
                entry = names[0]
            check_entry_name(entry, path)
            if entry not in self.store:
                raise SimError(f"the store has no entry {entry!r} (it has {', '.join(names[:10])})", path)
            self.entry = self.store.entry(entry)
            self.mesh = self.entry.mesh()
            times = self.entry.times() if self.entry.kind == "trajectory" else np.zeros(1)
        except BaseException:
            self.store.close()
            raise
        super().__init__(f"{path}:{entry}", times)

    def _read(self, i: int) -> Mesh:
        e = self.entry
        if e.kind == "mesh":
            return self.mesh
        pos = e.positions
        return _at_step(self.mesh, None if pos is None else pos[i], {k: d[i] for k, d in e.point_fields.items()},
                        {k: d[i] for k, d in e.cell_fields.items()})

    def close(self) -> None:
        self.store.close()


class VTKSeriesFrames(Frames):
    """Frames of a ``.pvd`` or ``.series`` index: each step's files are read when asked for."""

    def __init__(self, path: Path):
        from sim.mesh.vtk import file_series_steps, pvd_steps

        self.path = path
        self.steps = pvd_steps(path) if path.suffix.lower() == ".pvd" else file_series_steps(path)
        super().__init__(str(path), np.array([t for t, _ in self.steps]))

    def _read(self, i: int) -> Mesh:
        from sim.mesh.vtk import read_step

        frame, _, stated = read_step(self.steps[i], self.path)
        return frame if stated else drop_zero_z(frame)  # our files state their dimension; others are 2D at z = 0


class XdmfFrames(Frames):
    """Frames of an XDMF temporal collection: each step's grid is read when asked for."""

    def __init__(self, path: Path):
        from sim.mesh.xdmf import _XdmfReader, temporal_grids

        self.reader = _XdmfReader(path)
        try:
            temporal = temporal_grids(self.reader)
        except BaseException:
            self.reader.close()
            raise
        if temporal is None:
            self.grids = [self.reader.root.find("Domain").find("Grid")]
            times = np.zeros(1)
        else:
            times, self.grids = temporal
        super().__init__(str(path), times)

    def _read(self, i: int) -> Mesh:
        return self.reader.grid_mesh(self.grids[i])

    def close(self) -> None:
        self.reader.close()


def open_frames(path: str | os.PathLike, entry: str | None = None) -> Frames:
    """Open any series, store entry or mesh ``sim`` reads for step-by-step reading.

    Args:
        path: a ``.pvd`` / ``.series`` index, an ``.xdmf``, a store (``.h5``; ``entry`` names
            the trajectory, optional when it holds one), or any single mesh file.
        entry: the store entry to show.
    """
    from sim.mesh.io import read
    from sim.mesh.store import Store

    path = Path(path)
    if not path.exists():
        raise FileFormatError("no such file", path)
    if path.is_dir():
        raise FileFormatError("is a folder; give a series (.pvd, .xdmf), a store (.h5) or a mesh file", path)
    suffix = path.suffix.lower()
    if entry is not None and suffix not in (".h5", ".hdf5"):
        raise SimError("--entry names an entry of a store (.h5); this is not one", path)
    if suffix in (".pvd", ".series"):
        return VTKSeriesFrames(path)
    if suffix in (".xdmf", ".xmf"):
        return XdmfFrames(path)
    obj = read(path)
    if isinstance(obj, Store):
        obj.close()
        return StoreFrames(path, entry)
    return TrajectoryFrames(obj, str(path))
