"""Finite-element (P1) transfer between triangle meshes and the P1 mass matrix.

:func:`p1_transfer` builds the sparse operator that evaluates a P1 field of a source mesh
at query points: each point is located in the source mesh's *own* triangles (a trapezoid
map search from matplotlib, no re-triangulation of the point cloud) and weighted by its
barycentric coordinates. A point outside the source mesh is clamped to the nearest point
of the source boundary and takes the linear interpolation along that boundary edge.
Linear fields are therefore transferred exactly inside the mesh.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from sim.models.mmgp.morphing import boundary_loop


def trifinder(points: np.ndarray, triangles: np.ndarray) -> Any:
    """The point-location structure of a triangle mesh (matplotlib's trapezoid map), what
    :func:`p1_transfer` searches; building it is most of a transfer's cost, so a caller that
    transfers from one mesh many times can build it once and pass it in."""
    from matplotlib.tri import Triangulation

    pts = np.asarray(points, dtype=np.float64)[:, :2]
    return Triangulation(pts[:, 0], pts[:, 1], triangles).get_trifinder()


def p1_transfer(points: np.ndarray, triangles: np.ndarray, query: np.ndarray, finder: Any = None) -> sp.csr_matrix:
    """(num_query, num_points) interpolation operator from the source P1 space to ``query``
    (``finder``: :func:`trifinder` of the source mesh, built here when not given)."""
    pts = np.asarray(points, dtype=np.float64)[:, :2]
    q = np.asarray(query, dtype=np.float64)[:, :2]
    found = (finder if finder is not None else trifinder(pts, triangles))(q[:, 0], q[:, 1])
    rows, cols, vals = [], [], []
    inside = np.flatnonzero(found >= 0)
    if len(inside):
        t = triangles[found[inside]]
        a, b, c = pts[t[:, 0]], pts[t[:, 1]], pts[t[:, 2]]
        p = q[inside]
        det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
        l1 = ((p[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (p[:, 1] - a[:, 1])) / det
        l2 = ((b[:, 0] - a[:, 0]) * (p[:, 1] - a[:, 1]) - (p[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])) / det
        lam = np.clip(np.stack([1 - l1 - l2, l1, l2], 1), 0.0, 1.0)
        lam /= lam.sum(1, keepdims=True)
        rows.append(np.repeat(inside, 3))
        cols.append(t.ravel())
        vals.append(lam.ravel())
    outside = np.flatnonzero(found < 0)
    if len(outside):
        loop = boundary_loop(triangles, pts)
        e0, e1 = loop, np.roll(loop, -1)
        mid = 0.5 * (pts[e0] + pts[e1])
        k = min(8, len(loop))
        _, near = cKDTree(mid).query(q[outside], k=k)
        near = near.reshape(len(outside), k)
        a, b = pts[e0[near]], pts[e1[near]]  # (n_out, k, 2)
        ab = b - a
        s = np.clip(((q[outside][:, None] - a) * ab).sum(-1) / np.maximum((ab**2).sum(-1), 1e-300), 0.0, 1.0)
        proj = a + s[..., None] * ab
        best = np.argmin(((proj - q[outside][:, None]) ** 2).sum(-1), axis=1)
        pick = np.arange(len(outside))
        sb = s[pick, best]
        rows.append(np.repeat(outside, 2))
        cols.append(np.stack([e0[near[pick, best]], e1[near[pick, best]]], 1).ravel())
        vals.append(np.stack([1 - sb, sb], 1).ravel())
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(len(q), len(pts)))


def p1_mass_matrix(points: np.ndarray, triangles: np.ndarray) -> sp.csr_matrix:
    """Consistent P1 mass matrix: M_ij = integral of phi_i phi_j (area / 12 * [2 1 1; 1 2 1; 1 1 2])."""
    p = np.asarray(points, dtype=np.float64)[:, :2]
    a, b, c = p[triangles[:, 0]], p[triangles[:, 1]], p[triangles[:, 2]]
    area = 0.5 * np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))
    local = np.array([[2, 1, 1], [1, 2, 1], [1, 1, 2]], dtype=np.float64) / 12.0
    rows = np.repeat(triangles, 3, axis=1).ravel()
    cols = np.tile(triangles, (1, 3)).ravel()
    vals = (area[:, None, None] * local[None]).ravel()
    n = len(p)
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
