"""The divergence-free correction of rollout updates (sim.rollout.corrections)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.errors import SimError
from sim.mesh import Mesh, NodeType
from sim.rollout.corrections import DivergenceFree, check_correction, vector_field_slice
from tests.channel import channel as channel_mesh


def channel(nx: int = 41, ny: int = 15) -> Mesh:
    """A 3 x 1 channel of triangles: inflow left, outflow right, walls top and bottom."""
    return channel_mesh(nx, ny)


def test_a_divergence_free_update_is_kept():
    mesh = channel()
    fix = DivergenceFree(mesh)
    p = mesh.points
    u = np.c_[p[:, 0] - 1.0, 0.5 - p[:, 1]]  # linear, div = 0 exactly in P1
    np.testing.assert_allclose(fix.project(u), u, atol=1e-10)
    np.testing.assert_allclose(fix.divergence(u), 0.0, atol=1e-10)


def test_a_cross_flow_through_the_walls_is_removed():
    """The drift learned models fall into: a uniform transverse velocity inside a channel whose
    walls hold zero."""
    mesh = channel()
    fix = DivergenceFree(mesh)
    inside = mesh.node_type == int(NodeType.INTERIOR)
    d = np.zeros((mesh.num_points, 2))
    d[inside, 1] = -1.0
    out = fix.project(d)
    assert np.abs(out[inside, 1]).mean() < 0.2 * np.abs(d[inside, 1]).mean()  # measured: 0.14 of it
    # P1 velocities with a P1 potential is an approximate projection: the divergence falls (to 0.63
    # of it here, the rest in cell-to-cell oscillation it cannot see), it does not vanish
    assert np.abs(fix.divergence(out)).mean() < 0.7 * np.abs(fix.divergence(d)).mean()
    boundary = ~inside
    np.testing.assert_array_equal(out[boundary], d[boundary])  # boundary values are never touched


def test_the_correction_acts_on_the_update_only():
    mesh = channel()
    fix = DivergenceFree(mesh)
    rng = np.random.default_rng(0)
    state = rng.normal(size=(mesh.num_points, 2))  # not divergence-free at all
    np.testing.assert_allclose(fix(state, state), state)  # no update: nothing to correct


def test_a_3d_tetrahedral_mesh():
    g = np.linspace(0.0, 1.0, 5)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    pts = np.c_[x.ravel(), y.ravel(), z.ravel()]
    from scipy.spatial import Delaunay

    inner = ~np.any((pts == 0) | (pts == 1), axis=1)  # jittered: a regular grid gives flat tetrahedra
    pts[inner] += np.random.default_rng(0).uniform(-0.05, 0.05, (inner.sum(), 3))

    tets = Delaunay(pts).simplices
    e = pts[tets[:, 1:]] - pts[tets[:, :1]]
    tets = tets[np.abs(np.linalg.det(e)) > 1e-9]  # Qhull's flat slivers on the cube's faces
    nt = np.full(len(pts), int(NodeType.INTERIOR))
    on_box = np.any((pts == 0) | (pts == 1), axis=1)
    nt[on_box] = int(NodeType.WALL)
    nt[np.isclose(pts[:, 0], 1)] = int(NodeType.OUTFLOW)
    fix = DivergenceFree(Mesh(pts, {"tetra": tets}, node_type=nt))
    u = np.c_[pts[:, 0], pts[:, 1], -2 * pts[:, 2]]
    np.testing.assert_allclose(fix.project(u), u, atol=1e-10)


def test_refusals():
    mesh = channel()
    with pytest.raises(SimError, match="outflow"):
        DivergenceFree(Mesh(mesh.points, mesh.cells, node_type=np.zeros(mesh.num_points, dtype=int)))
    with pytest.raises(SimError, match="node types"):
        DivergenceFree(Mesh(mesh.points, mesh.cells))
    quads = Mesh(np.array([[0.0, 0], [1, 0], [1, 1], [0, 1]]), {"quad": np.array([[0, 1, 2, 3]])},
                 node_type=np.array([0, 5, 5, 0]))
    with pytest.raises(SimError, match="triangle"):
        DivergenceFree(quads)
    with pytest.raises(SimError, match="velocity"):
        vector_field_slice({"fields": ["u"], "field_dims": [1]}, 2)
    assert vector_field_slice({"fields": ["p", "velocity"], "field_dims": [1, 2]}, 2) == slice(1, 3)
    with pytest.raises(SimError, match="unknown rollout correction"):
        check_correction("smooth")


def test_a_rollout_step_applies_the_models_correction():
    """The stepper of the one rollout loop projects each step's update when the model says so
    (or the caller overrides it)."""
    import torch

    from sim.models.mesh import MeshSimulator
    from sim.rollout.steppers import MeshStepper

    torch.manual_seed(0)
    mesh = channel(21, 8)
    sim = MeshSimulator("meshgraphnet", {"latent": 8, "steps": 1}, ["velocity"], [2], edge_in=3,
                        correction="divergence_free")
    sim.eval()
    rng = np.random.default_rng(1)
    update = torch.as_tensor(rng.normal(size=(mesh.num_points, 2)), dtype=torch.float32)
    sim.predict_update = lambda *_, **__: update  # untrained normalisers predict almost no update
    x0 = rng.normal(size=(mesh.num_points, 2)).astype(np.float32)

    def one_step(correction):
        st = MeshStepper(sim, [mesh], [x0], [0.1], [0.0], correction=correction)
        with torch.inference_mode():
            st.advance(1)
        return st.state.numpy().astype(np.float64)

    plain, corrected, configured = one_step("none"), one_step("divergence_free"), one_step(None)
    np.testing.assert_allclose(corrected, x0 + DivergenceFree(mesh).project(plain - x0), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(configured, corrected)
    assert np.abs(corrected - plain).max() > 1e-4


def test_a_bundling_models_frames_are_corrected_one_change_at_a_time():
    """With temporal bundling the model gives K frames per call; each frame's change from the one
    before is projected, so every step of the rollout is corrected as a one-frame model's is."""
    import torch

    from sim.models.mesh import MeshSimulator
    from sim.rollout.steppers import MeshStepper

    torch.manual_seed(0)
    mesh = channel(21, 8)
    sim = MeshSimulator("meshgraphnet", {"latent": 8, "steps": 1}, ["velocity"], [2], edge_in=3,
                        correction="divergence_free", bundle=2)
    sim.eval()
    rng = np.random.default_rng(2)
    update = torch.as_tensor(rng.normal(size=(mesh.num_points, 4)), dtype=torch.float32)
    sim.predict_update = lambda *_, **__: update
    x0 = rng.normal(size=(mesh.num_points, 2)).astype(np.float32)

    def two_steps(correction):
        st = MeshStepper(sim, [mesh], [x0], [0.1], [0.0], correction=correction)
        out = []
        with torch.inference_mode():
            for s in (1, 2):
                st.advance(s)
                out.append(st.state.numpy().astype(np.float64))
        return out

    (raw1, raw2), (one, two) = two_steps("none"), two_steps(None)
    fix = DivergenceFree(mesh)
    np.testing.assert_allclose(one, x0 + fix.project(raw1 - x0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(two, one + fix.project(raw2 - raw1), rtol=1e-5, atol=1e-5)
    assert np.abs(two - raw2).max() > 1e-4


def test_after_a_corrected_bundle_the_next_call_sees_the_corrected_frames_as_its_past():
    import torch

    from sim.models.mesh import MeshSimulator
    from sim.rollout.steppers import MeshStepper

    torch.manual_seed(0)
    mesh = channel(21, 8)
    sim = MeshSimulator("meshgraphnet", {"latent": 8, "steps": 1}, ["velocity"], [2], edge_in=3,
                        correction="divergence_free", bundle=2, history=3)
    sim.eval()
    rng = np.random.default_rng(3)
    update = torch.as_tensor(rng.normal(size=(mesh.num_points, 4)), dtype=torch.float32)
    seen = []

    def fake(state, node_type, edge_index, edge_attr, pos, batch, scalars, past, static=None):
        seen.append(past.clone())  # the past frames the call is given
        return update

    sim.predict_update = fake
    frames = rng.normal(size=(3, mesh.num_points, 2)).astype(np.float32)
    st = MeshStepper(sim, [mesh], [frames], [0.1], [0.0])
    with torch.inference_mode():
        for s in (1, 2, 3):
            st.advance(s)
            if s == 1:
                first = st.state.clone()
    assert len(seen) == 2  # one call per bundle of two
    # the second call's past: the state the bundle started from and the bundle's first (corrected) frame
    torch.testing.assert_close(seen[1], torch.stack([torch.as_tensor(frames[-1]), first], dim=1))
