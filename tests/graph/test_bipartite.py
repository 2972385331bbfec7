"""Bipartite neighbour search between two point sets (kernel integrals, dense decoding) against brute force."""

from __future__ import annotations

import numpy as np

from sim.graph import bipartite_radius_graph, knn_bipartite


def test_bipartite_radius_graph_matches_brute_force_and_never_crosses_graphs():
    rng = np.random.default_rng(0)
    q, s = rng.random((60, 2)), rng.random((80, 2))
    qb, sb = np.repeat([0, 1, 2], 20), np.repeat([0, 1, 2], [30, 0, 50])  # graph 1 has no sources
    ei = bipartite_radius_graph(q, s, 0.25, qb, sb)
    dist = np.linalg.norm(q[:, None] - s[None], axis=-1)
    want = {(j, i) for i in range(60) for j in range(80) if dist[i, j] <= 0.25 and qb[i] == sb[j]}
    assert set(zip(ei[0].tolist(), ei[1].tolist())) == want and ei.shape[1] == len(want)
    assert np.all(np.diff(ei[1]) >= 0)  # sorted by query
    unbatched = bipartite_radius_graph(q, s, 0.25)
    assert unbatched.shape[1] == int((dist <= 0.25).sum())


def test_knn_bipartite_returns_the_nearest_sources_in_order():
    rng = np.random.default_rng(1)
    q, s = rng.random((30, 3)), rng.random((50, 3))
    idx, dist = knn_bipartite(q, s, 5)
    full = np.linalg.norm(q[:, None] - s[None], axis=-1)
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1)[:, :5])
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :5])
