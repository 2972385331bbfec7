"""Unrolled training: the gradient flows through the pushforward steps, the loss counts every
step of the model's own rollout, its steps are the engine's, and training with it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from sim.data.windows import MeshStepDataset
from sim.models.mesh.simulator import MeshSimulator
from sim.train import load_model
from sim.train.config import ConfigError
from tests.train.diffusion_data import diffusion_store, train_tiny


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return diffusion_store(tmp_path_factory.mktemp("unrolled") / "diff.h5", trajectories=3, steps=12)


def _simulator(unrolled, bundle=1, pushforward=2, history=1):
    torch.manual_seed(0)
    s = MeshSimulator("meshgraphnet", {"latent": 16, "steps": 2}, ["u"], [1], edge_in=3, bundle=bundle,
                      pushforward=pushforward, history=history, unrolled=unrolled)
    for n in (s.node_normalizer, s.edge_normalizer, s.output_normalizer):
        n.max_accumulations = 1
    return s


@pytest.mark.parametrize("bundle,history", [(1, 1), (2, 2)])
def test_each_step_of_the_unroll_is_the_pushforward_of_as_many_steps(data, bundle, history):
    ds = MeshStepDataset(data, ["u"], horizon=3 * bundle, history=history)
    batch = Batch.from_data_list([ds[3]])
    plain, unrolled = _simulator(False, bundle, history=history).train(), _simulator(True, bundle, history=history)
    plain.loss(Batch.from_data_list([ds[0]]))  # fills (and freezes) the normalisers
    unrolled.load_state_dict(plain.state_dict())
    unrolled.train()
    inputs = plain.step_inputs(batch)
    err, mask = unrolled._residual(batch, batch.state, inputs, 2)
    width = bundle  # one feature per frame
    assert err.shape == (batch.state.shape[0], 3 * width) and torch.equal(mask, plain.predicted_mask(batch.node_type))
    for k in range(3):  # block k is the residual of the step after k no-gradient steps
        ref, _ = plain._residual(batch, batch.state, plain.step_inputs(batch), k)
        torch.testing.assert_close(err[:, k * width:(k + 1) * width], ref, rtol=1e-5, atol=1e-6)
    assert unrolled.config["unrolled"] and "unrolled" not in plain.config


def test_the_gradient_flows_through_the_model_s_own_steps(data):
    ds = MeshStepDataset(data, ["u"], horizon=3)
    batch = Batch.from_data_list([ds[3]])
    plain, unrolled = _simulator(False).train(), _simulator(True).train()
    plain.loss(Batch.from_data_list([ds[0]]))
    unrolled.load_state_dict(plain.state_dict())
    unrolled.train()

    def last_step_grad(model):
        model.zero_grad()
        err, mask = model._residual(batch, batch.state, model.step_inputs(batch), 2)
        (err[:, -1:][mask] ** 2).mean().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    g_plain, g_unrolled = last_step_grad(plain), last_step_grad(unrolled)
    # the same value of the last step's loss, but a different gradient: the earlier steps are in it
    assert not torch.allclose(g_plain, g_unrolled, rtol=1e-3, atol=1e-8)
    with torch.no_grad():  # without gradient the plain residual
        err, _ = unrolled._residual(batch, batch.state, unrolled.step_inputs(batch), 2)
    assert err.shape[-1] == 1
    unrolled.eval()  # in eval mode too (the self-tuning loss: the step after the rollout, with gradient)
    err, _ = unrolled.rollout_residual(batch, 2)
    ref, _ = plain.eval().rollout_residual(batch, 2)
    assert err.shape[-1] == 1 and err.requires_grad
    torch.testing.assert_close(err, ref)
    unrolled.train().halo = object()  # a partitioned step: its halo exchange carries no gradient
    with pytest.raises(ValueError, match="unrolled training runs in one process"):
        unrolled._residual(batch, batch.state, unrolled.step_inputs(batch), 2)


def test_unrolled_training_learns_and_needs_a_pushforward(tmp_path, data):
    losses = train_tiny(data, tmp_path / "run", pushforward=2, family_args={"unrolled": True})
    assert np.mean(losses[-3:]) < 0.4 * np.mean(losses[:3])
    model, _ = load_model(tmp_path / "run" / "checkpoint.pt")
    assert model.config["unrolled"] is True
    with pytest.raises(ConfigError, match="unrolled trains through the pushforward steps"):
        train_tiny(data, tmp_path / "bad", family_args={"unrolled": True})
