"""Mesh morphing onto the unit disk: Floater / Tutte barycentric parametrisation.

Every boundary node is placed on the unit circle by arc length; chosen boundary points
("pins", e.g. the corners of a plate) are fixed at given angles, so corresponding points
of different shapes land at the same place and corners do not drift. Interior nodes are
the solution of one sparse linear system (uniform, Tutte weights): each interior node is
the average of its neighbours,

.. math:: \\sum_{j \\in N(i)} (u_i - u_j) = 0 \\quad (i \\text{ interior}), \\qquad
          u_b = \\text{circle}(b) \\quad (b \\text{ boundary}).

By Tutte's theorem the image of a planar triangulated disk with a convex boundary has no
fold-over, so the morphed mesh is a valid triangulation of the disk.
An optional Wendland C2 radial-basis morphing moves chosen interior points afterwards.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from sim.errors import MeshError


def _edge_keys(edges: np.ndarray, n: int) -> np.ndarray:
    """One int64 per undirected edge, min * n + max: sorting the keys sorts the edges by (min, max),
    as ``np.unique(..., axis=0)`` of the sorted pairs would, at a fraction of its cost."""
    e = np.asarray(edges, dtype=np.int64)
    return np.minimum(e[:, 0], e[:, 1]) * n + np.maximum(e[:, 0], e[:, 1])


def boundary_loop(triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Boundary nodes of a triangulated disk in counter-clockwise order.

    Raises a MeshError if the boundary is not a single closed loop (holes, several parts).
    """
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    _, inverse, counts = np.unique(_edge_keys(edges, len(points)), return_inverse=True, return_counts=True)
    boundary = edges[counts[inverse] == 1]  # oriented as in their triangle
    if len(boundary) == 0:
        raise MeshError("the mesh has no boundary")
    nxt = {}
    for a, b in boundary:
        if a in nxt:
            raise MeshError(f"boundary node {a} is on two boundary loops (a pinched boundary)")
        nxt[int(a)] = int(b)
    start = int(boundary[0, 0])
    loop = [start]
    while True:
        n = nxt[loop[-1]]
        if n == start:
            break
        loop.append(n)
        if len(loop) > len(boundary):
            raise MeshError("the boundary does not close")
    if len(loop) != len(boundary):
        raise MeshError(f"the mesh boundary has several loops ({len(boundary)} boundary edges, first loop "
                        f"{len(loop)}): morphing onto a disk needs a simply connected mesh")
    loop = np.array(loop)
    p = points[loop]
    area = 0.5 * np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])
    return loop if area > 0 else loop[::-1]


def corner_pins(points: np.ndarray, loop: np.ndarray, count: int) -> np.ndarray:
    """Positions in ``loop`` of the ``count`` sharpest boundary corners, in loop order,
    starting with the corner nearest to the lower-left of the bounding box."""
    p = points[loop]
    v_in = p - np.roll(p, 1, axis=0)
    v_out = np.roll(p, -1, axis=0) - p
    turn = np.abs(np.arctan2(v_in[:, 0] * v_out[:, 1] - v_in[:, 1] * v_out[:, 0], (v_in * v_out).sum(1)))
    idx = np.sort(np.argsort(-turn, kind="stable")[:count])
    lower_left = np.argmin(((p[idx] - p.min(0)) ** 2).sum(1))
    return np.roll(idx, -lower_left)


def floater_map(points: np.ndarray, triangles: np.ndarray, pins: int = 4,
                pin_angles: np.ndarray | None = None) -> np.ndarray:
    """Map a triangulated disk onto the unit disk; returns (N, 2) morphed coordinates.

    Args:
        points: (N, 2) coordinates.
        triangles: (M, 3) connectivity.
        pins: number of corner points pinned at fixed angles (0: only arc length, starting
            at the lower-left-most boundary node).
        pin_angles: their angles (default evenly spaced from 5 pi / 4, i.e. the lower-left).
    """
    pts = np.asarray(points, dtype=np.float64)[:, :2]
    n = len(pts)
    unused = np.setdiff1d(np.arange(n), triangles)
    if len(unused):
        raise MeshError(f"{len(unused)} node(s) belong to no triangle (first: {unused[0]}); remove them before "
                        "morphing")
    loop = boundary_loop(triangles, pts)
    seg = np.linalg.norm(np.roll(pts[loop], -1, axis=0) - pts[loop], axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])  # arc length at loop position k (and the total)
    if pins:
        at = corner_pins(pts, loop, pins)
    else:
        at = np.array([np.argmin(((pts[loop] - pts[loop].min(0)) ** 2).sum(1))])
    k = len(at)
    angles = np.asarray(pin_angles, dtype=float) if pin_angles is not None else \
        5 * np.pi / 4 + 2 * np.pi * np.arange(k) / k
    theta = np.empty(len(loop))
    for s in range(k):  # between consecutive pins, by arc length
        a, b = at[s], at[(s + 1) % k]
        pos = (np.arange(a, a + ((b - a) % len(loop) or len(loop)) + 1)) % len(loop)
        length = (cum[b] - cum[a]) % cum[-1] or cum[-1]
        frac = ((cum[pos] - cum[a]) % cum[-1]) / length
        frac[-1] = 1.0
        end = angles[(s + 1) % k] if k > 1 else angles[0] + 2 * np.pi
        span = (end - angles[s]) % (2 * np.pi) or 2 * np.pi
        theta[pos[:-1]] = angles[s] + span * frac[:-1]
    out = np.zeros((n, 2))
    out[loop] = np.stack([np.cos(theta), np.sin(theta)], 1)
    # uniform-weight graph Laplacian
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    key = np.unique(_edge_keys(e, n))
    e = np.stack([key // n, key % n], 1)
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    adj = (adj + adj.T).tocsr()
    lap = (sp.diags(np.asarray(adj.sum(1)).ravel()) - adj).tocsr()
    interior = np.setdiff1d(np.arange(n), loop)
    if len(interior):
        solve = splu(lap[interior][:, interior].tocsc())
        rhs = -lap[interior][:, loop] @ out[loop]
        out[interior] = np.stack([solve.solve(rhs[:, c]) for c in range(2)], 1)
    return out


class MorphCache:
    """Floater maps and point locators of the meshes seen last, keyed by their content.

    The map of a mesh depends only on its points, triangles and pins, and locating points in
    the morphed mesh needs a search structure built from it (:func:`~sim.models.mmgp.transfer.
    trifinder`): an active-learning loop embeds the same few hundred candidate meshes into a
    freshly fitted model every round, so both are computed once per mesh. The least recently
    used entries go once the cached meshes hold more than ``max_nodes`` nodes in all (the
    newest always stays). The cached arrays are read-only.
    """

    def __init__(self, max_nodes: int = 4_000_000):
        from collections import OrderedDict

        self.max_nodes = max_nodes
        self.nodes = 0
        self._items: OrderedDict[bytes, tuple[np.ndarray, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __call__(self, points: np.ndarray, triangles: np.ndarray, pins: int) -> tuple[np.ndarray, Any]:
        """(morphed (N, 2), trifinder of the morphed mesh) of :func:`floater_map` with ``pins``."""
        from sim.models.mmgp.transfer import trifinder

        pts = np.ascontiguousarray(points, dtype=np.float64)
        tri = np.ascontiguousarray(triangles, dtype=np.int64)
        h = hashlib.blake2b(digest_size=20)
        for a in (np.array(pts.shape + tri.shape + (pins,), dtype=np.int64), pts, tri):
            h.update(a.tobytes())
        key = h.digest()
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        morphed = floater_map(pts, tri, pins)
        morphed.setflags(write=False)
        item = (morphed, trifinder(morphed, tri))
        self._items[key] = item
        self.nodes += len(morphed)
        while self.nodes > self.max_nodes and len(self._items) > 1:
            self.nodes -= len(self._items.popitem(last=False)[1][0])
        return item


MORPHS = MorphCache()  # shared by every MMGP of the process


def wendland_c2(r: np.ndarray) -> np.ndarray:
    """Wendland's compactly supported C2 function (1 - r)^4 (4 r + 1) for r < 1."""
    r = np.clip(r, 0.0, 1.0)
    return (1 - r) ** 4 * (4 * r + 1)


def rbf_morph(points: np.ndarray, centres: np.ndarray, displacements: np.ndarray, radius: float) -> np.ndarray:
    """Move ``points`` with the Wendland C2 interpolant of the centre displacements.

    The centres move exactly by their displacements; points farther than ``radius`` from
    every centre do not move.
    """
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1) / radius
    w = np.linalg.solve(wendland_c2(d), displacements)
    phi = wendland_c2(np.linalg.norm(points[:, None] - centres[None], axis=-1) / radius)
    return points + phi @ w
