"""Recipes are data: only allowed generators run, refused names are never imported; generation
workers do not outlive a killed parent."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sim.cli import main
from solvers import recipes
from solvers.recipes import GENERATORS, STATISTICS, RecipeError, generate, load_recipe
from tests.solvers.registered import entry_point_site

ROOT = Path(__file__).resolve().parents[2]
DATASETS = sorted((ROOT / "datasets").glob("*.yaml"))


def _recipe(path: Path, generator: str, statistics: str | None = None, **params) -> Path:
    data = {"name": "r", "generator": generator, "seed": 1, "params": params,
            "sizes": {"small": {"splits": {"train": 4}}}}
    if statistics is not None:
        data["statistics"] = statistics
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def tripwire(tmp_path, monkeypatch):
    """A module that leaves a file behind when imported, and a spy on every import the recipes make."""
    (tmp_path / "tripwire_mod.py").write_text(
        f"from pathlib import Path\nPath({str(tmp_path / 'imported')!r}).touch()\ndef run(*a):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    imported: list[str] = []
    real = importlib.import_module
    monkeypatch.setattr(recipes.importlib, "import_module", lambda name, *a: imported.append(name) or real(name, *a))
    yield imported
    assert not (tmp_path / "imported").exists(), "a refused recipe imported its module"
    assert "tripwire_mod" not in sys.modules


@pytest.mark.parametrize("generator", ["subprocess:call", "os:system", "tripwire_mod:run", "builtins:eval",
                                       "solvers.recipes:generate", "solvers.mpm:dataset_statistics"])
def test_a_generator_off_the_list_is_refused_before_any_import(tmp_path, tripwire, generator):
    path = _recipe(tmp_path / "evil.yaml", generator)
    with pytest.raises(RecipeError, match=rf"evil\.yaml: generator '{generator}' is not allowed.*'sim\.generators'"):
        load_recipe(path)
    assert tripwire == []


def test_statistics_off_the_list_are_refused_before_any_import(tmp_path, tripwire):
    path = _recipe(tmp_path / "evil.yaml", "solvers.odes:generate", statistics="tripwire_mod:run")
    with pytest.raises(RecipeError, match=r"evil\.yaml: statistics 'tripwire_mod:run' is not allowed.*"
                                          r"'sim\.dataset_statistics'"):
        load_recipe(path)
    assert tripwire[0] == "solvers.odes" and "tripwire_mod" not in tripwire  # the allowed generator only
    path = _recipe(tmp_path / "evil.yaml", "solvers.odes:generate", statistics="solvers.odes:generate")
    with pytest.raises(RecipeError, match="statistics 'solvers.odes:generate' is not allowed"):
        load_recipe(path)  # a generator is not a statistics function


def test_the_cli_refuses_a_code_running_recipe_in_one_line(tmp_path, tripwire, capsys):
    path = _recipe(tmp_path / "evil.yaml", "tripwire_mod:run")
    assert main(["data", "generate", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sim: error: ") and err.count("\n") == 1 and "evil.yaml" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", DATASETS, ids=[p.stem for p in DATASETS])
def test_every_shipped_recipe_names_allowed_functions(path):
    data = yaml.safe_load(path.read_text())
    assert data["generator"] in GENERATORS
    assert data.get("statistics") is None or data["statistics"] in STATISTICS


def test_every_builtin_reference_resolves():
    for ref in GENERATORS:
        assert callable(recipes.resolve(ref))
    for ref in STATISTICS:
        assert callable(recipes.resolve(ref, kind="statistics"))


def test_installed_packages_allow_theirs_through_entry_points(tmp_path, monkeypatch, test_generators):
    """By reference or by entry-point name; an entry point of the other group does not count, and
    one whose module is missing is a readable error."""
    toy = "tests.solvers.toy_generator:generate"
    assert load_recipe(_recipe(tmp_path / "a.yaml", toy, num_steps=3)).generator == toy
    assert callable(recipes.resolve("toy"))
    assert callable(recipes.resolve("toy_statistics", kind="statistics"))
    with pytest.raises(RecipeError, match="generator 'toy_statistics' is not allowed"):
        recipes.resolve("toy_statistics")
    assert "toy (tests.solvers.toy_generator:generate)" in recipes.allowed("generator")
    monkeypatch.syspath_prepend(str(entry_point_site(tmp_path / "broken", {"sim.generators": {
        "gone": "no_such_package.solver:generate"}})))
    with pytest.raises(RecipeError, match=r"b\.yaml: cannot load generator 'gone' \(ModuleNotFoundError"):
        load_recipe(_recipe(tmp_path / "b.yaml", "gone"))


def test_without_the_entry_point_the_test_generator_is_refused(tmp_path):
    with pytest.raises(RecipeError, match="generator 'tests.solvers.toy_generator:generate' is not allowed"):
        load_recipe(_recipe(tmp_path / "a.yaml", "tests.solvers.toy_generator:generate"))


# --- workers die with their parent ------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Running (a zombie nobody has reaped yet counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return not stat.parent.parent.exists()  # no /proc: os.kill is all we know


def _wait(condition, seconds: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_workers_die_when_the_parent_is_killed(tmp_path, generator_site):
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    recipe = _recipe(tmp_path / "slow.yaml", "slow", pids=str(pids_dir), seconds=600)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(generator_site), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    script = ("import sys; from solvers.recipes import generate, load_recipe; "
              "generate(load_recipe(sys.argv[1]), 'small', out=sys.argv[2], workers=2, progress=False)")
    parent = subprocess.Popen([sys.executable, "-c", script, str(recipe), str(tmp_path / "out")], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        _wait(lambda: len(list(pids_dir.iterdir())) == 2, 180, "two workers to start the generator", parent)
        workers = [int(p.name) for p in pids_dir.iterdir()]
        assert all(_alive(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)
        _wait(lambda: not any(_alive(pid) for pid in workers), 5, f"workers {workers} to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stderr.close()
        _kill_leftovers(workers)


def test_the_portable_watchdog_ends_an_orphan(tmp_path):
    """Where Linux's parent-death signal is not available: a watchdog thread exits the orphan."""
    ready = tmp_path / "ready"
    child = ("import sys, threading, time; from pathlib import Path; from solvers.recipes import watch_parent; "
             "threading.Thread(target=watch_parent, args=(int(sys.argv[1]), 0.1), daemon=True).start(); "
             "Path(sys.argv[2]).touch(); time.sleep(600)")
    parent_code = ("import subprocess, sys, time, os; "
                   f"p = subprocess.Popen([sys.executable, '-c', {child!r}, str(os.getpid()), sys.argv[1]]); "
                   "print(p.pid, flush=True); time.sleep(600)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", parent_code, str(ready)], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    orphan: list[int] = []
    try:
        orphan.append(int(parent.stdout.readline()))
        _wait(ready.exists, 120, "the child to start its watchdog", parent)
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)
        _wait(lambda: not _alive(orphan[0]), 5, "the orphan to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
        parent.stderr.close()
        _kill_leftovers(orphan)


@pytest.mark.parametrize("kwargs, message", [({"size": "huge"}, "no size 'huge'"), ({"shard": (3, 2)}, "shard 3/2"),
                                             ({"workers": 0}, "--workers must be >= 1")])
def test_refused_generations_create_no_folder(tmp_path, kwargs, message):
    recipe = load_recipe(_recipe(tmp_path / "r.yaml", "solvers.odes:generate"))
    with pytest.raises(RecipeError, match=message):
        generate(recipe, kwargs.pop("size", "small"), progress=False, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


def test_a_negative_count_is_named(tmp_path):
    path = _recipe(tmp_path / "r.yaml", "solvers.odes:generate")
    path.write_text(path.read_text().replace("train: 4", "train: -3"))
    with pytest.raises(RecipeError, match=r"r\.yaml: size 'small' split 'train': negative count -3"):
        load_recipe(path).splits("small")
