"""Elasticity: cantilever against Timoshenko's closed form, clamped edge, shape families."""

from __future__ import annotations

import numpy as np
import pytest

from sim.mesh import NodeType
from solvers.elasticity import generate, solve_plane_stress


def test_slender_cantilever_matches_timoshenko_tip_deflection():
    """Plane-stress cantilever L = 10, H = 1 with an end shear load P: Timoshenko beam theory gives
    delta = P L^3 / (3 E I) + P L / (kappa G H), kappa = 5/6; P2 elements agree within 1 %."""
    from skfem import MeshTri

    L, H, E, nu, P = 10.0, 1.0, 1000.0, 0.3, 1.0
    sk = MeshTri.init_tensor(np.linspace(0, L, 41), np.linspace(0, H, 5))
    res = solve_plane_stress(sk.p.T, sk.t.T, E, nu, lambda x: x[0] < 1e-9, lambda x: x[0] > L - 1e-9,
                             (0.0, -P / H))
    G = E / (2 * (1 + nu))
    expected = P * L**3 / (3 * E * H**3 / 12) + P * L / (5 / 6 * G * H)
    tip = -res.displacement[np.isclose(sk.p[0], L), 1].mean()
    assert tip == pytest.approx(expected, rel=0.01)


def test_uniform_tension_of_a_free_strip_gives_uniform_stress():
    """A 10 x 1 strip clamped at one end and pulled at the other: far from the clamp (Saint-Venant)
    the stress is the uniform uniaxial traction, so von Mises equals the load to 0.1 %."""
    from skfem import MeshTri

    sk = MeshTri.init_tensor(np.linspace(0, 10, 81), np.linspace(0, 1, 9))
    res = solve_plane_stress(sk.p.T, sk.t.T, 100.0, 0.3, lambda x: x[0] < 1e-9, lambda x: x[0] > 10 - 1e-9,
                             (2.0, 0.0))
    middle = (sk.p[0] > 4) & (sk.p[0] < 6)
    np.testing.assert_allclose(res.von_mises[middle], 2.0, rtol=1e-3)


def test_samples_clamp_their_bottom_and_differ_in_topology():
    a, b = generate({"mesh_size": 0.06}, 1), generate({"mesh_size": 0.06}, 2)
    for m in (a, b):
        fixed = m.node_type == NodeType.FIXED
        assert fixed.sum() > 5 and np.abs(m.point_data["u"][fixed]).max() < 1e-12
        assert m.field_data["max_abs_uy_top"][0] > 0 and m.field_data["max_von_mises"][0] > 0
    assert a.num_points != b.num_points
    assert generate({"mesh_size": 0.06}, 1).equals(a)


@pytest.mark.parametrize("family", ["ellipse", "wedge"])
def test_out_of_distribution_families_are_valid_meshes(family):
    m = generate({"family": family, "mesh_size": 0.06}, 5)
    m.validate()
    assert m.field_data["family"] == family


def test_same_mesh_family_keeps_connectivity():
    a, b = generate({"family": "same_mesh", "mesh_size": 0.06}, 1), generate({"family": "same_mesh",
                                                                            "mesh_size": 0.06}, 2)
    np.testing.assert_array_equal(a.cells["triangle"], b.cells["triangle"])
    assert not np.allclose(a.points, b.points)
