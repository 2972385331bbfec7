"""Checks that turn bad meshes into one readable :class:`~sim.errors.MeshError`.

Structural checks (dtypes, shapes, index ranges, array lengths) run whenever a
:class:`~sim.mesh.Mesh` is built; geometric checks (finite coordinates, degenerate and
inverted cells) run in :meth:`Mesh.validate`, which every reader and writer calls with the
file name so the message says where the problem is.

Orientation convention: volume cells are positive in VTK's node ordering (the ordering of
VTK's parametric reference cells). Surface cells in a planar 2D mesh have no absolute
orientation convention across tools, so a 2D cell is *inverted* when its orientation is
opposite to the majority of the mesh's 2D cells (a fold), which is what breaks FEM
interpolation and mesh morphing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sim.errors import MeshError
from sim.mesh.cells import cell_type

# Decompositions of 3D cells into tetrahedra (corner indices, VTK ordering); each tet is
# positive on VTK's reference cell, so the sum is the signed cell volume.
_TETS = {
    "tetra": [(0, 1, 2, 3)],
    "pyramid": [(0, 1, 2, 4), (0, 2, 3, 4)],
    "wedge": [(0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5)],
    "hexahedron": [(0, 1, 2, 6), (0, 2, 3, 6), (0, 3, 7, 6), (0, 7, 4, 6), (0, 4, 5, 6), (0, 5, 1, 6)],
}

# A cell is degenerate when |measure| <= _DEGENERATE_RTOL * (longest corner distance)^dim.
_DEGENERATE_RTOL = 1e-10


def numeric(kind: str, name: str, array: object) -> np.ndarray:
    """``array`` as a numeric numpy array, or a MeshError naming ``kind`` and ``name``."""
    arr = np.asarray(array)
    if arr.dtype.kind not in "biuf":
        raise MeshError(f"{kind} {name!r} has dtype {arr.dtype}; expected a numeric (bool, int or float) array")
    return arr


def check_points(points: object) -> np.ndarray:
    pts = np.asarray(points)
    if pts.dtype.kind != "f":
        raise MeshError(f"points have dtype {pts.dtype}; expected float32 or float64 coordinates")
    if pts.ndim != 2 or pts.shape[1] not in (1, 2, 3):
        raise MeshError(f"points have shape {pts.shape}; expected (num_points, dim) with dim 1, 2 or 3")
    return pts


def check_cells(cells: Mapping[str, object], num_points: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, conn in cells.items():
        ctype = cell_type(name)
        arr = np.asarray(conn)
        if arr.size == 0:
            arr = arr.reshape(0, ctype.num_nodes)
        if arr.dtype.kind not in "iu":
            raise MeshError(f"cells {name!r} have dtype {arr.dtype}; expected integer point indices")
        if arr.ndim != 2 or arr.shape[1] != ctype.num_nodes:
            raise MeshError(
                f"cells {name!r} have shape {arr.shape}; expected (num_cells, {ctype.num_nodes})"
            )
        if arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= num_points:
                bad = lo if lo < 0 else hi
                row = int(np.argwhere((arr < 0) | (arr >= num_points))[0, 0])
                raise MeshError(
                    f"cells {name!r} (cell {row}) refer to point {bad} but the mesh has {num_points} points"
                )
        out[name] = np.ascontiguousarray(arr, dtype=np.int64)
    return out


def check_rows(kind: str, name: str, array: object, rows: int, what: str, leading: tuple[int, ...] = ()) -> np.ndarray:
    """A numeric array whose shape starts with ``leading + (rows,)``."""
    arr = numeric(kind, name, array)
    want = leading + (rows,)
    if arr.shape[: len(want)] != want:
        lead = "".join(f"{n} x " for n in leading)
        raise MeshError(
            f"{kind} {name!r} has shape {arr.shape}; expected {lead}{rows} {what} first"
            f" (shape {want + ('...',)})"
        )
    return arr


def signed_measures(points: np.ndarray, name: str, conn: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Measure (length, area or volume) of each cell from its corners.

    Returns:
        (measure, scale, oriented): ``measure`` is signed when ``oriented`` (2D cells in a
        planar mesh, 3D cells), otherwise non-negative; ``scale`` is the longest corner
        distance raised to the cell dimension, for a relative degeneracy test.
    """
    ctype = cell_type(name)
    corners = points[conn[:, : ctype.num_corners]]  # (M, c, d)
    corners = corners - corners[:, :1]  # relative to corner 0: no cancellation far from the origin
    d = points.shape[1]
    diffs = corners[:, :, None, :] - corners[:, None, :, :]
    longest = np.sqrt((diffs**2).sum(-1)).reshape(len(conn), -1).max(axis=1)
    scale = longest ** max(ctype.dim, 1)
    if ctype.dim == 0:
        return np.ones(len(conn)), np.ones(len(conn)), False
    if ctype.dim == 1:
        return longest, scale, False
    if ctype.dim == 2:
        planar = d == 2 or (d == 3 and np.ptp(points[:, 2]) == 0.0)
        if planar:
            x, y = corners[..., 0], corners[..., 1]
            area = 0.5 * (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)
            return area, scale, True
        p = corners if d == 3 else np.pad(corners, ((0, 0), (0, 0), (0, 3 - d)))
        area = np.zeros(len(conn))
        for k in range(1, ctype.num_corners - 1):  # fan triangulation from corner 0
            area += 0.5 * np.linalg.norm(np.cross(p[:, k] - p[:, 0], p[:, k + 1] - p[:, 0]), axis=1)
        return area, scale, False
    if d != 3:
        raise MeshError(f"cells {name!r} are 3D but the points have {d} coordinates")
    vol = np.zeros(len(conn))
    for a, b, c, e in _TETS[ctype.linear]:
        vol += np.einsum(
            "ij,ij->i",
            corners[:, b] - corners[:, a],
            np.cross(corners[:, c] - corners[:, a], corners[:, e] - corners[:, a]),
        ) / 6.0
    return vol, scale, True


def check_geometry(points: np.ndarray, cells: Mapping[str, np.ndarray]) -> None:
    """Finite coordinates, no degenerate cell, no inverted cell (see the module docstring)."""
    bad = ~np.isfinite(points)
    if bad.any():
        first = int(np.argwhere(bad)[0, 0])
        raise MeshError(f"points contain {int(bad.sum())} NaN or infinite coordinates (first at point {first})")
    planar_signs: list[tuple[str, np.ndarray]] = []
    for name, conn in cells.items():
        if len(conn) == 0:
            continue
        measure, scale, oriented = signed_measures(points, name, conn)
        degenerate = np.abs(measure) <= _DEGENERATE_RTOL * scale
        if cell_type(name).dim > 0 and degenerate.any():
            i = int(np.flatnonzero(degenerate)[0])
            what = {1: "length", 2: "area", 3: "volume"}[cell_type(name).dim]
            raise MeshError(
                f"{int(degenerate.sum())} degenerate {name} cell(s) with zero {what} (first: cell {i}, "
                f"points {conn[i].tolist()})"
            )
        if oriented and cell_type(name).dim == 3 and (measure < 0).any():
            i = int(np.flatnonzero(measure < 0)[0])
            raise MeshError(
                f"{int((measure < 0).sum())} inverted {name} cell(s) with negative volume (first: cell {i}, "
                f"volume {measure[i]:.3g}); node order must follow VTK's convention"
            )
        if oriented and cell_type(name).dim == 2:
            planar_signs.append((name, np.sign(measure)))
    if planar_signs:
        total = sum(float(s.sum()) for _, s in planar_signs)
        majority = 1.0 if total >= 0 else -1.0
        for name, signs in planar_signs:
            flipped = signs != majority
            if flipped.any():
                i = int(np.flatnonzero(flipped)[0])
                raise MeshError(
                    f"{int(flipped.sum())} inverted {name} cell(s) whose orientation is opposite to the rest "
                    f"of the mesh (first: cell {i}, points {cells[name][i].tolist()})"
                )
