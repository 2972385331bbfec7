"""The hybrid of solvers.cfd.corrected: coarse solve from a stored state, correction samples, stepper."""

from __future__ import annotations

import numpy as np
import pytest

from sim.errors import SimError
from sim.families.base import rollout_evaluation
from sim.mesh import Store, StoreWriter
from sim.rollout.evaluate import evaluate_store
from sim.rollout.hybrid import corrected_case, corrected_rollout
from solvers.cfd.corrected import CoarseFlow, coarse_flow, correction_samples, prescribed_nodes
from solvers.cfd.cylinder import generate


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    params = {"mesh_size": 0.05, "mesh_size_min": 0.016, "num_steps": 8, "warmup": 1.0, "u_mean": 1.0,
              "reynolds": 200.0}
    path = tmp_path_factory.mktemp("hybrid") / "flow.h5"
    with StoreWriter(path) as w:
        w.append(generate(params, seed=3), "a")
    return path


def _traj(store):
    with Store(store) as s:
        return s.read("a")


def test_coarse_flow_at_the_stored_resolution_continues_the_stored_flow(store):
    traj = _traj(store)
    coarse = CoarseFlow(traj.mesh, traj.params, float(traj.dt), 1.0)
    assert coarse.mesh.num_points == traj.mesh.num_points
    v = traj.point_fields["velocity"]
    s = coarse.start(traj, 2)
    v0 = coarse.on_stored(s)["velocity"]
    np.testing.assert_allclose(v0, v[2], atol=1e-5)  # restriction then interpolation at the vertices: exact
    errors = []
    for k in range(3, 8):
        s = coarse.advance(s)
        errors.append(np.sqrt(((coarse.on_stored(s)["velocity"] - v[k]) ** 2).mean()))
    persistence = np.sqrt(((v[7] - v[2]) ** 2).mean())
    # the restart (P2 midpoint values interpolated) costs a small offset that does not grow,
    # while the flow moves on: the solve follows the stored flow
    assert errors[-1] < 0.35 * persistence
    assert errors[-1] < 1.5 * errors[0]


def test_a_coarser_mesh_has_fewer_nodes_and_stays_close(store):
    traj = _traj(store)
    coarse = CoarseFlow(traj.mesh, traj.params, float(traj.dt), 0.7)
    assert coarse.mesh.num_points < 0.75 * traj.mesh.num_points
    v = traj.point_fields["velocity"]
    s = coarse.advance(coarse.start(traj, 0))
    v1 = coarse.on_stored(s)["velocity"]
    assert np.linalg.norm(v1 - v[1]) / np.linalg.norm(v[1]) < 0.2  # 13 % on this very coarse mesh


def test_a_trajectory_without_the_case_parameters_is_refused(store):
    traj = _traj(store)
    params = {k: v for k, v in traj.params.items() if k != "nu"}
    with pytest.raises(SimError, match="nu"):
        CoarseFlow(traj.mesh, params, float(traj.dt), 0.7)


def test_correction_samples_add_up_to_the_truth_and_resume(store, tmp_path):
    traj = _traj(store)
    out = correction_samples(store, tmp_path / "samples.h5", 0.7, starts=(0, 4), frames=3, every=1)
    with Store(out) as s:
        names = s.names()
        assert names == ["a_s000_001", "a_s000_002", "a_s000_003", "a_s004_005", "a_s004_006", "a_s004_007"]
        sample = s.read("a_s004_006")
    pd = sample.point_data
    fixed = prescribed_nodes(traj.mesh)
    truth = traj.point_fields["velocity"][6]
    np.testing.assert_allclose((pd["coarse_velocity"] + pd["correction"])[~fixed], truth[~fixed], atol=1e-5)
    assert np.all(pd["correction"][fixed] == 0)
    assert np.abs(pd["correction"][~fixed]).max() > 1e-3  # the coarse mesh does lose something
    assert float(sample.field_data["reynolds"][0]) == pytest.approx(traj.params["reynolds"])
    correction_samples(store, out, 0.7, starts=(0, 4), frames=3, every=1)  # a second call adds nothing
    with Store(out) as s:
        assert s.names() == names


class Constant:
    """A stand-in corrector adding one constant vector everywhere."""

    config = {"scalars": ["reynolds", "u_mean"]}

    def __init__(self, c):
        self.c = np.asarray(c, dtype=np.float32)

    def predict(self, mesh, scalars, graph=None):
        assert set(scalars) == {"reynolds", "u_mean"}
        assert mesh.point_data["coarse_velocity"].shape == (mesh.num_points, 2)
        return {"correction": np.broadcast_to(self.c, (mesh.num_points, 2))}


def _rollout(store, model, steps=None):
    res = evaluate_store(model, store, corrected_case(coarse_flow, 0.7), None, steps)
    return res[0]


def test_the_stepper_adds_the_correction_and_keeps_the_prescribed_values(store):
    traj = _traj(store)
    fixed = prescribed_nodes(traj.mesh)
    case = corrected_case(coarse_flow, 0.7)
    plain = case(None, traj, "a", 3, store).stepper
    fixed_up = case(Constant([0.1, -0.2]), traj, "a", 3, store).stepper
    pair = case([Constant([0.1, -0.2]), Constant([0.3, 0.2])], traj, "a", 3, store).stepper
    for s in (1, 2):
        for st in (plain, fixed_up, pair):
            st.advance(s)
        a, b, e = plain.outputs()[0], fixed_up.outputs()[0], pair.outputs()[0]
        np.testing.assert_allclose(b.values[~fixed] - a.values[~fixed], np.broadcast_to([0.1, -0.2], (int((~fixed)
                                   .sum()), 2)), atol=1e-5)
        np.testing.assert_allclose(b.values[fixed], traj.point_fields["velocity"][s][fixed], atol=1e-6)
        np.testing.assert_allclose(e.values[~fixed] - a.values[~fixed], np.broadcast_to([0.2, 0.0], (int((~fixed)
                                   .sum()), 2)), atol=1e-5)  # the members' mean
        np.testing.assert_allclose(e.fields["velocity_std"][~fixed], np.broadcast_to([0.1, 0.2], (int((~fixed)
                                   .sum()), 2)), atol=1e-5)  # and their spread
        assert np.all(e.fields["velocity_std"][fixed] == 0)


def test_the_store_evaluator_scores_the_hybrid(store):
    coarse = _rollout(store, None)
    assert coarse.steps == 7 and 0 < coarse.rmse["all"] < coarse.persistence_rmse["all"]
    worse = _rollout(store, Constant([0.5, 0.0]))
    assert worse.rmse["all"] > coarse.rmse["all"] + 0.1  # a wrong correction shows in the score
    ev = rollout_evaluation([coarse, worse])
    assert ev.summary["rmse_1"] == pytest.approx((coarse.rmse["1"] + worse.rmse["1"]) / 2)


def test_members_on_their_own_coarse_meshes_spread_where_one_coarse_solve_does_not(store):
    traj = _traj(store)
    same = [Constant([0.1, 0.0]), Constant([0.1, 0.0])]
    shared = corrected_case(coarse_flow, 0.7)(same, traj, "a", 3, store).stepper
    perturbed = corrected_case(coarse_flow, 0.7, member_scales=[0.65, 0.75])(same, traj, "a", 3, store).stepper
    for s in (1, 2):
        shared.advance(s)
        perturbed.advance(s)
    assert np.all(shared.outputs()[0].fields["velocity_std"] == 0)  # identical correctors, one solve: no spread
    spread = perturbed.outputs()[0].fields["velocity_std"]
    assert spread.max() > 1e-3 and np.all(spread[prescribed_nodes(traj.mesh)] == 0)
    with pytest.raises(SimError, match="member scales"):
        corrected_case(coarse_flow, 0.7, member_scales=[0.7])(same, traj, "a", 3, store)


def test_corrected_rollout_returns_the_hybrid_trajectory(store):
    traj = _traj(store)
    fixed = prescribed_nodes(traj.mesh)
    plain = corrected_rollout(None, traj, coarse_flow, 0.7, steps=3)
    assert plain.num_steps == 4 and plain.times[0] == traj.times[0]
    np.testing.assert_allclose(plain.point_fields["velocity"][0], traj.point_fields["velocity"][0])
    np.testing.assert_allclose(plain.point_fields["velocity"][3][fixed], traj.point_fields["velocity"][3][fixed],
                               atol=1e-6)
    pair = corrected_rollout([Constant([0.0, 0.1]), Constant([0.0, 0.3])], traj, coarse_flow, 0.7, steps=3)
    np.testing.assert_allclose(pair.point_fields["velocity"][3][~fixed] - plain.point_fields["velocity"][3][~fixed],
                               np.broadcast_to([0.0, 0.2], (int((~fixed).sum()), 2)), atol=1e-5)
    assert pair.point_fields["velocity_std"].shape == (4, traj.mesh.num_points, 2)


def test_the_hybrid_reported_at_other_points_keeps_the_coarse_field_between_stored_nodes(store):
    traj = _traj(store)
    model = Constant([0.0, 0.1])
    on_nodes = corrected_rollout(model, traj, coarse_flow, 0.7, steps=3)
    same = corrected_rollout(model, traj, coarse_flow, 0.7, steps=3, points=traj.mesh.points)
    np.testing.assert_allclose(same.point_fields["velocity"], on_nodes.point_fields["velocity"], atol=1e-5)
    # the nodes of a finer mesh of the same case: the coarse solver's own field there plus the
    # interpolated correction, not a P1 interpolation of the stored-node values
    finer = CoarseFlow(traj.mesh, traj.params, float(traj.dt), 1.6).mesh
    at = corrected_rollout(model, traj, coarse_flow, 0.7, steps=3, points=finer.points)
    assert at.point_fields["velocity"].shape == (4, finer.num_points, 2)
    from sim.mesh.interp import p1_matrix

    coarse = coarse_flow(traj, 0.7)
    s = coarse.start(traj, 0)
    for _ in range(3):
        s = coarse.advance(s)
    own = coarse.sampler(finer.points)(s)
    p1 = p1_matrix(traj.mesh.points, traj.mesh.cells, finer.points)
    fixed = prescribed_nodes(traj.mesh)
    shift = on_nodes.point_fields["velocity"][3] - coarse.on_stored(s)["velocity"]
    expected = own + p1 @ shift
    np.testing.assert_allclose(at.point_fields["velocity"][3], expected, atol=1e-4)
    interior = np.abs(shift[~fixed] - [0.0, 0.1]).max()
    assert interior < 1e-5  # away from the prescribed nodes the shift is the correction itself
    plain_p1 = p1 @ on_nodes.point_fields["velocity"][3]
    assert np.abs(at.point_fields["velocity"][3] - plain_p1).max() > 1e-3  # P2 detail between the stored nodes
    with pytest.raises(SimError, match="one coarse solve"):
        corrected_rollout([model, model], traj, coarse_flow, 0.7, steps=1, member_scales=[0.6, 0.8],
                          points=finer.points)
