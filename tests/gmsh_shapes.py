"""gmsh geometry for the mesh-reading tests: meshes written by gmsh itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def plate_with_hole(width: float, height: float, cx: float, cy: float, radius: float) -> Iterator[Any]:
    """gmsh with a ``width`` x ``height`` rectangle minus a disk built and synchronised (the block
    adds groups, meshes and writes); gmsh is finalised after the block."""
    import gmsh

    gmsh.initialize(["-noenv"], readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        occ = gmsh.model.occ
        occ.cut([(2, occ.addRectangle(0, 0, 0, width, height))], [(2, occ.addDisk(cx, cy, 0, radius, radius))])
        occ.synchronize()
        yield gmsh
    finally:
        gmsh.finalize()
