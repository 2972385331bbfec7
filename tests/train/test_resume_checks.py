"""Resume continues the same run: metrics.csv without steps logged twice, and a changed
configuration refused unless the key is safe to change or accepted with --allow-change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sim.cli import main
from sim.errors import SimError
from sim.families import train, train_ensemble
from sim.train import Config
from sim.train.checkpoint import read_checkpoint
from sim.train.trainer import RESUMABLE, check_resume_config, config_changes
from tests.train.diffusion_data import diffusion_store


def _dict(tmp_path: Path, data: Path, **train) -> dict:
    return {
        "model": {"network_args": {"latent": 8, "steps": 1}, "fields": ["u"]},
        "data": {"train": str(data), "batch_size": 2},
        "optim": {"lr": 3e-3, "lr_final": 3e-4},
        "train": {"steps": 30, "out": str(tmp_path / "run"), "log_every": 5, "checkpoint_every": 10,
                  "normalizer_accumulation_steps": 5, "tensorboard": False, **train},
    }


def _config(tmp_path: Path, data: Path, **train) -> Config:
    return Config.from_dict(_dict(tmp_path, data, **train))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return diffusion_store(tmp_path_factory.mktemp("data") / "diff.h5", trajectories=2, steps=8)


class Killed(Exception):
    pass


def _kill_at(step: int):
    """An ``on_step`` that stops the run as a kill would: no checkpoint after the last one."""
    def on_step(s: int, seconds: float, model) -> None:
        if s == step:
            raise Killed
    return on_step


def _rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


def test_resumed_log_has_each_step_once_and_the_same_losses(tmp_path, data):
    full = _config(tmp_path / "a", data)
    train(full, progress=False)
    part = _config(tmp_path / "b", data)
    with pytest.raises(Killed):
        train(part, progress=False, on_step=_kill_at(17))  # checkpoint at 10, rows logged at 5, 10, 15
    log = tmp_path / "b" / "run" / "metrics.csv"
    assert [r[0] for r in _rows(log)] == ["step", "5", "10", "15"]
    with open(log, "a") as f:
        f.write("2")  # a row cut short by the kill
    assert read_checkpoint(tmp_path / "b" / "run" / "checkpoint.pt")["train"]["step"] == 10
    train(part, resume=True, progress=False)
    a, b = _rows(tmp_path / "a" / "run" / "metrics.csv"), _rows(log)
    assert [r[0] for r in b] == ["step", "5", "10", "15", "20", "25", "30"]
    assert [r[1] for r in a] == [r[1] for r in b]  # the same mean losses (seconds differ)


def test_resuming_a_finished_run_changes_nothing(tmp_path, data):
    # stopped by its time budget: a resume takes no further step and leaves checkpoint and log as they are
    budget = _config(tmp_path / "a", data, steps=10**6, max_seconds=0.3, checkpoint_every=10**6)
    first = train(budget, progress=False)
    ckpt, log = tmp_path / "a" / "run" / "checkpoint.pt", tmp_path / "a" / "run" / "metrics.csv"
    before = ckpt.read_bytes(), log.read_text()
    assert 0 < first["steps"] < 10**6
    assert train(budget, resume=True, progress=False)["steps"] == first["steps"]
    assert (ckpt.read_bytes(), log.read_text()) == before
    # finished its steps: the same
    done = _config(tmp_path / "b", data, steps=6)
    train(done, progress=False)
    ckpt = tmp_path / "b" / "run" / "checkpoint.pt"
    before = ckpt.read_bytes()
    assert train(done, resume=True, progress=False)["steps"] == 6 and ckpt.read_bytes() == before


def test_resume_refuses_a_changed_configuration_and_names_the_keys(tmp_path, data):
    cfg = _config(tmp_path, data, steps=10)
    train(cfg, progress=False)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    before = ckpt.read_bytes(), (tmp_path / "run" / "metrics.csv").read_text()
    changed = _dict(tmp_path, data, steps=20)
    changed["optim"]["lr"] = 1e-2
    changed["model"]["network_args"]["latent"] = 16
    with pytest.raises(SimError) as err:
        train(Config.from_dict(changed), resume=True, progress=False)
    msg = str(err.value)
    assert msg.startswith(f"{ckpt}: the configuration differs")
    assert "model.network_args.latent: 8 -> 16" in msg and "optim.lr: 0.003 -> 0.01" in msg
    assert "train.steps" not in msg and "--allow-change model.network_args.latent,optim.lr" in msg
    assert (ckpt.read_bytes(), (tmp_path / "run" / "metrics.csv").read_text()) == before  # nothing touched
    changed["model"]["network_args"]["latent"] = 8
    with pytest.raises(SimError, match=r"\(optim\.lr: 0\.003 -> 0\.01\)"):
        train(Config.from_dict(changed), resume=True, progress=False, allow_change=["model"])
    summary = train(Config.from_dict(changed), resume=True, progress=False, allow_change=["optim.lr"])
    assert summary["steps"] == 20
    assert read_checkpoint(ckpt)["train"]["config"]["optim"]["lr"] == 1e-2  # the next resume compares with this


def test_safe_keys_change_freely_and_unknown_allowances_are_refused(tmp_path, data):
    cfg = _config(tmp_path, data, steps=10)
    train(cfg, progress=False)
    stored = read_checkpoint(tmp_path / "run" / "checkpoint.pt")["train"]["config"]
    safe = _dict(tmp_path, data, steps=40, max_seconds=100.0, out=str(tmp_path / "moved"), log_every=7,
                 checkpoint_every=3, tensorboard=True, partitions=2)
    safe["data"]["num_workers"] = 1
    safe = Config.from_dict(safe)
    assert set(config_changes(stored, safe)) == set(RESUMABLE) - {"train.valid_every"}
    check_resume_config(stored, safe)
    with pytest.raises(SimError, match=r"--allow-change: no configuration key 'optim\.lrr'"):
        check_resume_config(stored, safe, ["optim.lrr"])
    old = {k: dict(v) for k, v in stored.items()}
    del old["train"]["clock"]  # a checkpoint written before the key existed: its default
    check_resume_config(old, cfg)
    cfg.train.clock = "process"
    with pytest.raises(SimError, match=r"train\.clock: 'wall' -> 'process'"):
        check_resume_config(old, cfg)


def test_ensemble_resume_checks_finished_members_too(tmp_path, data):
    cfg = _config(tmp_path, data, steps=4)
    train_ensemble(cfg, 2, progress=False)
    cfg.optim.lr = 1e-2
    with pytest.raises(SimError, match=r"member_0/checkpoint\.pt: the configuration differs .*\(optim\.lr: "):
        train_ensemble(cfg, 2, resume=True, progress=False)
    assert train_ensemble(cfg, 2, resume=True, progress=False, allow_change=["optim.lr"])["steps"] == 8


def test_cli_allow_change(tmp_path, data, capsys):
    path = tmp_path / "c.yaml"
    base = _dict(tmp_path, data, steps=4)
    path.write_text(yaml.safe_dump(base))
    assert main(["train", str(path)]) == 0
    base["optim"]["lr"] = 1e-2
    path.write_text(yaml.safe_dump(base))
    capsys.readouterr()
    assert main(["train", str(path), "--resume", "--steps", "6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.lr: 0.003 -> 0.01" in err[0] and "--allow-change optim.lr" in err[0]
    assert main(["train", str(path), "--allow-change", "optim.lr"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["train", str(path), "--resume", "--steps", "6", "--allow-change", "optim.lr,train.seed"]) == 0
    payload = read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert payload["train"]["step"] == 6 and payload["train"]["config"]["optim"]["lr"] == 1e-2


def test_resume_without_a_checkpoint_is_refused_but_an_ensemble_starts_missing_members(tmp_path, data):
    cfg = _config(tmp_path, data, steps=4)
    with pytest.raises(SimError, match=r"run/checkpoint\.pt: no checkpoint to resume"):
        train(cfg, resume=True, progress=False)
    assert not (tmp_path / "run").exists()
    train_ensemble(cfg, 2, progress=False)
    (tmp_path / "run" / "member_1" / "checkpoint.pt").unlink()
    summary = train_ensemble(cfg, 2, resume=True, progress=False)
    assert summary["steps"] == 8 and (tmp_path / "run" / "member_1" / "checkpoint.pt").exists()
