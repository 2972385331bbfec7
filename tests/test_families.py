"""Every model family through every `sim` command, on tiny generated data.

Each family trains (or fits) with `sim train` from a YAML file, and then runs each command it
supports; the commands it does not support refuse in one line with exit code 2. The mesh
model is conditioned on a trajectory parameter and sees two frames, the configuration on which
the diagnostics used to rebuild the network's inputs by hand and fail. The trained models come
from the session fixture ``trained`` (tests/families_data.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.cli import main
from sim.families import COMMANDS, available_families, get_family
from sim.mesh import Mesh, Store, StoreWriter, read, write
from tests.families_data import _config, _steady_samples
from tests.train.diffusion_data import diffusion_store


def test_every_family_is_registered_with_its_commands(capsys):
    fams = {f.name: f for f in available_families()}
    assert main(["families"]) == 0
    listed = capsys.readouterr().out
    assert all(f"{name} " in listed for name in fams) and "commands: train, eval, predict" in listed
    assert set(fams) == {"mesh", "particle", "steady", "prose", "mmgp"}
    assert all(f.commands <= set(COMMANDS) and "train" in f.commands for f in fams.values())
    assert fams["mesh"].commands == set(COMMANDS)


@pytest.mark.parametrize("family", ["mesh", "particle", "prose"])
def test_rollout_and_eval_of_time_stepping_families(trained, family, tmp_path, capsys):
    ckpt, data = trained[family]
    out = tmp_path / "out"
    assert main(["rollout", str(ckpt), str(data), "--out", str(out), "--json", str(tmp_path / "r.json"),
                 "--plot"]) == 0
    written = [Path(line.split(" ", 1)[1]) for line in capsys.readouterr().out.splitlines()
               if line.startswith("wrote ") and not line.endswith(".json")]
    assert written and all(p.exists() and p.stat().st_size > 0 for p in written)
    assert any(p.suffix == ".png" for p in written)  # --plot: the pictures a person looks at
    assert main(["eval", str(ckpt), str(data), "--json", str(tmp_path / "e.json")]) == 0
    metrics = json.loads((tmp_path / "e.json").read_text())
    with Store(data) as s:
        assert set(metrics["entries"]) == set(s.names())  # every entry evaluated
    key = "data_rel_l2" if family == "prose" else "rmse_all"
    values = [e[key] for e in metrics["entries"].values()]
    assert all(np.isfinite(v) and v >= 0 for v in values)
    capsys.readouterr()
    pictures = tmp_path / "pictures"
    code = main(["eval", str(ckpt), str(data), "--plot", str(pictures)])
    if family == "prose":  # its pictures come with the predictions it writes
        assert code == 2 and "sim rollout --out DIR --plot" in capsys.readouterr().err and not pictures.exists()
        return
    assert code == 0
    printed = [line.split(" ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    with Store(data) as s:
        names = s.names()
    assert {f"{n}_error.png" for n in names} <= {p.name for p in pictures.iterdir()} == {Path(p).name for p in printed}
    assert all(p.suffix == ".png" for p in pictures.iterdir())  # the pictures, not the series


def test_mesh_rollout_series_carry_prediction_truth_and_error(trained, tmp_path):
    ckpt, data = trained["mesh"]
    assert main(["rollout", str(ckpt), str(data), "--out", str(tmp_path), "--steps", "4"]) == 0
    series = read(tmp_path / "000000.pvd")
    assert series.num_steps == 5  # the start (step 1 of a two-frame model) and 4 predicted
    u, truth, err = (series.point_fields[k] for k in ("u", "u_truth", "u_error"))
    np.testing.assert_allclose(err, u - truth, atol=1e-6)
    np.testing.assert_allclose(u[0], truth[0])  # the rollout starts from the truth


@pytest.mark.parametrize("family", ["steady", "mmgp"])
def test_eval_and_predict_of_steady_families(trained, family, tmp_path):
    ckpt, data = trained[family]
    assert main(["eval", str(ckpt), str(data), "--json", str(tmp_path / "e.json")]) == 0
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert 0 <= metrics["rrmse_u"] < 10 and len(metrics["entries"]) == 6
    assert main(["eval", str(ckpt), str(data), "--plot", str(tmp_path / "pictures")]) == 2  # nothing rolls out
    assert not (tmp_path / "pictures").exists()
    with Store(data) as s:
        sample = s.read(s.names()[0])
    write(Mesh(sample.points, sample.cells, node_type=sample.node_type), tmp_path / "query.vtu")
    assert main(["predict", str(ckpt), str(tmp_path / "query.vtu"), "--param", "a=1.5",
                 "--out", str(tmp_path / "pred.vtu")]) == 0
    pred = read(tmp_path / "pred.vtu")
    assert pred.point_data["u"].shape == (sample.num_points, 2) and np.isfinite(pred.point_data["u"]).all()
    assert ("u_std" in pred.point_data) == (family == "mmgp")  # MMGP has uncertainty


def test_mesh_predict_on_a_mesh_file(tmp_path):
    """A one-frame mesh model gives the next step on a mesh file that holds the state."""
    data = diffusion_store(tmp_path / "d.h5", trajectories=2, steps=6, kappas=[0.02, 0.1])
    cfg = _config(tmp_path, "m1", {"network_args": {"latent": 16, "steps": 2}, "fields": ["u"],
                                   "scalars": ["kappa"]}, {"train": str(data)})
    assert main(["train", str(cfg)]) == 0
    with Store(data) as s:
        traj = s.read(s.names()[0])
    m = traj.mesh
    write(Mesh(m.points, m.cells, point_data={"u": traj.point_fields["u"][0]}, node_type=m.node_type),
          tmp_path / "state.vtu")
    args = ["predict", str(tmp_path / "m1" / "checkpoint.pt"), str(tmp_path / "state.vtu"), "--out",
            str(tmp_path / "next.vtu")]
    assert main(args) == 2  # the model is conditioned on kappa: one error naming it
    assert main(args + ["--param", "kappa=0.05"]) == 0
    nxt = read(tmp_path / "next.vtu")
    assert nxt.point_data["u"].shape == (m.num_points,)


@pytest.mark.parametrize("what", ["range", "lipschitz"])
def test_diagnostics_on_a_mesh_model_with_scalars_and_history(trained, what, tmp_path, capsys):
    ckpt, data = trained["mesh"]
    extra = ["--max-hops", "4", "--seeds", "4", "--out", str(tmp_path)] if what == "range" else \
        ["--nodes", "2", "--samples", "4", "--json", str(tmp_path / "lip.json")]
    assert main(["diagnose", what, str(ckpt), str(data), "--step", "1", *extra]) == 0
    if what == "range":
        res = json.loads((tmp_path / "range.json").read_text())
        assert res["curve"][0] == pytest.approx(1.0) and (tmp_path / "range.png").exists()
    else:
        res = json.loads((tmp_path / "lip.json").read_text())
        assert res["upper"] >= res["lower"] > 0
    assert main(["diagnose", what, str(ckpt), str(data), "--step", "0", *extra]) == 2  # step 0 has no frame before
    assert "outside entry" in capsys.readouterr().err


@pytest.mark.parametrize("family, command", [(f, c) for f in ("particle", "steady", "mmgp", "prose")
                                             for c in ("rollout", "predict", "diagnose")
                                             if c not in get_family(f).commands])
def test_unsupported_commands_refuse_in_one_line(trained, family, command, tmp_path, capsys):
    ckpt, data = trained[family]
    args = {"rollout": ["rollout", str(ckpt), str(data), "--out", str(tmp_path / "o")],
            "predict": ["predict", str(ckpt), str(tmp_path / "x.vtu"), "--out", str(tmp_path / "y.vtu")],
            "diagnose": ["diagnose", "range", str(ckpt), str(data)]}[command]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"does not apply to {family} models" in err[0]
    assert not (tmp_path / "o").exists() and not (tmp_path / "y.vtu").exists()


def test_training_config_errors_are_one_line_before_training(tmp_path, capsys):
    data = _steady_samples(tmp_path / "s.h5", 2, 0)
    bad = {"optim": {"lr": "1e-3"}, "model": {"family": "nope"}, "train": {"device": "gpu"}}
    for section, value in bad.items():
        cfg = {"model": {"family": "steady", "fields": ["u"], "scalars": ["a"]}, "data": {"train": str(data)},
               "train": {"steps": 2, "out": str(tmp_path / "run")}}
        cfg[section] = {**cfg.get(section, {}), **value}
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(cfg))
        assert main(["train", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0], err
        assert not (tmp_path / "run").exists()
    path.write_text(yaml.safe_dump({"model": {"family": "particle", "family_args": {"sampling": "grid"}},
                                    "data": {"train": str(data)}, "train": {"out": str(tmp_path / "run")}}))
    assert main(["train", str(path)]) == 2
    assert "model.family_args.sampling must be one of 'fps', 'random'" in capsys.readouterr().err
    path.write_text(yaml.safe_dump({"data": {"train": str(tmp_path / "missing.h5")}}))
    assert main(["train", str(path)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_compiled_particle_rollout_equals_the_eager_one(trained, tmp_path):
    """`--compile` compiles the particle network (the radius graphs stay eager) with the same result."""
    ckpt, data = trained["particle"]
    for flag, out in (([], "eager"), (["--compile"], "compiled")):
        assert main(["rollout", str(ckpt), str(data), "--steps", "3", "--out", str(tmp_path / out),
                     "--json", str(tmp_path / f"{out}.json"), *flag]) == 0
    eager, compiled = (json.loads((tmp_path / f"{o}.json").read_text()) for o in ("eager", "compiled"))
    assert compiled["rmse_all"] == pytest.approx(eager["rmse_all"], rel=1e-4)


def test_a_mesh_of_another_dimension_is_one_error(trained, tmp_path, capsys):
    from sim.mesh import Trajectory

    ckpt, data = trained["mesh"]
    with Store(data) as s:
        traj = s.read(s.names()[0])
    pts3 = np.column_stack([traj.mesh.points, np.zeros(traj.mesh.num_points)])
    with StoreWriter(tmp_path / "3d.h5") as w:
        w.append(Trajectory(Mesh(pts3, traj.mesh.cells, node_type=traj.mesh.node_type), traj.times,
                            point_fields=traj.point_fields, dt=traj.dt, params=traj.params))
    assert main(["eval", str(ckpt), str(tmp_path / "3d.h5")]) == 2
    assert "on a 3D mesh; the model was trained on 2D meshes" in capsys.readouterr().err


def test_another_package_registers_a_family(monkeypatch, capsys, tmp_path):
    """A family registered from outside (as the `sim.families` entry points do) is looked up like
    the built-in ones: the CLI lists it and refuses the commands it does not declare."""
    from sim.families import Family, base, configure
    from sim.train import Config

    class Echo(Family):
        """Echo: a test family that supports training only."""

        name = "echo"
        commands = frozenset({"train"})

    monkeypatch.setattr(base, "_FAMILIES", dict(base._FAMILIES))
    base.register_family(Echo)
    assert get_family("echo").summary == "Echo: a test family that supports training only"
    assert main(["families"]) == 0 and "echo" in capsys.readouterr().out
    data = _steady_samples(tmp_path / "s.h5", 2, 0)
    assert configure(Config.from_dict({"model": {"family": "echo"}, "data": {"train": str(data)}})).name == "echo"
    with pytest.raises(Exception, match="does not apply to echo models"):
        get_family("echo").require("rollout")


def test_evaluation_table_keeps_long_metric_names_apart():
    """`sim eval` prints one column per metric: names longer than a cell (persistence_rmse_all,
    shedding_freq_err) are separated, and every row has one value per column."""
    from sim.families.base import Evaluation

    columns = ["steps", "rmse_1", "persistence_rmse_all", "shedding_freq_err", "mean_field_rrmse"]
    rows = [{"entry": "a_long_entry_name_000001", "steps": 58, "rmse_1": 0.0213, "persistence_rmse_all": 0.6095,
             "shedding_freq_err": 0.0946, "mean_field_rrmse": None}]
    summary = {"rmse_1": 0.0213, "persistence_rmse_all": 0.6095, "shedding_freq_err": 0.0946}
    lines = Evaluation(rows, summary, columns).table().splitlines()
    assert lines[0].split() == ["entry", *columns]
    assert lines[1].split() == ["a_long_entry_name_000001", "58", "0.0213", "0.6095", "0.0946", "-"]
    assert lines[2].split() == ["mean", "-", "0.0213", "0.6095", "0.0946", "-"]
    assert len({len(line) for line in lines}) == 1  # aligned
