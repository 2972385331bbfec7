"""A tiny elasticity recipe (coarse plates, three test samples) and a small MMGP configuration."""

from __future__ import annotations

import pytest

RECIPE = """
name: tiny_plates
generator: solvers.elasticity:generate
seed: 5
params: {family: notched, E: [70.0, 130.0], nu: [0.25, 0.35], load: [0.5, 1.5]}
sizes:
  tiny:
    params: {mesh_size: 0.15}
    splits: {train: 4, test: 3}
"""

MODEL = """
model:
  family: mmgp
  fields: [u, von_mises]
  scalars: [E, nu, load]
  family_args: {shape_modes: 4, field_modes: 4, n_restarts: 0, n_draws: 10}
"""


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory):
    p = tmp_path_factory.mktemp("recipe") / "tiny_plates.yaml"
    p.write_text(RECIPE)
    return p


@pytest.fixture(scope="session")
def mmgp_config(tmp_path_factory):
    p = tmp_path_factory.mktemp("config") / "mmgp.yaml"
    p.write_text(MODEL)
    return p
