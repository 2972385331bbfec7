"""The test conditions of the PROSE ablation (scripts/bench/prose.py): shortened observed windows
(fixed and random), stronger symbol noise, parameters outside the training range, data-only
evaluation, the gain table over seeds, and the bench's training with shortened windows."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from sim.errors import SimError
from sim.families import get_family, load_model_file
from sim.mesh import StoreWriter
from sim.models.prose import PROSE, PROSECollator, SymbolVocabulary
from sim.models.prose.data import parameter_box, parameter_excess, sample_from_trajectory
from sim.models.prose.evaluate import evaluate
from sim.symbolic import split_components
from sim.train import Config
from sim.train.checkpoint import load_model
from solvers import Rejected
from solvers.odes import SYSTEMS, generate
from solvers.recipes import generate_entry, load_recipe

ROOT = Path(__file__).resolve().parents[2]
VOCAB = SymbolVocabulary()
LTS = ["lorenz", "thomas", "rossler"]
TINY = {"max_dim": 3, "width": 32, "heads": 2, "ffn": 64, "data_layers": 1, "symbol_layers": 1, "fusion_layers": 1,
        "data_decoder_layers": 1, "symbol_decoder_layers": 1, "time_frequencies": 4}


def samples_of(n, num_points=96, t_end=3.0, seed0=0, **params):
    """``n`` generated Lorenz / Thomas / Rossler trajectories as PROSE samples."""
    out, seed = [], seed0
    while len(out) < n:
        try:
            traj = generate({"systems": LTS, "num_points": num_points, "t_end": t_end, **params}, seed)
            out.append(sample_from_trajectory(traj, VOCAB, f"{seed:06d}"))
        except Rejected:
            pass
        seed += 1
    return out


def short_store(path: Path, n: int) -> Path:
    """A store of ``n`` short generated Lorenz / Thomas / Rossler trajectories (48 points)."""
    with StoreWriter(path) as w:
        for s in range(20):
            try:
                w.append(generate({"systems": LTS, "num_points": 48, "t_end": 1.5}, s))
            except Rejected:
                pass
            if len(w.names()) == n:
                break
    return path


def bench_module(monkeypatch):
    """scripts/bench/prose.py as a module (its helpers; main() is not run)."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts" / "bench"))
    spec = importlib.util.spec_from_file_location("prose_bench_under_test", ROOT / "scripts" / "bench" / "prose.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# -- shortened windows -------------------------------------------------------------------------
def test_observed_points_keep_the_last_points_before_the_predicted_window():
    samples = samples_of(4)
    full = PROSECollator(VOCAB, 3, input_points=64, symbols="clean")(samples)
    short = PROSECollator(VOCAB, 3, input_points=64, symbols="clean", observed_points=16)(samples)
    assert full.times_in.shape == (4, 64) and full.values_in.shape == (4, 64, 3)
    assert short.times_in.shape == (4, 16) and short.values_in.shape == (4, 16, 3)
    for i, s in enumerate(samples):  # points 48..63: the 16 just before the prediction starts (point 64)
        np.testing.assert_allclose(short.times_in[i].numpy(), s.times[48:64], rtol=1e-6)
        np.testing.assert_allclose(short.values_in[i].numpy(), s.state[48:64], rtol=1e-5, atol=1e-6)
    # the predicted window and the symbols do not change
    assert torch.equal(short.times_out, full.times_out) and short.times_out.shape == (4, 32)
    assert torch.equal(short.values_out, full.values_out) and torch.equal(short.symbols_in, full.symbols_in)


def test_data_noise_of_a_short_window_is_relative_to_that_window():
    samples = samples_of(8)
    clean = PROSECollator(VOCAB, 3, symbols="off", observed_points=16)(samples)
    noisy = PROSECollator(VOCAB, 3, symbols="off", observed_points=16, data_noise=0.05)(samples)
    noise = (noisy.values_in - clean.values_in).numpy()
    rms = np.sqrt((clean.values_in.numpy() ** 2).mean(axis=(1, 2)))
    ratio = noise.std(axis=(1, 2)) / rms
    assert np.all((ratio > 0.03) & (ratio < 0.07)), ratio


def test_random_truncation_draws_windows_between_the_minimum_and_the_full_window():
    samples = samples_of(3)
    col = PROSECollator(VOCAB, 3, input_points=64, symbols="noisy", pool=[["x0"]], min_input_points=16,
                        p_truncate=0.5, seed=3)
    lengths = []
    for _ in range(200):
        b = col(samples)
        k = b.times_in.shape[1]
        lengths.append(k)
        np.testing.assert_allclose(b.times_in[0].numpy(), samples[0].times[64 - k:64], rtol=1e-6)
        assert b.times_out.shape[1] == 32
    lengths = np.array(lengths)
    assert lengths.min() >= 16 and lengths.max() == 64
    truncated = lengths < 64
    assert 0.35 < truncated.mean() < 0.65  # p_truncate = 0.5 (k = 64 can also be drawn: rarely)
    assert len(set(lengths[truncated])) > 20  # spread over [16, 63]
    # no truncation: the windows and the symbol noise of every batch are those of a plain collator
    plain = PROSECollator(VOCAB, 3, symbols="noisy", pool=[["x0"]], seed=3)
    off = PROSECollator(VOCAB, 3, symbols="noisy", pool=[["x0"]], seed=3, min_input_points=16, p_truncate=0.0)
    for _ in range(5):
        a, b = plain(samples), off(samples)
        assert a.times_in.shape[1] == 64 and torch.equal(a.symbols_in, b.symbols_in)


@pytest.mark.parametrize("kwargs, match", [
    ({"observed_points": 0}, "observed_points"), ({"observed_points": 65}, "observed_points"),
    ({"p_truncate": 0.5}, "min_input_points"), ({"p_truncate": 0.5, "min_input_points": 80}, "min_input_points"),
    ({"p_truncate": 1.5, "min_input_points": 8}, "probability"),
    ({"p_truncate": 0.5, "min_input_points": 8, "observed_points": 16}, "exclude"),
])
def test_collator_refuses_inconsistent_window_settings(kwargs, match):
    with pytest.raises(SimError, match=match):
        PROSECollator(VOCAB, 3, input_points=64, **kwargs)


# -- wrong terms -------------------------------------------------------------------------------
def changed_terms(ids, sample):
    """Number of top-level terms added or removed in a symbol input, against the true skeleton."""
    toks = VOCAB.to_tokens(ids)
    comps = split_components(toks)
    assert len(comps) == sample.dim
    changes = 0
    for comp, true in zip(comps, sample.skeleton_terms):
        got = Counter(map(tuple, VOCAB.terms(comp)))
        want = Counter(map(tuple, true))
        changes += sum(((got - want) + (want - got)).values())
    return changes


def test_wrong_terms_corrupt_more_terms_than_the_standard_noise():
    samples = samples_of(30)
    pool = sorted({tuple(t) for s in samples for comp in s.skeleton_terms for t in comp})
    rng_std, rng_wrong = np.random.default_rng(0), np.random.default_rng(0)
    standard = PROSECollator(VOCAB, 3, symbols="noisy", pool=pool)  # PROSE: 0.15 each
    wrong = PROSECollator(VOCAB, 3, symbols="noisy", pool=pool, p_delete=0.4, p_insert=0.4)
    n_std, n_wrong = [], []
    for _ in range(40):
        for s in samples:
            n_std.append(changed_terms(standard.skeleton_ids(s, rng_std), s))
            n_wrong.append(changed_terms(wrong.skeleton_ids(s, rng_wrong), s))
    # at most one deletion and one insertion each (an insertion may add a term already there: 1 change)
    assert max(n_std) <= 2 and max(n_wrong) <= 2
    # expected changes: ~2 p (0.3 and 0.8), a bit less when an inserted term re-adds the deleted one
    assert 0.2 < np.mean(n_std) < 0.35 and 0.65 < np.mean(n_wrong) < 0.85
    assert np.mean(n_wrong) > 2 * np.mean(n_std)


# -- parameters outside the training range -----------------------------------------------------
def fake_sample(system, **parameters):
    s = samples_of(1)[0]
    s.system, s.parameters = system, dict(parameters)
    return s


def test_parameter_excess_is_distance_from_the_centre_in_half_widths():
    train = [fake_sample("thomas", b=0.2), fake_sample("thomas", b=0.3)]
    box = parameter_box(train)
    assert box == {"thomas": {"b": (0.2, 0.3)}}
    assert parameter_excess(fake_sample("thomas", b=0.25), box) == pytest.approx(0.0)
    assert parameter_excess(fake_sample("thomas", b=0.3), box) == pytest.approx(1.0)
    assert parameter_excess(fake_sample("thomas", b=0.15), box) == pytest.approx(2.0)
    two = parameter_box([fake_sample("lorenz", sigma=9.0, rho=27.0), fake_sample("lorenz", sigma=11.0, rho=29.0)])
    assert parameter_excess(fake_sample("lorenz", sigma=10.0, rho=32.0), two) == pytest.approx(4.0)  # the worst
    with pytest.raises(SimError, match="no parameter range"):
        parameter_excess(fake_sample("rossler", a=0.2, b=0.2, c=5.7), box)
    with pytest.raises(SimError, match="parameters"):
        parameter_excess(fake_sample("thomas", c=1.0), box)


def test_stored_samples_carry_their_parameters():
    traj = generate({"systems": ["lorenz"], "num_points": 96, "t_end": 3.0}, 0)
    s = sample_from_trajectory(traj, VOCAB)
    assert s.parameters == traj.params["parameters"] and set(s.parameters) == {"sigma", "rho", "beta"}


def test_ood_split_lies_outside_the_training_parameter_range():
    """The recipe's ood_test splits draw +/-30 % of nominal (train and test keep +/-10 %, unchanged);
    the bench's filter (excess >= 2 against the training split's range) keeps entries with a parameter
    at least ~20 % from nominal, and no training entry would pass it."""
    recipe = load_recipe(ROOT / "datasets" / "ode_systems.yaml")
    for size, counts in (("lts_small", {"train": 2000, "test": 150}), ("lts_medium", {"train": 12000, "test": 300})):
        splits = {s.name: s for s in recipe.splits(size)}
        assert {k: splits[k].count for k in counts} == counts  # the existing splits are unchanged
        assert "param_spread" not in splits["train"].params and "param_spread" not in splits["test"].params
        assert splits["ood_test"].params["param_spread"] == 0.3 and splits["ood_test"].params["systems"] == LTS
    splits = {s.name: s for s in recipe.splits("lts_small")}

    def entries(split, n):
        return [sample_from_trajectory(generate_entry(recipe.generator, splits[split].params, recipe.seed, split, i),
                                       VOCAB) for i in range(n)]

    train, ood = entries("train", 150), entries("ood_test", 60)
    box = parameter_box(train)
    nominal = {name: SYSTEMS[name].params for name in LTS}

    def off_nominal(s):
        return max(abs(v / nominal[s.system][k] - 1) for k, v in s.parameters.items())

    assert max(off_nominal(s) for s in train) <= 0.1 + 0.006  # +/-10 %, 3 significant digits
    assert max(parameter_excess(s, box) for s in train) <= 1.0 + 1e-9
    kept = [s for s in ood if parameter_excess(s, box) >= 2.0]
    assert len(kept) >= 0.4 * len(ood)
    for s in kept:
        assert off_nominal(s) > 0.18, (s.system, s.parameters)  # clearly outside +/-10 %
        assert any(not lo <= s.parameters[k] <= hi for k, (lo, hi) in box[s.system].items())
    assert max(off_nominal(s) for s in ood) <= 0.3 + 0.006


# -- evaluation and the gain table -------------------------------------------------------------
def test_evaluate_without_equations_gives_the_same_data_error():
    torch.manual_seed(0)
    model = PROSE(**TINY).eval()
    samples = samples_of(4)
    col = PROSECollator(VOCAB, 3, symbols="clean")
    full = evaluate(model, samples, col, max_len=8)
    data = evaluate(model, samples, PROSECollator(VOCAB, 3, symbols="clean"), equations=False)
    assert data["data_rel_l2_mean"] == pytest.approx(full["data_rel_l2_mean"], rel=1e-6)
    assert "valid_fraction" in full and "valid_fraction" not in data
    # an untrained model's equations fit no window: its fused prediction is the decoder's
    fused = evaluate(model, samples, PROSECollator(VOCAB, 3, symbols="clean"), max_len=8, fuse_tol=0.05)
    assert fused["fused_fraction"] == 0.0
    assert fused["fused_rel_l2_mean"] == pytest.approx(full["data_rel_l2_mean"], rel=1e-6)
    assert "fused_rel_l2_mean" not in full


def test_gain_table_means_spreads_and_conditions_beyond_their_spread(monkeypatch):
    bench = bench_module(monkeypatch)

    def seed(s, std_m, std_d, short_m, short_d):
        return {"seed": s, "conditions": {
            "standard": {"multimodal_rel_l2": std_m, "data_only_rel_l2": std_d},
            "short_window": {"multimodal_rel_l2": short_m, "data_only_rel_l2": short_d}}}

    table, exceeds = bench.gain_table([seed(0, 0.10, 0.12, 0.5, 0.45), seed(1, 0.10, 0.14, 0.5, 0.65)])
    assert list(table) == ["standard", "short_window"]
    assert table["standard"]["mean"] == pytest.approx(1.3)
    assert table["standard"]["std"] == pytest.approx(np.std([1.2, 1.4], ddof=1))  # sample spread over seeds
    assert table["standard"]["data_only_rel_l2"] == pytest.approx(0.13)
    assert [r["gain"] for r in table["standard"]["per_seed"]] == pytest.approx([1.2, 1.4])
    # short_window: gains 0.9 and 1.3, mean 1.1 but spread 0.28: not beyond the spread
    assert table["short_window"]["mean"] == pytest.approx(1.1) and table["short_window"]["std"] == pytest.approx(
        np.std([0.9, 1.3], ddof=1))
    assert exceeds == ["standard"]
    one, none = bench.gain_table([seed(0, 0.1, 0.2, 0.5, 0.6)])
    assert one["standard"]["std"] is None and none == []  # one seed: no spread, no claim


def test_family_trains_on_shortened_windows_and_its_checkpoint_loads(tmp_path):
    path = short_store(tmp_path / "train.h5", 6)
    cfg = Config.from_dict({
        "model": {"family": "prose", "network": "prose", "network_args": TINY,
                  "family_args": {"input_points": 16, "min_input_points": 4, "p_truncate": 1.0}},
        "data": {"train": str(path), "batch_size": 6},
        "optim": {"name": "adamw", "lr": 1e-3},
        "train": {"steps": 4, "out": str(tmp_path / "run"), "log_every": 2, "checkpoint_every": 1000}})
    family = get_family("prose")
    family.check_config(cfg)
    dataset = family.build_dataset(cfg)
    collate = family.collator(cfg, dataset, family.build_model(cfg, dataset))
    lengths = {collate(list(dataset), step).times_in.shape[1] for step in range(30)}
    assert min(lengths) >= 4 and max(lengths) <= 16 and len(lengths) > 3

    from sim.train.trainer import train

    summary = train(cfg, family, progress=False)
    assert summary["steps"] == 4
    model, payload = load_model(summary["checkpoint"])
    assert payload["train"]["config"]["model"]["family_args"]["p_truncate"] == 1.0
    fam, again, _ = load_model_file(summary["checkpoint"])
    ev = fam.evaluate(again, path, None)
    assert len(ev.rows) == 6 and np.isfinite(ev.summary["data_rel_l2_mean"])


def test_a_bench_process_waits_for_a_run_another_one_trains(monkeypatch, tmp_path):
    import subprocess
    import sys
    import threading
    import time

    bench = bench_module(monkeypatch)
    lock = tmp_path / "training.lock"
    bench.wait_for_other(lock, "run")  # no lock: no wait
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(str(dead.pid))
    t = time.perf_counter()
    bench.wait_for_other(lock, "run", poll_s=5.0)  # its process is gone: a stale lock
    assert time.perf_counter() - t < 1.0
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock.write_text(str(alive.pid))
        threading.Timer(0.5, lock.unlink).start()  # the other process finishes its run
        t = time.perf_counter()
        bench.wait_for_other(lock, "run", poll_s=0.05)
        assert 0.4 < time.perf_counter() - t < 5.0
    finally:
        alive.kill()


def test_a_finished_bench_run_is_continued_to_a_larger_budget_and_retrained_on_any_other_change(
        monkeypatch, tmp_path):
    bench = bench_module(monkeypatch)
    path = short_store(tmp_path / "train.h5", 4)
    cfg = {"model": {"family": "prose", "network": "prose", "network_args": TINY,
                     "family_args": {"input_points": 16}},
           "data": {"train": str(path), "batch_size": 4},
           "optim": {"name": "adamw", "lr": 1e-3, "schedule": "inverse_sqrt", "warmup_steps": 2},
           "train": {"steps": 10**9, "max_seconds": 0.5, "clock": "process", "out": str(tmp_path / "run"),
                     "log_every": 1, "checkpoint_every": 10**9, "seed": 0}}
    first = bench.train_job(cfg, resume=True)
    longer = json.loads(json.dumps(cfg))
    # beyond what the first part spent (its first step alone can take seconds on a loaded machine, and a
    # run whose budget is spent resumes as a no-op)
    longer["train"]["max_seconds"] = budget = float(np.ceil(first["seconds"])) + 1.5
    assert bench.shorter_budget(cfg, longer) and not bench.shorter_budget(longer, cfg)
    other = json.loads(json.dumps(longer))
    other["optim"]["lr"] = 2e-3
    assert not bench.shorter_budget(cfg, other) and not bench.shorter_budget(None, longer)

    second = bench.train_job(longer, resume=True)
    assert second["steps"] > first["steps"] and second["seconds"] >= budget  # totals over both parts
    steps = [int(line.split(",")[0]) for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, second["steps"] + 1))  # one log, continued, no step twice
    assert bench.train_job(longer, resume=True) == second  # finished with this budget: reused
    other["train"]["max_seconds"] = 0.5
    third = bench.train_job(other, resume=True)  # another learning rate: trained afresh, not continued
    # a run that starts at step 0 reports its first loss, a continued one does not (step counts per CPU
    # second are no marker: they vary with the machine's load)
    assert second["first_loss"] is None and third["first_loss"] is not None
    steps = [int(line.split(",")[0]) for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, third["steps"] + 1))
