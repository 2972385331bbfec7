"""ParaView series: one ``.vtu`` per step and a ``.pvd`` index with the time values.

Layout written by :class:`PVDWriter` for ``out/flow.pvd``::

    out/flow.pvd                 <VTKFile type="Collection"> ... <DataSet timestep=t file=...>
    out/flow/flow_000000.vtu     step 0: points, cells, static and step arrays, node_type
    out/flow/flow_000001.vtu     ...

A series is written into a private staging folder beside it and swapped in whole (step
folder, then index) when the writer closes (:func:`sim.mesh.atomic.swap_in`): a failed or
killed run leaves the previous series of the same name as it was, and the index never names
step files of another run.

VTK's writers report a failure (a full disk) only through an error code, so every write here
is checked: the code, VTK's error messages, and that the file ends where a VTK file ends.
Readers refuse what VTK cannot parse instead of returning an empty mesh.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import FileFormatError, SimError
from sim.mesh.adapters import mesh_from_pyvista, mesh_to_pyvista, read_meta
from sim.mesh.atomic import atomic_path, clean_stale, staging_dir, swap_in, write_error, write_xml
from sim.mesh.core import Mesh, Trajectory
from sim.mesh.series import REFERENCE_POINTS, SeriesLayout, series_meta, step_arrays, trajectory_from_frames

_VTK_END = b"</VTKFile>"


@contextlib.contextmanager
def _vtk_errors() -> Iterator[Any]:
    """Collect VTK's error messages (instead of printing them) for the caller to judge."""
    import pyvista as pv
    from vtkmodules.vtkCommonCore import vtkLogger

    verbosity = vtkLogger.GetCurrentVerbosityCutoff()
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_OFF)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyvista repeats VTK's errors as warnings
            with pv.VtkErrorCatcher(send_to_logging=False) as caught:
                yield caught
    finally:
        vtkLogger.SetStderrVerbosity(verbosity)


def _first_message(caught: Any) -> str:
    """VTK's first complaint in one line (a generic warning's first line only says where it is from)."""
    if not caught.events:
        return "no details"
    lines = [ln for ln in caught.events[0].alert.splitlines() if ln.strip()] or ["no details"]
    return lines[1] if lines[0].startswith("Generic Warning") and len(lines) > 1 else lines[0]


def _write_xml_grid(grid: Any, path: Path) -> None:
    """Write ``grid`` as a binary, zlib-compressed ``.vtu``; an OSError when VTK reports failure.

    VTK's XML writer directly rather than pyvista's ``save``: ``save`` ignores the writer's
    error code, and it writes inline binary data, in which VTK 9 crashes the process on a
    full disk (appended raw data fails cleanly, and is also smaller and what ParaView writes).
    """
    from vtkmodules.vtkCommonMisc import vtkErrorCode
    from vtkmodules.vtkIOXML import vtkXMLUnstructuredGridWriter

    writer = vtkXMLUnstructuredGridWriter()
    writer.SetInputData(grid)
    writer.SetFileName(os.fspath(path))
    writer.SetDataModeToAppended()
    writer.EncodeAppendedDataOff()
    writer.SetCompressorTypeToZLib()
    with _vtk_errors() as caught:
        ok = writer.Write()
    code = writer.GetErrorCode()
    if ok and not code and not caught.events:
        return
    if 0 < code < vtkErrorCode.FirstVTKErrorCode:  # a system errno (ENOSPC, EACCES, ...)
        raise OSError(code, os.strerror(code))
    reason = vtkErrorCode.GetStringFromErrorCode(code) if code else _first_message(caught)
    raise OSError(None, f"VTK could not write it: {reason}")


def _is_whole(path: Path) -> bool:
    """A VTK XML file ends with its closing tag: anything else was cut short. (VTK reads a file
    cut inside its appended data without a word, as a mesh with no points.)"""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 64))
        return _VTK_END in f.read()


def _save_grid(grid: Any, tmp: Path, final: Path) -> None:
    """Write ``grid`` to ``tmp`` and check it is whole; errors name ``final``, the file it is for."""
    try:
        _write_xml_grid(grid, tmp)
        whole = _is_whole(tmp)
    except OSError as exc:
        raise write_error(final, exc) from None
    if not whole:
        raise FileFormatError(f"the VTK file written was not complete ({tmp.stat().st_size} bytes)", final)


def write_vtu(mesh: Mesh, path: str | os.PathLike, extra_meta: dict[str, Any] | None = None) -> None:
    """Write one mesh as a binary, zlib-compressed ``.vtu`` (atomically, checked)."""
    mesh.validate(path)
    grid = mesh_to_pyvista(mesh, extra_meta)
    with atomic_path(path) as tmp:
        _save_grid(grid, tmp, Path(path))


def _read_vtk_dataset(path: Path):
    import pyvista as pv
    from vtkmodules.vtkIOXML import vtkXMLReader

    if not path.exists():
        raise FileFormatError("no such file", path)
    if path.stat().st_size == 0:
        raise FileFormatError("is empty (0 bytes; a write that did not finish?)", path)
    # VTK's reader first, its messages collected: pyvista's read would print them, or (older
    # versions) return an empty mesh. Its read then takes the output from the pipeline. A
    # warning is refused too: the legacy reader only warns when the data are cut short.
    with _vtk_errors() as caught:
        try:
            reader = pv.get_reader(path)
        except ValueError:
            raise FileFormatError(f"{path.suffix!r} is not a format VTK reads", path) from None
        reader.reader.Update()
    if caught.events:
        raise FileFormatError(f"cannot be read as a VTK file ({_first_message(caught)})", path)
    if isinstance(reader.reader, vtkXMLReader) and not _is_whole(path):
        raise FileFormatError("is cut short (no closing </VTKFile>; a write that did not finish?)", path)
    try:
        return reader.read()
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

    The steps go to a private staging folder beside ``path``; :meth:`close` swaps the series
    in whole (replacing a previous one of the same name), :meth:`abort` removes the staging
    folder and leaves a previous series untouched.

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
        clean_stale(self.path.parent)
        self._stage = staging_dir(self.path)
        self._written: list[tuple[float, str]] = []  # (time, step file name)
        self._meta = series_meta(layout)
        self._closed = False
        try:
            (self._stage / self.step_dir.name).mkdir()
        except OSError as exc:
            self.abort()
            raise write_error(self.step_dir, exc) from None

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
        name = f"{self.path.stem}_{len(self._written):06d}.vtu"
        grid = mesh_to_pyvista(frame, {**self._meta, "time": float(time)})
        grid.field_data["TimeValue"] = np.array([float(time)])
        _save_grid(grid, self._stage / self.step_dir.name / name, self.step_dir / name)
        self._written.append((float(time), name))

    def close(self) -> Path:
        """Write the ``.pvd`` index and swap the series into place; returns its path."""
        if self._closed:
            return self.path
        root = ET.Element("VTKFile", type="Collection", version="0.1", byte_order="LittleEndian")
        coll = ET.SubElement(root, "Collection")
        for t, name in self._written:
            ET.SubElement(coll, "DataSet", timestep=repr(t), group="", part="0", file=f"{self.step_dir.name}/{name}")
        ET.indent(root)
        try:
            write_xml(root, self._stage / self.path.name, self.path)
            swap_in([(self._stage / self.step_dir.name, self.step_dir), (self._stage / self.path.name, self.path)])
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        """Remove what this writer staged (used when the producer fails); a previous series stays."""
        shutil.rmtree(self._stage, ignore_errors=True)
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
