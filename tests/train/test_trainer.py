"""The trainer: learning, exact resume, DDP gradients equal to one process, safe checkpoints."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sim.errors import FileFormatError, SimError
from sim.families import train
from sim.train import Config, load_model
from sim.train.checkpoint import read_checkpoint
from tests.train.ddp_gradients import gradients
from tests.train.diffusion_data import diffusion_store


def _config(tmp_path: Path, data: Path, **train) -> Config:
    return Config.from_dict({
        "model": {"network_args": {"latent": 16, "steps": 2}, "fields": ["u"], "noise_std": 0.001},
        "data": {"train": str(data), "valid": str(data), "batch_size": 2, "valid_rollout_steps": 5},
        "optim": {"lr": 3e-3, "lr_final": 3e-4},
        "train": {"steps": 60, "out": str(tmp_path / "run"), "log_every": 10, "checkpoint_every": 1000,
                  "normalizer_accumulation_steps": 20, **train},
    })


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return diffusion_store(tmp_path_factory.mktemp("data") / "diff.h5")


def test_loss_falls_and_checkpoint_rebuilds_the_model(tmp_path, data):
    cfg = _config(tmp_path, data, steps=300, valid_every=300)
    summary = train(cfg, progress=False)
    log = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,seconds" and len(log) == 1 + 30
    losses = [float(row.split(",")[1]) for row in log[1:]]  # means over 10 steps
    assert np.mean(losses[-3:]) < 0.4 * np.mean(losses[:3])
    assert np.isfinite(summary["valid_rmse_all"])
    model, payload = load_model(tmp_path / "run" / "checkpoint.pt")
    assert payload["train"]["step"] == 300 and model.config["fields"] == ["u"]
    assert int(model.output_normalizer.accumulations) == 20  # statistics frozen after 20 batches, and saved


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, data):
    full = _config(tmp_path / "a", data, steps=30)
    train(full, progress=False)
    part = _config(tmp_path / "b", data, steps=30)
    train(part, stop_after=13, progress=False)  # "killed" after step 13 (its last checkpoint)
    with pytest.raises(SimError, match="pass --resume"):
        train(part, progress=False)
    before = read_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")["train"]["seconds"]
    summary = train(part, resume=True, progress=False)
    assert before > 0 and summary["seconds"] > before  # the clock (and a budget) runs on across the resume
    a = read_checkpoint(tmp_path / "a" / "run" / "checkpoint.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun not installed")
def test_two_process_ddp_gradients_equal_one_process(tmp_path, data):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    out = tmp_path / "grads.pt"
    res = subprocess.run([torchrun, "--nproc_per_node=2", "--master_port=29517", "-m", "tests.train.ddp_gradients",
                          str(data), str(out)], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).parents[2])
    assert res.returncode == 0, res.stderr[-2000:]
    ddp = torch.load(out, weights_only=True)
    cfg = Config.from_dict({"model": {"network_args": {"latent": 16, "steps": 2}, "fields": ["u"]},
                            "data": {"train": str(data), "batch_size": 4}})
    single = gradients(cfg, 0, 1)
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-4, atol=1e-6)


def test_checkpoint_refuses_pickled_objects_and_foreign_files(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"format": "sim.checkpoint", "version": 1, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(FileFormatError, match="not a readable sim checkpoint"):
        read_checkpoint(tmp_path / "evil.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(FileFormatError, match="not a sim checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": "sim.checkpoint", "version": 99}, tmp_path / "future.pt")
    with pytest.raises(FileFormatError, match="version 99 is not supported"):
        read_checkpoint(tmp_path / "future.pt")


def test_config_errors_name_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: {fields: [u], latnet: 3}\ndata: {train: x.h5}\n")
    from sim.families import load_config
    from sim.train import ConfigError

    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'latnet' in 'model' \(known: "):
        load_config(p)
    # the renamed keys say what they are now; a family's own options are checked by the family
    from sim.families import configure

    (tmp_path / "x.h5").write_bytes(b"")
    base = {"data": {"train": str(tmp_path / "x.h5")}}
    with pytest.raises(ConfigError, match=r"model\.simulator is now model\.family"):
        Config.from_dict({**base, "model": {"simulator": "mesh"}})
    with pytest.raises(ConfigError, match=r"model\.simulator_args is now model\.family_args"):
        Config.from_dict({**base, "model": {"family": "particle", "simulator_args": {}}})
    cfg = Config.from_dict({**base, "model": {"family": "particle", "family_args": {"sample_ratoi": 0.5}}})
    with pytest.raises(ConfigError, match=r"unknown key 'sample_ratoi' in 'model\.family_args' \(known: "):
        configure(cfg)
    cfg.model.family_args = {"sample_ratio": "half"}
    with pytest.raises(ConfigError, match=r"model\.family_args\.sample_ratio must be a number, got the string 'half'"):
        configure(cfg)
    cfg.model.family_args = {"sample_ratio": 0.5}
    assert configure(cfg).name == "particle"


def test_cli_train_rollout_eval(tmp_path, data, capsys):
    import yaml

    from sim.cli import main
    import sim.mesh as sm

    cfg = _config(tmp_path, data, steps=40).to_dict()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml")]) == 0
    ckpt = tmp_path / "run" / "checkpoint.pt"
    assert main(["rollout", str(ckpt), str(data), "--out", str(tmp_path / "r"), "--steps", "6", "--plot",
                 "--json", str(tmp_path / "m.json")]) == 0
    series = sm.read(tmp_path / "r" / "000000.pvd")
    assert series.num_steps == 7 and {"u", "u_truth", "u_error"} <= set(series.point_fields)
    np.testing.assert_allclose(series.point_fields["u_error"], series.point_fields["u"] - series.point_fields["u_truth"],
                               atol=1e-6)
    assert (tmp_path / "r" / "000000_error.png").stat().st_size > 5000
    assert (tmp_path / "r" / "000000_step.png").stat().st_size > 5000
    import json

    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["rmse_1"] <= metrics["rmse_all"] * 10 and "persistence_rmse_all" in metrics
    capsys.readouterr()
    assert main(["eval", str(ckpt), str(data), "--steps", "5"]) == 0
    table = capsys.readouterr().out
    assert table.count("\n") == 1 + 4 + 1  # header, 4 trajectories, mean
    assert main(["eval", str(ckpt), str(data), "--steps", "5", "--precision", "bf16", "--json",
                 str(tmp_path / "bf16.json")]) == 0
    half = json.loads((tmp_path / "bf16.json").read_text())
    assert main(["eval", str(ckpt), str(data), "--steps", "5", "--json", str(tmp_path / "fp32.json")]) == 0
    full = json.loads((tmp_path / "fp32.json").read_text())
    assert half["rmse_all"] != full["rmse_all"] and half["rmse_all"] == pytest.approx(full["rmse_all"], rel=0.1)
    assert main(["rollout", str(tmp_path / "nope.pt"), str(data), "--out", str(tmp_path / "x")]) == 2


def test_graph_transformer_trains_through_the_same_trainer(tmp_path, data):
    cfg = _config(tmp_path, data, steps=300)
    cfg.model.network = "graph_transformer"
    cfg.model.network_args = {"dim": 16, "layers": 2, "heads": 2, "dilation": [1, 2]}
    train(cfg, progress=False)
    log = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    losses = [float(row.split(",")[1]) for row in log[1:]]
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    model, _ = load_model(tmp_path / "run" / "checkpoint.pt")
    assert model.network.config["dilation"] == [1, 2]


def test_presets_come_from_the_chosen_network(tmp_path, data):
    """`model.preset` names a size of the configured network (the graph transformer's `tiny` here),
    explicit network_args override it, and an unknown preset lists the network's presets."""
    cfg = _config(tmp_path, data, steps=3)
    cfg.model.network, cfg.model.preset = "graph_transformer", "tiny"
    cfg.model.network_args = {"layers": 2}
    train(cfg, progress=False)
    model, _ = load_model(tmp_path / "run" / "checkpoint.pt")
    assert model.network.config["dim"] == 32 and model.network.config["layers"] == 2
    bad = _config(tmp_path / "b", data, steps=3)
    bad.model.preset = "tiny"  # a transformer size asked of MeshGraphNet
    with pytest.raises(SimError, match=r"model 'meshgraphnet' has no preset 'tiny' \(presets: paper, cpu\)"):
        train(bad, progress=False)


def test_tensorboard_log_holds_the_csv_losses(tmp_path, data):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(_config(tmp_path, data, steps=30), progress=False)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    board = [(e.step, e.value) for e in events.Scalars("train/loss")]
    log = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    csv_rows = [(int(r.split(",")[0]), float(r.split(",")[1])) for r in log]
    assert [s for s, _ in board] == [s for s, _ in csv_rows] == [10, 20, 30]
    np.testing.assert_allclose([v for _, v in board], [v for _, v in csv_rows], rtol=1e-6)


def test_half_precision_checkpoints_load_as_float32(tmp_path):
    import torch

    from sim.models.mesh.simulator import MeshSimulator
    from sim.train.checkpoint import load_model, save_checkpoint

    torch.manual_seed(0)
    model = MeshSimulator("meshgraphnet", {"latent": 32, "steps": 2}, ["u"], [1], edge_in=3)
    model.node_normalizer.accumulate(torch.randn(50, model.node_normalizer.sum.shape[0]))
    full = save_checkpoint(tmp_path / "full.pt", model)
    half = save_checkpoint(tmp_path / "half.pt", model, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    back, _ = load_model(half)
    for (k, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        assert b.dtype == a.dtype, k
        if a.dtype == torch.float64:  # normaliser statistics stay exact
            assert torch.equal(a, b), k
        else:
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)


def test_compressed_checkpoints_are_smaller_and_load_the_same_weights(tmp_path):
    import torch

    from sim.models.mesh.simulator import MeshSimulator
    from sim.train.checkpoint import load_model, save_checkpoint

    torch.manual_seed(0)
    model = MeshSimulator("meshgraphnet", {"latent": 32, "steps": 2}, ["u"], [1], edge_in=3)
    with torch.no_grad():  # weights with structure (as trained ones have): zeros in some rows
        for p in model.parameters():
            if p.dim() == 2:
                p[::2] = 0.0
    plain = save_checkpoint(tmp_path / "plain.pt", model, {"step": 3}, half=True)
    packed = save_checkpoint(tmp_path / "packed.pt", model, {"step": 3}, half=True, compress=True)
    assert packed.stat().st_size < 0.8 * plain.stat().st_size
    a, pa = load_model(plain)
    b, pb = load_model(packed)
    assert pb["train"] == pa["train"] == {"step": 3}
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k
    assert not list(tmp_path.glob("*.tmp*")) and sorted(p.name for p in tmp_path.iterdir()) == ["packed.pt", "plain.pt"]


def test_half_precision_checkpoints_halve_complex_spectral_weights(tmp_path):
    """GIOROM's Fourier weights are complex64: half storage keeps them as complex32 and loads them back as
    complex64 within half precision, with no warning about torch's experimental complex32."""
    import warnings

    import torch

    from sim.models.registry import build_model
    from sim.train.checkpoint import load_model, save_checkpoint

    torch.manual_seed(0)
    config = {"node_in": 6, "edge_in": 3, "out_dim": 2, "latent": 8, "mp_before": 1, "mp_after": 1, "grid": 8,
              "grid_channels": 8, "modes": 4, "processor_layers": 2}
    model = build_model("giorom", **config)
    model.registered_name, model.config = "giorom", config
    spectral = {k for k, v in model.state_dict().items() if v.is_complex()}
    assert spectral
    full = save_checkpoint(tmp_path / "full.pt", model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        half = save_checkpoint(tmp_path / "half.pt", model, half=True)
        back, _ = load_model(half)
    stored = torch.load(half, weights_only=True)["state_dict"]
    assert {stored[k].dtype for k in spectral} == {torch.complex32}
    nbytes = lambda sd: sum(v.numel() * v.element_size() for v in sd.values())  # noqa: E731
    assert nbytes(stored) < 0.55 * nbytes(torch.load(full, weights_only=True)["state_dict"])
    for k in spectral:
        a, b = model.state_dict()[k], back.state_dict()[k]
        assert b.dtype == torch.complex64
        torch.testing.assert_close(b, a, rtol=2e-3, atol=1e-4)


def test_a_budget_plans_its_steps_from_the_training_loop_not_the_run_setup(tmp_path, data, monkeypatch):
    import time

    from sim.families import configure
    from sim.train.trainer import steps_for_budget

    cfg = _config(tmp_path, data, clock="process")  # CPU time: what other jobs do not change
    task = configure(cfg)
    fast = steps_for_budget(cfg, task, 2.0, probe_steps=10)
    build = task.build_dataset

    def slow_setup(*args, **kwargs):  # a large data set: a CPU second to read before the first step
        start = time.process_time()
        while time.process_time() - start < 1.0:
            pass
        return build(*args, **kwargs)

    monkeypatch.setattr(task, "build_dataset", slow_setup)
    slow = steps_for_budget(cfg, task, 2.0, probe_steps=10)
    assert slow > 0.5 * fast  # counting the second of setup as 10 steps' work would plan < 18 steps
    assert slow > 18
