"""Graph building: cell edges, radius graphs and hop neighbourhoods against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import shortest_path

from sim.errors import MeshError
from sim.graph import adjacency, cell_edges, edge_features, hop_edges, mesh_graph, point_cloud_graph, radius_graph
from sim.mesh import Mesh
from tests.conftest import mixed_2d_mesh, mixed_3d_mesh


def _pairs(ei):
    return set(zip(ei[0].tolist(), ei[1].tolist()))


def test_two_triangles_and_a_quad_by_hand():
    mesh = mixed_2d_mesh()  # quad 0-1-2-3, triangles 1-4-5 and 1-5-2
    undirected = {(0, 1), (1, 2), (2, 3), (0, 3), (1, 4), (4, 5), (1, 5), (2, 5)}
    expected = undirected | {(b, a) for a, b in undirected}
    ei = cell_edges(mesh.cells, mesh.num_points)
    assert _pairs(ei) == expected and ei.shape[1] == len(expected)  # unique, both directions


def test_3d_cells_give_their_edges(mesh3d):
    ei = cell_edges(mesh3d.cells, mesh3d.num_points)
    p = _pairs(ei)
    assert (0, 6) not in p  # hex body diagonal is not an edge
    assert {(0, 1), (1, 0), (0, 4), (3, 7), (1, 8), (8, 9), (0, 10), (4, 11)} <= p
    assert all(i != j for i, j in p)


def test_quadratic_triangle_chains_through_mid_nodes():
    ei = cell_edges({"triangle6": np.array([[0, 1, 2, 3, 4, 5]])}, 6)
    assert (0, 1) not in _pairs(ei) and {(0, 3), (3, 1), (5, 0)} <= _pairs(ei)
    assert ei.shape[1] == 12


def test_undefined_cell_edges_are_an_error():
    with pytest.raises(MeshError, match="hexahedron27"):
        cell_edges({"hexahedron27": np.zeros((1, 27), dtype=np.int64)}, 27)


@pytest.mark.parametrize("max_neighbors", [None, 4])
def test_radius_graph_matches_brute_force(max_neighbors):
    rng = np.random.default_rng(0)
    pts = rng.random((300, 2))
    batch = np.repeat([0, 1, 2], 100)
    r = 0.12
    ei = radius_graph(pts, r, batch, max_neighbors=max_neighbors)
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    same = batch[:, None] == batch[None]
    close = (d <= r) & same & ~np.eye(300, dtype=bool)
    if max_neighbors is None:
        assert _pairs(ei) == set(zip(*np.nonzero(close.T)))  # (sender, receiver)
    else:
        counts = np.bincount(ei[1], minlength=300)
        assert counts.max() <= max_neighbors
        for i in range(0, 300, 37):  # each receiver keeps its nearest senders
            senders = ei[0][ei[1] == i]
            cand = np.flatnonzero(close[i])
            nearest = cand[np.argsort(d[i, cand])][:max_neighbors]
            assert set(senders.tolist()) == set(nearest.tolist())
    assert np.all(batch[ei[0]] == batch[ei[1]])


def test_hop_edges_equal_shortest_path_distances():
    rng = np.random.default_rng(1)
    pts = rng.random((80, 2))
    from scipy.spatial import Delaunay

    tri = Delaunay(pts).simplices
    mesh = Mesh(pts, {"triangle": tri})
    ei = cell_edges(mesh.cells, 80)
    dist = shortest_path(adjacency(ei, 80), unweighted=True)
    for hops in ({1}, {2}, {1, 2, 3}, {4}):
        got = _pairs(hop_edges(ei, 80, hops))
        want = {(j, i) for i, j in zip(*np.nonzero(np.isin(dist, list(hops))))}
        assert got == want, hops
    assert _pairs(hop_edges(ei, 80, {1})) == _pairs(ei)


def test_mesh_graph_features_are_antisymmetric_and_exact():
    mesh = mixed_2d_mesh()
    g = mesh_graph(mesh)
    assert g.edge_attr.shape == (g.edge_index.shape[1], 3)
    s, r = g.edge_index
    np.testing.assert_allclose(g.edge_attr[:, :2].numpy(), mesh.points[s] - mesh.points[r], rtol=1e-6)
    np.testing.assert_allclose(g.edge_attr[:, 2].numpy(), np.linalg.norm(mesh.points[s] - mesh.points[r], axis=1),
                               rtol=1e-6)
    assert g.node_type.tolist() == mesh.node_type.tolist()
    moved = mesh_graph(mesh, world_pos=np.hstack([mesh.points, np.zeros((6, 1))]) * 2)
    assert moved.edge_attr.shape[1] == 3 + 4
    torch.testing.assert_close(moved.edge_attr[:, 6], 2 * moved.edge_attr[:, 2])  # world norm = 2 x mesh norm


def test_point_cloud_graph_normalises_by_radius():
    pts = np.array([[0, 0], [0.05, 0], [1, 1.0]])
    g = point_cloud_graph(pts, radius=0.1)
    assert _pairs(g.edge_index.numpy()) == {(0, 1), (1, 0)}
    torch.testing.assert_close(g.edge_attr[:, -1], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(edge_features(g.pos, g.edge_index)[:, :2] / 0.1, g.edge_attr[:, :2])
