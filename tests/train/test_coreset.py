"""Coreset augmentation (train.augment_coreset, sim.plugins.training.coreset): greedy facility location,
the gradient proxy, and a training run that noises exactly the chosen samples with their
weights, re-chosen every `every` steps, learns and resumes exactly."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from sim.data.windows import MeshStepDataset
from sim.errors import SimError
from sim.families import train
from sim.models.mesh.simulator import MeshSimulator
from sim.plugins.training.coreset import (
    CoresetAugmentation,
    facility_location,
    facility_value,
    gradient_proxy,
    similarity,
)
from sim.train import Config, ConfigError
from sim.train.checkpoint import read_checkpoint
from tests.train.diffusion_data import diffusion_store


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return diffusion_store(tmp_path_factory.mktemp("coreset") / "diff.h5", trajectories=3, steps=10)


def _dict(out: Path, data: Path, steps: int = 42, noise_std: float = 0.01, **train_args) -> dict:
    return {
        "model": {"network_args": {"latent": 16, "steps": 2}, "fields": ["u"], "noise_std": noise_std},
        "data": {"train": str(data), "batch_size": 2},
        "optim": {"lr": 3e-3, "lr_final": 3e-4},
        "train": {"steps": steps, "out": str(out), "log_every": 7, "checkpoint_every": 1000,
                  "normalizer_accumulation_steps": 20, "tensorboard": False, **train_args},
    }


def test_greedy_facility_location_is_near_the_optimum_and_weights_count_every_sample():
    rng = np.random.default_rng(0)
    for trial in range(30):
        n, k = int(rng.integers(6, 11)), int(rng.integers(1, 5))
        x = rng.standard_normal((n, 3)) * rng.uniform(0.1, 3.0, 3)
        idx, weights = facility_location(x, k)
        sim = similarity(x)
        best = max(facility_value(sim, s) for s in itertools.combinations(range(n), k))
        got = facility_value(sim, idx)
        assert got >= (1 - 1 / math.e) * best - 1e-9, (trial, got, best)
        assert len(set(idx.tolist())) == k and weights.sum() == n and (weights >= 1).all()
        for i in range(k):  # lazy evaluation picks what plain greedy picks (a best gain at every step)
            gains = [facility_value(sim, [*idx[:i], j]) for j in range(n)]
            assert facility_value(sim, idx[:i + 1]) >= max(gains) - 1e-9
        # each weight counts the samples nearest to that chosen one
        d = np.linalg.norm(x[:, None] - x[idx][None], axis=-1)
        np.testing.assert_array_equal(weights, np.bincount(d.argmin(1), minlength=k))
    with pytest.raises(ValueError, match="k must be in 1..4"):
        facility_location(np.zeros((4, 2)), 5)


def test_clustered_features_give_one_sample_per_cluster():
    rng = np.random.default_rng(1)
    sizes = [3, 12, 5, 8, 1]
    centers = rng.standard_normal((len(sizes), 4)) * 10
    x = np.concatenate([c + 0.01 * rng.standard_normal((s, 4)) for c, s in zip(centers, sizes)])
    label = np.repeat(np.arange(len(sizes)), sizes)
    order = rng.permutation(len(x))
    x, label = x[order], label[order]
    idx, weights = facility_location(x, len(sizes))
    assert sorted(label[idx].tolist()) == list(range(len(sizes)))
    assert weights.tolist() == [sizes[c] for c in label[idx]]


def test_gradient_proxy_pools_each_sample_over_its_counted_nodes():
    r = torch.tensor([[1.0, 0.0], [3.0, 2.0], [100.0, 100.0], [5.0, -1.0], [7.0, -1.0]])
    graph = torch.tensor([0, 0, 0, 1, 1])
    mask = torch.tensor([True, True, False, True, True])
    f = gradient_proxy(r, graph, 2, mask)
    np.testing.assert_allclose(f, [[2.0, 1.0, 1.0, 1.0], [6.0, -1.0, 1.0, 0.0]])
    # a sample on a mesh twice as large with the same errors has the same proxy
    np.testing.assert_allclose(gradient_proxy(r[:2].repeat(2, 1)), gradient_proxy(r[:2]))


def test_upcoming_samples_and_selection_weights():
    aug = CoresetAugmentation(0.5, every=3, residual=None)
    batches = {s: [(2 * s) % 7, (2 * s + 1) % 7] for s in range(10)}
    assert aug.upcoming(4, batches.__getitem__) == [1, 2, 3, 4]  # steps 4, 5 (the period is 3..5), distinct
    assert aug.due(4) and aug.upcoming(3, batches.__getitem__) == [6, 0, 1, 2, 3, 4]
    feats = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [20.0]])
    chosen = aug.select([6, 0, 1, 2, 3, 4], feats)
    assert len(chosen) == 3 and sum(chosen.values()) == pytest.approx(3.0)  # weights average 1 over the coreset
    assert chosen[4] == pytest.approx(0.5) and {6, 0, 1} & set(chosen) and {2, 3} & set(chosen)
    aug.max_pool = 2  # chunks of at most 2 candidates: one of each pair
    chosen = aug.select([6, 0, 1, 2, 3, 4], feats)
    assert len(chosen) == 3 and all(w == pytest.approx(1.0) for w in chosen.values())


class _Recorder:
    """Records, for every training loss, each sample's (dataset index, noised?, loss weight) and
    every selection of the coreset (step -> {index: weight})."""

    def __init__(self, monkeypatch, dataset: MeshStepDataset):
        self.where = {key: i for i, key in enumerate(dataset.index)}
        self.steps: list[list[tuple[int, bool, float]]] = []
        self.selections: dict[int, dict[int, float]] = {}
        self._batch = None
        original = MeshSimulator.loss_residual, MeshSimulator.update, CoresetAugmentation.prepare
        rec = self

        def loss_residual(model, batch, generator=None):
            rec._batch = batch if model.training else None
            return original[0](model, batch, generator)

        def update(model, state, inputs, normalised=False):
            b = rec._batch
            if b is not None:  # the state the network sees in a training step
                noisy = (state - b.state).abs().sum(1) > 0
                rows = []
                for g, (entry, t) in enumerate(zip(b.entry, b.step.tolist())):
                    nodes = b.batch == g
                    w = b.loss_weight[nodes]
                    assert torch.all(w == w[0])  # one weight per sample
                    rows.append((rec.where[(entry, t)], bool(noisy[nodes].any()), float(w[0])))
                rec.steps.append(rows)
            return original[1](model, state, inputs, normalised)

        def prepare(aug, step, *args):
            before = aug.selections
            original[2](aug, step, *args)
            if aug.selections != before:
                rec.selections[step] = dict(aug.weights)

        monkeypatch.setattr(MeshSimulator, "loss_residual", loss_residual)
        monkeypatch.setattr(MeshSimulator, "update", update)
        monkeypatch.setattr(CoresetAugmentation, "prepare", prepare)


def test_training_noises_exactly_the_coreset_with_its_weights_and_reselects(tmp_path, data, monkeypatch):
    every, steps, fraction = 7, 42, 0.3
    rec = _Recorder(monkeypatch, MeshStepDataset(data, ["u"]))
    summary = train(Config.from_dict(_dict(tmp_path / "run", data, steps,
                                           augment_coreset={"fraction": fraction, "every": every})), progress=False)
    assert len(rec.steps) == steps
    assert sorted(rec.selections) == list(range(0, steps, every))  # re-chosen at the start of every period
    assert summary["coreset_selections"] == steps // every
    noised = 0
    for start, chosen in rec.selections.items():
        trained = [row for s in range(start, start + every) for row in rec.steps[s]]
        distinct = {i for i, _, _ in trained}
        assert set(chosen) <= distinct  # chosen among the samples of the period
        assert len(chosen) == max(1, math.floor(fraction * len(distinct) + 0.5))
        assert sum(chosen.values()) == pytest.approx(len(chosen))  # weights average 1 over the coreset
        assert len(set(chosen.values())) > 1  # they differ: each counts the samples it stands for
        for i, was_noised, weight in trained:
            assert was_noised == (i in chosen), (start, i)  # noise on exactly the coreset
            assert weight == pytest.approx(chosen.get(i, 1.0))  # and its weight in the loss
            noised += was_noised
    assert summary["noised_fraction"] == pytest.approx(noised / (2 * steps))
    assert 0.15 < summary["noised_fraction"] < 0.5


def test_mesh_loss_weights_each_sample_and_noises_only_flagged_ones(data):
    ds = MeshStepDataset(data, ["u"])
    torch.manual_seed(0)
    model = MeshSimulator("meshgraphnet", {"latent": 16, "steps": 2}, ["u"], [1], edge_in=3, noise_std=0.1)
    for n in (model.node_normalizer, model.edge_normalizer, model.output_normalizer):
        n.max_accumulations = 1
    batch = Batch.from_data_list([ds[0], ds[5]])
    model.train()
    model.loss(batch)  # fills (and freezes) the normalisers
    model.eval()
    clean, mask = model.loss_residual(batch)
    weight = torch.where(batch.batch == 0, 2.5, 0.5)
    batch.loss_weight = weight
    expected = ((clean ** 2) * weight[:, None])[mask].mean()
    torch.testing.assert_close(model.loss(batch), expected)
    assert not torch.allclose(expected, (clean ** 2)[mask].mean())
    model.train()
    batch.noise_scale = (batch.batch == 1).float()  # noise on the second sample only
    noisy, _ = model.loss_residual(batch, torch.Generator().manual_seed(0))
    first, second = batch.batch == 0, batch.batch == 1
    torch.testing.assert_close(noisy[first], clean[first])
    assert not torch.allclose(noisy[second & mask], clean[second & mask])


def test_fraction_one_trains_exactly_as_noise_on_every_sample(tmp_path, data):
    train(Config.from_dict(_dict(tmp_path / "all", data, 21)), progress=False)
    summary = train(Config.from_dict(_dict(tmp_path / "core", data, 21, augment_coreset={"fraction": 1, "every": 5})),
                    progress=False)
    assert summary["noised_fraction"] == 1.0
    a = read_checkpoint(tmp_path / "all" / "checkpoint.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "core" / "checkpoint.pt")["state_dict"]
    for k in a:  # the selection draws no random numbers and weight 1 leaves the loss unchanged
        assert torch.equal(a[k], b[k]), k


def test_training_with_a_coreset_learns(tmp_path, data):
    cfg = _dict(tmp_path / "run", data, 150, noise_std=0.001, augment_coreset={"fraction": 0.3, "every": 20})
    cfg["train"]["log_every"] = 10
    train(Config.from_dict(cfg), progress=False)
    losses = [float(r.split(",")[1]) for r in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert np.mean(losses[-3:]) < 0.4 * np.mean(losses[:3])


def test_interrupted_and_resumed_coreset_run_equals_uninterrupted(tmp_path, data):
    opts = {"augment_coreset": {"fraction": 0.4, "every": 5}}
    full = train(Config.from_dict(_dict(tmp_path / "a", data, 24, **opts)), progress=False)
    part = Config.from_dict(_dict(tmp_path / "b", data, 24, **opts))
    train(part, stop_after=13, progress=False)  # mid-period: the resumed run must reuse the stored coreset
    stored = read_checkpoint(tmp_path / "b" / "checkpoint.pt")["train"]["coreset"]
    assert stored["period"] == 2 and len(stored["indices"]) > 0
    resumed = train(part, resume=True, progress=False)
    a = read_checkpoint(tmp_path / "a" / "checkpoint.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "b" / "checkpoint.pt")["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed["coreset_selections"] == full["coreset_selections"] == 5
    assert resumed["noised_fraction"] == full["noised_fraction"]
    # the option changes what a step computes: a resume that changes it is refused
    changed = Config.from_dict(_dict(tmp_path / "b", data, 30, augment_coreset={"fraction": 0.5, "every": 5}))
    with pytest.raises(SimError, match=r"train\.augment_coreset\.fraction: 0\.4 -> 0\.5"):
        train(changed, resume=True, progress=False)


def test_config_errors_name_the_key(tmp_path, data):
    def build(value, **changes):
        d = _dict(tmp_path / "run", data, augment_coreset=value)
        for key, v in changes.items():
            section, name = key.split(".")
            d[section][name] = v
        return Config.from_dict(d)

    key = r"train\.augment_coreset"
    for value, match in [({"fraction": 0, "every": 5}, key + r"\.fraction must be a number in \(0, 1\].*got 0"),
                         ({"fraction": 1.5, "every": 5}, key + r"\.fraction must be a number in \(0, 1\].*got 1\.5"),
                         ({"fraction": "half", "every": 5}, key + r"\.fraction must be a number"),
                         ({"fraction": 0.3, "every": 0}, key + r"\.every must be an integer >= 1.*got 0"),
                         ({"fraction": 0.3, "every": 2.5}, key + r"\.every must be an integer >= 1.*got 2\.5"),
                         ({"fraction": 0.3}, key + r" needs every"),
                         ({"fraction": 0.3, "every": 5, "evry": 5}, key + r": unknown key 'evry'"),
                         (0.3, key + r" must be")]:
        with pytest.raises(ConfigError, match=match):
            build(value)
    with pytest.raises(ConfigError, match=key + r" chooses which samples get the input noise, but model\.noise_std"):
        build({"fraction": 0.3, "every": 5}, **{"model.noise_std": 0.0})
    with pytest.raises(ConfigError, match=key + r" .*train\.partitions > 1"):
        build({"fraction": 0.3, "every": 5}, **{"train.partitions": 2})
    for family in ("steady", "prose", "mmgp"):
        d = _dict(tmp_path / family, data, augment_coreset={"fraction": 0.3, "every": 5})
        d["model"] = {"family": family, "noise_std": 0.01}
        with pytest.raises(ConfigError, match=key + rf" .*the {family} family trains without input noise"):
            train(Config.from_dict(d), progress=False)
        assert not (tmp_path / family).exists()  # refused before anything was built or written


@pytest.fixture(scope="module")
def particles(tmp_path_factory):
    from tests.data.mpm_store import mpm_store

    return mpm_store(tmp_path_factory.mktemp("coreset_mpm") / "jelly.h5", material="jelly", frames=10)


def _particle_config(out: Path, data: Path, **train_args) -> Config:
    return Config.from_dict({
        "model": {"family": "particle", "network": "meshgraphnet", "noise_std": 1e-4,
                  "network_args": {"latent": 16, "steps": 2}},
        "data": {"train": str(data), "batch_size": 2},
        "optim": {"lr": 1e-2, "lr_final": 1e-3},
        "train": {"steps": 12, "out": str(out), "log_every": 4, "checkpoint_every": 1000, "tensorboard": False,
                  **train_args}})


def test_particle_runs_noise_only_the_coreset(tmp_path, particles, monkeypatch):
    from sim.models.particle.simulator import ParticleSimulator

    train(_particle_config(tmp_path / "all", particles), progress=False)
    train(_particle_config(tmp_path / "one", particles, augment_coreset={"fraction": 1.0, "every": 4}),
          progress=False)
    a = read_checkpoint(tmp_path / "all" / "checkpoint.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "one" / "checkpoint.pt")["state_dict"]
    for k in a:  # every sample chosen with weight 1: the run without the option
        assert torch.equal(a[k], b[k]), k
    seen = []
    residual, forward = ParticleSimulator.loss_residual, ParticleSimulator.forward
    current = {}

    def loss_residual(model, batch, generator=None):
        current["batch"] = batch if model.training else None
        return residual(model, batch, generator)

    def spy(model, history, particle_type, batch=None, network=None):
        b = current.get("batch")
        if b is not None:
            for g in range(int(b.batch.max()) + 1):
                nodes = b.batch == g
                seen.append((bool((history[nodes] != b.history[nodes]).any()), float(b.noise_scale[nodes][0]),
                             float(b.loss_weight[nodes][0])))
        return forward(model, history, particle_type, batch, network)

    monkeypatch.setattr(ParticleSimulator, "loss_residual", loss_residual)
    monkeypatch.setattr(ParticleSimulator, "forward", spy)
    summary = train(_particle_config(tmp_path / "half", particles, augment_coreset={"fraction": 0.5, "every": 4}),
                    progress=False)
    assert len(seen) == 24 and summary["coreset_selections"] == 3
    assert all(noised == (scale == 1.0) for noised, scale, _ in seen)
    assert sum(scale for _, scale, _ in seen) == pytest.approx(24 * summary["noised_fraction"])
    assert 0.3 < summary["noised_fraction"] < 0.7
    assert any(w != 1.0 for noised, _, w in seen if noised) and all(w == 1.0 for noised, _, w in seen if not noised)


def test_the_bench_reports_the_least_augmentation_that_matches_full_augmentations_error(monkeypatch):
    import importlib.util
    import sys

    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root / "scripts" / "bench"))
    spec = importlib.util.spec_from_file_location("coreset_bench_under_test", root / "scripts" / "bench" /
                                                  "coreset_augment.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)
    spec.loader.exec_module(bench)
    res = {"full_rmse_all": 0.40, "full_rmse_all_std": 0.02,
           "coreset0.3_rmse_all": 0.45, "coreset0.3_rmse_all_std": 0.03, "coreset0.3_noised_fraction": 0.3,
           "coreset0.5_rmse_all": 0.415, "coreset0.5_rmse_all_std": 0.01, "coreset0.5_noised_fraction": 0.5}
    assert bench.fraction_at_equal_error(res, ["coreset0.3", "coreset0.5"]) == (0.5, ["coreset0.5"])
    res["coreset0.3_rmse_all"] = 0.38  # better than full: equal or better at less augmentation
    assert bench.fraction_at_equal_error(res, ["coreset0.3", "coreset0.5"]) == (0.3, ["coreset0.3", "coreset0.5"])
    res["coreset0.3_rmse_all"], res["coreset0.5_rmse_all"] = 0.5, 0.6
    assert bench.fraction_at_equal_error(res, ["coreset0.3", "coreset0.5"]) == (None, [])
