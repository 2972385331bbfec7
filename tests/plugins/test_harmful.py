"""Harmful training data (SGD-influence on the validation rollout error): planted corrupted
trajectories rank first, and removing the top-ranked ones helps more than removing random ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim.families import train
from sim.mesh import Store, StoreWriter, Trajectory
from sim.plugins.diagnostics import harmful_samples, valid_rollout_error, validation_starts
from sim.train import Config, load_model
from tests.train.diffusion_data import diffusion_store

CORRUPTED = (2, 5)


def _copy_store(path, src, keep=None, corrupt=()):
    """``src``'s trajectories (those named in ``keep``), the ``corrupt`` ones (by position) with
    their frames stored in reverse order (a write-out bug: they sharpen instead of diffusing)."""
    with Store(src) as s, StoreWriter(path) as w:
        for i, name in enumerate(s.names()):
            if keep is not None and name not in keep:
                continue
            tr = s.read(name)
            u = np.asarray(tr.point_fields["u"]).copy()
            if i in corrupt:
                u = u[::-1].copy()
            w.append(Trajectory(tr.mesh, tr.times, point_fields={"u": u}, params=tr.params))
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("harmful")
    clean = diffusion_store(d / "clean.h5", trajectories=8, steps=10, seed=1)
    valid = diffusion_store(d / "valid.h5", trajectories=3, steps=10, seed=2)
    return _copy_store(d / "train.h5", clean, corrupt=CORRUPTED), valid


def _train(tmp_path, data, name):
    cfg = Config.from_dict({
        "model": {"network_args": {"latent": 16, "steps": 2}, "fields": ["u"]},
        "data": {"train": str(data), "batch_size": 2},
        "optim": {"lr": 3e-3, "lr_final": 3e-4},
        "train": {"steps": 250, "out": str(tmp_path / name), "log_every": 50, "checkpoint_every": 10_000,
                  "normalizer_accumulation_steps": 20, "seed": 0},
    })
    train(cfg, progress=False)
    return load_model(tmp_path / name / "checkpoint.pt")[0]


def test_planted_corrupted_trajectories_rank_first(tmp_path, stores):
    train_store, valid_store = stores
    model = _train(tmp_path, train_store, "all")
    res = harmful_samples(model, train_store, valid_store, samples_per_entry=9, valid_steps=5, lr=1e-3)
    with Store(train_store) as s:
        names = s.names()
    ranked = [n for n, _ in res.ranking()]
    assert set(ranked[:2]) == {names[i] for i in CORRUPTED}, res.ranking()
    assert all(res.scores[names[i]] < 0 for i in CORRUPTED)
    payload = res.to_dict()
    assert payload["ranking"][0]["entry"] == ranked[0] and payload["replayed_steps"] == 8 * 9


def test_removing_the_top_ranked_lowers_validation_error_more_than_random(tmp_path, stores):
    train_store, valid_store = stores
    model = _train(tmp_path, train_store, "all")
    before = [p.detach().clone() for p in model.parameters()]
    res = harmful_samples(model, train_store, valid_store, samples_per_entry=9, valid_steps=5, lr=1e-3)
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q)  # the estimate does not move the model
    with Store(train_store) as s:
        names = s.names()
    top = {n for n, _ in res.ranking()[:2]}
    rng = np.random.default_rng(0)
    random_pairs = [set(rng.choice(names, 2, replace=False)) for _ in range(2)]

    vs = validation_starts(model, valid_store, 5)

    def error_without(drop, tag):
        kept = _copy_store(tmp_path / f"{tag}.h5", train_store, keep=[n for n in names if n not in drop])
        m = _train(tmp_path, kept, tag)
        with torch.no_grad():
            return float(valid_rollout_error(m, vs, 5))

    e_top = error_without(top, "no_top")
    e_random = [error_without(d, f"no_random{i}") for i, d in enumerate(random_pairs)]
    assert e_top < min(e_random), (e_top, e_random)


def test_cli_prints_the_ranking_and_writes_json(tmp_path, stores, capsys):
    import json

    from sim.cli import main

    train_store, valid_store = stores
    _train(tmp_path, train_store, "cli")
    out = tmp_path / "harmful.json"
    assert main(["diagnose", "harmful", str(tmp_path / "cli" / "checkpoint.pt"), str(train_store), "--valid",
          str(valid_store), "--samples-per-entry", "9", "--valid-steps", "5", "--top", "3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert len(payload["ranking"]) == 8 and "5 more" in text
    assert payload["ranking"][0]["entry"] in text.split("removing it lowers")[1].splitlines()[1]
    assert main(["diagnose", "harmful", str(tmp_path / "cli" / "checkpoint.pt"), str(train_store)]) != 0
    assert "no validation store: give --valid" in capsys.readouterr().err
