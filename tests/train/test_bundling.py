"""Temporal bundling: a model call predicts the next K frames; the rollout hands them out one
step at a time (one call per K steps), the loss asks for all K, pushforward unrolls in bundles,
and training with it learns."""

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
    return diffusion_store(tmp_path_factory.mktemp("bundle") / "diff.h5", trajectories=3, steps=12)


def _simulator(bundle=3, pushforward=0):
    torch.manual_seed(0)
    s = MeshSimulator("meshgraphnet", {"latent": 16, "steps": 2}, ["u"], [1], edge_in=3, bundle=bundle,
                      pushforward=pushforward)
    for n in (s.node_normalizer, s.edge_normalizer, s.output_normalizer):
        n.max_accumulations = 1
    return s


def test_one_call_gives_the_next_frames_and_the_rollout_hands_them_out(data):
    ds = MeshStepDataset(data, ["u"], horizon=3)
    sim_ = _simulator().train()
    sim_.loss(Batch.from_data_list([ds[0]]))  # fills the normalisers (width 3 frames x 1 feature)
    assert sim_.output_normalizer.sum.shape == (3,) and sim_.network.config["out_dim"] == 3
    sim_.eval()
    with Store(data) as s:
        traj = s.read(s.names()[0])
    u = traj.point_fields["u"][..., None].astype(np.float32)
    calls = []
    real = sim_.predict_update

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    sim_.predict_update = counted
    res = rollout(sim_, [traj.mesh], [u[0]], 7, traj.dt, boundary=[lambda k, _: u[k]])
    assert len(calls) == 3  # 7 steps in bundles of 3
    three = rollout(sim_, [traj.mesh], [u[0]], 3, traj.dt, boundary=[lambda k, _: u[k]])
    assert len(calls) == 4  # and 3 steps in one call
    # the first three frames are one call's updates of the initial state
    sim_.predict_update = real
    inputs = sim_.step_inputs(Batch.from_data_list([ds[0]]))
    frames, _ = sim_.advance(torch.as_tensor(u[0]), inputs, boundary=torch.as_tensor(u[1:4]))
    assert frames.shape == (3, u.shape[1], 1)
    np.testing.assert_allclose(three.final[0], frames[2].numpy(), rtol=1e-5, atol=1e-6)
    assert res.final[0].shape == three.final[0].shape
    upd = real(torch.as_tensor(u[0]), inputs.node_type, inputs.edge_index, inputs.edge_attr)
    mask = sim_.predicted_mask(inputs.node_type)
    np.testing.assert_allclose(frames[1][mask].numpy(), (torch.as_tensor(u[0]) + upd[:, 1:2])[mask].numpy(),
                               rtol=1e-6)
    assert torch.equal(frames[1][~mask], torch.as_tensor(u[2])[~mask])  # boundary nodes take their values


def test_pushforward_unrolls_whole_bundles(data):
    ds = MeshStepDataset(data, ["u"], horizon=6)  # (pushforward 1 + 1) x bundle 3
    sim_ = _simulator(bundle=3, pushforward=1).train()
    batch = Batch.from_data_list([ds[2]])
    sim_.loss(batch)
    state, _ = sim_.pushforward(batch, batch.state, 1)
    frames, _ = sim_.advance(batch.state, sim_.step_inputs(batch),
                             boundary=torch.stack([batch.target, *batch.future.unbind(1)][:3]))
    torch.testing.assert_close(state, frames[-1])
    short = Batch.from_data_list([MeshStepDataset(data, ["u"], horizon=3)[0]])
    with pytest.raises(ValueError, match="needs samples with 5 future frames"):
        sim_.pushforward(short, short.state, 1)


def test_training_with_bundles_learns_and_rolls_out(tmp_path, data):
    losses = train_tiny(data, tmp_path / "run", pushforward=1, family_args={"bundle": 2})
    assert np.mean(losses[-3:]) < 0.4 * np.mean(losses[:3])
    model, _ = load_model(tmp_path / "run" / "checkpoint.pt")
    assert model.bundle == 2 and model.config["bundle"] == 2
    from sim.api import evaluate

    res = evaluate(tmp_path / "run" / "checkpoint.pt", data, steps=9)
    assert res["rmse_all"] < res["persistence_rmse_all"]


def test_the_call_after_a_bundle_sees_the_bundles_frames_as_its_past(data):
    torch.manual_seed(0)
    sim_ = MeshSimulator("meshgraphnet", {"latent": 16, "steps": 2}, ["u"], [1], edge_in=3, bundle=3, history=3)
    for n in (sim_.node_normalizer, sim_.edge_normalizer, sim_.output_normalizer):
        n.max_accumulations = 1
    ds = MeshStepDataset(data, ["u"], horizon=3, history=3)
    batch = Batch.from_data_list([ds[0]])
    sim_.train().loss(batch)
    sim_.eval()
    inputs = sim_.step_inputs(batch)
    frames, after = sim_.advance(batch.state, inputs)
    # the next call's state is the bundle's last frame; its past the two frames before it
    torch.testing.assert_close(after.past, torch.stack([frames[0], frames[1]], dim=1))
    with Store(data) as s:
        traj = s.read(s.names()[0])
    u = traj.point_fields["u"][..., None].astype(np.float32)
    res = rollout(sim_, [traj.mesh], [u[:3]], 6, traj.dt, boundary=[lambda k, _: u[k + 2]])
    # by hand: two calls, the second from the first bundle's frames
    inputs = sim_.step_inputs(Batch.from_data_list([ds[0]]), past=torch.as_tensor(u[:2]).transpose(0, 1))
    first, nxt = sim_.advance(torch.as_tensor(u[2]), inputs, boundary=torch.as_tensor(u[3:6]))
    second, _ = sim_.advance(first[-1], nxt, boundary=torch.as_tensor(u[6:9]))
    np.testing.assert_allclose(res.final[0], second[-1].numpy(), rtol=1e-5, atol=1e-6)


def test_training_with_bundles_and_history_learns(tmp_path, data):
    losses = train_tiny(data, tmp_path / "run", pushforward=1, history=2, family_args={"bundle": 2})
    assert np.mean(losses[-3:]) < 0.4 * np.mean(losses[:3])
    from sim.api import evaluate

    res = evaluate(tmp_path / "run" / "checkpoint.pt", data, steps=8)
    assert np.isfinite(res["rmse_all"]) and res["rmse_all"] < res["persistence_rmse_all"]
