"""Conversions between :class:`~sim.mesh.Mesh` and pyvista / meshio objects.

What VTK cannot say natively (2D coordinates, arrays of rank > 2, which arrays are
time-dependent, generating parameters) travels in one reserved field-data string,
``sim_meta`` (JSON), so our own files round-trip exactly and foreign readers simply see
one extra string.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from sim.errors import MeshError
from sim.mesh.cells import BY_VTK_ID, CELL_TYPES, cell_type
from sim.mesh.core import NODE_TYPE_ARRAY, Mesh

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


def mesh_from_pyvista(dataset) -> Mesh:
    import pyvista as pv

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
    return Mesh(points, merged, point_data, cell_data, field_data, node_type)


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


def mesh_from_meshio(m) -> Mesh:
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
    return Mesh(points, cells, point_data, cell_data, field_data, node_type)
