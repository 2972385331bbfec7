"""The data model refuses what is not a mesh, with a message that says what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from sim.errors import MeshError
from sim.mesh import Mesh, Trajectory
from sim.mesh.cells import CELL_TYPES
from sim.mesh.validate import signed_measures

SQUARE = np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]])


def test_reference_cells_have_positive_volume_in_vtk_order():
    import vtk

    expected = {"tetra": 1 / 6, "pyramid": 1 / 3, "wedge": 1 / 2, "hexahedron": 1.0}
    for name, cls in [("tetra", vtk.vtkTetra), ("pyramid", vtk.vtkPyramid), ("wedge", vtk.vtkWedge),
                      ("hexahedron", vtk.vtkHexahedron)]:
        cell = cls()
        n = cell.GetNumberOfPoints()
        pc = cell.GetParametricCoords()
        pts = np.array([pc[i] for i in range(3 * n)]).reshape(n, 3)
        vol, _, oriented = signed_measures(pts, name, np.arange(n)[None])
        assert oriented and vol[0] == pytest.approx(expected[name])


def test_mixed_3d_mesh_is_valid(mesh3d):
    mesh3d.validate()
    assert mesh3d.num_cells == 4 and mesh3d.dim == 3


@pytest.mark.parametrize("name", ["tetra", "hexahedron", "wedge", "pyramid"])
def test_mirrored_3d_cell_is_inverted(mesh3d, name):
    flipped = mesh3d.points * np.array([1.0, 1.0, -1.0])  # a reflection turns every cell inside out
    with pytest.raises(MeshError, match="inverted"):
        Mesh(flipped, {name: mesh3d.cells[name]}).validate()


def test_nan_coordinates_are_refused():
    pts = SQUARE.copy()
    pts[2, 1] = np.nan
    with pytest.raises(MeshError, match=r"NaN or infinite coordinates \(first at point 2\)"):
        Mesh(pts, {"quad": [[0, 1, 2, 3]]}).validate("case.vtu")


def test_inf_coordinates_name_the_file():
    pts = SQUARE.copy()
    pts[0, 0] = np.inf
    with pytest.raises(MeshError) as info:
        Mesh(pts, {"quad": [[0, 1, 2, 3]]}).validate("case.vtu")
    assert str(info.value).startswith("case.vtu: ")


def test_out_of_range_index_is_refused():
    with pytest.raises(MeshError, match=r"refer to point 4 but the mesh has 4 points"):
        Mesh(SQUARE, {"triangle": [[0, 1, 4]]})
    with pytest.raises(MeshError, match=r"refer to point -1"):
        Mesh(SQUARE, {"triangle": [[0, 1, -1]]})


def test_degenerate_triangle_is_refused():
    pts = np.array([[0, 0], [1, 0], [2, 0.0]])  # collinear
    with pytest.raises(MeshError, match="degenerate triangle"):
        Mesh(pts, {"triangle": [[0, 1, 2]]}).validate()


def test_repeated_node_makes_degenerate_tetra():
    pts = np.eye(4, 3)
    with pytest.raises(MeshError, match="degenerate tetra"):
        Mesh(pts, {"tetra": [[0, 1, 1, 2]]}).validate()


def test_folded_triangle_is_inverted():
    pts = np.array([[0, 0], [1, 0], [0, 1], [1, 1.0]])
    ok = Mesh(pts, {"triangle": [[0, 1, 2], [1, 3, 2]]})
    ok.validate()
    clockwise_everywhere = Mesh(pts, {"triangle": [[0, 2, 1], [1, 2, 3]]})
    clockwise_everywhere.validate()  # a consistent orientation is not an inversion
    with pytest.raises(MeshError, match="inverted triangle"):
        Mesh(pts, {"triangle": [[0, 1, 2], [1, 3, 2], [1, 2, 3]]}).validate()


def test_tiny_but_valid_cells_are_not_degenerate():
    pts = SQUARE * 1e-7 + 1e3  # small cells far from the origin
    Mesh(pts, {"quad": [[0, 1, 2, 3]]}).validate()


def test_surface_triangles_in_3d_are_checked_for_area_only():
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 1.0]])
    Mesh(pts, {"triangle": [[0, 1, 2], [0, 3, 2]]}).validate()
    with pytest.raises(MeshError, match="degenerate"):
        Mesh(np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2.0]]), {"triangle": [[0, 1, 2]]}).validate()


def test_array_lengths_must_match():
    with pytest.raises(MeshError, match=r"point_data 'u' has shape \(3,\); expected 4 points"):
        Mesh(SQUARE, {"quad": [[0, 1, 2, 3]]}, point_data={"u": np.zeros(3)})
    with pytest.raises(MeshError, match=r"cell_data 'c' has shape \(2,\); expected 1 cells"):
        Mesh(SQUARE, {"quad": [[0, 1, 2, 3]]}, cell_data={"c": np.zeros(2)})
    with pytest.raises(MeshError, match="node_type"):
        Mesh(SQUARE, node_type=np.zeros(5, dtype=int))


def test_wrong_dtypes_are_refused():
    with pytest.raises(MeshError, match="points have dtype int64"):
        Mesh(SQUARE.astype(np.int64))
    with pytest.raises(MeshError, match="expected integer point indices"):
        Mesh(SQUARE, {"triangle": [[0.0, 1.0, 2.0]]})
    with pytest.raises(MeshError, match="point_data 'name' has dtype <U1"):
        Mesh(SQUARE, point_data={"name": np.array(list("abcd"))})
    with pytest.raises(MeshError, match="node_type must be a 1D integer array"):
        Mesh(SQUARE, node_type=np.zeros(4))


def test_wrong_nodes_per_cell_and_unknown_type():
    with pytest.raises(MeshError, match=r"expected \(num_cells, 3\)"):
        Mesh(SQUARE, {"triangle": [[0, 1, 2, 3]]})
    with pytest.raises(MeshError, match="cell type 'polygon' is not supported"):
        Mesh(SQUARE, {"polygon": [[0, 1, 2, 3]]})


def test_trajectory_shapes_and_times(mesh2d):
    with pytest.raises(MeshError, match=r"point field 'v' has shape \(3, 5\); expected 3 x 6 points"):
        Trajectory(mesh2d, np.arange(3.0), point_fields={"v": np.zeros((3, 5))})
    with pytest.raises(MeshError, match="times must increase strictly"):
        Trajectory(mesh2d, np.array([0.0, 0.1, 0.1]))
    with pytest.raises(MeshError, match="both static and time-dependent"):
        Trajectory(mesh2d, np.arange(2.0), point_fields={"temperature": np.zeros((2, 6))})
    with pytest.raises(MeshError, match="JSON-serialisable"):
        Trajectory(mesh2d, np.arange(2.0), params={"bad": object()})
    with pytest.raises(MeshError, match="positions"):
        Trajectory(mesh2d, np.arange(2.0), positions=np.zeros((2, 6, 3)))


def test_dt_is_derived_from_uniform_times(mesh2d):
    assert Trajectory(mesh2d, np.arange(4) * 0.01).dt == pytest.approx(0.01)
    assert Trajectory(mesh2d, np.array([0.0, 0.1, 0.3])).dt is None


def test_frame_merges_static_and_step_data(traj2d):
    frame = traj2d.frame(3)
    np.testing.assert_array_equal(frame.point_data["velocity"], traj2d.point_fields["velocity"][3])
    np.testing.assert_array_equal(frame.point_data["temperature"], traj2d.mesh.point_data["temperature"])
    np.testing.assert_array_equal(frame.node_type, traj2d.mesh.node_type)


def test_every_cell_type_has_consistent_table():
    for ct in CELL_TYPES.values():
        assert ct.num_corners <= ct.num_nodes
        assert CELL_TYPES[ct.linear].num_corners == ct.num_corners
