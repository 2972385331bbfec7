"""Recipes ship inside the package: `sim data generate NAME` works from any folder and writes under
it; the old `datasets/<name>.yaml` paths keep working; an installed (non-editable) package has them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sim.cli import main
from sim.mesh import Store
from solvers.recipes import RecipeError, default_out, load_recipe, packaged_recipes, recipe_names

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["cylinder_flow", "diffusion3d", "elasticity_shapes", "mpm_jelly_2d", "mpm_plasticine_2d",
           "mpm_sand_2d", "mpm_sand_3d", "mpm_water_2d", "ode_systems"]


def test_every_recipe_ships_in_the_package_and_the_old_paths_are_the_same_files():
    assert recipe_names() == SHIPPED
    for name, path in packaged_recipes().items():
        assert path.parent == ROOT / "sim" / "recipes" and path.is_file() and not path.is_symlink()
        old = ROOT / "datasets" / f"{name}.yaml"
        assert old.resolve() == path.resolve(), f"datasets/{name}.yaml is not the packaged recipe"
        assert load_recipe(old).name == load_recipe(name).name == name


def test_a_name_is_found_from_any_folder_and_writes_under_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe("cylinder_flow")
    assert recipe.path == ROOT / "sim" / "recipes" / "cylinder_flow.yaml"
    assert default_out(recipe, "small") == Path("datasets") / "cylinder_flow" / "small"
    assert load_recipe("cylinder_flow.yaml").path == recipe.path
    # the source tree's old path writes where it always did: beside it
    assert default_out(load_recipe(ROOT / "datasets" / "cylinder_flow.yaml"), "medium") == \
        ROOT / "datasets" / "cylinder_flow" / "medium"
    # ... and without a source tree (an installed package) the same path still means the recipe
    gone = tmp_path / "elsewhere" / "datasets" / "cylinder_flow.yaml"
    moved = load_recipe(gone)
    assert moved.path == recipe.path and default_out(moved, "small") == gone.parent / "cylinder_flow" / "small"
    # a recipe file of one's own: beside it, as before
    own = tmp_path / "mine.yaml"
    own.write_text((ROOT / "sim" / "recipes" / "ode_systems.yaml").read_text())
    assert default_out(load_recipe(own), "small") == tmp_path / "ode_systems" / "small"


def test_an_unknown_name_is_one_error_listing_the_recipes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError, match="cylinder_flw: no such recipe file or name .*cylinder_flow, diffusion3d"):
        load_recipe("cylinder_flw")
    with pytest.raises(RecipeError, match="no such recipe file or name"):
        load_recipe(tmp_path / "other" / "cylinder_flow.yaml")  # not a datasets/ folder: a missing file
    assert main(["data", "generate", "cylinder_flw", "--size", "small"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ode_systems" in err
    assert not (tmp_path / "datasets").exists()


def test_sim_data_generate_by_name_in_a_fresh_folder(tmp_path):
    """The command a new user types, in a folder with nothing in it."""
    res = subprocess.run([sys.executable, "-m", "sim.cli", "data", "generate", "ode_systems", "--size", "small"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "datasets" / "ode_systems" / "small"
    assert sorted(p.name for p in out.iterdir()) == ["test.h5", "train.h5", "valid.h5"]
    with Store(out / "train.h5") as s:
        assert len(s.names()) == 30 and s.metadata["recipe"] == "ode_systems"
    assert f"train: {Path('datasets') / 'ode_systems' / 'small' / 'train.h5'}" in res.stdout


def test_package_data_puts_the_recipes_and_licence_in_a_wheel(tmp_path):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["package-data"]["sim.recipes"] == ["*.yaml"]
    assert config["project"]["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
    # build the wheel from a copy of the sources, install it by unpacking, and find a recipe by name with it
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for package in ("sim", "solvers"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(site)
    assert sorted(n for n in names if n.startswith("sim/recipes/") and n.endswith(".yaml")) == \
        [f"sim/recipes/{n}.yaml" for n in SHIPPED]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    probe = ("import solvers.recipes as r; rec = r.load_recipe('elasticity_shapes'); "
             "print(rec.path); print(r.default_out(rec, 'small'))")
    res = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    path, out = res.stdout.split()
    assert Path(path) == site / "sim" / "recipes" / "elasticity_shapes.yaml"
    assert out == str(Path("datasets") / "elasticity_shapes" / "small")
