"""Channel-with-cylinder triangle meshes made with gmsh, refined near the cylinder.

The DFG benchmark channel (Schaefer & Turek 1996) is the default: 2.2 x 0.41 with a
cylinder of radius 0.05 at (0.2, 0.2). Node types follow sim.mesh.NodeType: INFLOW on
x = 0, OUTFLOW on x = L, WALL on y = 0 and y = H, OBSTACLE on the cylinder, INTERIOR
elsewhere (inflow/outflow corners count as inflow/outflow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.errors import MeshError
from sim.mesh import Mesh, NodeType
from solvers.meshing import gmsh_elements


@dataclass(frozen=True)
class Channel:
    length: float = 2.2
    height: float = 0.41
    cx: float = 0.2
    cy: float = 0.2
    radius: float = 0.05

    def check(self) -> None:
        if not (0 < self.radius and self.cx - self.radius > 0 and self.cx + self.radius < self.length
                and self.cy - self.radius > 0 and self.cy + self.radius < self.height):
            raise MeshError(f"the cylinder (centre ({self.cx}, {self.cy}), radius {self.radius}) does not fit "
                            f"inside the {self.length} x {self.height} channel")


def channel_mesh(channel: Channel = Channel(), size: float = 0.03, size_min: float | None = None,
                 refine_distance: float = 0.3, wake_size: float | None = None, wake_length: float = 1.0) -> Mesh:
    """Counter-clockwise triangle mesh with node types.

    Args:
        size: element size far from the cylinder.
        size_min: element size on the cylinder (default ``size / 3``).
        refine_distance: distance from the cylinder over which the size grows to ``size``.
        wake_size: element size in a box behind the cylinder (``wake_length`` long, 3
            diameters high), where the shed vortices travel; None: no wake refinement.
    """
    import gmsh

    channel.check()
    c = channel
    size_min = size_min if size_min is not None else size / 3
    gmsh.initialize(["-noenv"], readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.option.setNumber("General.NumThreads", 1)  # deterministic meshes
        gmsh.model.add("channel")
        occ = gmsh.model.occ
        box = occ.addRectangle(0, 0, 0, c.length, c.height)
        hole = occ.addDisk(c.cx, c.cy, 0, c.radius, c.radius)
        occ.cut([(2, box)], [(2, hole)])
        occ.synchronize()
        gmsh.option.setNumber("Mesh.MeshSizeMax", size)
        gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
        field = gmsh.model.mesh.field
        circle = [t for _, t in gmsh.model.getEntities(1)
                  if abs(gmsh.model.occ.getMass(1, t) - 2 * np.pi * c.radius) < 1e-6 * c.radius]
        dist = field.add("Distance")
        field.setNumbers(dist, "CurvesList", circle)
        field.setNumber(dist, "Sampling", 200)
        thr = field.add("Threshold")
        field.setNumber(thr, "InField", dist)
        field.setNumber(thr, "SizeMin", size_min)
        field.setNumber(thr, "SizeMax", size)
        field.setNumber(thr, "DistMin", 0.0)
        field.setNumber(thr, "DistMax", refine_distance)
        background = thr
        if wake_size is not None:
            box = field.add("Box")
            field.setNumber(box, "VIn", wake_size)
            field.setNumber(box, "VOut", size)
            field.setNumber(box, "XMin", c.cx)
            field.setNumber(box, "XMax", min(c.cx + wake_length, c.length))
            field.setNumber(box, "YMin", max(c.cy - 3 * c.radius, 0.0))
            field.setNumber(box, "YMax", min(c.cy + 3 * c.radius, c.height))
            field.setNumber(box, "Thickness", 3 * c.radius)
            background = field.add("Min")
            field.setNumbers(background, "FieldsList", [thr, box])
        field.setAsBackgroundMesh(background)
        gmsh.model.mesh.generate(2)
        points, triangles = gmsh_elements(2)
    finally:
        gmsh.finalize()
    points = points[:, :2]
    return Mesh(points, {"triangle": triangles}, node_type=node_types(points, c))


def node_types(points: np.ndarray, c: Channel, tol: float = 1e-9) -> np.ndarray:
    x, y = points[:, 0], points[:, 1]
    nt = np.full(len(points), NodeType.INTERIOR, dtype=np.int32)
    nt[np.abs(np.hypot(x - c.cx, y - c.cy) - c.radius) < 1e-6 * max(c.radius, 1.0)] = NodeType.OBSTACLE
    nt[(y < tol) | (y > c.height - tol)] = NodeType.WALL
    nt[x > c.length - tol] = NodeType.OUTFLOW
    nt[x < tol] = NodeType.INFLOW
    return nt
