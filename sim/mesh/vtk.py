"""ParaView series: one ``.vtu`` per step and a ``.pvd`` index with the time values.

Layout written by :class:`PVDWriter` for ``out/flow.pvd``::

    out/flow.pvd                 <VTKFile type="Collection"> ... <DataSet timestep=t file=...>
    out/flow/flow_000000.vtu     step 0: points, cells, static and step arrays, node_type
    out/flow/flow_000001.vtu     ...

Each ``.vtu`` is written atomically as its step arrives; the ``.pvd`` is written
atomically when the writer closes, so a failed run leaves no index under the final name
(and the writer removes the step files it wrote).
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import FileFormatError, SimError
from sim.mesh.adapters import mesh_from_pyvista, mesh_to_pyvista, read_meta
from sim.mesh.atomic import atomic_path
from sim.mesh.core import Mesh, Trajectory
from sim.mesh.series import REFERENCE_POINTS, SeriesLayout, series_meta, step_arrays, trajectory_from_frames


def write_vtu(mesh: Mesh, path: str | os.PathLike, extra_meta: dict[str, Any] | None = None) -> None:
    """Write one mesh as a binary, zlib-compressed ``.vtu`` (atomically)."""
    mesh.validate(path)
    grid = mesh_to_pyvista(mesh, extra_meta)
    with atomic_path(path) as tmp:
        grid.save(tmp, binary=True, compression="zlib")


def _read_vtk_dataset(path: Path):
    import pyvista as pv

    if not path.exists():
        raise FileFormatError("no such file", path)
    try:
        return pv.read(path)
    except Exception as exc:  # VTK reports parse errors in many shapes; one message for all
        raise FileFormatError(f"cannot be read as a VTK file ({type(exc).__name__}: {exc})", path) from None


def read_vtk(path: str | os.PathLike) -> Mesh:
    """Read a ``.vtu`` (or any file pyvista reads) as a Mesh."""
    path = Path(path)
    dataset = _read_vtk_dataset(path)
    try:
        return mesh_from_pyvista(dataset).validate(path)
    except SimError as exc:
        raise exc.with_path(path) from None


class PVDWriter:
    """Stream a trajectory to ``.pvd`` + one ``.vtu`` per step.

    Args:
        path: the ``.pvd`` file; step files go to the folder ``<stem>/`` beside it.
        layout: the static mesh and the names of the arrays each step carries.
    """

    def __init__(self, path: str | os.PathLike, layout: SeriesLayout):
        self.path = Path(path)
        if self.path.suffix.lower() != ".pvd":
            raise FileFormatError("a ParaView series index must end in .pvd", self.path)
        self.layout = layout
        layout.mesh.validate(self.path)
        self.step_dir = self.path.parent / self.path.stem
        self._created_dir = not self.step_dir.exists()
        self.step_dir.mkdir(parents=True, exist_ok=True)
        self._written: list[tuple[float, Path]] = []
        self._meta = series_meta(layout)
        self._closed = False

    def write(self, time: float, point_fields: dict[str, Any] | None = None,
              cell_fields: dict[str, Any] | None = None, positions: Any = None) -> None:
        """Write one step."""
        point_fields, cell_fields = point_fields or {}, cell_fields or {}
        prev = self._written[-1][0] if self._written else None
        self.layout.check_step(float(time), point_fields, cell_fields, positions, prev, str(self.path))
        m = self.layout.mesh
        static = dict(m.point_data)
        if positions is not None:
            static[REFERENCE_POINTS] = m.points
        frame = Mesh(
            points=m.points if positions is None else np.asarray(positions),
            cells=m.cells,
            point_data={**static, **point_fields},
            cell_data={**m.cell_data, **cell_fields},
            field_data=m.field_data,
            node_type=m.node_type,
        )
        step_path = self.step_dir / f"{self.path.stem}_{len(self._written):06d}.vtu"
        grid = mesh_to_pyvista(frame, {**self._meta, "time": float(time)})
        grid.field_data["TimeValue"] = np.array([float(time)])
        with atomic_path(step_path) as tmp:
            grid.save(tmp, binary=True, compression="zlib")
        self._written.append((float(time), step_path))

    def close(self) -> Path:
        """Write the ``.pvd`` index; returns its path."""
        if self._closed:
            return self.path
        root = ET.Element("VTKFile", type="Collection", version="0.1", byte_order="LittleEndian")
        coll = ET.SubElement(root, "Collection")
        for t, p in self._written:
            ET.SubElement(coll, "DataSet", timestep=repr(t), group="", part="0",
                          file=p.relative_to(self.path.parent).as_posix())
        ET.indent(root)
        with atomic_path(self.path) as tmp:
            ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Remove what this writer wrote (used when the producer fails)."""
        for _, p in self._written:
            p.unlink(missing_ok=True)
        if self._created_dir:
            shutil.rmtree(self.step_dir, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> "PVDWriter":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_pvd(traj: Trajectory, path: str | os.PathLike, progress: bool = False) -> Path:
    """Write a whole trajectory as a ParaView series (``progress``: a bar over the steps)."""
    from tqdm import tqdm

    with PVDWriter(path, SeriesLayout.of(traj)) as w:
        for t in tqdm(range(traj.num_steps), desc=Path(path).name, unit="step", disable=not progress):
            w.write(**step_arrays(traj, t))
    return Path(path)


def read_pvd(path: str | os.PathLike) -> Trajectory:
    """Read a ``.pvd`` series (ours or another program's) as a Trajectory."""
    path = Path(path)
    if not path.exists():
        raise FileFormatError("no such file", path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise FileFormatError(f"not a valid PVD (XML) file: {exc}", path) from None
    coll = root.find("Collection")
    if root.tag != "VTKFile" or root.get("type") != "Collection" or coll is None:
        raise FileFormatError("not a PVD collection (expected <VTKFile type='Collection'><Collection>)", path)
    items = coll.findall("DataSet")
    by_time: dict[float, list[str]] = {}
    for ds in items:
        if ds.get("file") is None:
            raise FileFormatError("a <DataSet> has no file attribute", path)
        by_time.setdefault(float(ds.get("timestep", "0")), []).append(ds.get("file"))
    multi = [t for t, fs in by_time.items() if len(fs) > 1]
    if multi:
        raise FileFormatError(
            f"time {multi[0]!r} has {len(by_time[multi[0]])} parts; multi-part series are not supported "
            "(merge the parts first)", path)
    times = np.array(sorted(by_time), dtype=np.float64)
    frames, meta = [], None
    for t in times:
        step = path.parent / by_time[float(t)][0]
        dataset = _read_vtk_dataset(step)
        if meta is None:
            meta = read_meta(dataset)
        try:
            frame = mesh_from_pyvista(dataset)
            frame.field_data.pop("TimeValue", None)  # the step's time, already in `times`
            frames.append(frame)
        except SimError as exc:
            raise exc.with_path(step) from None
    traj = trajectory_from_frames(frames, times, meta or {}, str(path))
    return traj.validate(path)
