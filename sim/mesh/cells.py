"""Cell types known to ``sim.mesh``: names, node counts, dimensions and format codes.

Cell names follow meshio (``triangle``, ``tetra``, ``hexahedron20`` ...); node orderings
follow VTK, which is also meshio's in-memory convention for these types. A cell type that
is not in :data:`CELL_TYPES` cannot be represented and is refused with an error naming it
(never dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.errors import MeshError


@dataclass(frozen=True)
class CellType:
    """Static description of one cell type.

    Attributes:
        name: meshio name.
        num_nodes: nodes per cell.
        dim: topological dimension (0 vertex, 1 line, 2 surface, 3 volume).
        num_corners: leading nodes that are the linear corners (the rest are mid-side nodes).
        vtk_id: VTK cell type id.
        xdmf_name: XDMF topology type for a uniform grid.
        xdmf_id: XDMF code inside a ``Mixed`` topology.
        linear: the linear type with the same corners (itself for linear types).
    """

    name: str
    num_nodes: int
    dim: int
    num_corners: int
    vtk_id: int
    xdmf_name: str
    xdmf_id: int
    linear: str


_TABLE = [
    CellType("vertex", 1, 0, 1, 1, "Polyvertex", 1, "vertex"),
    CellType("line", 2, 1, 2, 3, "Polyline", 2, "line"),
    CellType("triangle", 3, 2, 3, 5, "Triangle", 4, "triangle"),
    CellType("quad", 4, 2, 4, 9, "Quadrilateral", 5, "quad"),
    CellType("tetra", 4, 3, 4, 10, "Tetrahedron", 6, "tetra"),
    CellType("pyramid", 5, 3, 5, 14, "Pyramid", 7, "pyramid"),
    CellType("wedge", 6, 3, 6, 13, "Wedge", 8, "wedge"),
    CellType("hexahedron", 8, 3, 8, 12, "Hexahedron", 9, "hexahedron"),
    CellType("line3", 3, 1, 2, 21, "Edge_3", 34, "line"),
    CellType("triangle6", 6, 2, 3, 22, "Triangle_6", 36, "triangle"),
    CellType("quad8", 8, 2, 4, 23, "Quadrilateral_8", 37, "quad"),
    CellType("quad9", 9, 2, 4, 28, "Quadrilateral_9", 35, "quad"),
    CellType("tetra10", 10, 3, 4, 24, "Tetrahedron_10", 38, "tetra"),
    CellType("pyramid13", 13, 3, 5, 27, "Pyramid_13", 39, "pyramid"),
    CellType("wedge15", 15, 3, 6, 26, "Wedge_15", 40, "wedge"),
    CellType("hexahedron20", 20, 3, 8, 25, "Hexahedron_20", 48, "hexahedron"),
    CellType("hexahedron27", 27, 3, 8, 29, "Hexahedron_27", 50, "hexahedron"),
]

CELL_TYPES: dict[str, CellType] = {c.name: c for c in _TABLE}
BY_VTK_ID: dict[int, CellType] = {c.vtk_id: c for c in _TABLE}
BY_XDMF_ID: dict[int, CellType] = {c.xdmf_id: c for c in _TABLE}
BY_XDMF_NAME: dict[str, CellType] = {c.xdmf_name.lower(): c for c in _TABLE}


def cell_type(name: str) -> CellType:
    """The :class:`CellType` called ``name``; a :class:`MeshError` listing the known ones otherwise."""
    try:
        return CELL_TYPES[name]
    except KeyError:
        known = ", ".join(CELL_TYPES)
        raise MeshError(f"cell type {name!r} is not supported (supported: {known})") from None
