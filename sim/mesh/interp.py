"""Piecewise-linear (P1) interpolation between meshes of simplices: the sparse matrix that
evaluates a nodal field of one mesh (triangles in 2D, tetrahedra in 3D) at arbitrary points,
for moving fields between two resolutions of the same domain.

Each query point is located in the simplex that contains it (candidates: the simplices whose
centroids are nearest, checked by barycentric coordinates) and gets that simplex's barycentric
weights. Points a little outside the mesh (a curved boundary faceted differently by the two
meshes) take the weights of the best candidate clipped to that simplex (a point of it about as
far from the query as the query is from the mesh, not the exact closest one); a point farther
outside than ``max_outside`` times that simplex's size is an error, not a silent extrapolation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from sim.errors import SimError

SIMPLEX = {"triangle": 2, "tetra": 3}


def _simplices(mesh_cells: dict[str, np.ndarray]) -> tuple[np.ndarray, int]:
    kinds = [k for k in mesh_cells if k in SIMPLEX]
    others = [k for k in mesh_cells if k not in SIMPLEX and k not in ("vertex", "line")]
    if not kinds or others or len({SIMPLEX[k] for k in kinds}) != 1:
        raise SimError(f"P1 interpolation needs a mesh of triangles or of tetrahedra, got cells {sorted(mesh_cells)}")
    dim = SIMPLEX[kinds[0]]
    return np.concatenate([np.asarray(mesh_cells[k], dtype=np.int64) for k in kinds]), dim


def p1_matrix(points: np.ndarray, cells: Any, query: np.ndarray, candidates: int = 8,
              max_outside: float = 0.5) -> sp.csr_matrix:
    """(num_query, num_points) matrix A with A @ f = the P1 interpolant of nodal values f at ``query``.

    Args:
        points: (N, 2 or 3) nodes of the source mesh.
        cells: (M, d + 1) simplices (d = 2 triangles, d = 3 tetrahedra), or a dict of cell blocks
            as in :class:`~sim.mesh.Mesh` (triangles or tetrahedra, optionally with lines/vertices).
        query: (Q, 2 or 3) points; only the first d coordinates are used.
        candidates: simplices tried per point first (nearest centroids); points not found among
            them are tried again with 8 times as many.
        max_outside: the largest distance outside the mesh accepted, in units of the size of
            the nearest simplex (its longest edge); the point gets the clipped weights of that
            simplex.

    Raises:
        SimError: a point lies farther outside the mesh than ``max_outside``, or the mesh is not
            made of simplices.
    """
    if isinstance(cells, dict):
        simp, dim = _simplices(cells)
    else:
        simp = np.asarray(cells, dtype=np.int64)
        dim = simp.shape[1] - 1
        if dim not in (2, 3):
            raise SimError(f"P1 interpolation needs triangles or tetrahedra, got cells with {simp.shape[1]} nodes")
    pts = np.asarray(points, dtype=np.float64)[:, :dim]
    q = np.asarray(query, dtype=np.float64)[:, :dim]
    v0 = pts[simp[:, 0]]
    edges = np.stack([pts[simp[:, i + 1]] - v0 for i in range(dim)], axis=2)  # (M, d, d): columns v_i - v0
    det = np.linalg.det(edges)
    size = np.max([np.linalg.norm(pts[simp[:, i]] - pts[simp[:, j]], axis=1)  # longest edge
                   for i in range(dim + 1) for j in range(i + 1, dim + 1)], axis=0)
    good = np.abs(det) > 1e-12 * size**dim
    inv = np.zeros_like(edges)
    inv[good] = np.linalg.inv(edges[good])
    tree = cKDTree(pts[simp].mean(axis=1))

    def weights(idx: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Barycentric coordinates (n, k, d + 1) of points idx in their candidate simplices."""
        lam = np.einsum("nkij,nkj->nki", inv[cand], q[idx][:, None, :] - v0[cand])
        lam = np.concatenate([1.0 - lam.sum(-1, keepdims=True), lam], axis=-1)
        lam[~good[cand]] = -np.inf  # degenerate simplices are never chosen
        return lam

    n = len(q)
    chosen = np.zeros(n, dtype=np.int64)
    lam_chosen = np.zeros((n, dim + 1))
    todo = np.arange(n)
    k = min(candidates, len(simp))
    while len(todo):
        _, cand = tree.query(q[todo], k=k)
        cand = cand.reshape(len(todo), k)
        lam = weights(todo, cand)
        worst = lam.min(-1)
        best = np.argmax(worst, axis=1)
        rows = np.arange(len(todo))
        inside = worst[rows, best] >= -1e-9
        last = k >= len(simp) or k >= 8 * candidates
        take = inside | last
        chosen[todo[take]] = cand[rows, best][take]
        lam_chosen[todo[take]] = lam[rows, best][take]
        todo = todo[~take]
        k = min(8 * candidates, len(simp))
    outside = lam_chosen.min(1) < -1e-9
    if outside.any():
        lam = np.clip(lam_chosen[outside], 0.0, None)
        lam /= np.maximum(lam.sum(1, keepdims=True), 1e-300)
        corners = pts[simp[chosen[outside]]]  # (n_out, d + 1, d)
        gap = np.linalg.norm(np.einsum("ni,nij->nj", lam, corners) - q[outside], axis=1)
        far = gap > max_outside * size[chosen[outside]]
        if far.any():
            worst = np.flatnonzero(outside)[np.argmax(gap / size[chosen[outside]])]
            raise SimError(f"P1 interpolation: {int(far.sum())} of {n} points lie outside the mesh by more than "
                           f"{max_outside:g} element sizes (e.g. point {int(worst)} at {q[worst].tolist()})")
        lam_chosen[outside] = lam
    rows = np.repeat(np.arange(n), dim + 1)
    return sp.csr_matrix((lam_chosen.ravel(), (rows, simp[chosen].ravel())), shape=(n, len(pts)))
