"""Feature plugins: equivariant polynomials and graphlet orbit counts."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
import torch
from graphs import delaunay_edges, ring_edges

from sim.plugins import PluginError, build_plugin
from sim.plugins.features import EDGE_ORBITS, NODE_ORBITS, FeatureInputs, graphlet_orbit_counts, polynomial_features


def two_triangles() -> np.ndarray:
    e = np.array([[0, 1], [1, 2], [2, 0], [3, 4], [4, 5], [5, 3]]).T
    return np.concatenate([e, e[::-1]], axis=1)


def hexagon() -> np.ndarray:
    return ring_edges(6).numpy()


def wl_colours(edge_index: np.ndarray, n: int, rounds: int = 6) -> list[int]:
    """1-WL colour histogram (sorted), from equal initial colours."""
    nbrs = [[] for _ in range(n)]
    for u, v in edge_index.T:
        nbrs[u].append(v)
    col = [0] * n
    for _ in range(rounds):
        sig = [(col[v], tuple(sorted(col[u] for u in nbrs[v]))) for v in range(n)]
        table = {s: i for i, s in enumerate(sorted(set(sig)))}
        col = [table[s] for s in sig]
    return sorted(col)


def permuted(edge_index: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A node relabelling p (new id of old node i is p[i]) and an edge shuffle."""
    rng = np.random.default_rng(seed)
    p = rng.permutation(n)
    order = rng.permutation(edge_index.shape[1])
    return p, order, p[edge_index][:, order]


def test_triangles_and_hexagon_are_1wl_equivalent_but_polynomials_separate_them():
    assert wl_colours(two_triangles(), 6) == wl_colours(hexagon(), 6)  # the pair is a 1-WL failure
    nt, et = polynomial_features(two_triangles(), 6, degree=3)
    nh, eh = polynomial_features(hexagon(), 6, degree=3)
    np.testing.assert_allclose(nt[:, :3], nh[:, :3])  # walk counts agree (both 2-regular)
    assert not np.allclose(nt, nh) and not np.allclose(et, eh)
    np.testing.assert_allclose(np.expm1(nt[:, 3]), 2.0)  # (A^3)_vv = 2 x triangles at v
    np.testing.assert_allclose(np.expm1(nh[:, 3]), 0.0)
    np.testing.assert_allclose(np.expm1(et[:, 0]), 1.0)  # one triangle through each edge
    # degree 2 (walks and edge-restricted A^2) also separates them through the edges only
    assert polynomial_features(hexagon(), 6, degree=2)[0].shape == (6, 2)


def test_graphlets_separate_the_pair_too():
    nt, et = graphlet_orbit_counts(two_triangles(), 6)
    nh, eh = graphlet_orbit_counts(hexagon(), 6)
    assert (nt[:, NODE_ORBITS.index("triangle:2")] == 1).all() and (nh[:, NODE_ORBITS.index("triangle:2")] == 0).all()
    assert (nh[:, NODE_ORBITS.index("path4:1")] == 2).all() and (nt[:, NODE_ORBITS.index("path4:1")] == 0).all()


@pytest.mark.parametrize("fn", [lambda e, n: polynomial_features(e, n, 4), graphlet_orbit_counts])
def test_features_are_permutation_equivariant(fn):
    e = delaunay_edges(60, seed=2).numpy()
    node, edge = fn(e, 60)
    p, order, e2 = permuted(e, 60, seed=5)
    node2, edge2 = fn(e2, 60)
    np.testing.assert_allclose(node2[p], node, rtol=1e-6)
    np.testing.assert_allclose(edge2, edge[order], rtol=1e-6)
    assert node.std(0).max() > 0 and edge.std(0).max() > 0  # not constant features


def brute_force_orbits(g: nx.Graph) -> tuple[dict, dict]:
    """Counts by enumerating every node set of 2-4 nodes, each graphlet named by isomorphism and
    each node's orbit found from the graphlet's automorphisms (independent of the fast code)."""
    reference = {"edge": nx.path_graph(2), "path3": nx.path_graph(3), "triangle": nx.complete_graph(3),
                 "path4": nx.path_graph(4), "star": nx.star_graph(3), "cycle4": nx.cycle_graph(4),
                 "paw": nx.Graph([(0, 1), (1, 2), (2, 0), (2, 3)]), "diamond": nx.Graph([(0, 1), (1, 2), (2, 0),
                                                                                         (1, 3), (2, 3)]),
                 "k4": nx.complete_graph(4)}

    def orbits(ref: nx.Graph) -> dict:
        out = {v: set() for v in ref}
        for auto in nx.algorithms.isomorphism.GraphMatcher(ref, ref).isomorphisms_iter():
            for a, b in auto.items():
                out[a].add(b)
        # orbit label: the graphlet's name and the orbit's degree (checked to identify the orbit)
        labels = {}
        for v in ref:
            labels[v] = ref.degree(v)
            assert all(ref.degree(u) == ref.degree(v) for u in out[v])
        assert len({frozenset(o) for o in out.values()}) == len(set(labels.values()))
        return labels

    ref_orbits = {name: orbits(ref) for name, ref in reference.items()}
    node, edge = {}, {}
    for k in (2, 3, 4):
        for nodes in itertools.combinations(g.nodes, k):
            sub = g.subgraph(nodes)
            if not nx.is_connected(sub):
                continue
            name, m = next((nm, nx.algorithms.isomorphism.GraphMatcher(sub, ref)) for nm, ref in reference.items()
                           if nx.is_isomorphic(sub, ref))
            iso = next(m.isomorphisms_iter())
            lab = {v: ref_orbits[name][iso[v]] for v in nodes}
            for v in nodes:
                node[(v, f"{name}:{lab[v]}")] = node.get((v, f"{name}:{lab[v]}"), 0) + 1
            for u, v in sub.edges:
                for a, b in ((u, v), (v, u)):
                    key = (a, b, f"{name}:{lab[a]}-{lab[b]}")
                    edge[key] = edge.get(key, 0) + 1
    return node, edge


@pytest.mark.parametrize("seed,p", [(0, 0.35), (1, 0.5), (2, 0.25), (3, 0.7)])
def test_graphlet_counts_equal_brute_force(seed, p):
    g = nx.gnp_random_graph(9, p, seed=seed)
    e = np.array(list(g.edges()), dtype=np.int64).T
    e = np.concatenate([e, e[::-1]], axis=1)
    node, edge = graphlet_orbit_counts(e, 9)
    bn, be = brute_force_orbits(g)
    want_node = np.zeros_like(node)
    for (v, orbit), c in bn.items():
        want_node[v, NODE_ORBITS.index(orbit)] = c
    want_edge = np.zeros_like(edge)
    index = {(int(a), int(b)): i for i, (a, b) in enumerate(e.T)}
    for (a, b, orbit), c in be.items():
        want_edge[index[(a, b)], EDGE_ORBITS.index(orbit)] = c
    np.testing.assert_array_equal(node, want_node)
    np.testing.assert_array_equal(edge, want_edge)
    assert node.sum() > 0 and edge[:, 1:].sum() > 0


def test_feature_inputs_cache_and_errors():
    from sim.plugins.features import _SHARED

    _SHARED.clear()
    fi = FeatureInputs([{"name": "equivariant_polynomials", "degree": 3}, "graphlet_orbits"])
    assert (fi.node_dim, fi.edge_dim) == (4 + 15, 2 + 19)
    e = delaunay_edges(30).long()
    node, edge = fi(e, 30)
    assert node.shape == (30, fi.node_dim) and edge.shape == (e.shape[1], fi.edge_dim)
    assert fi(e.clone(), 30)[0] is not None and len(_SHARED) == 1  # same graph, one entry
    # another host with the same features (a rebuilt model in the same process) reuses the entry
    twin = FeatureInputs([{"name": "equivariant_polynomials", "degree": 3}, "graphlet_orbits"])
    assert twin(e, 30)[0] is node and len(_SHARED) == 1
    fi(ring_edges(30), 30)
    assert len(_SHARED) == 2
    small = FeatureInputs(["graphlet_orbits"], cache_mb=1e-3)  # other features: own entries; room for one graph
    small_node, _ = small(e, 30)
    assert small_node.shape == (30, 15) and len(_SHARED) == 1  # the oldest went
    small(ring_edges(30), 30)
    assert len(_SHARED) == 1
    with pytest.raises(PluginError, match="degree must be an integer >= 2"):
        build_plugin({"name": "equivariant_polynomials", "degree": 1}, "feature")
    with pytest.raises(PluginError, match="unknown feature plugin 'graphlets'"):
        FeatureInputs(["graphlets"])
    assert torch.is_tensor(node)
