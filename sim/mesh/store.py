"""The canonical HDF5 store: many trajectories or samples in one file, read lazily.

The schema is specified in ``docs/store_schema.md`` (precisely enough to write the file
from another program). In short: file attributes ``sim_format = "sim.store"`` and
``schema_version``; one group per entry under ``/entries``; every array a chunked,
compressed dataset; time-dependent arrays chunked by time step so one step or one
trajectory is read without touching the rest.

Usage::

    with StoreWriter("train.h5") as out:        # atomic: appears under its name on success
        for traj in generate():
            out.append(traj)                     # one trajectory at a time

    store = Store("train.h5")                    # reads only the file's metadata
    store.names()                                # ['000000', '000001', ...]
    traj = store.read("000001")                  # reads that entry only
    entry = store.entry("000001")                # lazy: h5py datasets, slice what you need
    velocity_t5 = entry.point_fields["velocity"][5]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np

from sim.errors import FileFormatError, MeshError, SimError
from sim.mesh.atomic import AtomicFile
from sim.mesh.core import Mesh, Trajectory

FORMAT_NAME = "sim.store"
SCHEMA_VERSION = 1
ENTRIES = "entries"
MAX_NAME = 200


def check_entry_name(name: Any, where: Any = None) -> str:
    """``name`` if it can name a store entry *and* a file: rollouts write ``<out>/<entry>.pvd`` and
    ``convert --all`` writes ``<stem>_<entry>.<ext>``, so a name that is empty, hidden (leading
    ``.``, which covers ``.`` and ``..``), holds a path separator or a control character, or is
    too long is refused here, in one place (HDF5 would also read ``a/b`` as a nested group)."""
    problem = None
    if not isinstance(name, str):
        problem = f"must be text, got {type(name).__name__}"
    elif not name:
        problem = "is empty"
    elif name.startswith("."):
        problem = "starts with '.'"
    elif "/" in name or "\\" in name:
        problem = "holds a path separator"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        problem = "holds a control character"
    elif len(name) > MAX_NAME:
        problem = f"is longer than {MAX_NAME} characters"
    if problem:
        raise SimError(f"entry name {name!r} {problem} (entry names are also file names: letters, digits, "
                       "'_', '-', '.' not first)", where)
    return name

_CHUNK_BYTES = 1 << 18  # target chunk size for time-dependent arrays (a few steps of a large mesh)
_COMPRESS_MIN = 1024  # arrays smaller than this many elements are stored contiguous


def _str_attr(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dataset(group: h5py.Group, name: str, data: np.ndarray, time_major: bool = False) -> None:
    data = np.asarray(data)
    kwargs: dict[str, Any] = {}
    if data.size >= _COMPRESS_MIN:
        kwargs.update(compression="gzip", compression_opts=4, shuffle=True)
        if time_major:
            per_step = max(1, int(np.prod(data.shape[1:])) * data.itemsize)
            steps = int(max(1, min(data.shape[0], _CHUNK_BYTES // per_step)))
            kwargs["chunks"] = (steps, *data.shape[1:])
        else:
            kwargs["chunks"] = True
    group.create_dataset(name, data=data, **kwargs)


def _write_dict(parent: h5py.Group, name: str, arrays: dict[str, Any], time_major: bool = False) -> None:
    if not arrays:
        return
    g = parent.create_group(name, track_order=True)
    for k, a in arrays.items():
        if "/" in k:
            raise MeshError(f"{name} name {k!r} contains '/', which HDF5 reserves")
        if isinstance(a, str):
            g.create_dataset(k, data=a, dtype=h5py.string_dtype())
        elif np.asarray(a).dtype.kind == "U":
            g.create_dataset(k, data=np.asarray(a, dtype=object), dtype=h5py.string_dtype())
        else:
            _dataset(g, k, a, time_major)


def write_entry(group: h5py.Group, obj: Mesh | Trajectory) -> None:
    """Write ``obj`` into the empty entry group ``group`` (see docs/store_schema.md)."""
    traj = obj if isinstance(obj, Trajectory) else None
    mesh = traj.mesh if traj is not None else obj
    group.attrs["complete"] = False
    group.attrs["kind"] = "trajectory" if traj is not None else "mesh"
    group.attrs["num_points"] = mesh.num_points
    group.attrs["num_cells"] = mesh.num_cells
    group.attrs["cell_types"] = json.dumps(list(mesh.cells))
    _dataset(group, "points", mesh.points)
    if mesh.cells:
        cg = group.create_group("cells", track_order=True)
        for name, conn in mesh.cells.items():
            _dataset(cg, name, conn)
    _write_dict(group, "point_data", mesh.point_data)
    _write_dict(group, "cell_data", mesh.cell_data)
    _write_dict(group, "field_data", mesh.field_data)
    if mesh.node_type is not None:
        _dataset(group, "node_type", mesh.node_type)
    if traj is not None:
        group.attrs["num_steps"] = traj.num_steps
        group.attrs["params"] = json.dumps(traj.params)
        if traj.dt is not None:
            group.attrs["dt"] = traj.dt
        _dataset(group, "times", traj.times)
        _write_dict(group, "point_fields", traj.point_fields, time_major=True)
        _write_dict(group, "cell_fields", traj.cell_fields, time_major=True)
        if traj.positions is not None:
            _dataset(group, "positions", traj.positions, time_major=True)
    group.attrs["complete"] = True


def _open_h5(source: str | os.PathLike | BinaryIO, mode: str) -> tuple[h5py.File, str]:
    label = os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<stream>")
    if isinstance(source, (str, os.PathLike)) and not Path(source).exists():
        raise FileFormatError("no such file", label)
    try:
        return h5py.File(source, mode), str(label)
    except OSError as exc:
        text = str(exc)
        if "truncated" in text:
            why = "the HDF5 file is truncated (an interrupted copy or write?)"
        elif "signature" in text:
            why = "not an HDF5 file"
        else:
            why = f"cannot be opened as HDF5 ({text})"
        raise FileFormatError(why, label) from None


def _check_header(f: h5py.File, label: str) -> None:
    fmt = f.attrs.get("sim_format")
    if fmt is None or _str_attr(fmt) != FORMAT_NAME:
        raise FileFormatError(
            "an HDF5 file but not a sim store (no sim_format = 'sim.store' attribute); "
            "convert it with `sim convert` or write it with sim.mesh.StoreWriter",
            label,
        )
    version = f.attrs.get("schema_version")
    if version is None or int(version) != SCHEMA_VERSION:
        raise FileFormatError(
            f"store schema version {version} is not supported (this sim reads version {SCHEMA_VERSION})", label
        )
    if ENTRIES not in f:
        raise FileFormatError(f"store has no '/{ENTRIES}' group (damaged file?)", label)


@dataclass
class StoreEntry:
    """Lazy view of one entry: arrays are h5py datasets, read only when sliced.

    Attributes:
        name: entry name.
        kind: ``"trajectory"`` or ``"mesh"``.
        point_fields / cell_fields: name -> ``h5py.Dataset`` of shape (T, N, ...).
        positions: ``h5py.Dataset`` (T, N, dim) or None.
        attrs: the entry's attributes (num_points, num_cells, num_steps, dt, params).
    """

    name: str
    kind: str
    group: h5py.Group
    label: str

    @property
    def attrs(self) -> dict[str, Any]:
        out = {k: (_str_attr(v) if isinstance(v, (str, bytes)) else v) for k, v in self.group.attrs.items()}
        if "params" in out:
            out["params"] = json.loads(out["params"])
        return out

    @property
    def num_steps(self) -> int:
        return int(self.group.attrs.get("num_steps", 0))

    @property
    def point_fields(self) -> dict[str, h5py.Dataset]:
        return dict(self.group["point_fields"].items()) if "point_fields" in self.group else {}

    @property
    def cell_fields(self) -> dict[str, h5py.Dataset]:
        return dict(self.group["cell_fields"].items()) if "cell_fields" in self.group else {}

    @property
    def point_data(self) -> dict[str, h5py.Dataset]:
        """The static point data of the mesh, name -> ``h5py.Dataset`` of shape (N, ...), unread."""
        return dict(self.group["point_data"].items()) if "point_data" in self.group else {}

    @property
    def positions(self) -> h5py.Dataset | None:
        return self.group.get("positions")

    def times(self) -> np.ndarray:
        return self.group["times"][()]

    def mesh(self) -> Mesh:
        """The static part: points, cells, static data and node types."""
        g = self.group
        try:
            order = json.loads(_str_attr(g.attrs["cell_types"]))
            cells = {name: g["cells"][name][()] for name in order}
            return Mesh(
                points=g["points"][()],
                cells=cells,
                point_data=_read_dict(g, "point_data"),
                cell_data=_read_dict(g, "cell_data"),
                field_data=_read_dict(g, "field_data"),
                node_type=g["node_type"][()] if "node_type" in g else None,
            )
        except MeshError as exc:
            raise MeshError(f"entry {self.name!r}: {exc.message}", self.label) from None
        except (KeyError, OSError, ValueError) as exc:
            raise FileFormatError(f"entry {self.name!r} is damaged or incomplete ({exc})", self.label) from None

    def read(self) -> Mesh | Trajectory:
        """The whole entry in memory."""
        mesh = self.mesh()
        if self.kind == "mesh":
            return mesh
        g = self.group
        try:
            return Trajectory(
                mesh=mesh,
                times=g["times"][()],
                point_fields=_read_dict(g, "point_fields"),
                cell_fields=_read_dict(g, "cell_fields"),
                positions=g["positions"][()] if "positions" in g else None,
                dt=float(g.attrs["dt"]) if "dt" in g.attrs else None,
                params=json.loads(_str_attr(g.attrs.get("params", "{}"))),
            )
        except MeshError as exc:
            raise MeshError(f"entry {self.name!r}: {exc.message}", self.label) from None
        except (KeyError, OSError, ValueError) as exc:
            raise FileFormatError(f"entry {self.name!r} is damaged or incomplete ({exc})", self.label) from None


def _read_dict(group: h5py.Group, name: str) -> dict[str, Any]:
    if name not in group:
        return {}
    out: dict[str, Any] = {}
    for k, ds in group[name].items():
        if h5py.check_string_dtype(ds.dtype) is not None:
            value = ds.asstr()[()]
            out[k] = value if isinstance(value, str) else np.asarray(value, dtype=str)
        else:
            out[k] = ds[()]
    return out


class Store:
    """Read access to a store file; opening it reads only metadata.

    Args:
        source: path, or a binary file object (h5py reads through it; used to count I/O).
    """

    def __init__(self, source: str | os.PathLike | BinaryIO):
        self._file, self.label = _open_h5(source, "r")
        try:
            _check_header(self._file, self.label)
        except SimError:
            self._file.close()
            raise
        self.metadata: dict[str, Any] = json.loads(_str_attr(self._file.attrs.get("metadata", "{}")))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def names(self) -> list[str]:
        return list(self._file[ENTRIES].keys())

    def __len__(self) -> int:
        return len(self._file[ENTRIES])

    def __contains__(self, name: str) -> bool:
        return name in self._file[ENTRIES]

    def complete(self, names: list[str]) -> bool:
        """Whether every entry of ``names`` is in the store and completely written."""
        entries = self._file[ENTRIES]
        return all(n in entries and bool(entries[n].attrs.get("complete", False)) for n in names)

    def entry(self, name: str) -> StoreEntry:
        """Lazy view of entry ``name``; refuses entries whose write did not finish."""
        if name not in self._file[ENTRIES]:
            known = self.names()
            shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
            raise FileFormatError(f"no entry {name!r} in the store (entries: {shown or 'none'})", self.label)
        g = self._file[ENTRIES][name]
        if not bool(g.attrs.get("complete", False)):
            raise FileFormatError(f"entry {name!r} was not completely written (interrupted append?)", self.label)
        return StoreEntry(name, _str_attr(g.attrs.get("kind", "trajectory")), g, self.label)

    def read(self, name: str) -> Mesh | Trajectory:
        return self.entry(name).read()

    def __iter__(self):
        for name in self.names():
            yield self.read(name)

    def info(self) -> dict[str, Any]:
        """Summary of every entry from metadata only (shapes, dtypes, stored bytes)."""
        entries = []
        for name in self.names():
            g = self._file[ENTRIES][name]
            fields = {}
            stored = 0

            def visit(path: str, obj: Any) -> None:
                nonlocal stored
                if isinstance(obj, h5py.Dataset):
                    stored += obj.id.get_storage_size()
                    if path == "positions" or ("/" in path and path.split("/")[0] in (
                            "point_fields", "cell_fields", "point_data", "cell_data")):
                        fields[path] = {"shape": list(obj.shape), "dtype": str(obj.dtype)}

            g.visititems(visit)
            entries.append(
                {
                    "name": name,
                    "kind": _str_attr(g.attrs.get("kind", "?")),
                    "complete": bool(g.attrs.get("complete", False)),
                    "num_steps": int(g.attrs.get("num_steps", 0)),
                    "num_points": int(g.attrs.get("num_points", 0)),
                    "num_cells": int(g.attrs.get("num_cells", 0)),
                    "cell_types": json.loads(_str_attr(g.attrs.get("cell_types", "[]"))),
                    "dt": float(g.attrs["dt"]) if "dt" in g.attrs else None,
                    "fields": fields,
                    "stored_bytes": int(stored),
                }
            )
        return {"schema_version": SCHEMA_VERSION, "metadata": self.metadata, "entries": entries}


class StoreWriter:
    """Write a store one entry at a time.

    A new file is written under a temporary name and renamed onto ``path`` when the writer
    closes without error, so a crash never leaves a half store under the final name. With
    ``append=True`` an existing store is extended in place; each entry is flagged complete
    only when fully written, a failed append removes its entry, and entries left incomplete
    by a killed writer are removed on opening (so a resumed generator redoes them).

    Args:
        path: destination file.
        metadata: JSON-serialisable dataset-wide metadata (e.g. normalisation statistics).
        append: extend an existing store instead of creating a new one.
        overwrite: replace an existing file (ignored with ``append``).
    """

    def __init__(self, path: str | os.PathLike, metadata: dict[str, Any] | None = None,
                 append: bool = False, overwrite: bool = True):
        self.path = Path(path)
        self._atomic = None
        self.removed_incomplete: list[str] = []
        if append:
            self._file, _ = _open_h5(self.path, "a")
            _check_header(self._file, str(self.path))
            entries = self._file[ENTRIES]
            # An entry left incomplete by a killed writer is removed, so it is redone, never half-stored.
            self.removed_incomplete = [n for n in entries if not bool(entries[n].attrs.get("complete", False))]
            for name in self.removed_incomplete:
                del entries[name]
            if metadata is not None:
                self.metadata = {**json.loads(_str_attr(self._file.attrs.get("metadata", "{}"))), **metadata}
                self._file.attrs["metadata"] = json.dumps(self.metadata)
        else:
            if self.path.exists() and not overwrite:
                raise FileFormatError("exists already (pass overwrite=True to replace it)", self.path)
            self._atomic = AtomicFile(self.path)
            self._file = h5py.File(self._atomic.tmp, "w", track_order=True)
            self._file.attrs["sim_format"] = FORMAT_NAME
            self._file.attrs["schema_version"] = SCHEMA_VERSION
            from sim._version import __version__

            self._file.attrs["created_by"] = f"sim {__version__}"
            self.metadata = dict(metadata or {})
            self._file.attrs["metadata"] = json.dumps(self.metadata)
            self._file.create_group(ENTRIES, track_order=True)

    def names(self) -> list[str]:
        """Entries written so far (with ``append``, including those already in the file)."""
        return list(self._file[ENTRIES].keys())

    def set_metadata(self, **items: Any) -> None:
        """Add dataset-wide metadata (written into the file attributes immediately)."""
        self.metadata.update(items)
        self._file.attrs["metadata"] = json.dumps(self.metadata)

    def append(self, obj: Mesh | Trajectory, name: str | None = None) -> str:
        """Write one trajectory or mesh sample; returns its entry name."""
        entries = self._file[ENTRIES]
        name = check_entry_name(name, self.path) if name is not None else f"{len(entries):06d}"
        if name in entries:
            raise FileFormatError(f"entry {name!r} exists already", self.path)
        obj.validate(self.path)
        group = entries.create_group(name, track_order=True)
        try:
            write_entry(group, obj)
        except BaseException:
            del entries[name]
            raise
        self._file.flush()
        return name

    def close(self, failed: bool = False) -> None:
        if self._file.id.valid:
            self._file.close()
        if self._atomic is not None:
            atomic, self._atomic = self._atomic, None
            if failed:
                atomic.discard()
            else:
                atomic.commit()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(failed=exc_type is not None)


def is_store(path: str | os.PathLike) -> bool:
    """True when ``path`` is an HDF5 file with the sim store header (cheap check)."""
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("sim_format") is not None and _str_attr(f.attrs["sim_format"]) == FORMAT_NAME
    except OSError:
        return False
