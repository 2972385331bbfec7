"""Self-tuned hyperparameters (train.self_tuning, sim.plugins.training.self_tuning): the range transform,
the best-response layers and their folding, the direction of a hyperparameter step, and
training runs that learn, log the values, stay in range, resume exactly and refuse bad options."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sim.errors import SimError
from sim.families import train
from sim.plugins.training.self_tuning import SelfTuning, from_unit, to_unit
from sim.train import Config, ConfigError
from sim.train.checkpoint import load_model, read_checkpoint
from sim.train.trainer import _apply_hypers
from tests.train.diffusion_data import diffusion_store


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return diffusion_store(tmp_path_factory.mktemp("self_tuning") / "diff.h5", trajectories=3, steps=10)


def _dict(out: Path, data: Path, steps: int = 40, tuning: dict | None = None, **train_args) -> dict:
    return {
        "model": {"network_args": {"latent": 16, "steps": 2}, "fields": ["u"], "noise_std": 0.01, "pushforward": 1},
        "data": {"train": str(data), "batch_size": 2},
        "optim": {"lr": 3e-3, "lr_final": 3e-4},
        "train": {"steps": steps, "out": str(out), "log_every": 5, "checkpoint_every": 1000,
                  "normalizer_accumulation_steps": 10, "tensorboard": False,
                  "self_tuning": {"noise_std": {"init": 0.01, "range": [0.001, 0.2]}, "every": 5}
                  if tuning is None else tuning, **train_args},
    }


def test_values_stay_in_their_range_and_the_transform_inverts():
    for lo, hi in ((1e-3, 0.3), (1e-7, 1e-2)):
        for value in (lo, math.sqrt(lo * hi), 0.5 * hi, hi):
            assert float(from_unit(torch.tensor(to_unit(value, lo, hi), dtype=torch.float64), lo, hi)) == \
                pytest.approx(value, rel=1e-4)
        # any finite u maps strictly inside (the sigmoid saturates to the ends only in float rounding)
        u = torch.linspace(-30, 30, 61, dtype=torch.float64)
        v = from_unit(u, lo, hi)
        assert (v >= lo).all() and (v <= hi).all() and (torch.diff(v) >= 0).all()


def test_folding_the_response_reproduces_the_scaled_network():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    tuner = SelfTuning(net, {"noise_std": (0.01, 0.001, 0.2), "weight_decay": (1e-4, 1e-6, 1e-2)})
    assert len(tuner.response) == 3 and all((r == 0).all() for r in tuner.response)
    with torch.no_grad():
        for r in tuner.response:
            r.normal_(0.0, 0.3)
    x = torch.randn(5, 3)
    du = torch.tensor([0.4, -0.7], dtype=torch.float64)
    tuner.delta = du
    scaled = net(x)
    tuner.delta = None
    assert not torch.allclose(net(x), scaled)  # the responses change the function
    tuner.fold(du)
    torch.testing.assert_close(net(x), scaled)  # ... and folding puts that change into the weights
    tuner.release()
    torch.testing.assert_close(net(x), scaled)  # a plain module again


def test_a_hyperparameter_step_moves_towards_a_lower_tuning_loss():
    net = nn.Linear(1, 1)
    with torch.no_grad():
        net.weight.fill_(1.0)
        net.bias.zero_()
    tuner = SelfTuning(net, {"noise_std": (0.01, 0.001, 0.2)}, lr=0.05, perturb=1e-3, entropy=0.0)
    with torch.no_grad():
        tuner.response[0].fill_(1.0)  # the best weight grows with u
    x = torch.ones(1, 1)
    before = tuner.values()["noise_std"]
    u0 = float(tuner.u.detach())
    for step in range(1, 6):  # the tuning loss wants the output at 2: larger u
        tuner.tune(step, lambda: ((net(x) - 2.0) ** 2).sum())
    assert float(tuner.u.detach()) > u0 and tuner.values()["noise_std"] > before
    assert float(net.weight.detach()) == pytest.approx(math.prod(1 + h for h in np.diff([u0] + [
        to_unit(r["noise_std"], 0.001, 0.2) for r in tuner.history])), rel=1e-4)  # each move folded in turn
    assert len(tuner.history) == 5 and {"step", "noise_std", "sigma_noise_std", "tuning_loss"} <= set(tuner.history[0])


def test_log_loss_steps_by_the_relative_change_and_warmup_holds_the_values():
    def tuned(log_loss: bool, scale: float) -> float:
        net = nn.Linear(1, 1)
        with torch.no_grad():
            net.weight.fill_(1.0)
            net.bias.zero_()
        tuner = SelfTuning(net, {"noise_std": (0.01, 0.001, 0.2)}, lr=0.05, perturb=1e-3, entropy=0.0,
                           log_loss=log_loss)
        with torch.no_grad():
            tuner.response[0].fill_(1.0)
        u0 = float(tuner.u.detach())
        loss = tuner.tune(1, lambda: scale * ((net(torch.ones(1, 1)) - 2.0) ** 2).sum())
        assert loss == pytest.approx(scale, rel=1e-2)  # the logged loss is the loss, not its log
        # the gradient of the objective, from Adam's first moment after one step ((1 - beta1) g)
        return float(tuner.optimizer.state[tuner.u]["exp_avg"][0]) / 0.1, float(tuner.u.detach()) - u0

    g_plain, du_plain = tuned(False, 1.0)
    g_big, _ = tuned(False, 100.0)
    g_log, du_log = tuned(True, 1.0)
    g_log_big, _ = tuned(True, 100.0)
    assert g_big == pytest.approx(100 * g_plain, rel=1e-6)  # the plain loss's gradient scales with the loss
    assert g_log_big == pytest.approx(g_log, rel=1e-6)  # the log's does not
    assert g_log == pytest.approx(g_plain, rel=1e-2) and du_log > 0 and du_plain > 0  # d log L = dL / L at L ~ 1

    tuner = SelfTuning(nn.Linear(1, 1), {"noise_std": (0.01, 0.001, 0.2)}, every=5, warmup=12)
    assert [s for s in range(1, 31) if tuner.due(s)] == [15, 20, 25, 30]
    assert [s for s in range(1, 16) if SelfTuning(nn.Linear(1, 1), {"noise_std": (0.01, 0.001, 0.2)},
                                                  every=5).due(s)] == [5, 10, 15]


def test_a_step_scales_the_batch_noise_and_sets_the_weight_decay():
    class B:
        num_nodes = 4
        state = torch.zeros(4, 1)

    cfg = Config.from_dict({"model": {"noise_std": 0.02}, "data": {"train": __file__}})
    opt = torch.optim.AdamW([{"params": [torch.zeros(2, requires_grad=True)]}], weight_decay=0.1)
    b = B()
    _apply_hypers({"noise_std": 0.05, "weight_decay": 1e-3}, b, opt, cfg)
    torch.testing.assert_close(b.noise_scale, torch.full((4,), 2.5))
    assert opt.param_groups[0]["weight_decay"] == 1e-3
    b.noise_scale = torch.tensor([0.0, 1.0, 2.0, 1.0])  # a coreset's marks are kept, scaled
    _apply_hypers({"noise_std": 0.01}, b, opt, cfg)
    torch.testing.assert_close(b.noise_scale, torch.tensor([0.0, 0.5, 1.0, 0.5]))


def test_a_self_tuned_run_learns_logs_its_values_in_range_and_saves_a_plain_model(tmp_path, data):
    learn = {"noise_std": {"init": 0.002, "range": [0.001, 0.2]}, "every": 5}
    train(Config.from_dict(_dict(tmp_path / "learn", data, 120, learn)), progress=False)
    losses = [float(r.split(",")[1]) for r in (tmp_path / "learn" / "metrics.csv").read_text().splitlines()[1:]]
    assert np.mean(losses[-3:]) < 0.4 * np.mean(losses[:3])

    tuning = {"noise_std": {"init": 0.15, "range": [0.001, 0.2]}, "weight_decay": {"range": [1e-6, 1e-2]},
              "every": 3, "lr": 0.5}  # a large lr: the values are pushed against their ranges
    summary = train(Config.from_dict(_dict(tmp_path / "run", data, 60, tuning)), progress=False)
    rows = list(csv.DictReader((tmp_path / "run" / "self_tuning.csv").open()))
    assert len(rows) == 20 and [int(float(r["step"])) for r in rows] == list(range(3, 61, 3))
    for r in rows:
        assert 0.001 <= float(r["noise_std"]) <= 0.2 and 1e-6 <= float(r["weight_decay"]) <= 1e-2
        assert math.isfinite(float(r["tuning_loss"]))
    assert len({r["noise_std"] for r in rows}) > 1  # it moved
    assert summary["self_tuned_noise_std"] == pytest.approx(float(rows[-1]["noise_std"]))
    # the checkpoint is a plain model (the responses are folded in), loadable as any other
    plain = train(Config.from_dict(_dict(tmp_path / "plain", data, 5, None, self_tuning=None)), progress=False)
    a = read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    b = read_checkpoint(Path(plain["checkpoint"]))
    assert a["state_dict"].keys() == b["state_dict"].keys()
    model, _ = load_model(tmp_path / "run" / "checkpoint.pt")
    assert not any(m._forward_hooks for m in model.modules())


def test_interrupted_and_resumed_self_tuned_run_equals_uninterrupted(tmp_path, data):
    full = train(Config.from_dict(_dict(tmp_path / "a", data, 24)), progress=False)
    part = Config.from_dict(_dict(tmp_path / "b", data, 24))
    train(part, stop_after=12, progress=False)
    assert len(read_checkpoint(tmp_path / "b" / "checkpoint.pt")["train"]["self_tuning"]["history"]) == 2
    resumed = train(part, resume=True, progress=False)
    a = read_checkpoint(tmp_path / "a" / "checkpoint.pt")
    b = read_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert resumed["self_tuning_history"] == full["self_tuning_history"]
    changed = Config.from_dict(_dict(tmp_path / "b", data, 30, {"noise_std": {"init": 0.02, "range": [0.001, 0.2]},
                                                                "every": 5}))
    with pytest.raises(SimError, match=r"train\.self_tuning\.noise_std\.init: 0\.01 -> 0\.02"):
        train(changed, resume=True, progress=False)


def test_the_tuning_rollout_may_reach_beyond_the_training_pushforward(tmp_path, data):
    from sim.families import configure

    tuning = {"noise_std": {"init": 0.01, "range": [0.001, 0.2]}, "every": 2, "rollout_steps": 4}
    cfg = Config.from_dict(_dict(tmp_path / "far", data, 8, tuning))
    family = configure(cfg)
    assert family.build_dataset(cfg)[0].future.shape[1] == 1  # training samples: pushforward 1
    tune_set = family.tuning_dataset(cfg, cfg.data.train)
    assert tune_set[0].future.shape[1] == 4  # the tuned step is the 5th after the clean state
    model = family.build_model(cfg, tune_set).eval()
    batch = family.collator(cfg, tune_set, model)([tune_set[0]], 0)
    near = Config.from_dict(_dict(tmp_path / "near", data, 8, {**tuning, "rollout_steps": 1}))
    with torch.no_grad():
        far_loss, near_loss = (float(family.tuning_loss(model, batch, c)) for c in (cfg, near))
    assert math.isfinite(far_loss) and far_loss != near_loss
    train(cfg, progress=False)
    rows = list(csv.DictReader((tmp_path / "far" / "self_tuning.csv").open()))
    assert len(rows) == 4 and all(math.isfinite(float(r["tuning_loss"])) for r in rows)


def test_config_errors_name_the_key(tmp_path, data):
    key = r"train\.self_tuning"
    for value, match in [({}, key + r" names no hyperparameter"),
                         ({"dropout": {"range": [0.1, 0.5]}}, key + r": unknown key 'dropout'"),
                         ({"noise_std": {"range": [0.2, 0.1]}}, key + r"\.noise_std\.range must be \[LO, HI\]"),
                         ({"noise_std": {"range": [0.0, 0.1]}}, key + r"\.noise_std\.range must be"),
                         ({"noise_std": [0.01, 0.1]}, key + r"\.noise_std must be \{init: V, range"),
                         ({"noise_std": {"init": 0.5, "range": [0.01, 0.1]}}, key + r"\.noise_std\.init must be a "
                                                                                     r"number in its range"),
                         ({"noise_std": {"range": [0.01, 0.1]}, "every": 0}, key + r"\.every must be an integer"),
                         ({"noise_std": {"range": [0.01, 0.1]}, "lr": -1}, key + r"\.lr must be a positive"),
                         ({"noise_std": {"range": [0.01, 0.1]}, "rollout_steps": -1},
                          key + r"\.rollout_steps must be an integer >= 0"),
                         ({"noise_std": {"range": [0.01, 0.1]}, "rollout_steps": 2.5},
                          key + r"\.rollout_steps must be an integer >= 0"),
                         ({"noise_std": {"range": [0.01, 0.1]}, "warmup": -1}, key + r"\.warmup must be an integer"),
                         ({"noise_std": {"range": [0.01, 0.1]}, "log_loss": 1}, key + r"\.log_loss must be true"),
                         (0.1, key + r" must be a mapping")]:
        with pytest.raises(ConfigError, match=match):
            Config.from_dict(_dict(tmp_path / "run", data, tuning=value))
    d = _dict(tmp_path / "run", data)
    d["model"]["noise_std"] = 0.0
    with pytest.raises(ConfigError, match=key + r"\.noise_std scales the model's input noise"):
        Config.from_dict(d)
    for family in ("steady", "prose"):
        d = _dict(tmp_path / family, data, tuning={"weight_decay": {"range": [1e-6, 1e-3]}})
        d["model"] = {"family": family}
        with pytest.raises(ConfigError, match=rf"the {family} family defines no tuning loss"):
            train(Config.from_dict(d), progress=False)
        assert not (tmp_path / family).exists()


def test_a_budget_with_a_tuning_warmup_plans_the_later_steps_at_the_tuned_cost(tmp_path, data, monkeypatch):
    import sim.train.trainer as trainer

    def fake_train(run, task, progress=None):  # a held step costs 10 ms, a tuned one (with its rollouts) 20 ms
        tuning = run.train.self_tuning
        tuned = tuning is not None and tuning.get("warmup", 0) < run.train.steps
        return {"seconds": run.train.steps * (0.02 if tuned else 0.01)}

    monkeypatch.setattr(trainer, "train", fake_train)
    tuning = {"noise_std": {"init": 0.01, "range": [0.001, 0.2]}, "every": 5}
    held = Config.from_dict(_dict(tmp_path / "w", data, 1, {**tuning, "warmup": 100}))
    # 9 usable seconds: 100 held steps (1 s), then 8 s of tuned ones
    assert trainer.steps_for_budget(held, None, 10.0, probe_steps=20) == 100 + 400
    # a budget that ends inside the warmup is all held steps
    assert trainer.steps_for_budget(held, None, 0.5, probe_steps=20) == 45
    # no warmup: every step at the tuned cost, from one probe
    assert trainer.steps_for_budget(Config.from_dict(_dict(tmp_path / "n", data, 1, tuning)), None, 10.0,
                                    probe_steps=20) == 450
    # a tuning period longer than the probe: the probe runs one whole period (a 20-step probe would
    # hold no hyperparameter step and plan at the held cost)
    calls = []
    monkeypatch.setattr(trainer, "train", lambda run, task, progress=None: calls.append(run.train.steps)
                        or fake_train(run, task))
    sparse = Config.from_dict(_dict(tmp_path / "s", data, 1, {**tuning, "every": 50, "warmup": 100}))
    assert trainer.steps_for_budget(sparse, None, 10.0, probe_steps=20) == 500
    assert calls == [20, 50]
    # no self-tuning at all: the plain cost
    plain = Config.from_dict(_dict(tmp_path / "p", data, 1, None, self_tuning=None))
    assert trainer.steps_for_budget(plain, None, 10.0, probe_steps=20) == 900
