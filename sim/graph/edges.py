"""Graph connectivity from meshes and point clouds.

- :func:`cell_edges`: the unique, bidirectional edges of all cells of any supported type
  (the edges of the elements, passing through mid-side nodes of quadratic cells).
- :func:`radius_graph`: all pairs closer than a radius, by a KD-tree (scipy), per graph of
  a batch; no torch-cluster needed.
- :func:`bipartite_radius_graph`: pairs (source j -> query i) closer than a radius between
  two point sets, per graph of a batch (kernel integrals between particles and a grid);
- :func:`knn_bipartite`: the k nearest sources of every query point;
- :func:`hop_edges`: pairs at selected exact hop distances (k-hop masks and the dilated
  sliding windows of the mesh graph transformer), from sparse adjacency powers.

Edge index convention (PyG): ``edge_index[0]`` are senders, ``edge_index[1]`` receivers;
every undirected edge appears in both directions; no self-loops; sorted by receiver then
sender so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from sim.errors import MeshError

# Local edges of each cell type, VTK node order. Quadratic cells chain corner-mid-corner.
_EDGES: dict[str, list[tuple[int, int]]] = {
    "vertex": [],
    "line": [(0, 1)],
    "line3": [(0, 2), (2, 1)],
    "triangle": [(0, 1), (1, 2), (2, 0)],
    "triangle6": [(0, 3), (3, 1), (1, 4), (4, 2), (2, 5), (5, 0)],
    "quad": [(0, 1), (1, 2), (2, 3), (3, 0)],
    "quad8": [(0, 4), (4, 1), (1, 5), (5, 2), (2, 6), (6, 3), (3, 7), (7, 0)],
    "quad9": [(0, 4), (4, 1), (1, 5), (5, 2), (2, 6), (6, 3), (3, 7), (7, 0), (8, 4), (8, 5), (8, 6), (8, 7)],
    "tetra": [(0, 1), (1, 2), (2, 0), (0, 3), (1, 3), (2, 3)],
    "tetra10": [(0, 4), (4, 1), (1, 5), (5, 2), (2, 6), (6, 0), (0, 7), (7, 3), (1, 8), (8, 3), (2, 9), (9, 3)],
    "pyramid": [(0, 1), (1, 2), (2, 3), (3, 0), (0, 4), (1, 4), (2, 4), (3, 4)],
    "pyramid13": [(0, 5), (5, 1), (1, 6), (6, 2), (2, 7), (7, 3), (3, 8), (8, 0),
                  (0, 9), (9, 4), (1, 10), (10, 4), (2, 11), (11, 4), (3, 12), (12, 4)],
    "wedge": [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3), (0, 3), (1, 4), (2, 5)],
    "wedge15": [(0, 6), (6, 1), (1, 7), (7, 2), (2, 8), (8, 0), (3, 9), (9, 4), (4, 10), (10, 5), (5, 11), (11, 3),
                (0, 12), (12, 3), (1, 13), (13, 4), (2, 14), (14, 5)],
    "hexahedron": [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)],
    "hexahedron20": [(0, 8), (8, 1), (1, 9), (9, 2), (2, 10), (10, 3), (3, 11), (11, 0),
                     (4, 12), (12, 5), (5, 13), (13, 6), (6, 14), (14, 7), (7, 15), (15, 4),
                     (0, 16), (16, 4), (1, 17), (17, 5), (2, 18), (18, 6), (3, 19), (19, 7)],
}


def _undirected_to_index(i: np.ndarray, j: np.ndarray, num_nodes: int) -> np.ndarray:
    """Unique bidirectional (2, E) edge index without self-loops, sorted by (receiver, sender)."""
    keep = i != j
    i, j = i[keep], j[keep]
    senders = np.concatenate([i, j]).astype(np.int64)
    receivers = np.concatenate([j, i]).astype(np.int64)
    key = np.unique(receivers * num_nodes + senders)
    return np.stack([key % num_nodes, key // num_nodes])


def cell_edges(cells: Mapping[str, np.ndarray], num_nodes: int) -> np.ndarray:
    """Edges of the cells: (2, E) int64, both directions, unique.

    Args:
        cells: cell type -> (num_cells, nodes_per_cell) connectivity (``Mesh.cells``).
        num_nodes: number of points.
    """
    src, dst = [], []
    for name, conn in cells.items():
        if name not in _EDGES:
            raise MeshError(f"graph edges of {name} cells are not defined (convert them to a linear or "
                            f"second-order type with edge nodes)")
        for a, b in _EDGES[name]:
            src.append(conn[:, a])
            dst.append(conn[:, b])
    if not src:
        return np.zeros((2, 0), dtype=np.int64)
    return _undirected_to_index(np.concatenate(src), np.concatenate(dst), num_nodes)


def radius_graph(points: np.ndarray, radius: float, batch: np.ndarray | None = None,
                 max_neighbors: int | None = None) -> np.ndarray:
    """All ordered pairs (j -> i) with |x_i - x_j| <= radius within the same graph of the batch.

    Args:
        points: (N, d) positions.
        radius: connectivity radius.
        batch: (N,) graph id of each point, sorted (PyG convention); None for one graph.
        max_neighbors: keep at most this many nearest senders per receiver (None: all).

    Returns:
        (2, E) int64 edge index.
    """
    points = np.asarray(points, dtype=np.float64)
    if batch is None:
        bounds = [(0, len(points))]
    else:
        batch = np.asarray(batch)
        if len(batch) and np.any(np.diff(batch) < 0):
            raise ValueError("batch must be sorted (all points of graph 0, then graph 1, ...)")
        _, starts = np.unique(batch, return_index=True)
        bounds = list(zip(starts, list(starts[1:]) + [len(points)]))
    parts = []
    for lo, hi in bounds:
        tree = cKDTree(points[lo:hi])
        if max_neighbors is None:
            pairs = tree.query_pairs(radius, output_type="ndarray")
            ei = _undirected_to_index(pairs[:, 0], pairs[:, 1], hi - lo)
        else:
            k = min(max_neighbors + 1, hi - lo)
            dist, idx = tree.query(points[lo:hi], k=k, distance_upper_bound=radius * (1 + 1e-12))
            recv = np.repeat(np.arange(hi - lo), k).reshape(hi - lo, k)
            ok = np.isfinite(dist) & (idx != recv)
            ei = np.stack([idx[ok], recv[ok]]).astype(np.int64)
            order = np.lexsort((ei[0], ei[1]))
            ei = ei[:, order]
        parts.append(ei + lo)
    return np.concatenate(parts, axis=1) if parts else np.zeros((2, 0), dtype=np.int64)


def _batch_bounds(batch: np.ndarray | None, n: int) -> dict[int, tuple[int, int]]:
    """graph id -> (start, stop) of its points in a sorted batch vector."""
    if batch is None:
        return {0: (0, n)}
    batch = np.asarray(batch)
    if len(batch) and np.any(np.diff(batch) < 0):
        raise ValueError("batch must be sorted (all points of graph 0, then graph 1, ...)")
    ids, starts = np.unique(batch, return_index=True)
    stops = list(starts[1:]) + [n]
    return {int(g): (int(a), int(b)) for g, a, b in zip(ids, starts, stops)}


def bipartite_radius_graph(query: np.ndarray, source: np.ndarray, radius: float,
                           query_batch: np.ndarray | None = None, source_batch: np.ndarray | None = None
                           ) -> np.ndarray:
    """Pairs (j -> i) with |query_i - source_j| <= radius, only within the same graph of the batch.

    Args:
        query: (Q, d) receiving points.
        source: (S, d) sending points.
        radius: search radius.
        query_batch / source_batch: sorted graph id per point (both or neither).

    Returns:
        (2, E) int64: row 0 source indices, row 1 query indices, sorted by (query, source).
    """
    if (query_batch is None) != (source_batch is None):
        raise ValueError("give a batch vector for both point sets or for neither")
    query = np.asarray(query, dtype=np.float64)
    source = np.asarray(source, dtype=np.float64)
    qb = _batch_bounds(query_batch, len(query))
    sb = _batch_bounds(source_batch, len(source))
    parts = []
    for g, (qlo, qhi) in qb.items():
        if g not in sb or qhi == qlo:
            continue
        slo, shi = sb[g]
        pairs = cKDTree(query[qlo:qhi]).sparse_distance_matrix(cKDTree(source[slo:shi]), radius,
                                                               output_type="ndarray")
        if len(pairs) == 0:
            continue
        order = np.lexsort((pairs["j"], pairs["i"]))
        src, dst = pairs["j"][order].astype(np.int64), pairs["i"][order].astype(np.int64)
        parts.append(np.stack([src + slo, dst + qlo]))
    return np.concatenate(parts, axis=1) if parts else np.zeros((2, 0), dtype=np.int64)


def knn_bipartite(query: np.ndarray, source: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest source points of each query point (KD-tree).

    Returns (Q, k) int64 indices into ``source`` and (Q, k) distances, nearest first.
    """
    source = np.asarray(source, dtype=np.float64)
    if k > len(source):
        raise ValueError(f"asked for {k} neighbours among {len(source)} source points")
    dist, idx = cKDTree(source).query(np.asarray(query, dtype=np.float64), k=k)
    if k == 1:
        dist, idx = dist[:, None], idx[:, None]
    return idx.astype(np.int64), dist


def adjacency(edge_index: np.ndarray, num_nodes: int) -> sp.csr_matrix:
    """Boolean sparse adjacency (receiver, sender) of an edge index."""
    data = np.ones(edge_index.shape[1], dtype=bool)
    return sp.csr_matrix((data, (edge_index[1], edge_index[0])), shape=(num_nodes, num_nodes))


def hop_edges(edge_index: np.ndarray, num_nodes: int, hops: Iterable[int]) -> np.ndarray:
    """Pairs of nodes whose shortest-path hop distance is in ``hops`` (both directions).

    ``hops={1}`` gives the graph itself; ``range(1, k + 1)`` the k-hop neighbourhood;
    ``{2}`` or ``{4}`` the dilated windows of the graph transformer. Cost grows with the
    size of the largest neighbourhood, so cache the result per mesh.
    """
    hops = sorted(set(int(h) for h in hops))
    if not hops or hops[0] < 1:
        raise ValueError(f"hops must be positive integers, got {hops}")
    a = adjacency(edge_index, num_nodes).astype(np.int32)
    a = ((a + a.T) > 0).astype(np.int32)  # hop distance is symmetric
    reached = sp.identity(num_nodes, dtype=np.int32, format="csr")  # distance < current
    frontier = reached
    wanted = []
    for h in range(1, hops[-1] + 1):
        nxt = ((frontier @ a) > 0).astype(np.int32)
        new = (nxt - nxt.multiply(reached)).tocsr()  # exactly h hops away
        new.eliminate_zeros()
        reached = ((reached + new) > 0).astype(np.int32).tocsr()
        frontier = new
        if h in hops:
            wanted.append(new.tocoo())
    rows = np.concatenate([w.row for w in wanted])
    cols = np.concatenate([w.col for w in wanted])
    return _undirected_to_index(rows, cols, num_nodes)
