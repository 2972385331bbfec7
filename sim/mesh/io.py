"""Read and write any supported file by its extension.

- ``.h5`` / ``.hdf5``: the sim store (:mod:`sim.mesh.store`), or a VTKHDF file
- ``.pvd`` and ParaView's ``.series``: series (:mod:`sim.mesh.vtk`; a step may have several
  parts, joined into one mesh)
- every VTK mesh format: ``.vtu``/``.vtp``/``.vts``/``.vtr``/``.vti``/``.vtk``, partitioned
  ``.pvtu``/``.pvtp``/``.pvts``/``.pvtr``/``.pvti``/``.pvtk``, multi-block
  ``.vtm``/``.vtmb``/``.vtpd``/``.vtpc`` (parts joined into one mesh), ``.vtkhdf`` (a mesh
  or a series)
- ``.xdmf`` / ``.xmf``: XDMF time series or mesh (:mod:`sim.mesh.xdmf`)
- anything else meshio knows (``.msh``, ``.med``, ``.inp``, ``.stl``, ``.obj``, ``.ply``,
  ``.off``, ``.mesh``, ``.su2``, ...): a static mesh through meshio

A file that does not state its dimension (anything but our own) whose points all have
``z`` exactly 0 is read as a 2D mesh (:func:`sim.mesh.adapters.drop_zero_z`).

Datasets of other projects (DeepMind's MeshGraphNets TFRecords, LagrangeBench's HDF5
files; :mod:`sim.mesh.foreign`) hold many trajectories and can be many GB, so :func:`read`
does not load them whole: it recognises them and says how to convert them
(:func:`convert_foreign`, ``sim convert IN OUT.h5``), and ``sim.mesh.foreign.open_dataset``
streams them trajectory by trajectory.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from sim.errors import FileFormatError, SimError
from sim.mesh.atomic import atomic_path
from sim.mesh.core import Mesh, Trajectory
from sim.mesh.store import Store, StoreWriter
from sim.mesh.vtk import READ_SUFFIXES

STORE_SUFFIXES = (".h5", ".hdf5")
VTK_SUFFIXES = READ_SUFFIXES
XDMF_SUFFIXES = (".xdmf", ".xmf")


def _meshio_formats(path: Path) -> list[str]:
    """meshio's format names for ``path``'s extension (``.vol.gz`` style double suffixes too)."""
    import meshio

    name = path.name.lower()
    for ext in sorted(meshio.extension_to_filetypes, key=len, reverse=True):
        if name.endswith(ext):
            return list(meshio.extension_to_filetypes[ext])
    return []


def read(path: str | os.PathLike) -> Mesh | Trajectory | Store:
    """Read ``path``: a Store for store files, a Trajectory for series, a Mesh otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileFormatError("no such file", path)
    if path.is_dir():
        _refuse_foreign(path)  # a PLAID dataset is a folder
        raise FileFormatError("is a folder; give a mesh, series or store file", path)
    if path.is_file() and path.stat().st_size == 0:  # some readers would return an empty mesh
        raise FileFormatError("is empty (0 bytes; a write that did not finish?)", path)
    suffix = path.suffix.lower()
    if suffix in STORE_SUFFIXES:
        try:
            return Store(path)
        except FileFormatError:
            from sim.mesh.vtk import is_vtkhdf, read_vtkhdf

            if is_vtkhdf(path):
                return read_vtkhdf(path)
            _refuse_foreign(path)
            raise
    if suffix == ".pvd":
        from sim.mesh.vtk import read_pvd

        return read_pvd(path)
    if suffix == ".series":
        from sim.mesh.vtk import read_file_series

        return read_file_series(path)
    if suffix in VTK_SUFFIXES:
        from sim.mesh.vtk import read_vtk

        return read_vtk(path)
    if suffix in XDMF_SUFFIXES:
        return _read_xdmf(path)
    if suffix == ".hdf":
        from sim.mesh.vtk import is_vtkhdf, read_vtkhdf

        if is_vtkhdf(path):
            return read_vtkhdf(path)
    if not _meshio_formats(path):
        _refuse_foreign(path)
    return read_meshio(path)


def _read_xdmf(path: Path) -> Mesh | Trajectory:
    """An XDMF file; one of another program's (meshio, FEniCS, ParaView) at ``z`` exactly 0 is 2D."""
    from sim.mesh.adapters import drop_zero_z, drop_zero_z_trajectory
    from sim.mesh.xdmf import read_xdmf

    obj = read_xdmf(path)
    if _xdmf_states_dim(path):
        return obj
    return drop_zero_z_trajectory(obj) if isinstance(obj, Trajectory) else drop_zero_z(obj)


def _xdmf_states_dim(path: Path) -> bool:
    """Our XDMF writer records the point dimension in ``<name>.h5`` beside the index."""
    import json

    import h5py

    data = path.with_name(path.name + ".h5")
    if not data.is_file():
        return False
    try:
        with h5py.File(data, "r") as f:
            return "point_dim" in json.loads(f.attrs.get("sim_meta", "{}"))
    except (OSError, ValueError):
        return False


def detect_foreign(path: str | os.PathLike) -> str | None:
    """The format of another project's dataset at ``path`` (``"deepmind"``, ``"lagrangebench"``) or None."""
    from sim.mesh.foreign import detect

    return detect(path)


def convert_foreign(src: str | os.PathLike, dst: str | os.PathLike, fmt: str | None = None,
                    progress: bool = False) -> int:
    """Convert another project's dataset into the store ``dst`` trajectory by trajectory (see
    :func:`sim.mesh.foreign.convert`); returns the number of entries written."""
    from sim.mesh.foreign import convert

    return convert(src, dst, fmt, progress)


def detect_foreign_target(path: str | os.PathLike) -> str | None:
    """The dataset format an output path asks for by its name (``NAME.plaid``), or None."""
    from sim.mesh.foreign import detect_target

    return detect_target(path)


def export_foreign(src: str | os.PathLike, dst: str | os.PathLike, fmt: str, progress: bool = False) -> int:
    """Write a store of steady samples out as another project's dataset (see
    :func:`sim.mesh.foreign.export`); returns the number of samples written."""
    from sim.mesh.foreign import export

    return export(src, dst, fmt, progress)


def _refuse_foreign(path: Path) -> None:
    """One error that names the foreign dataset at ``path`` and how to convert it."""
    from sim.mesh.foreign import FORMATS

    fmt = detect_foreign(path)
    if fmt is not None:
        raise FileFormatError(
            f"a {FORMATS[fmt]}: many trajectories or samples, read one at a time; convert it into a sim store with "
            f"`sim convert {path.name} OUT.h5` (or stream it with sim.mesh.foreign.open_dataset)", path)


def read_meshio(path: str | os.PathLike) -> Mesh:
    """Read a static mesh in any format meshio reads."""
    import meshio

    path = Path(path)
    if not _meshio_formats(path):
        raise FileFormatError(f"unknown mesh format {path.suffix!r}", path)
    said, printed = io.StringIO(), io.StringIO()
    try:
        # meshio prints its warnings to stderr, and why no reader took the file to stdout
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(printed):
            m = meshio.read(path)
    except SystemExit:  # meshio exits when no reader of the extension accepts the file
        text = " ".join(printed.getvalue().split()) or "no reader accepted it"
        raise FileFormatError(f"cannot be read ({text})", path) from None
    except Exception as exc:  # meshio raises many types for bad input; report one line
        raise FileFormatError(f"cannot be read ({type(exc).__name__}: {exc})", path) from None
    if "Warning" in said.getvalue():
        # meshio warns when it skips part of a file; we refuse rather than lose data silently.
        text = " ".join(said.getvalue().split())
        raise FileFormatError(f"meshio could not read all of it: {text}", path)
    if len(m.points) == 0:
        raise FileFormatError("holds no points (an empty or cut file?)", path)
    try:
        return Mesh.from_meshio(m).validate(path)
    except SimError as exc:
        raise exc.with_path(path) from None
    except Exception as exc:  # what meshio read of a cut file need not hold together
        raise FileFormatError(f"cannot be read ({type(exc).__name__}: {exc})", path) from None


def write(obj: Mesh | Trajectory, path: str | os.PathLike, progress: bool = False) -> Path:
    """Write a mesh or trajectory to ``path``, choosing the format by extension (atomically);
    ``progress`` shows a bar over the steps of a series."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in STORE_SUFFIXES:
        with StoreWriter(path) as out:
            out.append(obj)
        return path
    if suffix == ".pvd":
        from sim.mesh.vtk import write_pvd

        return write_pvd(_as_trajectory(obj), path, progress)
    if suffix in XDMF_SUFFIXES:
        from sim.mesh.xdmf import write_xdmf

        return write_xdmf(_as_trajectory(obj), path, progress)
    mesh = _single_mesh(obj, path)
    if suffix == ".vtu":
        from sim.mesh.vtk import write_vtu

        write_vtu(mesh, path)
        return path
    import meshio

    formats = _meshio_formats(path)
    if not formats:
        raise FileFormatError(f"unknown output format {suffix!r}", path)
    mesh.validate(path)
    fmt = "gmsh" if "gmsh" in formats else formats[0]
    with atomic_path(path) as tmp:
        try:
            out = mesh.to_meshio()
            if mesh.dim < 3:  # most formats want 3D points; the check below compares the first dims
                out.points = np.pad(mesh.points, ((0, 0), (0, 3 - mesh.dim)))
            # What a format cannot hold is found by the read-back check below, not by meshio's warnings.
            with contextlib.redirect_stderr(io.StringIO()):
                meshio.write(tmp, out, file_format=fmt)
                back = Mesh.from_meshio(meshio.read(tmp, file_format=fmt))
        except Exception as exc:
            raise FileFormatError(f"cannot be written as {fmt} ({type(exc).__name__}: {exc})", path) from None
        _check_nothing_lost(mesh, back, fmt, path)
    return path


def _check_nothing_lost(mesh: Mesh, back: Mesh, fmt: str, path: Path) -> None:
    """Formats differ in what they hold: refuse to write a file that silently dropped something."""
    lost = [f"cells {k!r}" for k in mesh.cells if k not in back.cells or len(back.cells[k]) != len(mesh.cells[k])]
    lost += [f"point_data {k!r}" for k in mesh.point_data if k not in back.point_data]
    lost += [f"cell_data {k!r}" for k in mesh.cell_data if k not in back.cell_data]
    lost += [f"field_data {k!r}" for k in mesh.field_data if k not in back.field_data]
    if mesh.node_type is not None and back.node_type is None:
        lost.append("node_type")
    # a 3D mesh at z = 0 comes back 2D from formats that do not state the dimension
    back_points = np.pad(back.points, ((0, 0), (0, max(0, mesh.dim - back.dim))))[:, : mesh.dim]
    if back.points.shape[0] != mesh.num_points or not np.allclose(back_points, mesh.points, rtol=1e-6, atol=0.0):
        lost.append("point coordinates (precision or count)")
    if lost:
        raise FileFormatError(
            f"the {fmt} format cannot hold {', '.join(lost)}; write .vtu, .xdmf or .h5 to keep everything", path)


def _as_trajectory(obj: Mesh | Trajectory) -> Trajectory:
    if isinstance(obj, Trajectory):
        return obj
    return Trajectory(obj, np.zeros(1))


def _single_mesh(obj: Mesh | Trajectory, path: Path) -> Mesh:
    if isinstance(obj, Mesh):
        return obj
    if obj.num_steps == 1:
        return obj.frame(0)
    raise FileFormatError(
        f"a {path.suffix} file holds one mesh but the trajectory has {obj.num_steps} steps; "
        "write a .pvd, .xdmf or .h5 series instead", path)
