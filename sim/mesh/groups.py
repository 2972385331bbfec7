"""Named groups of a mesh (gmsh physical groups, meshio cell and point sets, VTK tag arrays,
multi-block names) and node types given to them by name.

Where groups come from:

- ``set:<name>`` point or cell arrays (0/1): meshio's point and cell sets (gmsh physical
  groups with names, Abaqus/MED/Exodus sets) and the named blocks of a multi-block VTK file
  (:func:`sim.mesh.adapters.merge_parts`) arrive as these;
- gmsh physical names kept as meshio field data ``{name: [tag, dim]}`` with the cell array
  ``gmsh:physical`` (a file converted before its sets were kept);
- ``<array>=<value>``: the points (or the nodes of the cells) where an integer point or cell
  array has that value, e.g. ``boundary_id=3``, ``gmsh:physical=2``, ``medit:ref=1``.

A cell group gives its cells' nodes. :func:`node_types_from_groups` maps group names to
:class:`~sim.mesh.NodeType` names; a node in several mapped groups takes the type of the last
one listed, and a node in none takes ``default`` (``interior``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from sim.errors import SimError
from sim.mesh.core import NODE_TYPE_ARRAY, Mesh, NodeType, Trajectory

SET_PREFIX = "set:"
_SHOWN_VALUES = 12  # values of a tag array listed in messages


def _cell_nodes(mesh: Mesh, cell_mask: np.ndarray) -> np.ndarray:
    """(num_points,) bool: the nodes of the cells in ``cell_mask`` (over all cells in order)."""
    nodes = np.zeros(mesh.num_points, bool)
    for name, sl in mesh.cell_blocks():
        chosen = mesh.cells[name][cell_mask[sl]]
        nodes[chosen.ravel()] = True
    return nodes


def _mask(array: np.ndarray) -> np.ndarray:
    return np.asarray(array).reshape(len(array), -1).any(axis=1)


def _tag_arrays(mesh: Mesh) -> dict[str, tuple[str, np.ndarray]]:
    """Integer 1D point and cell arrays that can tag groups: name -> (kind, array)."""
    out: dict[str, tuple[str, np.ndarray]] = {}
    for kind, arrays in (("point", mesh.point_data), ("cell", mesh.cell_data)):
        for k, a in arrays.items():
            if k.startswith(SET_PREFIX) or a.ndim != 1 or a.dtype.kind not in "iub":
                continue
            out.setdefault(k, (kind, a))
    return out


def _gmsh_physical(mesh: Mesh) -> dict[str, np.ndarray]:
    """gmsh physical names (meshio field data ``name: [tag, dim]``) -> cell mask."""
    tags = mesh.cell_data.get("gmsh:physical")
    if tags is None or tags.ndim != 1:
        return {}
    dims = np.concatenate([np.full(len(c), _cell_dim(n)) for n, c in mesh.cells.items()]) if mesh.cells else \
        np.zeros(0, int)
    out = {}
    for name, value in mesh.field_data.items():
        v = np.asarray(value) if not isinstance(value, str) else None
        if v is None or v.dtype.kind not in "iu" or v.shape != (2,):
            continue
        out[name] = (tags == int(v[0])) & (dims == int(v[1]))
    return out


def _cell_dim(name: str) -> int:
    from sim.mesh.cells import cell_type

    return cell_type(name).dim


def named_groups(mesh: Mesh) -> dict[str, np.ndarray]:
    """The named groups of ``mesh`` (sets and gmsh physical names), name -> (num_points,) bool
    node mask. Tag arrays (``<array>=<value>``) are looked up by :func:`group_nodes`."""
    out: dict[str, np.ndarray] = {}
    for name, cells in _gmsh_physical(mesh).items():
        out[name] = _cell_nodes(mesh, cells)
    for k, a in mesh.point_data.items():
        if k.startswith(SET_PREFIX):
            name = k[len(SET_PREFIX):]
            out[name] = out.get(name, np.zeros(mesh.num_points, bool)) | _mask(a)
    for k, a in mesh.cell_data.items():
        if k.startswith(SET_PREFIX):
            name = k[len(SET_PREFIX):]
            out[name] = out.get(name, np.zeros(mesh.num_points, bool)) | _cell_nodes(mesh, _mask(a))
    return out


def describe_groups(mesh: Mesh) -> str:
    """What groups ``mesh`` has, for messages: its named groups, then its tag arrays and values."""
    names = list(named_groups(mesh))
    tags = []
    for k, (kind, a) in _tag_arrays(mesh).items():
        if k == NODE_TYPE_ARRAY:
            continue
        values = np.unique(a)
        shown = "|".join(str(int(v)) for v in values[:_SHOWN_VALUES]) + ("|..." if len(values) > _SHOWN_VALUES else "")
        tags.append(f"{k}={shown} ({kind} array)")
    parts = []
    if names:
        parts.append(", ".join(names))
    if tags:
        parts.append("by value: " + ", ".join(tags))
    return "; ".join(parts) if parts else "none: no sets, physical groups or integer tag arrays"


def group_nodes(mesh: Mesh, name: str) -> np.ndarray | None:
    """(num_points,) bool node mask of the group ``name`` (a named group, or ``<array>=<value>``
    of an integer point or cell array), or None when the mesh has no such group."""
    named = named_groups(mesh)
    if name in named:
        return named[name]
    array, sep, value = name.rpartition("=")
    tags = _tag_arrays(mesh)
    if not sep or array not in tags:
        return None
    try:
        v = int(value)
    except ValueError:
        return None
    kind, a = tags[array]
    hit = a == v
    return hit if kind == "point" else _cell_nodes(mesh, hit)


def node_type_value(name: str | int | NodeType) -> int:
    """A node type given by name (``wall``, ``INFLOW``), :class:`NodeType` or value."""
    if isinstance(name, NodeType):
        return int(name)
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if int(name) in NodeType._value2member_map_:
            return int(name)
    elif isinstance(name, str) and name.strip().upper() in NodeType.__members__:
        return int(NodeType[name.strip().upper()])
    known = ", ".join(t.name.lower() for t in NodeType)
    raise SimError(f"unknown node type {name!r} (types: {known})")


def node_types_from_groups(mesh_or_path: Any, mapping: Mapping[str, str | int | NodeType],
                           default: str | int | NodeType = "interior") -> np.ndarray:
    """Node types from named groups: ``{"inlet": "inflow", "walls": "wall", ...}``.

    Args:
        mesh_or_path: a Mesh or Trajectory (its mesh), a pyvista dataset, a meshio.Mesh, or a
            mesh file (gmsh ``.msh``, ``.vtu``, ``.vtm`` with named blocks, ...).
        mapping: group name -> node type name (:class:`~sim.mesh.NodeType`, any case). A group
            is a named set (gmsh physical group, meshio set, multi-block name) or
            ``<array>=<value>`` of an integer point or cell array. A node in several groups
            takes the type of the last one listed.
        default: the type of nodes in no listed group.

    Returns:
        ``(num_points,)`` int32 :class:`~sim.mesh.NodeType` values.

    Raises:
        SimError: one error naming the file (when given one) and listing the groups the mesh
        has (for unknown group names) or the node types (for unknown type names).
    """
    from sim.mesh.adapters import as_sim

    obj, where = as_sim(mesh_or_path)
    mesh = obj.mesh if isinstance(obj, Trajectory) else obj
    return _node_types(mesh, mapping, default, where)


def _node_types(mesh: Mesh, mapping: Mapping[str, str | int | NodeType], default: Any, where: Any) -> np.ndarray:
    if not mapping:
        raise SimError("no groups given: map group names to node types, e.g. {'inlet': 'inflow'}", where)
    try:
        values = {group: node_type_value(kind) for group, kind in mapping.items()}
        fill = node_type_value(default)
    except SimError as exc:
        raise SimError(exc.message, where) from None
    masks = {group: group_nodes(mesh, group) for group in mapping}
    missing = [g for g, m in masks.items() if m is None]
    if missing:
        raise SimError(f"no group(s) {missing} in the mesh (groups: {describe_groups(mesh)})", where)
    out = np.full(mesh.num_points, fill, dtype=np.int32)
    for group, value in values.items():
        out[masks[group]] = value
    return out


def with_node_types(obj: Mesh | Trajectory, mapping: Mapping[str, str | int | NodeType],
                    default: str | int | NodeType = "interior", where: str | os.PathLike | None = None
                    ) -> Mesh | Trajectory:
    """``obj`` with its node types set from groups (:func:`node_types_from_groups`); the
    groups themselves stay as they were."""
    mesh = obj.mesh if isinstance(obj, Trajectory) else obj
    types = _node_types(mesh, mapping, default, where)
    if NODE_TYPE_ARRAY in mesh.point_data:  # a non-integer array of that name: it would be lost
        raise SimError(f"the mesh has a {mesh.point_data[NODE_TYPE_ARRAY].dtype} point array "
                       f"{NODE_TYPE_ARRAY!r} that node types from groups would replace; rename it first", where)
    new = Mesh(mesh.points, mesh.cells, mesh.point_data, mesh.cell_data, mesh.field_data, node_type=types)
    if isinstance(obj, Trajectory):
        return Trajectory(new, obj.times, obj.point_fields, obj.cell_fields, obj.positions, obj.dt, obj.params)
    return new


def parse_node_types(items: list[str] | str) -> dict[str, str]:
    """``--node-types NAME=TYPE[,NAME=TYPE...]`` (repeatable) as a mapping, in order. The last
    ``=`` separates the type, so a group may be ``<array>=<value>`` (``boundary_id=3=wall``)."""
    out: dict[str, str] = {}
    for item in [items] if isinstance(items, str) else items:
        for pair in item.split(","):
            if not pair.strip():
                continue
            group, sep, kind = pair.strip().rpartition("=")
            if not sep or not group or not kind:
                raise SimError(f"--node-types takes NAME=TYPE[,NAME=TYPE...], got {pair.strip()!r}")
            out.pop(group, None)  # a repeated group moves to its last place
            out[group] = kind
    return out
