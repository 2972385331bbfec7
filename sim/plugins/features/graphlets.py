"""Graphlet orbit counts up to 4 nodes, per node and per edge.

Windels, Malod-Dognin, Pržulj, *Graphlets correct for the topological information missed by
random walks*, 2024 (GRADCO: the 28 orbit adjacency matrices of graphlets up to 4 nodes;
random walks of limited length see only some of them).

A graphlet is a connected induced subgraph; an orbit is a class of its nodes under its
automorphisms. For the 9 graphlets of 2-4 nodes a node's orbit is fixed by its degree inside
the graphlet, so orbits here are named ``<graphlet>:<degree>``:

    node orbits (15): edge:1, path3:1, path3:2, triangle:2, path4:1, path4:2, star:1, star:3,
                      cycle4:2, paw:1, paw:2, paw:3, diamond:2, diamond:3, k4:3

(in this order they are Pržulj's orbits 0-14). Per directed edge (u, v), the counts are of the
graphlets containing both, by the pair of orbits (u's degree, v's degree) inside the graphlet
(19 ordered edge orbits, :data:`EDGE_ORBITS`). GRADCO counts every pair of nodes that shares
a graphlet (28 orbit adjacency matrices); as inputs of a message-passing model only the pairs
that are edges carry messages, so this plugin gives those entries (the edge-orbit counts).

Counting: every connected 4-node graph has a spanning path or star, so the connected 4-sets
are the unique sorted node sets of all paths a-b-c-d and all stars (a centre and three of its
neighbours); 3-sets likewise from the paths a-b-c. Each set is classified once from its
induced edges. Time and memory grow with the number of 4-paths, about n * d^3 on a graph of
mean degree d (for a 2-D mesh, roughly 150 per node): fine for meshes, not for dense graphs.
"""

from __future__ import annotations

import numpy as np

from sim.plugins.registry import PluginError, register_plugin

NODE_ORBITS = ("edge:1", "path3:1", "path3:2", "triangle:2", "path4:1", "path4:2", "star:1", "star:3", "cycle4:2",
               "paw:1", "paw:2", "paw:3", "diamond:2", "diamond:3", "k4:3")
EDGE_ORBITS = ("edge:1-1", "path3:1-2", "path3:2-1", "triangle:2-2", "path4:1-2", "path4:2-1", "path4:2-2",
               "star:1-3", "star:3-1", "cycle4:2-2", "paw:1-3", "paw:3-1", "paw:2-3", "paw:3-2", "paw:2-2",
               "diamond:2-3", "diamond:3-2", "diamond:3-3", "k4:3-3")
_NODE_INDEX = {o: i for i, o in enumerate(NODE_ORBITS)}
_EDGE_INDEX = {o: i for i, o in enumerate(EDGE_ORBITS)}


def graphlet_name(size: int, num_edges: int, max_degree: int) -> str:
    """The graphlet of a connected induced subgraph from its size, edges and largest degree."""
    if size == 2:
        return "edge"
    if size == 3:
        return "path3" if num_edges == 2 else "triangle"
    return {(3, 2): "path4", (3, 3): "star", (4, 2): "cycle4", (4, 3): "paw", (5, 3): "diamond",
            (6, 3): "k4"}[(num_edges, max_degree)]


def _neighbour_lists(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((dst, src))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(indptr, src[order] + 1, 1)
    return np.cumsum(indptr), dst[order]


def _unique_sets(rows: np.ndarray, n: int) -> np.ndarray:
    """The distinct node sets among ``rows`` (each row sorted first), sorted."""
    k = rows.shape[1]
    if not len(rows):
        return np.zeros((0, k), np.int64)
    rows = np.sort(rows, axis=1)
    if float(n) ** k < 2.0 ** 62:  # one integer key per set: much faster than unique over rows
        key = np.zeros(len(rows), dtype=np.int64)
        for i in range(k):
            key = key * n + rows[:, i]
        key = np.unique(key)
        out = np.empty((len(key), k), dtype=np.int64)
        for i in reversed(range(k)):
            out[:, i] = key % n
            key //= n
        return out
    return np.unique(rows, axis=0)


def _connected_sets(src: np.ndarray, dst: np.ndarray, n: int) -> dict[int, np.ndarray]:
    """Sorted node sets (rows) of every connected induced subgraph with 3 and 4 nodes."""
    indptr, nbr = _neighbour_lists(src, dst, n)
    deg = np.diff(indptr)

    def neighbours_of(nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(repeat index into ``nodes``, neighbour) for every neighbour of every node."""
        counts = deg[nodes]
        rep = np.repeat(np.arange(len(nodes)), counts)
        starts = np.repeat(indptr[nodes], counts)
        offs = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
        return rep, nbr[starts + offs]

    # paths a-b-c (a != c): for each directed edge (b, c), each neighbour a of b other than c
    rep, a = neighbours_of(src)
    b, c = src[rep], dst[rep]
    ok = a != c
    p3 = np.stack([a[ok], b[ok], c[ok]], axis=1)
    sets3 = _unique_sets(p3, n)
    # paths a-b-c-d: extend each a-b-c by a neighbour d of c, d not in {a, b}
    rep, d = neighbours_of(p3[:, 2])
    p4 = np.concatenate([p3[rep], d[:, None]], axis=1)
    p4 = p4[(p4[:, 3] != p4[:, 0]) & (p4[:, 3] != p4[:, 1])]
    # stars: a centre b and three distinct neighbours, from a-b-c paths plus another neighbour of b
    rep, e = neighbours_of(p3[:, 1])
    st = np.concatenate([p3[rep], e[:, None]], axis=1)
    st = st[(st[:, 3] != st[:, 0]) & (st[:, 3] != st[:, 2])]
    four = np.concatenate([p4, st], axis=0)
    sets4 = _unique_sets(four, n)
    return {3: sets3, 4: sets4}


def graphlet_orbit_counts(edge_index: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Node orbit counts (N, 15) and edge orbit counts (E, 19) for the edges of ``edge_index``
    (in its order; orbit order :data:`NODE_ORBITS`, :data:`EDGE_ORBITS`). The graph is taken
    as undirected (both directions of an edge give the same graph), self-loops ignored."""
    ei = np.asarray(edge_index, dtype=np.int64)
    n = int(num_nodes)
    s, t = ei[0], ei[1]
    keep = s != t
    und = np.unique(np.concatenate([np.stack([s[keep], t[keep]]), np.stack([t[keep], s[keep]])], axis=1), axis=1)
    src, dst = und[0], und[1]
    codes = src * n + dst  # sorted, since und is sorted lexicographically
    node = np.zeros((n, len(NODE_ORBITS)), dtype=np.int64)
    edge_und = np.zeros((len(codes), len(EDGE_ORBITS)), dtype=np.int64)  # per directed edge of ``und``

    def is_edge(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        q = u * n + v
        pos = np.minimum(np.searchsorted(codes, q), len(codes) - 1) if len(codes) else np.zeros_like(q)
        return (codes[pos] == q) if len(codes) else np.zeros(q.shape, bool)

    def edge_id(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.searchsorted(codes, u * n + v)

    # 2-node graphlets: the edges themselves
    np.add.at(node[:, _NODE_INDEX["edge:1"]], src, 1)
    edge_und[:, _EDGE_INDEX["edge:1-1"]] = 1
    for size, sets in _connected_sets(src, dst, n).items():
        if not len(sets):
            continue
        pairs = [(i, j) for i in range(size) for j in range(i + 1, size)]
        adj = np.stack([is_edge(sets[:, i], sets[:, j]) for i, j in pairs], axis=1)  # (S, pairs)
        degs = np.zeros((len(sets), size), dtype=np.int64)
        for k, (i, j) in enumerate(pairs):
            degs[:, i] += adj[:, k]
            degs[:, j] += adj[:, k]
        m, dmax = adj.sum(1), degs.max(1)
        for key in np.unique(np.stack([m, dmax], axis=1), axis=0):
            rows = (m == key[0]) & (dmax == key[1])
            name = graphlet_name(size, int(key[0]), int(key[1]))
            sub, sd, sa = sets[rows], degs[rows], adj[rows]
            for i in range(size):
                for dv in np.unique(sd[:, i]):
                    sel = sd[:, i] == dv
                    np.add.at(node[:, _NODE_INDEX[f"{name}:{dv}"]], sub[sel, i], 1)
            for k, (i, j) in enumerate(pairs):
                on = sa[:, k]
                u, v, du, dv = sub[on, i], sub[on, j], sd[on, i], sd[on, j]
                for a, b in {(int(x), int(y)) for x, y in zip(du, dv)}:
                    sel = (du == a) & (dv == b)
                    np.add.at(edge_und[:, _EDGE_INDEX[f"{name}:{a}-{b}"]], edge_id(u[sel], v[sel]), 1)
                    np.add.at(edge_und[:, _EDGE_INDEX[f"{name}:{b}-{a}"]], edge_id(v[sel], u[sel]), 1)
    # the caller's edges, in its order (a self-loop gets zeros)
    out = np.zeros((ei.shape[1], len(EDGE_ORBITS)), dtype=np.int64)
    out[keep] = edge_und[edge_id(s[keep], t[keep])]
    return node, out


@register_plugin("graphlet_orbits", "feature",
                 paper="Windels, Malod-Dognin, Przulj 2024, Graphlets correct for the topological information "
                       "missed by random walks (GRADCO)",
                 summary="graphlet orbit counts (up to 4 nodes) per node (15) and per edge (19) as inputs")
class GraphletOrbits:
    """Feature plugin: :func:`graphlet_orbit_counts` as log(1 + count)."""

    node_dim = len(NODE_ORBITS)
    edge_dim = len(EDGE_ORBITS)

    def __init__(self, log: bool = True):
        if not isinstance(log, bool):
            raise PluginError(f"graphlet_orbits: log must be true or false, got {log!r}")
        self.log = log

    def __call__(self, edge_index: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
        node, edge = graphlet_orbit_counts(edge_index, num_nodes)
        f = np.log1p if self.log else (lambda x: x)
        return f(node).astype(np.float32), f(edge).astype(np.float32)
