"""The active-learning loop: logs per round, resumes after an exception or a kill without
duplicating or losing a simulation, and its test set is the recipe's own test split."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.active import ActiveError, run_active
from sim.mesh import Store

ROOT = Path(__file__).resolve().parents[2]
RUN = dict(size="tiny", strategy="kecor", budget=8, batch=3, initial=3, pool=12, seed=1, progress=False)


def stored(path: Path) -> dict:
    with Store(path) as s:
        return {n: s.read(n) for n in s.names()}


def identity(mesh) -> tuple:
    """What makes a simulation: its generator seed and input parameters."""
    return tuple(float(np.asarray(mesh.field_data[k]).reshape(-1)[0]) for k in ("generator_seed", "E", "nu", "load"))


def check_complete(out: Path, budget: int) -> dict:
    """The store holds exactly ``budget`` simulations, each chosen by the run, solved, and distinct."""
    state = json.loads((out / "state.json").read_text())
    sims = stored(out / "train.h5")
    assert len(sims) == budget
    assert sorted(sims) == sorted(state["chosen"]) and len(set(state["chosen"])) == budget
    assert len({identity(m) for m in sims.values()}) == budget  # no duplicate parameters
    assert all("u" in m.point_data and "von_mises" in m.point_data for m in sims.values())
    assert state["pending"] is None and [r["solver_calls"] for r in state["rounds"]] == [3, 6, 8]
    return state


@pytest.fixture(scope="module")
def reference(tiny_recipe, mmgp_config, tmp_path_factory):
    """An uninterrupted run: what a resumed run must end with."""
    out = tmp_path_factory.mktemp("reference")
    result = run_active(tiny_recipe, mmgp_config, out=out, **RUN)
    return out, result


def test_a_tiny_run_logs_solver_calls_and_a_finite_error_per_round(reference):
    out, result = reference
    state = check_complete(out, 8)
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["solver_calls"]) for r in rows] == [3, 6, 8]
    errors = [float(r["rrmse_fields"]) for r in rows]
    assert all(math.isfinite(e) and 0 < e < 1 for e in errors)
    assert [float(r["rrmse_u"]) for r in rows] and rows[0]["strategy"] == "kecor"
    log = json.loads((out / "log.json").read_text())
    assert [r["error"] for r in log["rounds"]] == pytest.approx(errors)
    assert result.curve == [(r["solver_calls"], r["error"]) for r in state["rounds"]]
    # every round but the last chose the next batch from candidates not chosen before
    assert [len(r["selected"]) for r in state["rounds"]] == [3, 2, 0]
    import sim

    surrogate = sim.load(result.model)
    assert surrogate.family == "mmgp" and surrogate.describe()["scalars_in"] == ["E", "nu", "load"]


def test_the_test_set_is_the_recipes_own_test_split(reference, tiny_recipe, tmp_path):
    from solvers.recipes import generate, load_recipe

    out, _ = reference
    paths = generate(load_recipe(tiny_recipe), "tiny", out=tmp_path / "data", progress=False)
    ours, theirs = stored(out / "test.h5"), stored(paths["test"])
    assert sorted(ours) == sorted(theirs)
    for n in ours:
        assert np.array_equal(ours[n].points, theirs[n].points)
        assert np.array_equal(ours[n].point_data["u"], theirs[n].point_data["u"])


def test_the_loop_resumes_after_an_exception_mid_batch(reference, tiny_recipe, mmgp_config, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "run"
    seen = []

    def crash(name):
        seen.append(name)
        if len(seen) == 5:  # the second simulation of the second batch
            raise RuntimeError("injected")

    with pytest.raises(RuntimeError, match="injected"):
        run_active(tiny_recipe, mmgp_config, out=out, on_simulation=crash, **RUN)
    assert len(stored(out / "train.h5")) == 5
    with pytest.raises(ActiveError, match="resume"):  # a restart without --resume is refused
        run_active(tiny_recipe, mmgp_config, out=out, **RUN)
    with pytest.raises(ActiveError, match="batch"):  # and so is a resume that is another run
        run_active(tiny_recipe, mmgp_config, out=out, resume=True, **{**RUN, "batch": 2})
    resumed = []
    run_active(tiny_recipe, mmgp_config, out=out, resume=True, on_simulation=resumed.append, **RUN)
    assert len(resumed) == 3 and not set(resumed) & set(seen)  # only what was missing was solved
    state = check_complete(out, 8)
    ref = json.loads((ref_out / "state.json").read_text())
    assert state["chosen"] == ref["chosen"]  # the same run as without the interruption
    assert [r["error"] for r in state["rounds"]] == pytest.approx([r["error"] for r in ref["rounds"]])


def test_a_finished_run_resumed_with_its_budget_returns_its_rounds_without_refitting(
        reference, tiny_recipe, mmgp_config, tmp_path, monkeypatch):
    import shutil

    from sim.active import adapters

    ref_out, result = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out, out)
    fits = []
    real = adapters.MMGPAdapter.fit

    def counted(self, *args, **kwargs):
        fits.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(adapters.MMGPAdapter, "fit", counted)
    again = run_active(tiny_recipe, mmgp_config, out=out, resume=True, **RUN)
    assert fits == [] and again.curve == result.curve and again.model.name == result.model.name
    more = run_active(tiny_recipe, mmgp_config, out=out, resume=True, **{**RUN, "budget": 9})
    assert fits and [c for c, _ in more.curve] == [3, 6, 8, 9]  # a larger budget continues


KILLED = """
import os, signal, sys
from sim.active import run_active
count = []
def kill(name):
    count.append(name)
    if len(count) == 4:
        os.kill(os.getpid(), signal.SIGKILL)
run_active(sys.argv[1], sys.argv[2], out=sys.argv[3], on_simulation=kill, workers=2, **{RUN})
"""


def test_the_loop_resumes_after_the_process_is_killed(reference, tiny_recipe, mmgp_config, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "run"
    code = KILLED.replace("{RUN}", repr(RUN))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_recipe), str(mmgp_config), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert len(stored(out / "train.h5")) == 4
    run_active(tiny_recipe, mmgp_config, out=out, resume=True, **RUN)
    state = check_complete(out, 8)
    assert state["chosen"] == json.loads((ref_out / "state.json").read_text())["chosen"]


def test_a_resumed_run_may_raise_the_budget(reference, tiny_recipe, mmgp_config, tmp_path):
    import shutil

    ref_out, _ = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out, out)
    run_active(tiny_recipe, mmgp_config, out=out, resume=True, **{**RUN, "budget": 10})
    state = json.loads((out / "state.json").read_text())
    assert [r["solver_calls"] for r in state["rounds"]] == [3, 6, 8, 10]
    assert len(stored(out / "train.h5")) == 10 and len(set(state["chosen"])) == 10


def test_draw_then_solve_is_the_generator():
    from solvers.elasticity import draw, generate, solve

    params = {"mesh_size": 0.15}
    a, b = generate(params, 11), solve(draw(params, 11), params)
    assert np.array_equal(a.points, b.points) and np.array_equal(a.point_data["u"], b.point_data["u"])
    assert "u" not in draw(params, 11).point_data


def test_a_strategy_that_ignores_features_is_not_given_an_embedded_pool(tiny_recipe, mmgp_config, tmp_path,
                                                                          monkeypatch):
    """random declares uses_features = False: the loop must not embed the pool for it (a model pass
    per candidate every round), and it still picks distinct candidates until the budget is spent."""
    from sim.active.adapters import MMGPAdapter

    def no_embedding(self, candidates):
        raise AssertionError("the pool was embedded for a strategy that does not use features")

    monkeypatch.setattr(MMGPAdapter, "features", no_embedding)
    out = tmp_path / "random"
    run_active(tiny_recipe, mmgp_config, out=out, **{**RUN, "strategy": "random"})
    check_complete(out, 8)
