"""The shared data model: :class:`Mesh`, :class:`Trajectory` and :class:`NodeType`.

Every solver writes it, every reader returns it, every model consumes it.

Conventions:

- ``Mesh.cells`` maps a cell type name (meshio names, VTK node order, see
  :mod:`sim.mesh.cells`) to a ``(num_cells, nodes_per_cell)`` int64 array. Mixed types are
  allowed; cells are grouped by type in the dict's order, and every cell array
  (``cell_data``, ``Trajectory.cell_fields``) runs over all cells in that order.
- ``Mesh.node_type`` is an optional ``(num_points,)`` int array of :class:`NodeType`
  values; it is static and lives on the mesh (a trajectory's node types are its mesh's).
- ``Trajectory`` holds time-dependent arrays with time first: point fields
  ``(T, num_points, ...)``, cell fields ``(T, num_cells, ...)`` and, for moving meshes or
  particles, ``positions`` ``(T, num_points, dim)``; ``mesh.points`` is then the reference
  configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from sim.errors import MeshError
from sim.mesh import validate as _v


class NodeType(IntEnum):
    """Per-node role. Values 0-6 are MeshGraphNet's encoding, so its datasets map one to one."""

    INTERIOR = 0
    OBSTACLE = 1
    AIRFOIL = 2
    HANDLE = 3
    INFLOW = 4
    OUTFLOW = 5
    WALL = 6
    FIXED = 7


#: Width of the node-type one-hot used by the graph models (MeshGraphNet uses 9).
NUM_NODE_TYPES = 9

#: Point array name under which node types travel in VTK/XDMF/meshio files.
NODE_TYPE_ARRAY = "node_type"


def _check_json(params: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(params, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise MeshError(f"params must be JSON-serialisable (str, int, float, bool, lists, dicts): {exc}") from None


@dataclass
class Mesh:
    """Points, cells of any supported types, and data on them.

    Args:
        points: ``(num_points, dim)`` float coordinates, ``dim`` in 1..3.
        cells: cell type name -> ``(num_cells, nodes_per_cell)`` integer connectivity.
        point_data: name -> ``(num_points, ...)`` numeric array.
        cell_data: name -> ``(num_cells_total, ...)`` numeric array over all cells in
            ``cells`` order.
        field_data: name -> numeric array (at least 1D), string, or array of strings
            (global values and scalars).
        node_type: optional ``(num_points,)`` integer :class:`NodeType` values.

    Structure (dtypes, shapes, index ranges) is checked on construction; geometry
    (finite coordinates, degenerate or inverted cells) by :meth:`validate`.
    """

    points: np.ndarray
    cells: dict[str, np.ndarray] = field(default_factory=dict)
    point_data: dict[str, np.ndarray] = field(default_factory=dict)
    cell_data: dict[str, np.ndarray] = field(default_factory=dict)
    field_data: dict[str, Any] = field(default_factory=dict)
    node_type: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.points = _v.check_points(self.points)
        self.cells = _v.check_cells(self.cells, self.num_points)
        self.point_data = {
            k: _v.check_rows("point_data", k, a, self.num_points, "points") for k, a in self.point_data.items()
        }
        self.cell_data = {
            k: _v.check_rows("cell_data", k, a, self.num_cells, "cells") for k, a in self.cell_data.items()
        }
        fd: dict[str, Any] = {}
        for k, value in self.field_data.items():
            if isinstance(value, str):
                fd[k] = value
            elif np.asarray(value).dtype.kind == "U":
                fd[k] = np.atleast_1d(np.asarray(value))
            else:
                fd[k] = np.atleast_1d(_v.numeric("field_data", k, value))
        self.field_data = fd
        if self.node_type is not None:
            nt = _v.check_rows("node_type", NODE_TYPE_ARRAY, self.node_type, self.num_points, "points")
            if nt.dtype.kind not in "iu" or nt.ndim != 1:
                raise MeshError(f"node_type must be a 1D integer array, got dtype {nt.dtype} shape {nt.shape}")
            self.node_type = nt
            if NODE_TYPE_ARRAY in self.point_data:
                raise MeshError(f"point_data {NODE_TYPE_ARRAY!r} collides with the mesh's node_type")

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_cells(self) -> int:
        return int(sum(len(c) for c in self.cells.values()))

    @property
    def dim(self) -> int:
        """Number of coordinates per point."""
        return int(self.points.shape[1])

    def validate(self, path: Any = None) -> "Mesh":
        """Check geometry (see :mod:`sim.mesh.validate`); errors name ``path`` when given."""
        try:
            _v.check_geometry(self.points, self.cells)
        except MeshError as exc:
            raise exc.with_path(path) if path is not None else exc from None
        return self

    def cell_blocks(self) -> list[tuple[str, slice]]:
        """(type, slice into the flat cell arrays) for each cell block, in order."""
        out, start = [], 0
        for name, conn in self.cells.items():
            out.append((name, slice(start, start + len(conn))))
            start += len(conn)
        return out

    def to_pyvista(self):
        """This mesh as a ``pyvista.UnstructuredGrid`` (2D points padded with z = 0)."""
        from sim.mesh.adapters import mesh_to_pyvista

        return mesh_to_pyvista(self)

    @classmethod
    def from_pyvista(cls, dataset) -> "Mesh":
        """A Mesh from any pyvista dataset; unsupported cell types raise a MeshError naming them."""
        from sim.mesh.adapters import mesh_from_pyvista

        return mesh_from_pyvista(dataset)

    def to_meshio(self):
        """This mesh as a ``meshio.Mesh`` (node types as the point array ``node_type``)."""
        from sim.mesh.adapters import mesh_to_meshio

        return mesh_to_meshio(self)

    @classmethod
    def from_meshio(cls, mesh) -> "Mesh":
        """A Mesh from a ``meshio.Mesh``: blocks of one type are merged (cell data follows), and
        cell/point sets become 0/1 ``set:<name>`` arrays so nothing is dropped."""
        from sim.mesh.adapters import mesh_from_meshio

        return mesh_from_meshio(mesh)

    def equals(self, other: "Mesh") -> bool:
        """Exact equality of points, cells, data (names, dtypes, values) and node types."""
        return _same_arrays(self.points, other.points) and all(
            same_array_dicts(a, b)
            for a, b in (
                (self.cells, other.cells),
                (self.point_data, other.point_data),
                (self.cell_data, other.cell_data),
                (self.field_data, other.field_data),
            )
        ) and list(self.cells) == list(other.cells) and _same_optional(self.node_type, other.node_type)


@dataclass
class Trajectory:
    """A mesh (fixed connectivity) or particle set with time-dependent arrays.

    Args:
        mesh: geometry, connectivity, static data and node types; for moving meshes and
            particles its points are the reference configuration.
        times: ``(T,)`` strictly increasing times.
        point_fields: name -> ``(T, num_points, ...)`` arrays.
        cell_fields: name -> ``(T, num_cells, ...)`` arrays.
        positions: optional ``(T, num_points, dim)`` point positions per step.
        dt: time step between stored frames; defaults to the spacing of ``times`` when uniform.
        params: JSON-serialisable parameters that generated the trajectory.
    """

    mesh: Mesh
    times: np.ndarray
    point_fields: dict[str, np.ndarray] = field(default_factory=dict)
    cell_fields: dict[str, np.ndarray] = field(default_factory=dict)
    positions: np.ndarray | None = None
    dt: float | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        times = _v.numeric("times", "times", self.times)
        if times.ndim != 1 or times.dtype.kind != "f":
            raise MeshError(f"times must be a 1D float array, got dtype {times.dtype} shape {times.shape}")
        if not np.isfinite(times).all():
            raise MeshError("times contain NaN or infinite values")
        if len(times) > 1 and not (np.diff(times) > 0).all():
            i = int(np.flatnonzero(np.diff(times) <= 0)[0])
            raise MeshError(f"times must increase strictly (step {i + 1}: {float(times[i + 1])!r} after {float(times[i])!r})")
        self.times = times
        T, m = len(times), self.mesh
        self.point_fields = {
            k: _v.check_rows("point field", k, a, m.num_points, "points", (T,)) for k, a in self.point_fields.items()
        }
        self.cell_fields = {
            k: _v.check_rows("cell field", k, a, m.num_cells, "cells", (T,)) for k, a in self.cell_fields.items()
        }
        for k in self.point_fields:
            if k in m.point_data or k == NODE_TYPE_ARRAY:
                raise MeshError(f"point field {k!r} is both static and time-dependent")
        for k in self.cell_fields:
            if k in m.cell_data:
                raise MeshError(f"cell field {k!r} is both static and time-dependent")
        if self.positions is not None:
            pos = _v.check_rows("positions", "positions", self.positions, m.num_points, "points", (T,))
            if pos.dtype.kind != "f" or pos.shape != (T, m.num_points, m.dim):
                raise MeshError(
                    f"positions have dtype {pos.dtype} shape {pos.shape}; expected float ({T}, {m.num_points}, {m.dim})"
                )
            self.positions = pos
        if self.dt is None and T > 1:
            steps = np.diff(times)
            if np.allclose(steps, steps[0], rtol=1e-9, atol=0.0):
                self.dt = float(steps[0])
        if self.dt is not None:
            self.dt = float(self.dt)
            if not (np.isfinite(self.dt) and self.dt > 0):
                raise MeshError(f"dt must be a positive number, got {self.dt!r}")
        self.params = _check_json(dict(self.params))

    @property
    def num_steps(self) -> int:
        return int(len(self.times))

    @property
    def node_type(self) -> np.ndarray | None:
        return self.mesh.node_type

    def __len__(self) -> int:
        return self.num_steps

    def validate(self, path: Any = None) -> "Trajectory":
        """Geometry of the mesh and finite positions at every step."""
        self.mesh.validate(path)
        if self.positions is not None and not np.isfinite(self.positions).all():
            t = int(np.argwhere(~np.isfinite(self.positions))[0, 0])
            raise MeshError(f"positions contain NaN or infinite values (first at step {t})", path)
        return self

    def frame(self, t: int) -> Mesh:
        """Step ``t`` as a static Mesh: the fields become point/cell data, positions the points."""
        m = self.mesh
        return Mesh(
            points=m.points if self.positions is None else self.positions[t],
            cells=m.cells,
            point_data={**m.point_data, **{k: v[t] for k, v in self.point_fields.items()}},
            cell_data={**m.cell_data, **{k: v[t] for k, v in self.cell_fields.items()}},
            field_data=m.field_data,
            node_type=m.node_type,
        )

    def equals(self, other: "Trajectory") -> bool:
        """Exact equality of mesh, times, fields, positions, dt and params."""
        return (
            self.mesh.equals(other.mesh)
            and _same_arrays(self.times, other.times)
            and same_array_dicts(self.point_fields, other.point_fields)
            and same_array_dicts(self.cell_fields, other.cell_fields)
            and _same_optional(self.positions, other.positions)
            and self.dt == other.dt
            and self.params == other.params
        )


def _same_arrays(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


def _same_optional(a: Any, b: Any) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and _same_arrays(a, b))


def same_array_dicts(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(_same_arrays(a[k], b[k]) for k in a)
