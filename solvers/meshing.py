"""Shared gmsh plumbing: read the current gmsh model's elements as clean numpy arrays."""

from __future__ import annotations

import numpy as np


def gmsh_elements(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and linear elements of dimension ``dim`` (2: triangles, 3: tetrahedra) of the
    current gmsh model, call inside an initialised gmsh session after ``generate``.

    Nodes no element uses (geometry points such as spline control points) are dropped and
    elements are oriented: triangles counter-clockwise in the xy plane, tetrahedra with
    positive volume in VTK's convention.

    Returns:
        points (N, 3), cells (M, dim + 1) int64.
    """
    import gmsh

    tags, coords, _ = gmsh.model.mesh.getNodes()
    _, _, elem_nodes = gmsh.model.mesh.getElements(dim)
    points = coords.reshape(-1, 3)
    index = np.zeros(int(tags.max()) + 1, dtype=np.int64)
    index[tags.astype(np.int64)] = np.arange(len(tags))
    cells = index[np.asarray(elem_nodes[0], dtype=np.int64).reshape(-1, dim + 1)]
    used = np.unique(cells)
    if len(used) != len(points):
        renumber = np.full(len(points), -1)
        renumber[used] = np.arange(len(used))
        points, cells = points[used], renumber[cells]
    return points, orient(points, cells)


def orient(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Triangles counter-clockwise (xy), tetrahedra positive; swaps two nodes where needed."""
    a = points[cells]
    if cells.shape[1] == 3:
        signed = (a[:, 1, 0] - a[:, 0, 0]) * (a[:, 2, 1] - a[:, 0, 1]) - \
                 (a[:, 2, 0] - a[:, 0, 0]) * (a[:, 1, 1] - a[:, 0, 1])
    else:
        signed = np.einsum("ij,ij->i", a[:, 1] - a[:, 0], np.cross(a[:, 2] - a[:, 0], a[:, 3] - a[:, 0]))
    cells = cells.copy()
    cells[signed < 0] = cells[signed < 0][:, [0, 2, 1, *range(3, cells.shape[1])]]
    return cells
