"""A structured triangle mesh of a 3 x 1 channel (inflow left, outflow right, walls top and
bottom), shared by tests that need a small flow domain."""

from __future__ import annotations

import numpy as np

from sim.mesh import Mesh, NodeType


def channel(nx: int = 30, ny: int = 12) -> Mesh:
    x, y = np.meshgrid(np.linspace(0.0, 3.0, nx), np.linspace(0.0, 1.0, ny))
    pts = np.c_[x.ravel(), y.ravel()]
    tri = []
    for j in range(ny - 1):
        for i in range(nx - 1):
            a = j * nx + i
            tri += [[a, a + 1, a + nx + 1], [a, a + nx + 1, a + nx]]
    nt = np.full(len(pts), int(NodeType.INTERIOR))
    nt[np.isclose(pts[:, 1], 0) | np.isclose(pts[:, 1], 1)] = int(NodeType.WALL)
    nt[np.isclose(pts[:, 0], 0)] = int(NodeType.INFLOW)
    nt[np.isclose(pts[:, 0], 3)] = int(NodeType.OUTFLOW)
    return Mesh(pts, {"triangle": np.array(tri)}, node_type=nt)
