"""The shared data model and mesh I/O: :class:`Mesh`, :class:`Trajectory`, the HDF5 store,
every VTK/ParaView mesh and series format (serial, partitioned, multi-block, PVD), XDMF, and
every format meshio reads; node types from named groups (:func:`node_types_from_groups`)."""

from sim.mesh.core import NODE_TYPE_ARRAY, NUM_NODE_TYPES, Mesh, NodeType, Trajectory
from sim.mesh.groups import named_groups, node_types_from_groups, with_node_types
from sim.mesh.io import read, write
from sim.mesh.series import SeriesLayout
from sim.mesh.store import SCHEMA_VERSION, Store, StoreEntry, StoreWriter, check_entry_name
from sim.mesh.vtk import PVDWriter, read_pvd, read_vtk, write_pvd, write_vtu
from sim.mesh.xdmf import XDMFWriter, read_xdmf, write_xdmf

__all__ = [
    "Mesh", "Trajectory", "NodeType", "NUM_NODE_TYPES", "NODE_TYPE_ARRAY", "read", "write", "SeriesLayout",
    "Store", "StoreEntry", "StoreWriter", "check_entry_name", "SCHEMA_VERSION", "PVDWriter", "read_pvd",
    "read_vtk", "write_pvd", "write_vtu", "XDMFWriter", "read_xdmf", "write_xdmf", "node_types_from_groups",
    "named_groups", "with_node_types",
]
