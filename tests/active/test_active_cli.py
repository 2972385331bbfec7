"""`sim active`: bad inputs are one readable error line (exit 2) before any work; a run prints its curve."""

from __future__ import annotations

import pytest

from sim.cli import main


def args(recipe, config, out, **over):
    opts = {"--model": str(config), "--budget": "6", "--batch": "2", "--strategy": "kecor", "--out": str(out),
            "--size": "tiny", "--pool": "10", "--initial": "4"}
    opts.update(over)
    return ["active", str(recipe)] + [x for k, v in opts.items() for x in ((k, v) if v else (k,))]


@pytest.mark.parametrize("over, message", [
    ({"--strategy": "greedy"}, "unknown selection plugin 'greedy'"),
    ({"--strategy": "dagnn"}, "it is a layer plugin"),
    ({"--budget": "3"}, "smaller than the initial simulations"),
    ({"--pool": "5"}, "the pool (5 candidates) is smaller than the budget"),
    ({"--initial": "1"}, "needs at least 2 initial simulations"),
    ({"--budget": "0"}, "--budget: must be > 0"),
    ({"--size": "huge"}, "no size 'huge'"),
    ({"--strategy": "{name: kecor, objective: all}"}, "kecor: objective must be 'batch' or 'pool'"),
    ({"--strategy": "{objective: pool}"}, "a mapping needs a 'name'"),
    ({"--strategy": "{name: kecor"}, "is not a YAML mapping"),
])
def test_bad_inputs_are_one_line(tiny_recipe, mmgp_config, tmp_path, capsys, over, message):
    out = tmp_path / "run"
    assert main(args(tiny_recipe, mmgp_config, out, **over)) == 2
    err = capsys.readouterr().err
    assert err.startswith("sim: error:") and err.count("\n") == 1 and message in err
    assert not out.exists()


def test_missing_files_are_named(tiny_recipe, mmgp_config, tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(args(missing, mmgp_config, tmp_path / "a")) == 2
    err = capsys.readouterr().err
    assert f"{missing}: no such recipe file" in err and err.count("\n") == 1
    assert main(args(tiny_recipe, missing, tmp_path / "b")) == 2
    err = capsys.readouterr().err
    assert f"{missing}: no such model configuration file" in err and err.count("\n") == 1


def test_a_recipe_whose_generator_cannot_draw_without_solving_is_refused(mmgp_config, tmp_path, capsys):
    assert main(args("diffusion3d", mmgp_config, tmp_path / "run", **{"--size": "small"})) == 2
    assert "cannot draw a sample without solving it" in capsys.readouterr().err


def test_a_model_family_without_an_adapter_is_refused(tiny_recipe, tmp_path, capsys):
    config = tmp_path / "steady.yaml"
    config.write_text("model: {family: steady, fields: [u], scalars: [E]}\n")
    assert main(args(tiny_recipe, config, tmp_path / "run")) == 2
    assert "no surrogate adapter for model family 'steady'" in capsys.readouterr().err


def test_a_cli_run_prints_its_curve(tiny_recipe, mmgp_config, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(args(tiny_recipe, mmgp_config, out, **{"--strategy": "variance"})) == 0
    text = capsys.readouterr().out
    assert "solver calls" in text and (out / "log.csv").exists() and (out / "model.npz").exists()
    # a finished run resumed with the same budget has nothing left to solve: it prints the same curve
    assert main(args(tiny_recipe, mmgp_config, out, **{"--strategy": "variance", "--resume": ""})) == 0
    assert capsys.readouterr().out.splitlines()[:4] == text.splitlines()[:4]


def test_a_strategy_with_parameters_runs_and_is_recorded(tiny_recipe, mmgp_config, tmp_path, capsys):
    import json

    out = tmp_path / "run"
    assert main(args(tiny_recipe, mmgp_config, out, **{"--strategy": "{name: kecor, objective: pool}"})) == 0
    assert "solver calls" in capsys.readouterr().out
    config = json.loads((out / "log.json").read_text())["config"]
    assert config["strategy"] == {"name": "kecor", "objective": "pool"}
