"""Families of 2D plates with non-parameterised shape variation, meshed independently with
gmsh (node counts and connectivity differ between samples), for MMGP-style datasets.

Plate: width 1, height 1.5, bottom edge y = 0, top edge y = 1.5. Families:

- ``notched``: each side carries 1-3 random smooth notches or bumps (Gaussian profiles);
- ``ellipse`` (out of distribution): both sides bulge outwards as elliptic arcs;
- ``wedge`` (out of distribution): the plate narrows linearly towards the top;
- ``same_mesh``: one fixed notched mesh whose nodes are moved by a smooth random field
  (identical connectivity in every sample).
"""

from __future__ import annotations

import numpy as np

from sim.errors import SimError
from sim.mesh import Mesh, NodeType
from solvers.meshing import gmsh_elements

WIDTH, HEIGHT = 1.0, 1.5
FAMILIES = ("notched", "ellipse", "wedge", "same_mesh")


def side_profiles(rng: np.random.Generator, family: str, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inward offsets of the left and right sides at heights y (positive = notch into the plate)."""
    if family in ("notched", "same_mesh"):
        out = []
        for _ in range(2):
            off = np.zeros_like(y)
            for _ in range(int(rng.integers(1, 4))):
                a = rng.uniform(-0.12, 0.2)
                c = rng.uniform(0.2, 0.8) * HEIGHT
                s = rng.uniform(0.06, 0.2)
                off += a * np.exp(-(((y - c) / s) ** 2))
            out.append(np.clip(off, -0.2, 0.3) * np.sin(np.pi * y / HEIGHT) ** 0.25)  # corners stay put
        return out[0], out[1]
    if family == "ellipse":
        b = rng.uniform(0.1, 0.25)
        bulge = -b * np.sqrt(np.clip(1 - ((y - HEIGHT / 2) / (HEIGHT / 2)) ** 2, 0, None))
        return bulge, bulge.copy()
    if family == "wedge":
        t = rng.uniform(0.1, 0.25)
        return t * y / HEIGHT, t * y / HEIGHT
    raise SimError(f"unknown shape family {family!r} (known: {', '.join(FAMILIES)})")


def plate_mesh(left: np.ndarray, right: np.ndarray, y: np.ndarray, size: float) -> Mesh:
    """Mesh the plate bounded by x = left(y) and x = WIDTH - right(y) with gmsh."""
    import gmsh

    gmsh.initialize(["-noenv"], readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.option.setNumber("General.NumThreads", 1)
        occ = gmsh.model.occ
        lp = [occ.addPoint(float(x), float(yy), 0) for x, yy in zip(left, y)]
        rp = [occ.addPoint(float(WIDTH - x), float(yy), 0) for x, yy in zip(right[::-1], y[::-1])]
        curves = [occ.addLine(rp[-1], lp[0]),  # bottom, right to left
                  occ.addSpline(lp),  # left side, upwards
                  occ.addLine(lp[-1], rp[0]),  # top
                  occ.addSpline(rp)]  # right side, downwards
        occ.addPlaneSurface([occ.addCurveLoop(curves)])
        occ.synchronize()
        gmsh.option.setNumber("Mesh.MeshSizeMax", size)
        gmsh.model.mesh.generate(2)
        pts, tri = gmsh_elements(2)  # drops the spline control points, orients the triangles
    finally:
        gmsh.finalize()
    pts = pts[:, :2]
    nt = np.full(len(pts), NodeType.INTERIOR, dtype=np.int32)
    nt[pts[:, 1] < 1e-9] = NodeType.FIXED
    nt[pts[:, 1] > HEIGHT - 1e-9] = NodeType.HANDLE
    return Mesh(pts, {"triangle": tri}, node_type=nt)


def sample_shape(rng: np.random.Generator, family: str, size: float) -> Mesh:
    y = np.linspace(0.0, HEIGHT, 40)
    if family == "same_mesh":
        base = plate_mesh(*side_profiles(np.random.default_rng(0), "notched", y), y, size)
        # smooth horizontal displacement: zero at bottom and top, opposite on the two sides
        amp = rng.uniform(-0.08, 0.08, 2)
        c = rng.uniform(0.3, 0.7, 2) * HEIGHT
        py = base.points[:, 1]
        bump = amp[0] * np.exp(-(((py - c[0]) / 0.25) ** 2)) + amp[1] * np.exp(-(((py - c[1]) / 0.25) ** 2))
        pts = base.points.copy()
        pts[:, 0] += bump * np.sin(np.pi * py / HEIGHT) * (1 - 2 * base.points[:, 0] / WIDTH)
        return Mesh(pts, base.cells, node_type=base.node_type).validate()
    left, right = side_profiles(rng, family, y)
    return plate_mesh(left, right, y, size).validate()
