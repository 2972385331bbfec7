"""Small generated meshes and trajectories shared by the tests (never files from the network)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.mesh import Mesh, NodeType, Trajectory


def mixed_2d_mesh() -> Mesh:
    """A quad and two triangles, with every kind of data our model holds."""
    points = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [2, 0], [2, 1.0]])
    return Mesh(
        points,
        {"quad": [[0, 1, 2, 3]], "triangle": [[1, 4, 5], [1, 5, 2]]},
        point_data={"temperature": np.linspace(0, 1, 6), "flag": np.array([1, 0, 1, 0, 1, 0], dtype=np.int8),
                    "stress": np.arange(24, dtype=np.float32).reshape(6, 2, 2)},
        cell_data={"material": np.array([3, 1, 2], dtype=np.int32), "area": np.array([1.0, 0.5, 0.5])},
        field_data={"title": "mixed", "reynolds": np.array([100.0]), "names": np.array(["a", "bb"])},
        node_type=np.array([NodeType.INFLOW, 0, 0, NodeType.INFLOW, NodeType.OUTFLOW, NodeType.OUTFLOW],
                           dtype=np.int32),
    )


def mixed_3d_mesh() -> Mesh:
    """A unit hexahedron with a wedge, a pyramid and a tetrahedron attached (all VTK-positive)."""
    points = np.array([
        [0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1],  # hex
        [2, 0, 0], [2, 0, 1],  # wedge apex edge at x = 2
        [0.5, 0.5, -1.0],  # pyramid apex below the hex bottom
        [0.5, 0.5, 2.0],  # tetra apex above the top
    ], dtype=np.float64)
    cells = {
        "hexahedron": [[0, 1, 2, 3, 4, 5, 6, 7]],
        "wedge": [[1, 8, 2, 5, 9, 6]],
        "pyramid": [[0, 3, 2, 1, 10]],
        "tetra": [[4, 5, 6, 11]],
    }
    return Mesh(points, cells, point_data={"u": np.arange(12.0)}, cell_data={"id": np.arange(4)})


def trajectory_2d(steps: int = 5) -> Trajectory:
    rng = np.random.default_rng(0)
    mesh = mixed_2d_mesh()
    return Trajectory(
        mesh,
        times=np.linspace(0.0, 0.01 * (steps - 1), steps),
        point_fields={"velocity": rng.random((steps, 6, 2)).astype(np.float32),
                      "pressure": rng.random((steps, 6))},
        cell_fields={"vorticity": rng.random((steps, 3))},
        params={"reynolds": 120.5, "inflow": [1.0, 0.0], "name": "case-1"},
    )


def particle_trajectory(steps: int = 4, n: int = 50) -> Trajectory:
    """Particles without cells, moving: positions change every step."""
    rng = np.random.default_rng(1)
    ref = rng.random((n, 2))
    pos = ref[None] + 0.01 * np.arange(steps)[:, None, None] * rng.standard_normal((1, n, 2))
    return Trajectory(Mesh(ref, point_data={"particle_type": np.full(n, 5, np.int64)}), np.arange(steps) * 2.5e-3,
                      point_fields={"velocity": rng.random((steps, n, 2))}, positions=pos, dt=2.5e-3)


@pytest.fixture
def mesh2d() -> Mesh:
    return mixed_2d_mesh()


@pytest.fixture
def mesh3d() -> Mesh:
    return mixed_3d_mesh()


@pytest.fixture
def traj2d() -> Trajectory:
    return trajectory_2d()


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One tiny trained model per family: name -> (checkpoint, data store) (tests/families_data.py)."""
    from tests.families_data import train_every_family

    return train_every_family(tmp_path_factory.mktemp("families"))
