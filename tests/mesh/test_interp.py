"""P1 interpolation between simplex meshes (sim.mesh.interp)."""

import numpy as np
import pytest
from scipy.spatial import Delaunay

from sim.errors import SimError
from sim.mesh import Mesh
from sim.mesh.interp import p1_matrix


def grid_mesh(dim: int, n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A jittered grid of [0, 1]^dim split into simplices (Delaunay)."""
    axes = [np.linspace(0, 1, n)] * dim
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim)
    inner = np.all((pts > 0) & (pts < 1), axis=1)
    pts[inner] += np.random.default_rng(seed).uniform(-0.2, 0.2, (inner.sum(), dim)) / (n - 1)
    return pts, Delaunay(pts).simplices


@pytest.mark.parametrize("dim", [2, 3])
def test_linear_fields_are_reproduced_with_convex_weights(dim):
    pts, cells = grid_mesh(dim)
    query = np.random.default_rng(1).uniform(0, 1, (500, dim))
    a = p1_matrix(pts, cells, query)
    coef = np.arange(1, dim + 1) * 0.7
    f = pts @ coef + 0.3
    np.testing.assert_allclose(a @ f, query @ coef + 0.3, atol=1e-10)
    np.testing.assert_allclose(np.asarray(a.sum(1)).ravel(), 1.0, atol=1e-12)
    assert a.data.min() >= -1e-12
    assert np.all(np.diff(a.indptr) == dim + 1)  # one simplex per point


def test_mesh_cell_blocks_and_nodes_onto_themselves():
    pts, cells = grid_mesh(3, n=5)
    mesh = Mesh(pts, {"tetra": cells})
    a = p1_matrix(mesh.points, mesh.cells, mesh.points)
    f = np.random.default_rng(2).normal(size=len(pts))
    np.testing.assert_allclose(a @ f, f, atol=1e-10)


def test_points_just_outside_take_the_nearest_simplex_and_far_points_are_an_error():
    pts, cells = grid_mesh(2, n=5)
    near = np.array([[1.02, 0.5], [-0.01, 0.3]])  # a boundary faceted differently by another mesh
    a = p1_matrix(pts, cells, near)
    f = pts[:, 0] + 2 * pts[:, 1]
    # the weights of the nearest simplex clipped to it: a point of that simplex about the gap away
    np.testing.assert_allclose(a @ f, [1.0 + 1.0, 0.0 + 0.6], atol=3 * 0.02)
    assert a.data.min() >= 0.0
    with pytest.raises(SimError, match="1 of 2 points lie outside the mesh"):
        p1_matrix(pts, cells, np.array([[0.5, 0.5], [3.0, 3.0]]))


def test_cells_that_are_not_simplices_are_refused():
    quads = np.array([[0, 1, 2, 3]])
    pts = np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]])
    with pytest.raises(SimError, match="triangles or of tetrahedra"):
        p1_matrix(pts, {"quad": quads}, pts)
