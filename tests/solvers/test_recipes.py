"""The recipe engine: deterministic seeds, redraws, resume after a crash, shards, workers, statistics."""

from __future__ import annotations

import numpy as np
import pytest

from sim.cli import main
from sim.mesh import Store
from solvers.recipes import RecipeError, generate, load_recipe, merge_shards

pytestmark = pytest.mark.usefixtures("test_generators")  # the toy generator, allowed through an entry point

RECIPE = """
name: toy
generator: tests.solvers.toy_generator:generate
statistics: tests.solvers.toy_generator:statistics
seed: 7
params: {num_steps: 4, reject_below: 0.3}
sizes:
  small:
    splits: {train: 5, test: {count: 2, params: {scale: 2.0}}}
  other:
    params: {num_steps: 2}
    splits: {train: 1}
"""


@pytest.fixture
def recipe_path(tmp_path):
    p = tmp_path / "toy.yaml"
    p.write_text(RECIPE)
    return p


def _contents(path):
    with Store(path) as s:
        return {n: s.read(n) for n in s.names()}


def test_generate_writes_splits_with_params_and_statistics(recipe_path):
    paths = generate(load_recipe(recipe_path), "small", progress=False)
    assert paths["train"] == recipe_path.parent / "toy" / "small" / "train.h5"
    train, test = _contents(paths["train"]), _contents(paths["test"])
    assert list(train) == ["000000", "000001", "000002", "000003", "000004"]
    assert all(t.params["rate"] >= 0.3 for t in train.values())  # rejected draws were redrawn
    assert any(t.params["attempt"] > 0 for t in list(train.values()) + list(test.values()))
    assert all(t.params["scale"] == 2.0 for t in test.values())
    with Store(paths["train"]) as s:
        stats = s.metadata["statistics"]
    assert stats["count"] == 7 * 4 * 3
    assert stats["u_mean"] == pytest.approx(
        np.mean([t.point_fields["u"] for t in list(train.values()) + list(test.values())]))


def test_results_do_not_depend_on_workers_or_shards(tmp_path, recipe_path):
    recipe = load_recipe(recipe_path)
    serial = generate(recipe, "small", out=tmp_path / "serial", progress=False)
    parallel = generate(recipe, "small", out=tmp_path / "parallel", workers=2, progress=False)
    for shard in range(3):
        generate(recipe, "small", out=tmp_path / "sharded", shard=(shard, 3), progress=False)
    merged = merge_shards(tmp_path / "sharded", recipe)
    for split in ("train", "test"):
        a, b, c = _contents(serial[split]), _contents(parallel[split]), _contents(merged[split])
        assert list(a) == list(b) == list(c)
        assert all(a[n].equals(b[n]) and a[n].equals(c[n]) for n in a)
    assert not list((tmp_path / "sharded").glob("*.shard-*"))


def test_resume_after_a_crash_skips_finished_entries(tmp_path, recipe_path):
    recipe = load_recipe(recipe_path)
    recipe.params["crash_at"] = 3
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate(recipe, "small", out=tmp_path, progress=False)
    with Store(tmp_path / "train.h5") as s:
        assert s.names() == ["000000", "000001", "000002"]
        first = s.read("000000")
    recipe.params["crash_at"] = -1
    generate(recipe, "small", out=tmp_path, progress=False)
    full = _contents(tmp_path / "train.h5")
    assert list(full) == [f"{i:06d}" for i in range(5)]
    assert full["000000"].equals(first)
    fresh = generate(load_recipe(recipe_path), "small", out=tmp_path / "fresh", progress=False)
    again = _contents(fresh["train"])
    assert all(full[n].equals(again[n]) for n in full)


def test_a_finished_dataset_is_only_read_so_other_processes_can_read_it_meanwhile(tmp_path, recipe_path):
    import os
    import subprocess
    import sys

    recipe = load_recipe(recipe_path)
    paths = generate(recipe, "small", out=tmp_path, progress=False)
    stamps = {p: os.stat(p).st_mtime_ns for p in paths.values()}
    # another process holds the finished stores open (as a training job reading them does)
    reader = subprocess.Popen([sys.executable, "-c", "import sys, time, h5py; fs = [h5py.File(p, 'r') for p in "
                               "sys.argv[1:]]; print('open', flush=True); time.sleep(60)", *map(str, paths.values())],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "open"
        again = generate(recipe, "small", out=tmp_path, progress=False)
    finally:
        reader.kill()
    assert again == paths
    assert {p: os.stat(p).st_mtime_ns for p in paths.values()} == stamps  # nothing rewritten, statistics included
    with Store(paths["train"]) as s:
        assert s.complete(s.names()) and not s.complete(["000009"])


def test_recipe_errors_name_the_file(tmp_path, recipe_path):
    with pytest.raises(RecipeError, match="no size 'huge' \\(sizes: small, other\\)"):
        load_recipe(recipe_path).splits("huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngenerator: solvers.nothing:here\nsizes: {small: {splits: {train: 1}}}\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml: generator 'solvers.nothing:here' is not allowed"):
        load_recipe(bad)
    bad.write_text("name: x\nsizes: {}\n")
    with pytest.raises(RecipeError, match="missing key 'generator'"):
        load_recipe(bad)


def test_cli_generate_and_info(tmp_path, recipe_path, capsys):
    assert main(["data", "generate", str(recipe_path), "--size", "other", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "train.h5").exists()
    assert main(["data", "generate", str(recipe_path), "--size", "nope"]) == 2
    assert "no size 'nope'" in capsys.readouterr().err
