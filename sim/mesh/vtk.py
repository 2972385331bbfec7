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

Reading covers every mesh and series format VTK and ParaView write:

- one dataset: ``.vtu``, ``.vtp``, ``.vts``, ``.vtr``, ``.vti`` (XML) and legacy ``.vtk``
  (structured grids become quadrilaterals and hexahedra);
- partitioned: ``.pvtu``, ``.pvtp``, ``.pvts``, ``.pvtr``, ``.pvti`` and legacy ``.pvtk``
  (their pieces are read one by one and joined into one mesh);
- composite: ``.vtm`` / ``.vtmb`` (multi-block), ``.vtpd`` (partitioned dataset), ``.vtpc``
  (partitioned collection): the blocks are joined (:func:`sim.mesh.adapters.merge_parts`;
  named blocks become ``set:<name>`` groups);
- ``.vtkhdf`` (VTK's HDF5 format): a mesh, or a series when it holds time steps;
- series: ``.pvd`` (ours and ParaView's, a step may have several parts, each any of the
  above) and ParaView's ``.series`` (JSON file series).

A foreign mesh whose points all have ``z`` exactly 0 is read as 2D
(:func:`sim.mesh.adapters.drop_zero_z`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import FileFormatError, SimError
from sim.mesh.adapters import (Part, composite_leaves, drop_zero_z, drop_zero_z_trajectory, is_composite,
                                merge_parts, mesh_from_pyvista, mesh_to_pyvista, read_meta)
from sim.mesh.atomic import atomic_path, clean_stale, staging_dir, swap_in, write_error, write_xml
from sim.mesh.core import Mesh, Trajectory
from sim.mesh.series import REFERENCE_POINTS, SeriesLayout, series_meta, step_arrays, trajectory_from_frames

_VTK_END = b"</VTKFile>"

#: One dataset per file (XML and legacy).
SERIAL_SUFFIXES = (".vtu", ".vtp", ".vts", ".vtr", ".vti", ".vtk")
#: A header naming piece files of one partitioned dataset.
PARALLEL_SUFFIXES = (".pvtu", ".pvtp", ".pvts", ".pvtr", ".pvti", ".pvtk")
#: Multi-block and partitioned collections naming other files.
COMPOSITE_SUFFIXES = (".vtm", ".vtmb", ".vtpd", ".vtpc")
HDF_SUFFIXES = (".vtkhdf",)
#: Everything :func:`read_vtk` reads.
READ_SUFFIXES = SERIAL_SUFFIXES + PARALLEL_SUFFIXES + COMPOSITE_SUFFIXES + HDF_SUFFIXES
#: Series indexes: :func:`read_pvd`, :func:`read_file_series`.
SERIES_SUFFIXES = (".pvd", ".series")
_MAX_DEPTH = 16  # files naming files: deeper than this is a loop


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


def _check_file(path: Path, what: str = "") -> None:
    if not path.exists():
        raise FileFormatError(f"no such file{what}", path)
    if path.is_dir():
        raise FileFormatError(f"is a folder{what}", path)
    if path.stat().st_size == 0:
        raise FileFormatError("is empty (0 bytes; a write that did not finish?)", path)


def _xml_root(path: Path, kind: str) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise FileFormatError(f"not a valid {kind} (XML) file: {exc}", path) from None


def _parallel_pieces(path: Path) -> list[Path]:
    """The piece files a ``.pvt*`` header (or a legacy ``.pvtk``) names, beside it."""
    root = _xml_root(path, "partitioned VTK")
    if path.suffix.lower() == ".pvtk":
        if root.tag != "File":
            raise FileFormatError("not a partitioned legacy VTK file (expected <File> with <Piece fileName=...>)",
                                  path)
        names = [piece.get("fileName") for piece in root.iter("Piece")]
    else:
        if root.tag != "VTKFile" or not str(root.get("type", "")).startswith("P"):
            raise FileFormatError("not a partitioned VTK file (expected <VTKFile type='P...'>)", path)
        names = [piece.get("Source") for piece in root.iter("Piece")]
    if not names:
        raise FileFormatError("names no pieces", path)
    if any(not n for n in names):
        raise FileFormatError("a <Piece> names no file", path)
    return [path.parent / n for n in names]


def _composite_files(path: Path) -> list[tuple[str | None, Path]]:
    """(block name, file) of every dataset a ``.vtm`` / ``.vtpd`` / ``.vtpc`` names, depth first;
    a dataset takes the name of its nearest named block."""
    root = _xml_root(path, "multi-block VTK")
    body = list(root)
    if root.tag != "VTKFile" or not body:
        raise FileFormatError("not a multi-block VTK file (expected <VTKFile type='vtkMultiBlockDataSet'> or a "
                              "partitioned collection)", path)
    out: list[tuple[str | None, Path]] = []

    def walk(element: ET.Element, name: str | None) -> None:
        for child in element:
            here = child.get("name") or name
            if child.get("file"):
                out.append((here, path.parent / child.get("file")))
            else:
                walk(child, here)

    walk(body[0], None)
    return out


def read_parts(path: str | os.PathLike, name: str | None = None, depth: int = 0) -> list[Part]:
    """Every mesh a VTK file holds, as read (3D unless the file states otherwise), before they
    are joined: one for a single dataset, one per piece or block otherwise. Errors name the
    file they are in (a piece's own file for a broken piece)."""
    path = Path(path)
    if depth > _MAX_DEPTH:
        raise FileFormatError(f"files name each other more than {_MAX_DEPTH} deep (a loop?)", path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix in PARALLEL_SUFFIXES:
        return [p for piece in _parallel_pieces(path) for p in read_parts(piece, name, depth + 1)]
    if suffix in COMPOSITE_SUFFIXES:
        files = _composite_files(path)
        if not files:
            raise FileFormatError("names no datasets", path)
        return [p for n, f in files for p in read_parts(f, n, depth + 1)]
    if suffix in HDF_SUFFIXES:
        mesh = read_vtkhdf(path)
        if isinstance(mesh, Trajectory):
            raise FileFormatError("holds a time series; a part of another file must be one mesh", path)
        return [Part(name, path.name, mesh, {"point_dim": mesh.dim})]
    dataset = _read_vtk_dataset(path)
    if is_composite(dataset):  # a reader that gives blocks
        return [Part(n or name, f"{path.name} block {i}", _from_pyvista(leaf, path), read_meta(leaf))
                for i, (n, leaf) in enumerate(composite_leaves(dataset))]
    return [Part(name, path.name, _from_pyvista(dataset, path), read_meta(dataset))]


def _from_pyvista(dataset: Any, path: Path) -> Mesh:
    try:
        return mesh_from_pyvista(dataset, planar=False)
    except SimError as exc:
        raise exc.with_path(path) from None


def _join(parts: list[Part], path: Path, planar: bool = True) -> Mesh:
    """The parts of one file (or one series step) as one mesh, 2D when ``planar`` allows and
    no part states its dimension."""
    try:
        mesh = merge_parts(parts, path)
    except SimError as exc:
        raise exc.with_path(path) from None
    return drop_zero_z(mesh) if planar and not any(p.stated for p in parts) else mesh


def read_vtk(path: str | os.PathLike) -> Mesh | Trajectory:
    """Read any VTK mesh file (:data:`READ_SUFFIXES`) as one Mesh: a partitioned or multi-block
    file's parts joined (:func:`sim.mesh.adapters.merge_parts`). A ``.vtkhdf`` with time steps
    is a Trajectory."""
    path = Path(path)
    if path.suffix.lower() in HDF_SUFFIXES:
        return read_vtkhdf(path)
    mesh = _join(read_parts(path), path)
    try:
        return mesh.validate(path)
    except SimError as exc:
        raise exc.with_path(path) from None


def is_vtkhdf(path: str | os.PathLike) -> bool:
    """An HDF5 file in VTK's format (its root group ``VTKHDF``), whatever its extension."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "VTKHDF" in f
    except (OSError, ValueError):
        return False


def read_vtkhdf(path: str | os.PathLike) -> Mesh | Trajectory:
    """A VTKHDF file (``vtkHDFWriter``, ParaView): a Mesh, or a Trajectory when it has time steps."""
    from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline as Pipeline
    from vtkmodules.vtkIOHDF import vtkHDFReader

    path = Path(path)
    _check_file(path)
    reader = vtkHDFReader()
    reader.SetFileName(os.fspath(path))
    with _vtk_errors() as caught:
        readable = reader.CanReadFile(os.fspath(path))
        if readable:
            reader.UpdateInformation()
    if not readable or caught.events:
        raise FileFormatError(f"cannot be read as a VTKHDF file ({_first_message(caught)})", path)
    info = reader.GetOutputInformation(0)
    times = list(info.Get(Pipeline.TIME_STEPS())) if info.Has(Pipeline.TIME_STEPS()) else None

    def step(t: float | None) -> list[Part]:
        with _vtk_errors() as caught:
            if t is None:
                reader.Update()
            else:
                reader.UpdateTimeStep(t)
        if caught.events:
            raise FileFormatError(f"cannot be read as a VTKHDF file ({_first_message(caught)})", path)
        out = reader.GetOutputDataObject(0)
        data = out.NewInstance()
        data.DeepCopy(out)  # the reader reuses its output for the next step
        import pyvista as pv

        leaves = composite_leaves(data) if is_composite(data) else [(None, pv.wrap(data))]
        return [Part(n, f"{path.name} part {i}", _from_pyvista(leaf, path), read_meta(leaf))
                for i, (n, leaf) in enumerate(leaves)]

    if not times:
        mesh = _join(step(None), path)
        try:
            return mesh.validate(path)
        except SimError as exc:
            raise exc.with_path(path) from None
    frames, stated = [], False
    for t in times:
        parts = step(t)
        stated = stated or any(p.stated for p in parts)
        frame = _join(parts, path, planar=False)
        for key in ("TimeValue", "Time"):  # the step's time, which the reader adds: already in `times`
            value = frame.field_data.get(key)
            if value is not None and not isinstance(value, str) and np.array_equal(np.ravel(value), [t]):
                del frame.field_data[key]
        frames.append(frame)
    return _series(frames, np.array(times, dtype=np.float64), {}, path, stated)


def _series(frames: list[Mesh], times: np.ndarray, meta: dict[str, Any], path: Path, stated: bool) -> Trajectory:
    try:
        traj = trajectory_from_frames(frames, times, meta, str(path))
        if not stated:
            traj = drop_zero_z_trajectory(traj)
        return traj.validate(path)
    except SimError as exc:
        raise exc.with_path(path) from None


Step = tuple[float, list[tuple[str | None, Path]]]  # a series step: its time and its parts' (name, file)


def read_step(step: Step, path: Path) -> tuple[Mesh, dict[str, Any], bool]:
    """One step of a series as one mesh (its files are the parts of it), with the meta our
    writers store in a one-part step and whether a part states its dimension; 3D as read."""
    parts = [p for name, f in step[1] for p in read_parts(f, name)]
    frame = _join(parts, step[1][0][1] if len(step[1]) == 1 else path, planar=False)
    frame.field_data.pop("TimeValue", None)  # the step's time, already in the index
    return frame, parts[0].meta if len(parts) == 1 else {}, any(p.stated for p in parts)


def _read_steps(steps: list[Step], path: Path) -> Trajectory:
    """A series from (time, [(part name, file), ...]) per step: each step's files are the parts
    of one mesh; our writers' ``sim_meta`` (one part per step) restores the trajectory exactly."""
    frames, meta, stated = [], None, False
    for step in steps:
        frame, step_meta, step_stated = read_step(step, path)
        if meta is None:
            meta = step_meta
        stated = stated or step_stated
        frames.append(frame)
    return _series(frames, np.array([t for t, _ in steps], dtype=np.float64), meta or {}, path, stated)


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


def pvd_steps(path: str | os.PathLike) -> list[Step]:
    """The steps a ``.pvd`` index names, in time order (several ``<DataSet>`` parts at one time
    are the parts of one mesh), without reading them."""
    path = Path(path)
    _check_file(path)
    root = _xml_root(path, "PVD")
    coll = root.find("Collection")
    if root.tag != "VTKFile" or root.get("type") != "Collection" or coll is None:
        raise FileFormatError("not a PVD collection (expected <VTKFile type='Collection'><Collection>)", path)
    by_time: dict[float, list[tuple[str | None, Path]]] = {}
    for ds in coll.findall("DataSet"):
        if not ds.get("file"):
            raise FileFormatError("a <DataSet> has no file attribute", path)
        try:
            t = float(ds.get("timestep", "0"))
        except ValueError:
            raise FileFormatError(f"a <DataSet> has timestep {ds.get('timestep')!r}, not a number", path) from None
        by_time.setdefault(t, []).append((ds.get("group") or None, path.parent / ds.get("file")))
    if not by_time:
        raise FileFormatError("the series has no time steps", path)
    return sorted(by_time.items())


def read_pvd(path: str | os.PathLike) -> Trajectory:
    """Read a ``.pvd`` series (ours or another program's) as a Trajectory. A time with several
    ``<DataSet>`` parts (ParaView's parallel or multi-block output) is one mesh: its parts are
    joined (:func:`sim.mesh.adapters.merge_parts`; distinct ``group`` names become groups)."""
    return _read_steps(pvd_steps(path), Path(path))


def file_series_steps(path: str | os.PathLike) -> list[Step]:
    """The steps ParaView's JSON file series (``<name>.<ext>.series``: ``{"file-series-version":
    "1.0", "files": [{"name": ..., "time": ...}, ...]}``) names, in time order, without reading them."""
    path = Path(path)
    _check_file(path)
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"not a valid file series (JSON): {exc}", path) from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not files:
        raise FileFormatError("not a file series (expected {\"files\": [{\"name\": ..., \"time\": ...}, ...]})", path)
    by_time: dict[float, Path] = {}
    for i, item in enumerate(files):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or \
                not isinstance(item.get("time"), (int, float)) or isinstance(item.get("time"), bool):
            raise FileFormatError(f"entry {i} of 'files' is not {{\"name\": FILE, \"time\": NUMBER}}", path)
        t = float(item["time"])
        if t in by_time:
            raise FileFormatError(f"time {t!r} appears twice ({by_time[t].name} and {item['name']})", path)
        by_time[t] = path.parent / item["name"]
    return [(t, [(None, f)]) for t, f in sorted(by_time.items())]


def read_file_series(path: str | os.PathLike) -> Trajectory:
    """Read ParaView's JSON file series (:func:`file_series_steps`) as a Trajectory."""
    return _read_steps(file_series_steps(path), Path(path))
