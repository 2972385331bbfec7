"""3D diffusion: a Fourier mode decays at the analytic rate; boundary values are held."""

from __future__ import annotations

import numpy as np
import pytest

from sim.mesh import NodeType, Store, StoreWriter
from solvers.diffusion3d import generate
from solvers.diffusion3d.heat import HeatSolver


def test_cosine_mode_decays_at_the_analytic_rate():
    """T = cos(pi x) with insulated walls decays as exp(-kappa pi^2 t); with h = 0.1 and
    dt = 0.005 the P1 / implicit Euler decay agrees within 2 %."""
    from skfem import MeshTet

    m = MeshTet.init_tensor(np.linspace(0, 1, 11), np.linspace(0, 1, 4), np.linspace(0, 1, 4))
    kappa, dt, steps = 0.1, 0.005, 40
    solver = HeatSolver(m.p.T, m.t.T, kappa, dt, np.zeros(m.p.shape[1], dtype=bool))
    T0 = np.cos(np.pi * m.p[0])
    T = T0.copy()
    for _ in range(steps):
        T = solver.step(T, np.zeros(0))
    amplitude = (T @ solver.M @ T0) / (T0 @ solver.M @ T0)
    assert amplitude == pytest.approx(np.exp(-kappa * np.pi**2 * dt * steps), rel=0.02)


def test_trajectory_holds_boundary_values_and_round_trips(tmp_path):
    traj = generate({"mesh_size": 0.08, "num_steps": 5}, 3)
    T = traj.point_fields["temperature"]
    fixed = traj.mesh.node_type == NodeType.FIXED
    np.testing.assert_array_equal(T[:, fixed], np.broadcast_to(T[0, fixed], T[:, fixed].shape))
    assert T[-1, ~fixed].max() > T[0, ~fixed].max()  # the sources and the hot hole heat the block
    assert list(traj.mesh.cells) == ["tetra"]
    # the model inputs a surrogate reads at every node: the source density and the advection velocity
    assert traj.mesh.point_data["source"].shape == (traj.mesh.num_points,)
    np.testing.assert_allclose(traj.mesh.point_data["advection"],
                               np.broadcast_to(traj.params["velocity"], (traj.mesh.num_points, 3)), rtol=1e-6)
    again = generate({"mesh_size": 0.08, "num_steps": 5}, 3)
    # part by part, so that a difference names what differs (mesh, connectivity or the solve)
    np.testing.assert_array_equal(again.mesh.points, traj.mesh.points)
    np.testing.assert_array_equal(again.mesh.cells["tetra"], traj.mesh.cells["tetra"])
    np.testing.assert_array_equal(again.point_fields["temperature"], T)
    assert again.equals(traj)
    with StoreWriter(tmp_path / "d.h5") as w:
        w.append(traj)
    with Store(tmp_path / "d.h5") as s:
        assert s.read("000000").equals(traj)


def test_iterative_path_matches_the_direct_solve():
    from skfem import MeshTet

    m = MeshTet.init_tensor(np.linspace(0, 1, 8), np.linspace(0, 1, 6), np.linspace(0, 1, 5))
    fixed = m.p[0] < 1e-9
    src = np.exp(-((m.p.T - 0.5) ** 2).sum(1) / 0.02)
    direct = HeatSolver(m.p.T, m.t.T, 0.05, 0.01, fixed, np.array([0.3, 0, 0]), src)
    iterative = HeatSolver(m.p.T, m.t.T, 0.05, 0.01, fixed, np.array([0.3, 0, 0]), src, direct_limit=0)
    assert direct.direct and not iterative.direct
    a = b = np.zeros(m.p.shape[1])
    for _ in range(5):
        a = direct.step(a, np.ones(fixed.sum()))
        b = iterative.step(b, np.ones(fixed.sum()))
    np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def test_one_seed_at_two_mesh_sizes_is_one_case_at_two_resolutions():
    """heat_case's draws do not depend on the mesh size: the coarse and the fine run agree (the
    coarse solution interpolated to the fine nodes) up to the discretisation error."""
    from sim.mesh.interp import p1_matrix
    from solvers.diffusion3d import heat_case

    fine, coarse = heat_case({"mesh_size": 0.05}, 4), heat_case({"mesh_size": 0.1}, 4)
    assert {k: v for k, v in fine.params.items() if k != "mesh_size"} == {
        k: v for k, v in coarse.params.items() if k != "mesh_size"}
    a = p1_matrix(coarse.mesh.points, coarse.mesh.cells, fine.mesh.points)
    tf, tc = fine.run(30)[-1], coarse.run(30)[-1]
    assert np.linalg.norm(a @ tc - tf) / np.linalg.norm(tf) < 0.1
    other = heat_case({"mesh_size": 0.1}, 5)  # another seed is another case
    b = p1_matrix(other.mesh.points, other.mesh.cells, fine.mesh.points, max_outside=10.0)  # other hole
    assert np.linalg.norm(b @ other.run(30)[-1] - tf) / np.linalg.norm(tf) > 0.3
