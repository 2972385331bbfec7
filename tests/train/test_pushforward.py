"""The pushforward loss: samples carry future frames, the no-gradient unroll is the rollout
engine's, it waits for frozen normalisers and leaves them alone, and training with it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from sim.data.windows import MeshStepDataset
from sim.mesh import Store
from sim.models.mesh.simulator import MeshSimulator
from sim.rollout import rollout
from sim.train import load_model
from tests.train.diffusion_data import diffusion_store, train_tiny


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return diffusion_store(tmp_path_factory.mktemp("pf") / "diff.h5", trajectories=3, steps=10)


def test_samples_carry_the_future_frames(data):
    one = MeshStepDataset(data, ["u"])
    three = MeshStepDataset(data, ["u"], horizon=3)
    assert len(one) == 3 * 9 and len(three) == 3 * 7
    item = three[5]
    with Store(data) as s:
        u = s.read(item.entry).point_fields["u"]
    t = item.step
    np.testing.assert_array_equal(item.state[:, 0], u[t])
    np.testing.assert_array_equal(item.target[:, 0], u[t + 1])
    assert item.future.shape == (u.shape[1], 2, 1)
    np.testing.assert_array_equal(item.future[:, 1, 0], u[t + 3])
    assert Batch.from_data_list([three[0], three[1]]).future.shape == (2 * u.shape[1], 2, 1)


def _simulator(pushforward=2, accumulations=1):
    torch.manual_seed(0)
    sim_ = MeshSimulator("meshgraphnet", {"latent": 16, "steps": 2}, ["u"], [1], edge_in=3, pushforward=pushforward)
    for n in (sim_.node_normalizer, sim_.edge_normalizer, sim_.output_normalizer):
        n.max_accumulations = accumulations
    return sim_


def test_pushforward_is_the_engines_rollout(data):
    ds = MeshStepDataset(data, ["u"], horizon=3)
    simulator = _simulator()
    simulator.train()
    simulator.loss(Batch.from_data_list([ds[0]]))  # fills (and freezes) the normalisers
    batch = Batch.from_data_list([ds[4]])
    state, inputs = simulator.pushforward(batch, batch.state, 2)
    with Store(data) as s:
        traj = s.read(ds[4].entry)
    u = traj.point_fields["u"][..., None].astype(np.float32)
    t = ds[4].step
    simulator.eval()
    ref = rollout(simulator, [traj.mesh], [u[t]], 2, traj.dt, boundary=[lambda k, _: u[t + k]])
    np.testing.assert_allclose(state.numpy(), ref.final[0], rtol=1e-5, atol=1e-6)
    assert inputs.past is None  # no history: nothing before the state to carry
    assert not np.allclose(state.numpy(), u[t + 2])  # the untrained model's own errors are kept


def test_pushforward_waits_for_frozen_normalisers_and_does_not_move_them(data):
    ds = MeshStepDataset(data, ["u"], horizon=3)
    simulator = _simulator(accumulations=2).train()
    gen = torch.Generator().manual_seed(0)
    assert simulator._pushforward_steps(gen) == 0  # statistics still accumulating
    for i in range(2):
        simulator.loss(Batch.from_data_list([ds[i]]), gen)
    stats = {k: v.clone() for k, v in simulator.state_dict().items() if "normalizer" in k}
    draws = {simulator._pushforward_steps(gen) for _ in range(60)}
    assert draws == {0, 1, 2}
    for i in range(6):
        simulator.loss(Batch.from_data_list([ds[i]]), gen)
    for k, v in simulator.state_dict().items():
        if "normalizer" in k:
            torch.testing.assert_close(v, stats[k])
    with pytest.raises(ValueError, match="needs samples with 2 future frames"):
        simulator.pushforward(Batch.from_data_list([MeshStepDataset(data, ["u"])[0]]), ds[0].state, 2)


def test_training_with_pushforward_learns(tmp_path, data):
    losses = train_tiny(data, tmp_path / "run", pushforward=2)
    assert np.mean(losses[-3:]) < 0.4 * np.mean(losses[:3])
    model, _ = load_model(tmp_path / "run" / "checkpoint.pt")
    assert model.config["pushforward"] == 2 and int(model.node_normalizer.accumulations) == 20
