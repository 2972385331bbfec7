"""DeepMind MeshGraphNets datasets (``cylinder_flow``, ``airfoil``, ``flag_simple``,
``deforming_plate``, ...): ``<split>.tfrecord`` with ``meta.json`` beside it.

``meta.json`` lists ``field_names`` and, per field under ``features``, its ``type``
(``static``: the same for every step, stored once with a leading 1; ``dynamic``: one array
per step; ``dynamic_varlen``: a changing number of rows, in the remeshing datasets), its
``shape`` (``-1`` for the dimension that varies between trajectories) and ``dtype``; also
``trajectory_length`` and, for most datasets, ``dt``. Each record is one trajectory, a
``tf.train.Example`` whose features hold each field's array as raw bytes (a ``bytes_list``),
reshaped by ``meta.json`` (see :mod:`sim.mesh.foreign.tfrecord` for the framing).

What goes where in the sim store (docs/datasets.md has the same tables):

=====================  ===================================================================
DeepMind               sim store
=====================  ===================================================================
``mesh_pos``           ``points`` (the reference configuration when ``positions`` exist)
``cells`` (M, 3)       ``cells/triangle``; (M, 4) on 3D points: ``cells/tetra``
``node_type``          ``node_type`` (N,), same codes (see below)
``world_pos``          ``positions`` (T, N, d) when it has ``mesh_pos``'s dimension
                       (``deforming_plate``); otherwise the point field ``world_pos``
                       (``flag_simple``: 3D positions of a 2D material mesh)
other dynamic          ``point_fields/<name>`` (T, N, ...) or ``cell_fields/<name>`` (T, M, ...)
other static           ``point_data``/``cell_data``; arrays of neither length ``field_data``
``dt``                 entry ``dt``; ``times`` = step * dt (step numbers without ``dt``)
all of ``meta.json``   store metadata ``deepmind_meta``
=====================  ===================================================================

A trailing axis of length 1 on a per-point or per-cell array is dropped (``pressure``
(T, N, 1) becomes (T, N), our convention for scalar fields, as in our own cylinder data);
nothing else is reshaped. Rows are matched to points first when N equals M. Entries are
named by record number (``000000``, ...).

Node types: DeepMind's ``NodeType`` codes are NORMAL 0, OBSTACLE 1, AIRFOIL 2, HANDLE 3,
INFLOW 4, OUTFLOW 5, WALL_BOUNDARY 6 (and SIZE 9, the width of its one-hot, not a type).
Ours (:class:`sim.mesh.NodeType`) use the same numbers for the same roles (INTERIOR = NORMAL,
WALL = WALL_BOUNDARY), so the codes are kept as they are; any other value is refused.

Cell order: our store uses VTK's orientation (positive tetrahedra; 2D cells oriented like
the rest of the mesh). Cells of the other orientation get their second and third nodes
swapped (the same cell, VTK's order), and the entry's ``params`` say how many
(``reoriented_cells``); degenerate cells are refused like any reader's.

Refused with one error naming the file: a missing ``meta.json``, a field type other than
``static``/``dynamic``, any ``dynamic_varlen`` field (the store holds one mesh per
trajectory), a record that holds a field ``meta.json`` does not describe or lacks one it
does, a field that is not raw bytes or does not fit its shape, and CRC or length errors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import FileFormatError, SimError
from sim.mesh.core import Mesh, NodeType, Trajectory
from sim.mesh.foreign.splits import split_file
from sim.mesh.foreign.tfrecord import iter_records, parse_example
from sim.mesh.validate import signed_measures

META = "meta.json"
FIELD_TYPES = ("static", "dynamic", "dynamic_varlen")
#: DeepMind's node-type codes -> ours (the same numbers, see the module docstring).
NODE_TYPES = {0: NodeType.INTERIOR, 1: NodeType.OBSTACLE, 2: NodeType.AIRFOIL, 3: NodeType.HANDLE,
              4: NodeType.INFLOW, 5: NodeType.OUTFLOW, 6: NodeType.WALL}
MESH_FIELDS = ("mesh_pos", "cells", "node_type")


@dataclass(frozen=True)
class FieldSpec:
    """One field of ``meta.json``: name, type (static/dynamic), shape with -1, dtype."""

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: np.dtype


def read_meta(path: Path) -> tuple[dict[str, Any], list[FieldSpec]]:
    """``meta.json`` beside the TFRecord ``path``, checked field by field before any record is read."""
    meta_path = path.parent / META
    if not meta_path.is_file():
        raise FileFormatError(f"no {META} beside it: a DeepMind MeshGraphNets dataset keeps {META} (the fields' "
                              f"types, shapes and dtypes) in the folder of its <split>.tfrecord", path)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FileFormatError(f"cannot be read as JSON ({exc})", meta_path) from None
    features = meta.get("features") if isinstance(meta, dict) else None
    if not isinstance(features, dict) or not features:
        raise FileFormatError("has no 'features' object (field name -> type, shape, dtype)", meta_path)
    names = meta.get("field_names", list(features))
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise FileFormatError("'field_names' must be a list of field names", meta_path)
    specs: list[FieldSpec] = []
    varlen = []
    for name in names:
        f = features.get(name)
        if not isinstance(f, dict):
            raise FileFormatError(f"field {name!r} is in 'field_names' but has no entry under 'features'", meta_path)
        kind = f.get("type")
        if kind not in FIELD_TYPES:
            raise FileFormatError(f"field {name!r} has the unknown type {kind!r} (known: {', '.join(FIELD_TYPES)})",
                                  meta_path)
        if kind == "dynamic_varlen":
            varlen.append(name)
            continue
        shape = f.get("shape")
        if (not isinstance(shape, list) or not shape
                or not all(isinstance(d, int) and not isinstance(d, bool) and (d == -1 or d > 0) for d in shape)
                or shape.count(-1) > 1):
            raise FileFormatError(f"field {name!r} has shape {shape!r}; expected a list of positive sizes with at "
                                  "most one -1", meta_path)
        if kind == "static" and shape[0] != 1:
            raise FileFormatError(f"static field {name!r} has shape {shape}; static fields are stored once, with a "
                                  "leading 1", meta_path)
        try:
            dtype = np.dtype(str(f.get("dtype")))
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in "biuf":
            raise FileFormatError(f"field {name!r} has the unknown dtype {f.get('dtype')!r} (expected a numeric one "
                                  "such as float32, int32, int64)", meta_path)
        specs.append(FieldSpec(name, kind, tuple(shape), dtype.newbyteorder("<")))
    if varlen:
        raise FileFormatError(
            f"field(s) {', '.join(map(repr, varlen))} are dynamic_varlen (a remeshing dataset, whose mesh changes "
            "from step to step); the sim store holds one mesh per trajectory, so this dataset is not converted",
            meta_path)
    by_name = {s.name: s for s in specs}
    if "mesh_pos" not in by_name:
        raise FileFormatError("has no 'mesh_pos' field (the mesh's node coordinates)", meta_path)
    for name in MESH_FIELDS:
        if name in by_name and by_name[name].kind != "static":
            raise FileFormatError(f"field {name!r} is {by_name[name].kind}; the mesh ({', '.join(MESH_FIELDS)}) "
                                  "must be static", meta_path)
    dt = meta.get("dt")
    if dt is not None and (isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0):
        raise FileFormatError(f"'dt' must be a positive number, got {dt!r}", meta_path)
    return meta, specs


def _decode(spec: FieldSpec, feature: tuple[str, Any], where: str, path: Path) -> np.ndarray:
    kind, values = feature
    if kind != "bytes_list":
        raise FileFormatError(f"{where}: field {spec.name!r} holds a {kind}; DeepMind datasets store every field as "
                              "raw bytes (a bytes_list)", path)
    raw = values[0] if len(values) == 1 else b"".join(values)
    if len(raw) % spec.dtype.itemsize:
        raise FileFormatError(f"{where}: field {spec.name!r} holds {len(raw)} bytes, not a whole number of "
                              f"{spec.dtype.name} values", path)
    arr = np.frombuffer(raw, dtype=spec.dtype)
    known = int(np.prod([d for d in spec.shape if d != -1]))
    fits = arr.size % known == 0 and arr.size > 0 if -1 in spec.shape else arr.size == known
    if not fits:
        raise FileFormatError(f"{where}: field {spec.name!r} holds {arr.size} {spec.dtype.name} values, which do "
                              f"not fit the shape {list(spec.shape)} of {META}", path)
    return arr.reshape(spec.shape)


def _squeeze(a: np.ndarray, row_axis: int) -> np.ndarray:
    """Drop a trailing length-1 feature axis of a per-row array ((N, 1) -> (N,), (T, N, 1) -> (T, N))."""
    return a[..., 0] if a.ndim == row_axis + 2 and a.shape[-1] == 1 else a


def _cell_type(k: int, dim: int) -> str | None:
    return {3: "triangle", 4: "tetra" if dim == 3 else None}.get(k)


def orient_cells(points: np.ndarray, name: str, conn: np.ndarray) -> tuple[np.ndarray, int]:
    """``conn`` in VTK's orientation (see the module docstring) and the number of cells turned."""
    measure, _, oriented = signed_measures(points, name, conn)
    if not oriented:
        return conn, 0
    if name == "tetra":
        flip = measure < 0
    else:  # a planar 2D mesh: turn the minority to the majority's orientation
        flip = measure > 0 if (measure > 0).sum() < (measure < 0).sum() else measure < 0
    count = int(flip.sum())
    if count:
        conn = conn.copy()
        conn[np.ix_(flip, [1, 2])] = conn[np.ix_(flip, [2, 1])]
    return conn, count


class DeepMindDataset:
    """The trajectories of one ``<split>.tfrecord``, decoded one record at a time.

    Args:
        path: the TFRecord file; ``meta.json`` must be beside it.

    Attributes:
        metadata: what the store's metadata will hold (``source`` and all of ``meta.json``).
    """

    format = "deepmind"

    def __init__(self, path: str | os.PathLike):
        self.path = split_file(path, "train.tfrecord")
        self.meta, self.specs = read_meta(self.path)
        self.dt = float(self.meta["dt"]) if self.meta.get("dt") is not None else None
        self.metadata: dict[str, Any] = {"source": {"format": "deepmind", "file": self.path.name},
                                         "deepmind_meta": self.meta}
        if self.dt is None:
            self.metadata["times"] = "step numbers (meta.json gives no dt)"

    def __iter__(self) -> Iterator[tuple[str, Mesh | Trajectory]]:
        for index, offset, data in iter_records(self.path):
            yield f"{index:06d}", self.record(data, f"record {index} (byte {offset})")

    def record(self, data: bytes, where: str = "record") -> Mesh | Trajectory:
        """One serialised Example as a Trajectory (a Mesh when every field is static)."""
        try:
            features = parse_example(data)
        except ValueError as exc:
            raise FileFormatError(f"{where} is not a tf.train.Example ({exc})", self.path) from None
        described = {s.name for s in self.specs}
        extra = [k for k in features if k not in described]
        if extra:
            raise FileFormatError(f"{where} holds field(s) {extra} that {META} does not describe (its fields: "
                                  f"{sorted(described)})", self.path)
        missing = [s.name for s in self.specs if s.name not in features]
        if missing:
            raise FileFormatError(f"{where} lacks field(s) {missing} that {META} lists", self.path)
        arrays = {s.name: _decode(s, features[s.name], where, self.path) for s in self.specs}
        try:
            return self._build(arrays, where)
        except SimError as exc:
            if isinstance(exc, FileFormatError) and exc.path is not None:
                raise
            raise FileFormatError(f"{where}: {exc.message}", self.path) from None

    def _build(self, arrays: dict[str, np.ndarray], where: str) -> Mesh | Trajectory:
        kinds = {s.name: s.kind for s in self.specs}
        points = arrays["mesh_pos"][0]
        if points.ndim != 2 or not 1 <= points.shape[1] <= 3 or points.dtype.kind != "f":
            raise SimError(f"mesh_pos has shape {points.shape} and dtype {points.dtype}; expected float (N, 1..3)")
        n, dim = points.shape
        cells: dict[str, np.ndarray] = {}
        params: dict[str, Any] = {}
        if "cells" in arrays:
            conn = arrays["cells"][0]
            name = _cell_type(conn.shape[-1], dim) if conn.ndim == 2 else None
            if name is None or conn.dtype.kind not in "iu":
                raise SimError(f"cells have shape {conn.shape} and dtype {conn.dtype} on {dim}D points; expected "
                               "integer (M, 3) triangles or (M, 4) tetrahedra on 3D points")
            conn, turned = conn.astype(np.int64), 0
            if conn.size and conn.min() >= 0 and conn.max() < n:  # else Mesh() names the bad index
                conn, turned = orient_cells(points, name, conn)
            cells[name] = conn
            if turned:
                params["reoriented_cells"] = turned
        m = sum(len(c) for c in cells.values())
        node_type = None
        if "node_type" in arrays:
            node_type = _squeeze(arrays["node_type"][0], 0)
            if node_type.shape != (n,) or node_type.dtype.kind not in "iu":
                raise SimError(f"node_type has shape {node_type.shape} and dtype {node_type.dtype}; expected "
                               f"integer ({n},) or ({n}, 1)")
            bad = np.setdiff1d(np.unique(node_type), list(NODE_TYPES))
            if bad.size:
                raise SimError(f"node_type holds {bad.tolist()}, not one of DeepMind's node types (0 normal, "
                               "1 obstacle, 2 airfoil, 3 handle, 4 inflow, 5 outflow, 6 wall_boundary)")
        point_data: dict[str, np.ndarray] = {}
        cell_data: dict[str, np.ndarray] = {}
        field_data: dict[str, np.ndarray] = {}
        point_fields: dict[str, np.ndarray] = {}
        cell_fields: dict[str, np.ndarray] = {}
        positions = None
        steps: dict[str, int] = {}
        spec = {s.name: s for s in self.specs}
        for name, a in arrays.items():
            if name in MESH_FIELDS:
                continue
            static = kinds[name] == "static"
            a = a[0] if static else a
            row = 0 if static else 1
            if not static:
                steps[name] = a.shape[0]
            rows = a.shape[row] if a.ndim > row else None
            variable_rows = len(spec[name].shape) > 1 and spec[name].shape[1] == -1
            if rows == n:
                if static:
                    point_data[name] = _squeeze(a, 0)
                elif name == "world_pos" and a.ndim == 3 and a.shape[2] == dim and a.dtype.kind == "f":
                    positions = a
                else:
                    point_fields[name] = _squeeze(a, 1)
            elif rows == m and m > 0:
                (cell_data if static else cell_fields)[name] = _squeeze(a, row)
            elif variable_rows:
                raise SimError(f"field {name!r} has {rows} rows but the mesh has {n} points and {m} cells")
            else:  # a global array: kept whole (time first when dynamic)
                field_data[name] = a
        mesh = Mesh(points, cells, point_data=point_data, cell_data=cell_data, field_data=field_data,
                    node_type=node_type)
        if not steps:
            return mesh.validate()
        if len(set(steps.values())) > 1:
            raise SimError(f"the dynamic fields have different numbers of steps: {steps}")
        T = next(iter(steps.values()))
        times = np.arange(T, dtype=np.float64) * (self.dt if self.dt is not None else 1.0)
        return Trajectory(mesh, times, point_fields=point_fields, cell_fields=cell_fields, positions=positions,
                          dt=self.dt, params=params).validate()
