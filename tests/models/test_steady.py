"""Steady graph model (the graph baseline of MMGP): learns fields from mesh + scalars through the
shared trainer, validates with PLAID's RRMSE, reloads through sim.load."""

from __future__ import annotations

import numpy as np
import pytest

import sim
from sim.errors import SimError
from sim.families import train
from sim.families.steady import rrmse
from sim.mesh import Mesh, StoreWriter
from sim.train import Config
from tests.train.diffusion_data import square_mesh


def _sample(rng: np.random.Generator, n: int) -> Mesh:
    m = square_mesh(n)
    a, b = rng.uniform(0.5, 2.0, 2)
    x, y = m.points[:, 0], m.points[:, 1]
    u = np.stack([a * x * y, b * np.sin(2 * x) * y], 1).astype(np.float32)
    return Mesh(m.points, m.cells, point_data={"u": u, "s": (a * y**2).astype(np.float32)},
                field_data={"a": np.array([a]), "b": np.array([b])}, node_type=m.node_type)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("steady")
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 3)):
        with StoreWriter(tmp / f"{split}.h5") as w:
            for i in range(count):
                w.append(_sample(rng, 6 + i % 3))  # meshes of different sizes
    return tmp


def test_steady_model_learns_fields_from_mesh_and_scalars(stores, tmp_path):
    cfg = Config.from_dict({
        "model": {"family": "steady", "network": "meshgraphnet", "network_args": {"latent": 24, "steps": 3},
                  "fields": ["u", "s"], "scalars": ["a", "b"]},
        "data": {"train": str(stores / "train.h5"), "valid": str(stores / "test.h5"), "batch_size": 4,
                 "valid_entries": 3},
        "optim": {"lr": 3e-3, "lr_final": 3e-4},
        "train": {"steps": 250, "out": str(tmp_path / "run"), "log_every": 25, "valid_every": 250,
                  "normalizer_accumulation_steps": 20},
    })
    summary = train(cfg, progress=False)
    log = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,seconds"
    losses = [float(r.split(",")[1]) for r in log[1:]]
    assert np.mean(losses[-2:]) < 0.1 * np.mean(losses[:2])
    assert summary["valid_rrmse_u"] < 0.15 and summary["valid_rrmse_s"] < 0.15
    surrogate = sim.load(tmp_path / "run" / "checkpoint.pt")
    assert surrogate.family == "steady" and surrogate.describe()["scalars_in"] == ["a", "b"]
    query = _sample(np.random.default_rng(5), 7)
    bare = Mesh(query.points, query.cells, node_type=query.node_type)  # the caller's mesh, no answers on it
    grid = surrogate.predict(bare, a=float(query.field_data["a"][0]), b=float(query.field_data["b"][0]))
    err = np.sqrt(((grid.point_data["u"] - query.point_data["u"]) ** 2).mean()) / np.abs(query.point_data["u"]).max()
    assert rrmse(grid.point_data["u"], query.point_data["u"]) == pytest.approx(err, rel=1e-6)  # PLAID's RRMSE
    assert grid.point_data["u"].shape == (query.num_points, 2) and err < 0.15
    with pytest.raises(SimError, match=r"missing input scalar\(s\) \['b'\]"):
        surrogate.predict(query, a=1.0)


def _forced(rng: np.random.Generator, n: int, with_load: bool = True) -> Mesh:
    """A sample whose output is a nodewise function of an input field that differs per sample
    (no scalar and no coordinate tells it): u = load^2 + a * load."""
    m = square_mesh(n)
    x, y = m.points[:, 0], m.points[:, 1]
    c = rng.uniform(0, 1, 2)
    load = np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2) / 0.1).astype(np.float32)
    a = rng.uniform(0.5, 1.5)
    pd = {"u": (load**2 + a * load).astype(np.float32)}
    if with_load:
        pd["load"] = load
    return Mesh(m.points, m.cells, point_data=pd, field_data={"a": np.array([a])}, node_type=m.node_type)


def test_steady_model_reads_input_point_fields(tmp_path):
    rng = np.random.default_rng(1)
    with StoreWriter(tmp_path / "train.h5") as w:
        for i in range(16):
            w.append(_forced(rng, 6 + i % 2))

    def run(node_inputs: list[str], out: str) -> float:
        cfg = Config.from_dict({
            "model": {"family": "steady", "network": "meshgraphnet", "network_args": {"latent": 24, "steps": 2},
                      "fields": ["u"], "scalars": ["a"], "family_args": {"node_inputs": node_inputs}},
            "data": {"train": str(tmp_path / "train.h5"), "batch_size": 4},
            "optim": {"lr": 3e-3, "lr_final": 3e-4},
            "train": {"steps": 200, "out": str(tmp_path / out), "log_every": 20, "normalizer_accumulation_steps": 20},
        })
        train(cfg, progress=False)
        log = (tmp_path / out / "metrics.csv").read_text().splitlines()
        return float(np.mean([float(r.split(",")[1]) for r in log[-3:]]))

    with_load, without = run(["load"], "with"), run([], "without")
    assert with_load < 0.3 * without  # the output is not learnable without the field
    surrogate = sim.load(tmp_path / "with" / "checkpoint.pt")
    assert surrogate.describe()["node_inputs"] == {"load": 1}
    assert "node_inputs" not in sim.load(tmp_path / "without" / "checkpoint.pt").model.config  # old configs unchanged
    query = _forced(np.random.default_rng(9), 7)
    bare = Mesh(query.points, query.cells, point_data={"load": query.point_data["load"]}, node_type=query.node_type)
    grid = surrogate.predict(bare, a=float(query.field_data["a"][0]))
    assert rrmse(grid.point_data["u"], query.point_data["u"]) < 0.15
    no_load = Mesh(query.points, query.cells, node_type=query.node_type)
    with pytest.raises(SimError, match=r"no point data \['load'\]"):
        surrogate.predict(no_load, a=1.0)
    with StoreWriter(tmp_path / "bad.h5") as w:
        w.append(_forced(rng, 6))
        w.append(_forced(rng, 6, with_load=False), "nolo")
    from sim.data.samples import MeshSampleDataset

    with pytest.raises(SimError, match=r"bad\.h5 entry 'nolo'.*no point data \['load'\]"):
        MeshSampleDataset(tmp_path / "bad.h5", ["u"], ["a"], node_inputs=["load"])
