"""Conversions between :class:`~sim.mesh.Mesh` and pyvista / meshio objects.

What VTK cannot say natively (2D coordinates, arrays of rank > 2, which arrays are
time-dependent, generating parameters) travels in one reserved field-data string,
``sim_meta`` (JSON), so our own files round-trip exactly and foreign readers simply see
one extra string.

Dimension of foreign meshes: VTK, meshio and most mesh formats store three coordinates per
point even for a 2D mesh (gmsh writes ``z = 0``). A mesh that does not state its dimension
(every meshio object, a pyvista dataset or VTK file without ``sim_meta``) and whose points
all have ``z`` exactly 0 is taken as 2D, points ``(N, 2)`` (:func:`drop_zero_z`); a constant
nonzero ``z``, or any 3D cell, keeps it 3D. Series apply the rule to the whole series (every
step's positions too).

Parts: a partitioned file (``.pvtu``), a multi-block file (``.vtm``) or a series step of
several files holds several meshes; :func:`merge_parts` joins the pieces of one mesh.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.errors import MeshError, SimError
from sim.mesh.cells import BY_VTK_ID, CELL_TYPES, cell_type
from sim.mesh.core import NODE_TYPE_ARRAY, Mesh, Trajectory

META_KEY = "sim_meta"

# VTK cell types that are the same cells as a supported type in another node order.
_VTK_PIXEL, _VTK_VOXEL, _VTK_POLYGON = 8, 11, 7
_VTK_NAMES = {
    2: "VTK_POLY_VERTEX", 4: "VTK_POLY_LINE", 6: "VTK_TRIANGLE_STRIP", 7: "VTK_POLYGON",
    42: "VTK_POLYHEDRON", 67: "VTK_LAGRANGE_CURVE", 69: "VTK_LAGRANGE_TRIANGLE",
    70: "VTK_LAGRANGE_QUADRILATERAL", 71: "VTK_LAGRANGE_TETRAHEDRON", 72: "VTK_LAGRANGE_HEXAHEDRON",
}


def _flatten(name: str, arr: np.ndarray, shapes: dict[str, list[int]], key: str) -> np.ndarray:
    """VTK arrays have at most 2 dimensions: rank > 2 arrays are flattened and their shape recorded."""
    if arr.ndim > 2:
        shapes[key] = list(arr.shape[1:])
        return arr.reshape(arr.shape[0], -1)
    return arr


def _restore(arr: np.ndarray, shapes: dict[str, list[int]], key: str) -> np.ndarray:
    shape = shapes.get(key)
    return arr.reshape((arr.shape[0], *shape)) if shape else arr


def mesh_to_pyvista(mesh: Mesh, extra_meta: dict[str, Any] | None = None):
    import pyvista as pv

    pts = mesh.points.astype(np.float64 if mesh.points.dtype == np.float64 else np.float32, copy=False)
    meta: dict[str, Any] = dict(extra_meta or {})
    meta["point_dim"] = mesh.dim
    meta["points_dtype"] = str(mesh.points.dtype)
    if mesh.dim < 3:
        pts = np.pad(pts, ((0, 0), (0, 3 - mesh.dim)))
    flat, types = [], []
    cells_to_write = dict(mesh.cells)
    if not cells_to_write and mesh.num_points:
        # A particle set: ParaView draws only cells, so give each point a vertex; readers drop them.
        cells_to_write = {"vertex": np.arange(mesh.num_points, dtype=np.int64)[:, None]}
        meta["implicit_vertices"] = True
    for name, conn in cells_to_write.items():
        k = conn.shape[1]
        flat.append(np.hstack([np.full((len(conn), 1), k, dtype=np.int64), conn]).ravel())
        types.append(np.full(len(conn), cell_type(name).vtk_id, dtype=np.uint8))
    cells = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64)
    celltypes = np.concatenate(types) if types else np.zeros(0, dtype=np.uint8)
    grid = pv.UnstructuredGrid(cells, celltypes, np.ascontiguousarray(pts))
    shapes: dict[str, list[int]] = {}
    for k, a in mesh.point_data.items():
        grid.point_data[k] = _flatten(k, a, shapes, f"point:{k}")
    if mesh.node_type is not None:
        grid.point_data[NODE_TYPE_ARRAY] = mesh.node_type
        meta["node_type"] = True
    for k, a in mesh.cell_data.items():
        grid.cell_data[k] = _flatten(k, a, shapes, f"cell:{k}")
    for k, v in mesh.field_data.items():
        if isinstance(v, str):
            meta.setdefault("str_fields", []).append(k)
        elif v.ndim > 1:
            shapes[f"field:{k}"] = list(v.shape)
            v = v.ravel()
        grid.field_data[k] = v
    meta["shapes"] = shapes
    grid.field_data[META_KEY] = json.dumps(meta)
    return grid


def read_meta(dataset) -> dict[str, Any]:
    """The ``sim_meta`` dictionary of a pyvista dataset ({} for foreign files)."""
    if META_KEY not in dataset.field_data:
        return {}
    try:
        return json.loads(str(np.asarray(dataset.field_data[META_KEY]).ravel()[0]))
    except (ValueError, IndexError) as exc:
        raise MeshError(f"field data {META_KEY!r} is not valid JSON ({exc})") from None


def mesh_from_pyvista(dataset, planar: bool = True) -> Mesh:
    """A Mesh from a pyvista dataset (a multi-block one: its blocks joined, :func:`merge_parts`).

    ``planar``: a dataset that does not state its dimension (no ``sim_meta``) with every
    ``z`` exactly 0 comes back 2D (:func:`drop_zero_z`); series readers pass False and
    decide for the whole series."""
    import pyvista as pv

    if is_composite(dataset):
        parts = [Part(name, f"block {i}", mesh_from_pyvista(leaf, planar=False), read_meta(leaf))
                 for i, (name, leaf) in enumerate(composite_leaves(dataset))]
        if not parts:
            raise MeshError("the multi-block dataset holds no mesh")
        merged = merge_parts(parts)
        return merged if not planar or any(p.stated for p in parts) else drop_zero_z(merged)
    if not isinstance(dataset, pv.UnstructuredGrid):
        if not hasattr(dataset, "cast_to_unstructured_grid"):
            raise MeshError(f"cannot convert a {type(dataset).__name__} to a mesh")
        dataset = dataset.cast_to_unstructured_grid()
    meta = read_meta(dataset)
    shapes = meta.get("shapes", {})
    dim = int(meta.get("point_dim", 3))
    points = np.asarray(dataset.points)[:, :dim]
    if "points_dtype" in meta:
        points = points.astype(meta["points_dtype"], copy=False)

    offsets = np.asarray(dataset.cell_offsets)
    merged, perm = group_cells(np.asarray(dataset.celltypes), offsets[:-1], np.diff(offsets),
                               np.asarray(dataset.cell_connectivity), _vtk_to_ours)

    if meta.get("implicit_vertices"):
        merged, perm = {}, np.zeros(0, dtype=np.int64)
    point_data = {k: _restore(np.asarray(dataset.point_data[k]), shapes, f"point:{k}") for k in dataset.point_data.keys()}
    node_type = None
    if NODE_TYPE_ARRAY in point_data and (meta.get("node_type") or point_data[NODE_TYPE_ARRAY].dtype.kind in "iu"):
        node_type = point_data.pop(NODE_TYPE_ARRAY)
    cell_data = {
        k: _restore(np.asarray(dataset.cell_data[k]), shapes, f"cell:{k}")[perm] for k in dataset.cell_data.keys()
    }
    field_data: dict[str, Any] = {}
    str_fields = set(meta.get("str_fields", []))
    for k in dataset.field_data.keys():
        if k == META_KEY:
            continue
        v = np.asarray(dataset.field_data[k])
        if k in str_fields:
            v = str(v.ravel()[0])
        elif f"field:{k}" in shapes:
            v = v.reshape(shapes[f"field:{k}"])
        field_data[k] = v
    mesh = Mesh(points, merged, point_data, cell_data, field_data, node_type)
    return drop_zero_z(mesh) if planar and "point_dim" not in meta else mesh


def group_cells(codes: np.ndarray, starts: np.ndarray, sizes: np.ndarray, flat: np.ndarray,
                resolve: Callable[[int, int], tuple[str, Any]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Group a flat cell list (as VTK and XDMF store it) into our per-type blocks.

    Args:
        codes: (num_cells,) format-specific type code of each cell.
        starts / sizes: (num_cells,) where each cell's nodes start in ``flat`` and how many.
        flat: concatenated node indices.
        resolve: (code, size) -> (our cell type name, node permutation or slice(None)).

    Returns:
        (cells, perm): blocks in order of first appearance (original order within a type),
        and ``perm`` with ``new cell i = old cell perm[i]`` to reorder cell arrays.
    """
    blocks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    pairs = np.stack([codes.astype(np.int64), sizes.astype(np.int64)], axis=1) if len(codes) else np.zeros((0, 2), np.int64)
    for code, n in np.unique(pairs, axis=0):
        idx = np.flatnonzero((codes == code) & (sizes == n))
        name, node_perm = resolve(int(code), int(n))
        rows = starts[idx][:, None] + np.arange(n)[None, :]
        blocks.setdefault(name, []).append((idx, flat[rows][:, node_perm]))
    names = sorted(blocks, key=lambda nm: min(int(i[0]) for i, _ in blocks[nm]))
    cells, perm = {}, []
    for nm in names:
        idx = np.concatenate([i for i, _ in blocks[nm]])
        conn = np.concatenate([c for _, c in blocks[nm]])
        order = np.argsort(idx, kind="stable")
        cells[nm] = conn[order]
        perm.append(idx[order])
    return cells, (np.concatenate(perm) if perm else np.zeros(0, dtype=np.int64))


def _vtk_to_ours(vtk_id: int, n: int) -> tuple[str, Any]:
    if vtk_id in BY_VTK_ID:
        return BY_VTK_ID[vtk_id].name, slice(None)
    if vtk_id == _VTK_PIXEL:
        return "quad", [0, 1, 3, 2]
    if vtk_id == _VTK_VOXEL:
        return "hexahedron", [0, 1, 3, 2, 4, 5, 7, 6]
    if vtk_id == _VTK_POLYGON and n in (3, 4):
        return ("triangle" if n == 3 else "quad"), slice(None)
    name = _VTK_NAMES.get(vtk_id, f"VTK cell type {vtk_id}")
    hint = " (triangulate it first, e.g. pyvista's mesh.triangulate())" if vtk_id in (6, 7) else ""
    raise MeshError(f"cells of type {name} with {n} nodes cannot be represented{hint}")


def mesh_to_meshio(mesh: Mesh):
    import meshio

    point_data = dict(mesh.point_data)
    if mesh.node_type is not None:
        point_data[NODE_TYPE_ARRAY] = mesh.node_type
    blocks = mesh.cell_blocks()
    cell_data = {k: [a[s] for _, s in blocks] for k, a in mesh.cell_data.items()}
    field_data = {k: (np.array([v]) if isinstance(v, str) else v) for k, v in mesh.field_data.items()}
    return meshio.Mesh(
        mesh.points, [(n, c) for n, c in mesh.cells.items()], point_data=point_data, cell_data=cell_data,
        field_data=field_data,
    )


def mesh_from_meshio(m, planar: bool = True) -> Mesh:
    """A Mesh from a ``meshio.Mesh`` (``planar``: every ``z`` exactly 0 gives a 2D mesh, :func:`drop_zero_z`)."""
    blocks = [(b.type, np.asarray(b.data)) for b in m.cells]
    for name, data in blocks:
        if name not in CELL_TYPES:
            cell_type(name)  # raises with the list of supported types
    names: list[str] = []
    for name, _ in blocks:
        if name not in names:
            names.append(name)
    starts = np.cumsum([0] + [len(d) for _, d in blocks])
    cells, perm = {}, []
    for nm in names:
        ids = [i for i, (t, _) in enumerate(blocks) if t == nm]
        cells[nm] = np.concatenate([blocks[i][1] for i in ids])
        perm.extend(np.arange(starts[i], starts[i + 1]) for i in ids)
    perm_arr = np.concatenate(perm) if perm else np.zeros(0, dtype=np.int64)
    num_cells = int(starts[-1])

    cell_data = {}
    for k, per_block in m.cell_data.items():
        cell_data[k] = np.concatenate([np.asarray(a) for a in per_block])[perm_arr]
    for k, per_block in getattr(m, "cell_sets", {}).items():
        mask = np.zeros(num_cells, dtype=np.int8)
        for i, idx in enumerate(per_block):
            if idx is not None and len(idx):
                mask[starts[i] + np.asarray(idx, dtype=np.int64)] = 1
        cell_data[f"set:{k}"] = mask[perm_arr]
    point_data = {k: np.asarray(v) for k, v in m.point_data.items()}
    for k, idx in getattr(m, "point_sets", {}).items():
        mask = np.zeros(len(m.points), dtype=np.int8)
        mask[np.asarray(idx, dtype=np.int64)] = 1
        point_data[f"set:{k}"] = mask
    node_type = None
    if NODE_TYPE_ARRAY in point_data and point_data[NODE_TYPE_ARRAY].dtype.kind in "iu":
        node_type = point_data.pop(NODE_TYPE_ARRAY)
    points = np.asarray(m.points)
    if points.dtype.kind != "f":
        points = points.astype(np.float64)
    field_data = {}
    for k, v in m.field_data.items():
        v = np.asarray(v)
        field_data[k] = str(v.ravel()[0]) if v.dtype.kind == "U" and v.size == 1 else v
    mesh = Mesh(points, cells, point_data, cell_data, field_data, node_type)
    return drop_zero_z(mesh) if planar else mesh


# --------------------------------------------------------------------------- dimension
def _zero_z(points: np.ndarray) -> bool:
    return points.ndim == 2 and points.shape[1] == 3 and len(points) > 0 and not np.any(points[:, 2])


def _has_volume_cells(mesh: Mesh) -> bool:
    return any(cell_type(name).dim == 3 for name in mesh.cells)


def drop_zero_z(mesh: Mesh) -> Mesh:
    """``mesh`` with 2D points when every ``z`` is exactly 0 and it has no 3D cells; else ``mesh``.

    Only for meshes that do not state their dimension (foreign files and objects): a mesh
    at a constant nonzero ``z`` stays 3D, and so does one whose file says it is 3D."""
    if not _zero_z(mesh.points) or _has_volume_cells(mesh):
        return mesh
    return Mesh(np.ascontiguousarray(mesh.points[:, :2]), mesh.cells, mesh.point_data, mesh.cell_data,
                mesh.field_data, mesh.node_type)


def drop_zero_z_trajectory(traj: Trajectory) -> Trajectory:
    """:func:`drop_zero_z` for a whole series: 2D only when the reference points and every
    step's positions have ``z`` exactly 0."""
    if not _zero_z(traj.mesh.points) or _has_volume_cells(traj.mesh):
        return traj
    if traj.positions is not None and np.any(traj.positions[..., 2]):
        return traj
    positions = None if traj.positions is None else np.ascontiguousarray(traj.positions[..., :2])
    return Trajectory(drop_zero_z(traj.mesh), traj.times, traj.point_fields, traj.cell_fields, positions, traj.dt,
                      traj.params)


# --------------------------------------------------------------------------- parts
#: VTK's ghost array: cells a partition holds as copies of its neighbours' (bit 1: duplicate).
GHOST_ARRAY = "vtkGhostType"
_DUPLICATE_CELL = 1


@dataclass
class Part:
    """One mesh of a file that holds several (a piece, a block, a part of a series step).

    Attributes:
        name: the block's name in the file (multi-block and partitioned collections), or None
            for the anonymous pieces of a partitioned dataset.
        source: where it comes from, for messages (a piece's file name, ``block 2``).
        mesh: the mesh as read, 3D points unless its file states its dimension.
        meta: its ``sim_meta`` ({} for foreign files).
    """

    name: str | None
    source: str
    mesh: Mesh
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def stated(self) -> bool:
        """Its file states the point dimension (``sim_meta``), so no ``z`` is dropped."""
        return "point_dim" in self.meta


def is_composite(obj: Any) -> bool:
    """A VTK/pyvista composite dataset (multi-block, partitioned, partitioned collection)."""
    try:
        from vtkmodules.vtkCommonDataModel import vtkCompositeDataSet
    except ImportError:  # pragma: no cover - vtk is a dependency
        return False
    return isinstance(obj, vtkCompositeDataSet)


def composite_leaves(obj: Any, name: str | None = None) -> list[tuple[str | None, Any]]:
    """(name, pyvista dataset) of every non-empty dataset inside a composite VTK/pyvista
    object, depth first; a leaf takes the name of its nearest named block."""
    import pyvista as pv
    from vtkmodules.vtkCommonDataModel import (vtkCompositeDataSet, vtkDataSet, vtkMultiBlockDataSet,
                                               vtkPartitionedDataSet, vtkPartitionedDataSetCollection)

    def named(meta_owner: Any, i: int) -> str | None:
        if meta_owner.HasMetaData(i):
            text = meta_owner.GetMetaData(i).Get(vtkCompositeDataSet.NAME())
            if text:
                return str(text)
        return name

    out: list[tuple[str | None, Any]] = []
    if isinstance(obj, vtkPartitionedDataSetCollection):
        for i in range(obj.GetNumberOfPartitionedDataSets()):
            out += composite_leaves(obj.GetPartitionedDataSet(i), named(obj, i))
    elif isinstance(obj, vtkPartitionedDataSet):
        for i in range(obj.GetNumberOfPartitions()):
            out += composite_leaves(obj.GetPartition(i), name)
    elif isinstance(obj, vtkMultiBlockDataSet):
        for i in range(obj.GetNumberOfBlocks()):
            out += composite_leaves(obj.GetBlock(i), named(obj, i))
    elif isinstance(obj, vtkDataSet):
        if obj.GetNumberOfPoints():
            out.append((name, pv.wrap(obj)))
    elif obj is not None:
        raise MeshError(f"cannot convert a {type(obj).__name__} to a mesh")
    return out


def _drop_ghost_cells(mesh: Mesh) -> Mesh:
    """A partition without the cells it holds as copies of another's (VTK's ghost cells), and
    without the ghost arrays (the shared points are joined by :func:`merge_parts`)."""
    if GHOST_ARRAY not in mesh.cell_data and GHOST_ARRAY not in mesh.point_data:
        return mesh
    ghost = mesh.cell_data.get(GHOST_ARRAY)
    keep = np.ones(mesh.num_cells, bool) if ghost is None else (np.asarray(ghost).astype(np.int64)
                                                                 & _DUPLICATE_CELL) == 0
    cells = {name: mesh.cells[name][keep[sl]] for name, sl in mesh.cell_blocks() if keep[sl].any()}
    return Mesh(mesh.points, cells, {k: v for k, v in mesh.point_data.items() if k != GHOST_ARRAY},
                {k: v[keep] for k, v in mesh.cell_data.items() if k != GHOST_ARRAY}, mesh.field_data,
                mesh.node_type)


def _layout(mesh: Mesh) -> dict[str, tuple[str, tuple[int, ...]]]:
    out = {f"point_data {k!r}": (str(a.dtype), a.shape[1:]) for k, a in mesh.point_data.items()}
    out.update({f"cell_data {k!r}": (str(a.dtype), a.shape[1:]) for k, a in mesh.cell_data.items()})
    if mesh.node_type is not None:
        out["node_type"] = (str(mesh.node_type.dtype), ())
    return out


def merge_parts(parts: list[Part], where: Any = None) -> Mesh:
    """Join the parts of one mesh (pieces of a partitioned dataset, blocks of a multi-block one).

    - Cells a partition holds as ghosts of another's are dropped (``vtkGhostType``).
    - Points at exactly the same coordinates in different parts become one point; the parts
      must agree on its values (node type, point arrays), else the merge is refused. Points
      that coincide within one part (a slit) stay apart.
    - Cells are concatenated (per cell type, in part order), with their cell arrays.
    - Every part must carry the same arrays (names, dtypes, shapes) and the same field data:
      parts that do not are not pieces of one mesh, and are refused.
    - When the parts carry two or more block names (``internalMesh``, ``inlet``, ...), each
      name becomes a group: 0/1 arrays ``set:<name>`` on points and cells, as meshio's cell
      and point sets do, so :func:`sim.mesh.node_types_from_groups` can map them.

    ``where``: the file, for messages.
    """
    if not parts:
        raise MeshError("holds no mesh", where)
    # empty pieces (a rank that held nothing) add nothing, and need not carry the arrays
    parts = [p for p in parts if p.mesh.num_points or p.mesh.num_cells] or parts[:1]
    if len(parts) == 1:
        return parts[0].mesh
    meshes = [_drop_ghost_cells(p.mesh) for p in parts]
    labels = [p.source if p.name is None else f"{p.source} ({p.name})" for p in parts]
    first = _layout(meshes[0])
    for label, m in zip(labels[1:], meshes[1:]):
        other = _layout(m)
        if other != first:
            only_a = sorted(set(first) - set(other))
            only_b = sorted(set(other) - set(first))
            differ = sorted(k for k in set(first) & set(other) if first[k] != other[k])
            said = "; ".join(s for s in (f"only in {labels[0]}: {', '.join(only_a)}" if only_a else "",
                                         f"only in {label}: {', '.join(only_b)}" if only_b else "",
                                         f"different dtype or shape: {', '.join(differ)}" if differ else "") if s)
            raise MeshError(f"the parts are not pieces of one mesh: {labels[0]} and {label} carry different arrays "
                            f"({said}); read them separately", where)
        if m.dim != meshes[0].dim:
            raise MeshError(f"the parts are not pieces of one mesh: {labels[0]} has {meshes[0].dim}D points, "
                            f"{label} {m.dim}D", where)
        for k in set(m.field_data) | set(meshes[0].field_data):
            a, b = meshes[0].field_data.get(k), m.field_data.get(k)
            same = a is not None and b is not None and (a == b if isinstance(a, str) or isinstance(b, str)
                                                        else np.array_equal(a, b))
            if not same:
                raise MeshError(f"the parts are not pieces of one mesh: field data {k!r} differs between "
                                f"{labels[0]} and {label}", where)

    # points: one per coordinate shared across parts
    dtype = np.result_type(*[m.points.dtype for m in meshes])
    pts = np.concatenate([m.points.astype(dtype, copy=False) for m in meshes])
    counts = [m.num_points for m in meshes]
    starts = np.concatenate([[0], np.cumsum(counts)])
    part_of = np.repeat(np.arange(len(meshes)), counts)
    _, group = np.unique(pts, axis=0, return_inverse=True)
    group = np.asarray(group).ravel()
    n_groups = int(group.max()) + 1 if len(group) else 0
    pairs, per_pair = np.unique(group * len(meshes) + part_of, return_counts=True)
    pair_group = pairs // len(meshes)
    parts_per_group = np.bincount(pair_group, minlength=n_groups)
    repeated = np.zeros(n_groups, bool)
    repeated[pair_group[per_pair > 1]] = True
    ambiguous = np.flatnonzero(repeated & (parts_per_group > 1))
    if ambiguous.size:
        i = int(np.flatnonzero(group == ambiguous[0])[0])
        raise MeshError(f"{ambiguous.size} coordinate(s) occur twice in one part and also in another (first: "
                        f"{pts[i].tolist()} in {labels[part_of[i]]}): cannot tell which point the parts share",
                        where)
    shared = parts_per_group > 1
    key = np.where(shared[group], group, n_groups + np.arange(len(pts)))
    _, first_at, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first_at, kind="stable")  # keep the points in the order they first appear
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    new_index = rank[np.asarray(inverse).ravel()]
    rep = first_at[order]

    def joined(arrays: list[np.ndarray], what: str) -> np.ndarray:
        flat = np.concatenate(arrays)
        out = flat[rep]
        back = out[new_index]
        equal = (back == flat) | ((back != back) & (flat != flat)) if flat.dtype.kind == "f" else back == flat
        bad = ~equal.reshape(len(flat), -1).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            j = int(rep[new_index[i]])
            raise MeshError(f"the parts do not agree on {what} at {int(bad.sum())} shared point(s) (first: "
                            f"{pts[i].tolist()}, {labels[part_of[j]]} and {labels[part_of[i]]})", where)
        return out

    point_data = {k: joined([m.point_data[k] for m in meshes], f"point_data {k!r}") for k in meshes[0].point_data}
    node_type = None if meshes[0].node_type is None else joined([m.node_type for m in meshes], "node_type")

    # cells: per type in order of first appearance, parts in order; a cell that another part
    # also holds (overlapping pieces) is kept once
    names: list[str] = []
    for m in meshes:
        names += [n for n in m.cells if n not in names]
    named = [p.name for p in parts if p.name is not None]
    set_names = list(dict.fromkeys(named)) if len(set(named)) > 1 else []
    part_sets = np.array([[p.name == n for n in set_names] for p in parts], dtype=bool).reshape(len(parts), -1)
    cells: dict[str, np.ndarray] = {}
    cell_data_blocks: dict[str, list[np.ndarray]] = {k: [] for k in meshes[0].cell_data}
    cell_sets: list[np.ndarray] = []
    for name in names:
        conn, owner, data = [], [], {k: [] for k in cell_data_blocks}
        for p, m in enumerate(meshes):
            if name not in m.cells:
                continue
            sl = dict(m.cell_blocks())[name]
            conn.append(new_index[m.cells[name] + starts[p]])
            owner.append(np.full(len(m.cells[name]), p))
            for k in data:
                data[k].append(m.cell_data[k][sl])
        conn_all, owner_all = np.concatenate(conn), np.concatenate(owner)
        data_all = {k: np.concatenate(v) for k, v in data.items()}
        _, first_row, cell_group = np.unique(np.sort(conn_all, axis=1), axis=0, return_index=True,
                                             return_inverse=True)
        cell_group = np.asarray(cell_group).ravel()
        head = first_row[cell_group]  # the first cell with the same nodes
        keep = owner_all == owner_all[head]
        for k, a in data_all.items():
            differs = ~(a == a[head]).reshape(len(a), -1).all(axis=1)
            if a.dtype.kind == "f":
                differs &= ~((a != a) & (a[head] != a[head])).reshape(len(a), -1).all(axis=1)
            if (differs & ~keep).any():
                i = int(np.flatnonzero(differs & ~keep)[0])
                raise MeshError(f"the parts overlap with different cell_data {k!r} on the same {name} cell (nodes "
                                f"{conn_all[i].tolist()}, {labels[owner_all[head[i]]]} and {labels[owner_all[i]]})",
                                where)
        cells[name] = conn_all[keep]
        for k in cell_data_blocks:
            cell_data_blocks[k].append(data_all[k][keep])
        membership = np.zeros((int(cell_group.max()) + 1 if len(cell_group) else 0, len(set_names)), bool)
        np.logical_or.at(membership, cell_group, part_sets[owner_all])
        cell_sets.append(membership[cell_group[keep]])
    cell_data = {k: np.concatenate(v) for k, v in cell_data_blocks.items()}

    if set_names:
        cell_membership = np.concatenate(cell_sets) if cell_sets else np.zeros((0, len(set_names)), bool)
        for j, set_name in enumerate(set_names):
            key_ = f"set:{set_name}"
            if key_ in point_data or key_ in cell_data:
                raise MeshError(f"block {set_name!r} would become the group {key_!r}, which the parts already carry",
                                where)
            point_mask = np.zeros(len(rep), np.int8)
            point_mask[new_index[part_sets[part_of, j]]] = 1
            point_data[key_] = point_mask
            cell_data[key_] = cell_membership[:, j].astype(np.int8)
    return Mesh(np.ascontiguousarray(pts[rep]), cells, point_data, cell_data, dict(meshes[0].field_data), node_type)


# --------------------------------------------------------------------------- API boundary
def as_sim(obj: Any, what: str = "the mesh") -> tuple[Mesh | Trajectory, str | None]:
    """The caller's mesh as ours, and the file it came from (None for objects).

    Accepts a :class:`Mesh` or :class:`Trajectory` (as they are), a pyvista dataset (a
    multi-block one is joined, :func:`merge_parts`), a VTK data object, a ``meshio.Mesh``,
    or the path of any file :func:`sim.mesh.read` reads as a mesh or series. Foreign
    objects with every ``z`` exactly 0 come back 2D (:func:`drop_zero_z`). Anything else is one
    :class:`~sim.errors.SimError` naming what was given.
    """
    import os
    import sys

    if isinstance(obj, (Mesh, Trajectory)):
        return obj, None
    if isinstance(obj, (str, os.PathLike)):
        from sim.mesh.io import read
        from sim.mesh.store import Store

        value = read(obj)
        if isinstance(value, Store):
            value.close()
            raise SimError("is a store of many entries; give one mesh or series (e.g. Store(path).read(name))", obj)
        return value, os.fspath(obj)
    meshio = sys.modules.get("meshio")
    if meshio is not None and isinstance(obj, meshio.Mesh):
        return mesh_from_meshio(obj), None
    vtk_model = sys.modules.get("vtkmodules.vtkCommonDataModel")
    if vtk_model is not None and isinstance(obj, vtk_model.vtkDataObject):
        import pyvista as pv

        return mesh_from_pyvista(obj if is_composite(obj) else pv.wrap(obj)), None
    raise SimError(f"{what} must be a sim.mesh.Mesh or Trajectory, a pyvista or VTK dataset, a meshio.Mesh or a mesh "
                   f"file, not {type(obj).__name__}")
