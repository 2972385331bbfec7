"""Active learning for a mesh time-stepping model on cylinder flow: the generator's draw and solve
stages, the mesh adapter's last-layer kernel, and a tiny loop whose candidates are trajectories."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import sim
from sim.active import run_active
from sim.active.adapters import MeshAdapter
from sim.active.loop import load_model_config, training_sections
from sim.mesh import NodeType, Store, Trajectory
from solvers.cfd import cylinder

COARSE = {"mesh_size": 0.08, "mesh_size_min": 0.03, "warmup": 0.05, "num_steps": 4, "ramp": 0.02}

RECIPE = """
name: tiny_channels
generator: solvers.cfd.cylinder:generate
seed: 3
params: {mesh_size: 0.08, mesh_size_min: 0.03, warmup: 0.05, ramp: 0.02, num_steps: 4}
sizes:
  tiny:
    splits: {train: 2, test: 1}
"""

MODEL = """
model:
  family: mesh
  fields: [velocity]
  scalars: [nu]
  network_args: {latent: 16, steps: 2}
optim: {lr: 3.0e-3}
train: {steps: 15, log_every: 5, seed: 0}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mesh_active")
    (d / "recipe.yaml").write_text(RECIPE)
    (d / "model.yaml").write_text(MODEL)
    return d / "recipe.yaml", d / "model.yaml"


def test_cylinder_draw_then_solve_is_generate():
    drawn = cylinder.draw(COARSE, 11)
    assert {"cx", "cy", "radius", "u_mean", "reynolds", "nu"} <= set(drawn.field_data)
    guess = drawn.point_data["velocity"]
    walls = np.isin(drawn.node_type, (int(NodeType.WALL), int(NodeType.OBSTACLE)))
    assert (guess[walls] == 0).all() and guess[~walls, 0].max() > 0 and (guess[:, 1] == 0).all()
    u_mean = float(drawn.field_data["u_mean"][0])
    assert guess[:, 0].max() <= 1.5 * u_mean + 1e-6  # the parabolic inflow profile peaks at 1.5 u_mean
    a, b = cylinder.generate(COARSE, 11), cylinder.solve(drawn, COARSE)
    assert isinstance(b, Trajectory) and a.params == b.params
    np.testing.assert_array_equal(a.point_fields["velocity"], b.point_fields["velocity"])
    np.testing.assert_array_equal(a.mesh.points, b.mesh.points)


def test_the_mesh_adapter_kernel_is_a_posterior_that_knows_its_training_set(files):
    _, model_file = files
    model_cfg, options, source = load_model_config(model_file)
    adapter = MeshAdapter(model_cfg, options, source, training_sections(model_file))
    assert adapter.train_args["steps"] == 15 and adapter.optim == {"lr": 3e-3}
    drawn = [cylinder.draw(COARSE, s) for s in range(6)]
    adapter.fit([cylinder.solve(d, COARSE) for d in drawn[:2]], drawn[:2])
    feats = adapter.features(drawn)
    assert feats.shape == (6, 16) and np.isfinite(feats).all()
    prior, post = adapter.kernel(feats, prior=True), adapter.kernel(feats)
    for k in (prior, post):
        np.testing.assert_allclose(k, k.T)
        assert np.linalg.eigvalsh(k).min() > -1e-9
    var = np.diag(post)
    assert (var <= np.diag(prior) + 1e-12).all()
    assert var[:2].max() < var[2:].min()  # the candidates it trained on are the ones it is surest about
    np.testing.assert_allclose(adapter.variance(feats), var)
    scores = adapter.score([cylinder.generate(COARSE, 40)])
    assert list(scores)[0] == "rmse_all" and all(math.isfinite(v) for v in scores.values())


def test_a_tiny_cylinder_run_simulates_the_chosen_trajectories(files, tmp_path):
    recipe, model_file = files
    out = tmp_path / "run"
    result = run_active(recipe, model_file, size="tiny", strategy="kecor", budget=4, batch=1, initial=2, pool=5,
                        seed=0, out=out, progress=False)
    assert [c for c, _ in result.curve] == [2, 3, 4] and all(math.isfinite(e) for _, e in result.curve)
    state = json.loads((out / "state.json").read_text())
    with Store(out / "train.h5") as s:
        sims = {n: s.read(n) for n in s.names()}
    assert sorted(sims) == sorted(state["chosen"]) and len(sims) == 4
    assert all(isinstance(t, Trajectory) and t.num_steps == 4 for t in sims.values())
    assert len({t.params["generator_seed"] for t in sims.values()}) == 4
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["solver_calls"]) for r in rows] == [2, 3, 4] and "rmse_all" in rows[0]
    assert state["config"]["training"]["train"]["steps"] == 15
    assert result.model.suffix == ".pt" and sim.load(result.model).family == "mesh"
