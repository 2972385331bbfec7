"""The rollout engine: boundary values held, divergence stops cleanly, batching changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sim.mesh as sm
from sim.graph import mesh_graph
from sim.mesh import Mesh, NodeType
from sim.models.mesh.simulator import MeshSimulator
from sim.rollout import RolloutDiverged, rollout, series_layout
from tests.conftest import mixed_2d_mesh


def _simulator(seed=0, target="delta"):
    torch.manual_seed(seed)
    sim = MeshSimulator("meshgraphnet", {"latent": 16, "steps": 2}, ["velocity", "pressure"], [2, 1], edge_in=3,
                        target=target)
    sim.eval()
    # give the normalisers statistics, as after training
    g = mesh_graph(mixed_2d_mesh())
    x = torch.randn(6, 3)
    sim.node_normalizer.accumulate(torch.cat([x, torch.nn.functional.one_hot(g.node_type, 9).float()], -1))
    sim.edge_normalizer.accumulate(g.edge_attr)
    sim.output_normalizer.accumulate(0.01 * torch.randn(50, 3))
    return sim


def test_prescribed_nodes_keep_their_boundary_values():
    mesh = mixed_2d_mesh()  # node types: inflow, interior, interior, inflow, outflow, outflow
    sim = _simulator()
    x0 = np.random.default_rng(0).random((6, 3)).astype(np.float32)

    def inflow(step, time):
        v = np.zeros((6, 3), np.float32)
        v[:, 0] = 1.0 + time  # a time-dependent inflow
        return v

    class Recorder:
        def __init__(self):
            self.steps = []

        def write(self, time, point_fields=None, cell_fields=None, positions=None):
            self.steps.append((time, point_fields))

    rec = Recorder()
    res = rollout(sim, [mesh], [x0], steps=5, dt=0.1, boundary=[inflow], writers=[rec])
    inflow_nodes = mesh.node_type == NodeType.INFLOW
    for s, (time, fields) in enumerate(rec.steps[1:], start=1):
        assert time == pytest.approx(0.1 * s)
        np.testing.assert_allclose(fields["velocity"][inflow_nodes, 0], 1.0 + 0.1 * s)
        np.testing.assert_allclose(fields["pressure"][inflow_nodes], 0.0)
    assert not np.allclose(res.final[0][~inflow_nodes], x0[~inflow_nodes])  # the model did move the rest


def test_metrics_are_zero_for_the_exact_update_and_match_persistence():
    mesh = mixed_2d_mesh()
    rng = np.random.default_rng(1)
    ref = np.cumsum(rng.normal(size=(8, 6, 3)), axis=0).astype(np.float32)

    class Exact:
        """The true update behind the simulator's own one-step map (step_inputs, advance)."""

        num_features = 3
        config = {"fields": ["a"], "field_dims": [3], "target": "delta", "scalars": [], "history": 1}
        step = 0
        step_inputs = MeshSimulator.step_inputs
        advance = MeshSimulator.advance

        def predicted_mask(self, node_type):
            return torch.ones_like(node_type, dtype=torch.bool)

        def predict_update(self, state, *args):
            Exact.step += 1
            return torch.from_numpy(ref[Exact.step] - ref[Exact.step - 1])

    res = rollout(Exact(), [mesh], [ref[0]], steps=7, dt=1.0, reference=[ref])
    assert res.rmse()["all"] < 1e-5

    class Persistence(Exact):
        def predict_update(self, state, *args):
            return torch.zeros_like(state)

    res = rollout(Persistence(), [mesh], [ref[0]], steps=7, dt=1.0, reference=[ref])
    expected = np.sqrt(np.mean([((ref[s] - ref[0]) ** 2).mean() for s in range(1, 8)]))
    assert res.rmse()["all"] == pytest.approx(expected, rel=1e-6)
    assert res.rmse()["1"] == pytest.approx(np.sqrt(((ref[1] - ref[0]) ** 2).mean()), rel=1e-6)


def test_divergence_stops_with_a_clear_error_and_no_output(tmp_path):
    mesh = mixed_2d_mesh()
    sim = _simulator()
    sim.output_normalizer.sum_sq *= 1e12  # absurd output scale: the state explodes
    x0 = np.ones((6, 3), np.float32)
    writer = sm.PVDWriter(tmp_path / "out.pvd", series_layout(mesh, ["velocity", "pressure"], 0.1))
    with pytest.raises(RolloutDiverged, match="diverged at step 1"):
        rollout(sim, [mesh], [x0], steps=10, dt=0.1, writers=[writer])
    assert list(tmp_path.iterdir()) == []


def test_batched_rollout_equals_separate_rollouts():
    sim = _simulator(2, target="derivative")
    m1 = mixed_2d_mesh()
    pts = np.array([[0, 0], [1, 0], [0, 1], [1, 1.0]])
    m2 = Mesh(pts, {"triangle": [[0, 1, 2], [1, 3, 2]]}, node_type=np.array([0, 0, 6, 0], dtype=np.int32))
    x1 = np.random.default_rng(3).random((6, 3)).astype(np.float32)
    x2 = np.random.default_rng(4).random((4, 3)).astype(np.float32)
    both = rollout(sim, [m1, m2], [x1, x2], steps=4, dt=[0.1, 0.05])
    a = rollout(sim, [m1], [x1], steps=4, dt=0.1)
    b = rollout(sim, [m2], [x2], steps=4, dt=0.05)
    np.testing.assert_allclose(both.final[0], a.final[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(both.final[1], b.final[0], rtol=1e-5, atol=1e-6)


def test_rollout_streams_a_pvd_series_that_reads_back(tmp_path):
    mesh = mixed_2d_mesh()
    sim = _simulator()
    x0 = np.random.default_rng(5).random((6, 3)).astype(np.float32)
    writer = sm.PVDWriter(tmp_path / "roll.pvd", series_layout(mesh, ["velocity", "pressure"], 0.1))
    res = rollout(sim, [mesh], [x0], steps=3, dt=0.1, writers=[writer])
    back = sm.read(tmp_path / "roll.pvd")
    assert back.num_steps == 4
    np.testing.assert_allclose(back.point_fields["velocity"][-1], res.final[0][:, :2])


@pytest.mark.slow
def test_compiled_rollout_equals_eager():
    """``compile=True`` (torch.compile of the one-step map) changes speed, not results."""
    mesh = mixed_2d_mesh()
    sim = _simulator(3)
    x0 = np.random.default_rng(3).random((6, 3)).astype(np.float32)
    eager = rollout(sim, [mesh], [x0], 5, 0.1)
    compiled = rollout(sim, [mesh], [x0], 5, 0.1, compile=True)
    np.testing.assert_allclose(compiled.final[0], eager.final[0], rtol=1e-4, atol=1e-5)
