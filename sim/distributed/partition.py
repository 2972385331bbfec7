"""Splitting one mesh over ranks: node ownership, halos as deep as a model's receptive field,
and the local meshes each rank runs the model on.

A part owns a set of nodes (METIS through ``pymetis``, or recursive coordinate bisection when
METIS is not installed or ``method="geometric"``). Its local mesh holds every cell with a
vertex within ``halo - 1`` hops of an owned node, so every edge within ``halo - 1`` hops of
the owned nodes is there, and the local node set lies within ``halo`` hops (``halo + 1`` for
cells whose vertices are not all adjacent, such as quads). A model whose output at a node
depends only on its ``r``-hop neighbourhood (:attr:`receptive_hops` of the graph networks:
one hop per message-passing step, the sum of the hop radii of the transformer's masks) gives
exactly the single-process output at the owned nodes when run on the local mesh with
``halo >= r``: after layer ``l`` every node within ``r - (hops of layers 1..l)`` of the owned
set still has its whole neighbourhood. So a rollout exchanges the new state of the halo nodes
once per step, and training needs nothing but the usual gradient all-reduce (deep halos trade
redundant halo computation for fewer exchanges).

Each cell is written by exactly one part (the owner of its first vertex), so the pieces of a
partitioned VTK series tile the mesh.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from sim.errors import SimError
from sim.graph.edges import cell_edges
from sim.mesh import Mesh

PARTITION_FORMAT = "sim.partition"
PARTITION_VERSION = 1
METHODS = ("auto", "metis", "geometric")


@dataclass
class Part:
    """One rank's piece of a partitioned mesh.

    Attributes:
        rank: the part's index.
        nodes: global ids of the local nodes, the owned ones first (ascending), then the halo
            by hop distance from the owned set.
        num_owned: how many of ``nodes`` the part owns.
        cells: local connectivity (indices into ``nodes``) per cell type.
        cell_ids: global index (over all cells in ``Mesh.cells`` order) of each local cell.
        written: per cell type, a boolean mask of the local cells this part writes.
    """

    rank: int
    nodes: np.ndarray
    num_owned: int
    cells: dict[str, np.ndarray]
    cell_ids: np.ndarray
    written: dict[str, np.ndarray]

    @property
    def num_local(self) -> int:
        return int(len(self.nodes))

    @property
    def owned(self) -> np.ndarray:
        return self.nodes[: self.num_owned]

    @property
    def halo_nodes(self) -> np.ndarray:
        return self.nodes[self.num_owned:]

    def local_mesh(self, mesh: Mesh) -> Mesh:
        """The part's mesh: its nodes' points, node types and point data, its cells."""
        cell_data = {k: np.asarray(v)[self.cell_ids] for k, v in mesh.cell_data.items()}
        return Mesh(points=mesh.points[self.nodes], cells={k: v.copy() for k, v in self.cells.items()},
                    point_data={k: np.asarray(v)[self.nodes] for k, v in mesh.point_data.items()},
                    cell_data=cell_data, field_data=dict(mesh.field_data),
                    node_type=None if mesh.node_type is None else mesh.node_type[self.nodes])


@dataclass
class Partition:
    """The ownership of every node (``owner``, (N,)), the halo depth and the parts."""

    owner: np.ndarray
    halo: int
    parts: list[Part]
    method: str

    @property
    def num_parts(self) -> int:
        return len(self.parts)

    def summary(self) -> dict[str, Any]:
        owned = [p.num_owned for p in self.parts]
        local = [p.num_local for p in self.parts]
        return {"parts": self.num_parts, "method": self.method, "halo": self.halo, "nodes": int(len(self.owner)),
                "owned": owned, "local": local,
                "halo_fraction": float(sum(local) / max(1, sum(owned)) - 1.0)}


def _cell_rows(mesh: Mesh) -> dict[str, slice]:
    out, start = {}, 0
    for name, conn in mesh.cells.items():
        out[name] = slice(start, start + len(conn))
        start += len(conn)
    return out


def node_adjacency(mesh: Mesh) -> sp.csr_matrix:
    """Symmetric boolean node adjacency of the mesh's graph (the edges of its cells)."""
    ei = cell_edges(mesh.cells, mesh.num_points)
    n = mesh.num_points
    return sp.csr_matrix((np.ones(ei.shape[1], dtype=bool), (ei[1], ei[0])), shape=(n, n))


def _metis(adj: sp.csr_matrix, parts: int, seed: int) -> np.ndarray:
    import pymetis

    opts = pymetis.Options(seed=int(seed))
    adj = sp.csr_matrix(adj)
    adj.setdiag(False)
    adj.eliminate_zeros()
    _, membership = pymetis.part_graph(parts, adjacency=pymetis.CSRAdjacency(adj.indptr, adj.indices), options=opts)
    return np.asarray(membership, dtype=np.int64)


def _bisection(points: np.ndarray, parts: int) -> np.ndarray:
    """Recursive coordinate bisection: split the longest extent at the quantile that gives each
    side its share of parts."""
    owner = np.zeros(len(points), dtype=np.int64)

    def split(idx: np.ndarray, first: int, count: int) -> None:
        if count == 1:
            owner[idx] = first
            return
        left = count // 2
        pts = points[idx]
        axis = int(np.argmax(pts.max(0) - pts.min(0))) if len(idx) else 0
        order = idx[np.argsort(pts[:, axis], kind="stable")]
        cut = int(round(len(idx) * left / count))
        split(order[:cut], first, left)
        split(order[cut:], first + left, count - left)

    split(np.arange(len(points)), 0, parts)
    return owner


def partition_nodes(mesh: Mesh, parts: int, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """(owner (N,), method used): METIS (``pymetis``) for ``auto``/``metis``, coordinate
    bisection for ``geometric`` (and for ``auto`` when pymetis is not installed)."""
    if method not in METHODS:
        raise SimError(f"unknown partition method {method!r} (choose from {', '.join(METHODS)})")
    if parts < 1:
        raise SimError(f"the number of parts must be at least 1, got {parts}")
    if parts > mesh.num_points:
        raise SimError(f"cannot split a mesh of {mesh.num_points} nodes into {parts} parts")
    if parts == 1:
        return np.zeros(mesh.num_points, dtype=np.int64), "single"
    if method in ("auto", "metis"):
        try:
            import pymetis  # noqa: F401
        except ImportError:
            if method == "metis":
                raise SimError("method metis needs the pymetis package (pip install pymetis); "
                               "or use --method geometric") from None
        else:
            owner = _metis(node_adjacency(mesh), parts, seed)
            if len(np.unique(owner)) == parts:
                return owner, "metis"
            if method == "metis":
                raise SimError(f"METIS left some of the {parts} parts empty; use fewer parts")
    return _bisection(np.asarray(mesh.points, dtype=np.float64), parts), "geometric"


def hop_depth(adj: sp.csr_matrix, seeds: np.ndarray, limit: int) -> np.ndarray:
    """Hop distance of every node from the ``seeds`` (a boolean mask), up to ``limit`` (beyond:
    a value larger than ``limit``)."""
    n = adj.shape[0]
    depth = np.full(n, limit + 1, dtype=np.int64)
    depth[seeds] = 0
    frontier = np.flatnonzero(seeds)
    for d in range(1, limit + 1):
        if not len(frontier):
            break
        starts, ends = adj.indptr[frontier], adj.indptr[frontier + 1]
        counts = ends - starts
        if not counts.sum():
            break
        flat = np.repeat(starts - np.cumsum(np.concatenate([[0], counts[:-1]])), counts) + np.arange(counts.sum())
        neigh = np.unique(adj.indices[flat])
        neigh = neigh[depth[neigh] > d]
        depth[neigh] = d
        frontier = neigh
    return depth


def build_partition(mesh: Mesh, owner: np.ndarray, halo: int, method: str = "given", ranks: list[int] | None = None
                    ) -> Partition:
    """The parts of ``mesh`` for the node ownership ``owner`` with halos ``halo`` hops deep (only
    those in ``ranks`` when given: a rank builds its own part)."""
    owner = np.asarray(owner, dtype=np.int64)
    if owner.shape != (mesh.num_points,):
        raise SimError(f"the partition has {owner.shape[0]} nodes; the mesh has {mesh.num_points}")
    if halo < 1:
        raise SimError(f"the halo must be at least one hop deep, got {halo}")
    if not mesh.cells:
        raise SimError("a mesh without cells cannot be partitioned (no graph)")
    parts = int(owner.max()) + 1
    adj = node_adjacency(mesh)
    rows = _cell_rows(mesh)
    first_owner = {name: owner[conn[:, 0]] for name, conn in mesh.cells.items()}
    out = []
    for r in (range(parts) if ranks is None else ranks):
        mine = owner == r
        if not mine.any():
            raise SimError(f"part {r} owns no node")
        depth = hop_depth(adj, mine, halo + 1)
        near = depth <= halo - 1
        cells, cell_ids, written = {}, [], {}
        keep_nodes = [np.flatnonzero(mine)]
        for name, conn in mesh.cells.items():
            sel = np.flatnonzero(near[conn].any(axis=1))
            if not len(sel):
                continue
            cells[name] = conn[sel]
            cell_ids.append(np.arange(rows[name].start, rows[name].stop)[sel])
            written[name] = first_owner[name][sel] == r
            keep_nodes.append(conn[sel].ravel())
        local = np.unique(np.concatenate(keep_nodes))
        halo_nodes = local[~mine[local]]
        halo_nodes = halo_nodes[np.lexsort((halo_nodes, depth[halo_nodes]))]
        nodes = np.concatenate([np.flatnonzero(mine), halo_nodes])
        to_local = np.full(mesh.num_points, -1, dtype=np.int64)
        to_local[nodes] = np.arange(len(nodes))
        cells = {k: to_local[v] for k, v in cells.items()}
        out.append(Part(r, nodes, int(mine.sum()), cells, np.concatenate(cell_ids), written))
    return Partition(owner, int(halo), out, method)


def partition_mesh(mesh: Mesh, parts: int, halo: int, method: str = "auto", seed: int = 0) -> Partition:
    """Partition ``mesh`` into ``parts`` with halos ``halo`` hops deep (see the module)."""
    owner, used = partition_nodes(mesh, parts, method, seed)
    return build_partition(mesh, owner, halo, used)


def model_halo(network: Any) -> int:
    """The halo depth a graph network needs: its receptive field in hops (an error naming why
    when it has none: global attention, virtual nodes or structural feature plugins)."""
    hops = getattr(network, "receptive_hops", None)
    if hops is None:
        raise SimError(f"{type(network).__name__} has no finite receptive field (global attention, global tokens, "
                       "random edges or a global layer plugin), so its graph cannot be split over ranks")
    if getattr(network, "features", None) is not None:
        raise SimError("models with structural feature plugins (network_args.features) count subgraphs of the "
                       "whole graph and cannot be split over ranks")
    return max(1, int(hops))


# -- files ----------------------------------------------------------------------------------------
def write_partition(partition: Partition, path: str | os.PathLike, source: str = "") -> Path:
    """Write ``partition`` as HDF5 (atomically): ``owner``, ``halo`` and per part ``nodes``,
    ``num_owned``, ``cell_ids`` and, per cell type, the local cells and which of them it writes."""
    import h5py

    from sim.mesh.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"sim_format": PARTITION_FORMAT, "version": PARTITION_VERSION, "halo": partition.halo,
                            "parts": partition.num_parts, "method": partition.method, "source": str(source)})
            f.create_dataset("owner", data=partition.owner, compression="gzip")
            for p in partition.parts:
                g = f.create_group(f"part_{p.rank}")
                g.attrs["num_owned"] = p.num_owned
                g.create_dataset("nodes", data=p.nodes, compression="gzip")
                g.create_dataset("cell_ids", data=p.cell_ids, compression="gzip")
                for name, conn in p.cells.items():
                    c = g.create_group(f"cells/{name}")
                    c.create_dataset("connectivity", data=conn, compression="gzip")
                    c.create_dataset("written", data=p.written[name], compression="gzip")
    return path


def read_partition(path: str | os.PathLike, ranks: list[int] | None = None) -> Partition:
    """A partition file of :func:`write_partition` (only the parts in ``ranks`` when given;
    the others are left out of ``parts``)."""
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise SimError(f"cannot read the partition file: {exc}", path) from None
    with f:
        if f.attrs.get("sim_format") != PARTITION_FORMAT:
            raise SimError("not a partition file written by `sim partition`", path)
        if int(f.attrs.get("version", 0)) > PARTITION_VERSION:
            raise SimError(f"partition format version {int(f.attrs['version'])} is newer than this sim reads "
                           f"({PARTITION_VERSION})", path)
        n = int(f.attrs["parts"])
        parts = []
        for r in (range(n) if ranks is None else ranks):
            g = f[f"part_{r}"]
            cells = {k: g[f"cells/{k}/connectivity"][()] for k in g["cells"]}
            written = {k: g[f"cells/{k}/written"][()].astype(bool) for k in g["cells"]}
            parts.append(Part(r, g["nodes"][()], int(g.attrs["num_owned"]), cells, g["cell_ids"][()], written))
        return Partition(f["owner"][()], int(f.attrs["halo"]), parts, str(f.attrs["method"]))


def graph_part(edge_index: np.ndarray, num_nodes: int, parts: int, halo: int, rank: int,
               pos: np.ndarray | None = None, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, int]:
    """(local node ids, owned first; number owned) of part ``rank`` of a graph given by its
    edges (a batch of training graphs): the owned nodes and every node within ``halo`` hops.
    The induced subgraph on them holds every edge a node within ``halo - 1`` hops needs."""
    n = int(num_nodes)
    adj = sp.csr_matrix((np.ones(edge_index.shape[1], dtype=bool), (edge_index[1], edge_index[0])), shape=(n, n))
    adj = (adj + adj.T).tocsr()
    if parts == 1:
        owner = np.zeros(n, dtype=np.int64)
    elif method in ("auto", "metis"):
        try:
            owner = _metis(adj, parts, seed)
        except ImportError:
            if method == "metis" or pos is None:
                raise SimError("partitioning a graph without coordinates needs pymetis (pip install pymetis)") from None
            owner = _bisection(np.asarray(pos, dtype=np.float64), parts)
    else:
        if pos is None:
            raise SimError("geometric partitioning needs node coordinates")
        owner = _bisection(np.asarray(pos, dtype=np.float64), parts)
    mine = owner == rank
    if not mine.any():
        raise SimError(f"part {rank} of the graph owns no node ({n} nodes in {parts} parts)")
    depth = hop_depth(adj, mine, halo)
    halo_nodes = np.flatnonzero((depth >= 1) & (depth <= halo))
    halo_nodes = halo_nodes[np.lexsort((halo_nodes, depth[halo_nodes]))]
    return np.concatenate([np.flatnonzero(mine), halo_nodes]), int(mine.sum())
