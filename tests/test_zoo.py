"""The model zoo (:mod:`sim.zoo`): every shipped model beats its baseline on a case that no
training set holds, generated fresh with our solver; the zoo's machinery (``zoo:<name>`` in
``sim.load`` and the CLI, ``sim zoo list``, its errors) on a fake entry; a quick build of
scripts/zoo/build.py."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import sim
import sim.zoo
from sim.cli import main
from sim.errors import SimError
from sim.mesh import StoreWriter
from sim.zoo import ZooEntry
from tests.train.diffusion_data import diffusion_store

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "scripts" / "zoo" / "build.py"
FRESH_SEED = 999_000  # generator seeds of the fresh cases: the recipes derive theirs from (seed, split, index)
HORIZONS = ("1", "10", "20", "50", "100", "200", "all")


@functools.cache
def builder() -> Any:
    """scripts/zoo/build.py as a module (its mean-field baseline, its checkpoint packaging)."""
    spec = importlib.util.spec_from_file_location("zoo_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- fresh cases
def fresh_params(entry: ZooEntry) -> dict[str, Any]:
    """The generator parameters of the entry's test split (entry.yaml's ``data_params``, else the recipe's)."""
    from solvers.recipes import load_recipe

    if entry.extra.get("data_params"):
        return dict(entry.extra["data_params"])
    splits = {s.name: s for s in load_recipe(entry.recipe).splits(entry.size)}
    return dict(splits["test"].params)


def draw(entry: ZooEntry, params: dict[str, Any], k: int = 0) -> Any:
    """One new sample of the entry's recipe generator from seed FRESH_SEED + 10 k (+ 1, 2, ... when
    the generator rejects a draw, as the recipes redraw)."""
    from solvers import Rejected
    from solvers.recipes import load_recipe, resolve

    generate = resolve(load_recipe(entry.recipe).generator)
    for attempt in range(5):
        try:
            return generate(params, FRESH_SEED + 10 * k + attempt)
        except Rejected:
            continue
    raise AssertionError(f"the {entry.recipe} generator rejected 5 fresh draws")


def store_of(path: Path, samples: list[Any]) -> Path:
    with StoreWriter(path) as w:
        for i, s in enumerate(samples):
            w.append(s, name=f"fresh{i}")
    return path


def rollout_case(entry: ZooEntry, tmp_path: Path, length: dict[str, int]) -> tuple[dict, dict]:
    """Rollout RMSE (``sim.evaluate``) of a fresh short trajectory against persistence's, at the
    horizons the entry reports that the trajectory reaches, and over all its steps."""
    store = store_of(tmp_path / "fresh.h5", [draw(entry, {**fresh_params(entry), **length})])
    ev = sim.evaluate(f"zoo:{entry.name}", store)
    keys = [h for h in HORIZONS if f"rmse_{h}" in ev and (f"rmse_{h}" in entry.metrics or h == "all")]
    return {f"rmse_{h}": ev[f"rmse_{h}"] for h in keys}, {f"rmse_{h}": ev[f"persistence_rmse_{h}"] for h in keys}


def fresh_mesh(entry: ZooEntry, tmp_path: Path) -> tuple[dict, dict]:
    """Mesh time stepping (cylinder flow): 51 steps after the recipe's warm-up, so the rollout
    reaches the 50-step horizon (~10-20 s of CFD)."""
    return rollout_case(entry, tmp_path, {"num_steps": 52})


def fresh_particle(entry: ZooEntry, tmp_path: Path) -> tuple[dict, dict]:
    """Particles (MPM): 60 frames at the entry's resolution (a second or two of MPM)."""
    return rollout_case(entry, tmp_path, {"frames": 60})


def fresh_mmgp(entry: ZooEntry, tmp_path: Path) -> tuple[dict, dict]:
    """A steady sample (a new plate): PLAID's RRMSE of each field (``sim.evaluate``) against the
    mean-field baseline of scripts/zoo/build.py."""
    from sim.families.steady import rrmse

    mesh = draw(entry, fresh_params(entry))
    ev = sim.evaluate(f"zoo:{entry.name}", store_of(tmp_path / "fresh.h5", [mesh]))
    model = sim.load(f"zoo:{entry.name}").model
    fields = list(model.field_components_)
    base = {f"rrmse_{f}": rrmse(builder().mean_field(model, mesh, f), np.asarray(mesh.point_data[f]).reshape(
        mesh.num_points, -1)) for f in fields}
    base["rrmse_fields"] = float(np.mean(list(base.values())))
    return {k: ev[k] for k in base}, base


def fresh_prose(entry: ZooEntry, tmp_path: Path) -> tuple[dict, dict]:
    """ODE trajectories, one per system the model knows (milliseconds each): the data relative L2
    of the predicted future (``sim.evaluate``) against holding the last observed value."""
    params = fresh_params(entry)
    systems = params.get("systems")
    systems = [systems] if isinstance(systems, str) and systems != "all" else systems
    if not isinstance(systems, list):
        from solvers.odes.catalogue import SYSTEMS

        systems = list(SYSTEMS)
    samples = [draw(entry, {**params, "systems": [s]}, k) for k, s in enumerate(systems)]
    ev = sim.evaluate(f"zoo:{entry.name}", store_of(tmp_path / "fresh.h5", samples))
    return {"data_rel_l2": ev["data_rel_l2_mean"]}, {"data_rel_l2": ev["baseline_rel_l2"]}


FRESH = {"mesh": fresh_mesh, "particle": fresh_particle, "mmgp": fresh_mmgp, "prose": fresh_prose}


@pytest.mark.parametrize("name", [e.name for e in sim.zoo.entries()])
def test_shipped_model_beats_its_baseline_on_a_fresh_case(name, tmp_path):
    entry = sim.zoo.entry(name)
    if entry.family not in FRESH:
        pytest.fail(f"zoo entry {name!r} is a {entry.family!r} model and tests/test_zoo.py has no fresh-case "
                    f"function for that family: add one to FRESH")
    model, baseline = FRESH[entry.family](entry, tmp_path)
    assert model and model.keys() == baseline.keys()
    worse = {k: (model[k], baseline[k]) for k in model if not model[k] < baseline[k]}
    assert not worse, f"{name}: not better than the baseline ({entry.baseline}) on a fresh case: {worse}"


# --------------------------------------------------------------------------- the machinery, on a fake entry
ENTRY = {"name": "fake", "family": "mesh", "model": "model.pt", "recipe": "cylinder_flow", "size": "small",
         "data_seed": 1, "train_cpu_hours": 0.01, "metrics": {"rmse_1": 0.5, "persistence_rmse_all": 1.0},
         "command": "python scripts/zoo/build.py fake", "description": "a fake entry", "baseline": "persistence"}


def tiny_simulator() -> Any:
    """An untrained MeshGraphNet on a scalar field ``u`` whose updates are small (unit input
    statistics, output std 0.01)."""
    import torch

    from sim.models.mesh import MeshSimulator

    torch.manual_seed(0)
    model = MeshSimulator("meshgraphnet", {"latent": 8, "steps": 1}, ["u"], [1], edge_in=3)
    for norm in (model.node_normalizer, model.edge_normalizer, model.output_normalizer):
        norm.count.fill_(1.0)
        norm.sum_sq.fill_(1.0)
    model.output_normalizer.sum_sq.fill_(1e-4)
    return model


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch) -> Path:
    """A zoo holding one entry ``fake`` (a tiny mesh checkpoint), in place of the package's."""
    from sim.train.checkpoint import save_checkpoint

    folder = tmp_path / "zoo" / "fake"
    folder.mkdir(parents=True)
    save_checkpoint(folder / "model.pt", tiny_simulator())
    (folder / "entry.yaml").write_text(yaml.safe_dump(ENTRY))
    (folder / "card.md").write_text("# fake\n\nA fake entry.\n")
    monkeypatch.setattr(sim.zoo, "ZOO_DIR", tmp_path / "zoo")
    return folder


def test_zoo_name_loads_the_entry_model(fake_zoo):
    surrogate = sim.load("zoo:fake")
    assert surrogate.family == "mesh" and surrogate.describe()["fields"] == {"u": 1}
    assert sim.zoo.entry("fake").file == fake_zoo / "model.pt"


def test_zoo_list_json_lists_the_entry(fake_zoo, capsys):
    assert main(["zoo", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["fake"]
    assert rows[0]["family"] == "mesh" and rows[0]["metrics"] == ENTRY["metrics"]
    assert rows[0]["file"] == str(fake_zoo / "model.pt") and rows[0]["size_mb"] > 0


def test_unknown_zoo_name_is_one_error_naming_the_entries(fake_zoo, capsys):
    with pytest.raises(SimError, match=r"no zoo model 'nope' \(the zoo has: fake"):
        sim.load("zoo:nope")
    data = diffusion_store(fake_zoo.parent / "d.h5", trajectories=1, steps=4)
    assert main(["eval", "zoo:nope", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'nope'" in err[0] and "fake" in err[0], err


def test_entry_yaml_missing_a_key_is_an_error_naming_the_file(fake_zoo, capsys):
    meta = dict(ENTRY)
    del meta["metrics"]
    (fake_zoo / "entry.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(SimError, match="lacks metrics") as exc:
        sim.load("zoo:fake")
    assert exc.value.path == str(fake_zoo / "entry.yaml")
    assert main(["zoo", "list"]) == 2
    assert str(fake_zoo / "entry.yaml") in capsys.readouterr().err


def test_a_staged_entry_is_not_listed(fake_zoo):
    """A build in progress (scripts/zoo/build.py stages ``.<name>.part-...`` beside the zoo's folders)."""
    stage = fake_zoo.parent / ".other.part-1-host-abc"
    stage.mkdir()
    (stage / "entry.yaml").write_text(yaml.safe_dump({**ENTRY, "name": "other"}))
    (stage / "model.pt").write_bytes((fake_zoo / "model.pt").read_bytes())
    assert [e.name for e in sim.zoo.entries()] == ["fake"]


def test_cli_eval_takes_a_zoo_model(fake_zoo, capsys, tmp_path):
    data = diffusion_store(tmp_path / "d.h5", trajectories=1, steps=6)
    assert main(["eval", "zoo:fake", str(data), "--json", str(tmp_path / "m.json")]) == 0
    assert "persistence_rmse_all" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert np.isfinite(metrics["rmse_all"]) and np.isfinite(metrics["persistence_rmse_all"])


# --------------------------------------------------------------------------- scripts/zoo/build.py
def test_packaged_checkpoint_keeps_the_model_and_config_only(tmp_path):
    import torch

    from sim.train.checkpoint import load_model, read_checkpoint, save_checkpoint

    model = tiny_simulator()
    opt = torch.optim.Adam(model.parameters())  # its moments are what a training checkpoint carries besides
    sum(p.sum() for p in model.parameters()).backward()
    opt.step()
    config = {"model": {"family": "mesh"}, "train": {"seed": 0}}
    src = save_checkpoint(tmp_path / "run.pt", model, {"config": config, "step": 3, "optimizer": opt.state_dict(),
                                                       "rng": {"torch": torch.get_rng_state()}})
    builder().package_checkpoint(src, tmp_path / "model.pt", correction="divergence_free")
    payload = read_checkpoint(tmp_path / "model.pt")
    assert set(payload) == {"format", "version", "model", "state_dict", "train"} and payload["train"] == {
        "config": config}
    assert payload["model"]["config"]["correction"] == "divergence_free"
    assert (tmp_path / "model.pt").stat().st_size < 0.5 * src.stat().st_size
    loaded, _ = load_model(tmp_path / "model.pt")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)


def test_quick_build_writes_an_entry_that_loads_and_lists_its_metrics(tmp_path, monkeypatch, capsys):
    out = tmp_path / "zoo" / "elasticity_shapes"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(BUILD), "elasticity_shapes", "--quick", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(p.name for p in out.parent.iterdir()) == ["elasticity_shapes"]  # no staging folder left
    assert sorted(p.name for p in out.iterdir()) == ["card.md", "entry.yaml", "model.npz"]
    monkeypatch.setattr(sim.zoo, "ZOO_DIR", out.parent)
    surrogate = sim.load("zoo:elasticity_shapes")
    assert surrogate.family == "mmgp" and surrogate.describe()["scalars_in"] == ["E", "nu", "load"]
    assert main(["zoo", "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "elasticity_shapes" and row["family"] == "mmgp"
    keys = {"rrmse_fields", "rrmse_u", "rrmse_von_mises", "baseline_rrmse_fields", "baseline_rrmse_u",
            "baseline_rrmse_von_mises"}
    assert keys <= set(row["metrics"]) and all(0 < row["metrics"][k] < 10 for k in keys)
    entry = sim.zoo.entry("elasticity_shapes")
    assert entry.command == shlex.join(["python", "scripts/zoo/build.py", "elasticity_shapes", "--quick", "--out",
                                        str(out)])
    assert entry.data_seed == 20261124 and entry.extra["data_params"]["family"] == "notched"
    card = entry.card.read_text()
    assert f"{row['metrics']['rrmse_fields']:.4g}" in card and entry.command in card


def _bench_run(folder: Path, seed: int) -> Path:
    """A checkpoint as scripts/bench/mgn_cylinder.py leaves it (a tiny model, its training config)."""
    from sim.train.checkpoint import save_checkpoint

    model = tiny_simulator()
    config = {"model": {"family": "mesh", "preset": "cpu", "noise_std": 0.05, "scalars": [], "pushforward": 2,
                        "history": 1}, "train": {"seed": seed, "clock": "process"},
              "data": {"train": str(folder / "train.h5")}}
    return save_checkpoint(folder / f"run_s{seed}" / "checkpoint.pt", model,
                           {"config": config, "step": 100, "seconds": 1800.0 * (seed + 1)})


def test_cylinder_entry_packages_a_bench_runs_seeds_as_an_ensemble(tmp_path, monkeypatch, capsys):
    bench = tmp_path / "bench"
    ckpts = [_bench_run(bench, s) for s in (0, 1)]
    meta = {"benchmark": "mgn_cylinder", "size": "small", "correction": "divergence_free", "preset": "cpu",
            "noise_std": 0.05, "scalars": [], "pushforward": 2, "history": 1, "train_steps": 100.0,
            "train_budget_s": None, "seeds": [0, 1], "commit": "abc1234", "date": "2026-12-03",
            "test_trajectories": 1, "batch_size": 1,
            **{k: 0.5 for k in ("rmse_1", "rmse_50", "rmse_all", "shedding_freq_err_median", "mean_field_rrmse",
                                "fluct_rrmse")},
            "persistence_rmse_50": 0.9, "persistence_rmse_all": 1.0, "spread_error_spearman": 0.42,
            **{f"ensemble_{k}": 0.25 for k in ("rmse_50", "rmse_all", "shedding_freq_err_median",
                                               "mean_field_rrmse", "fluct_rrmse")}}
    (bench / "run.json").write_text(json.dumps(meta))
    out = tmp_path / "zoo" / "cylinder_flow"
    argv = ["cylinder_flow", "--checkpoint", *map(str, ckpts), "--metrics-json", str(bench / "run.json"),
            "--out", str(out)]
    builder().build(argv)
    assert sorted(p.name for p in out.iterdir()) == ["card.md", "entry.yaml", "member_s0.pt", "member_s1.pt",
                                                     "model.json"]
    monkeypatch.setattr(sim.zoo, "ZOO_DIR", out.parent)
    surrogate = sim.load("zoo:cylinder_flow")
    assert len(surrogate.members) == 2 and surrogate.describe()["members"] == 2
    entry = sim.zoo.entry("cylinder_flow")
    assert entry.metrics["rmse_all"] == 0.25 and entry.metrics["spread_error_spearman"] == 0.42
    assert entry.metrics["persistence_rmse_all"] == 1.0 and entry.metrics["rmse_1"] is None
    assert entry.train_cpu_hours == pytest.approx(1.5)  # 0.5 + 1.0 CPU-hours of the two members
    assert entry.command == shlex.join(["python", "scripts/zoo/build.py", "cylinder_flow", "--checkpoint",
                                        "OUT/run_s0/checkpoint.pt", "OUT/run_s1/checkpoint.pt", "--metrics-json",
                                        "OUT/run.json"])
    assert "--seed 0 --seeds 2 --out OUT" in entry.extra["train_command"] and str(tmp_path) not in \
        (out / "card.md").read_text()
    # a bundled run's JSON does not package one-frame checkpoints, and its training command bundles
    (bench / "bundled.json").write_text(json.dumps({**meta, "bundle": 2}))
    with pytest.raises(SimError, match=r"bundle: checkpoint 1, JSON 2"):
        builder().build(["cylinder_flow", "--checkpoint", *map(str, ckpts), "--metrics-json",
                         str(bench / "bundled.json"), "--out", str(tmp_path / "zoo3" / "cylinder_flow")])
    assert "--history 1 --bundle 2 --correction" in builder()._train_command({**meta, "bundle": 2}, 0)
    assert "--bundle" not in builder()._train_command(meta, 0)
    # an ensemble is every seed of the run its metrics were measured on
    with pytest.raises(SimError, match=r"every seed .* the JSON's seeds are \[0, 1\], the checkpoints' \[0, 0\]"):
        builder().build(["cylinder_flow", "--checkpoint", str(ckpts[0]), str(ckpts[0]), "--metrics-json",
                         str(bench / "run.json"), "--out", str(tmp_path / "zoo2" / "cylinder_flow")])
