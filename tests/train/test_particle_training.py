"""Particle simulators through the shared trainer: learning, exact resume, checkpoint, `sim rollout`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim.cli import main
from sim.families import configure, train
from sim.mesh import read
from sim.models.particle.simulator import ParticleSimulator
from sim.train import Config, ConfigError, load_model
from sim.train.checkpoint import read_checkpoint
from tests.data.mpm_store import mpm_store

TINY = {"latent": 16, "mp_before": 1, "mp_after": 1, "grid": 8, "grid_channels": 8, "modes": 3, "processor_layers": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return mpm_store(tmp_path_factory.mktemp("mpm") / "jelly.h5", material="jelly", frames=16)


def _config(tmp_path, data, network="giorom", steps=120, **train_args) -> Config:
    giorom = network == "giorom"
    return Config.from_dict({
        "model": {"family": "particle", "network": network, "noise_std": 1e-6,
                  "network_args": TINY if giorom else {"latent": 16, "steps": 2},
                  "family_args": {"sample_ratio": 0.25, "decoder": {"neighbors": 8}} if giorom else {}},
        "data": {"train": str(data), "valid": str(data), "batch_size": 2, "dense_queries": 64 if giorom else 0,
                 "valid_entries": 1, "valid_rollout_steps": 4},
        "optim": {"lr": 1e-2, "lr_final": 1e-3},
        "train": {"steps": steps, "out": str(tmp_path / "run"), "log_every": 10, "checkpoint_every": 1000,
                  **train_args}})


@pytest.mark.parametrize("network", ["giorom", "meshgraphnet"])
def test_trains_and_sim_rollout_writes_the_dense_point_cloud(tmp_path, data, network):
    summary = train(_config(tmp_path, data, network, valid_every=120), progress=False)
    losses = [float(r.split(",")[1]) for r in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert np.mean(losses[-2:]) < 0.6 * np.mean(losses[:2])  # means over 10 steps
    assert np.isfinite(summary["valid_rmse_all"])
    ckpt = tmp_path / "run" / "checkpoint.pt"
    model, payload = load_model(ckpt)
    assert isinstance(model, ParticleSimulator) and (model.decoder is not None) == (network == "giorom")
    assert payload["train"]["config"]["model"]["family"] == "particle"
    out = tmp_path / "series"
    assert main(["rollout", str(ckpt), str(data), "--out", str(out), "--steps", "4", "--plot"]) == 0
    series = read(out / "000000.pvd")
    n = series.mesh.num_points
    truth = read(data).read("000000").positions
    assert n == truth.shape[1] and series.positions.shape == (5, n, 2)  # all particles, not the sparse 25 %
    np.testing.assert_allclose(series.point_fields["displacement_truth"][-1], truth[9] - truth[0], atol=1e-6)
    np.testing.assert_allclose(series.positions - series.mesh.points, series.point_fields["displacement"], atol=1e-5)
    assert (out / "000000_error.png").exists()


def test_interrupted_and_resumed_particle_run_equals_uninterrupted(tmp_path, data):
    train(_config(tmp_path / "a", data, steps=16), progress=False)
    part = _config(tmp_path / "b", data, steps=16)
    train(part, stop_after=7, progress=False)
    train(part, resume=True, progress=False)
    a = read_checkpoint(tmp_path / "a" / "run" / "checkpoint.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_particle_config_errors_are_readable(tmp_path, data):
    from sim.errors import SimError

    cfg = _config(tmp_path, data)
    cfg.model.preset = "huge"
    with pytest.raises(SimError, match=r"model 'giorom' has no preset 'huge' \(presets: "):
        train(cfg, progress=False)
    with pytest.raises(ConfigError, match=r"model\.simulator is now model\.family"):
        Config.from_dict({"model": {"simulator": "particle"}, "data": {"train": str(data)}})
    wrong = Config.from_dict({"model": {"family": "particles"}, "data": {"train": str(data)}})
    with pytest.raises(ConfigError, match=r"model\.family: unknown model family 'particles' \(families: .*particle"):
        configure(wrong)
    with pytest.raises(ConfigError, match=r"model\.family: unknown model family 'particles'"):
        train(wrong, progress=False)
    bad = _config(tmp_path / "c", data)
    bad.model.family_args = {**bad.model.family_args, "sample_ratio": 1.5}
    with pytest.raises(ConfigError, match=r"sample_ratio must be in \(0, 1\]"):
        train(bad, progress=False)
    assert not (tmp_path / "c" / "run").exists()  # refused before anything was built or written
