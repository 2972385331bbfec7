"""Static node inputs of mesh models (``model.family_args.node_inputs``): point data of the mesh the
model reads at every node and does not predict. The dataset attaches each entry's, the engine
each trajectory's, the API checks the query mesh carries them, and a model that sees the source
learns dynamics that one without it cannot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

import sim
from sim.data.windows import MeshStepDataset
from sim.errors import SimError
from sim.families import train
from sim.mesh import Mesh, Store, StoreWriter, Trajectory
from sim.models.mesh.simulator import MeshSimulator
from sim.rollout import rollout
from sim.train import Config, load_model
from tests.train.diffusion_data import source_store


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return source_store(tmp_path_factory.mktemp("source") / "source.h5", trajectories=6)


def _config(tmp_path, data, node_inputs, steps=300):
    return Config.from_dict({
        "model": {"network_args": {"latent": 32, "steps": 2}, "fields": ["u"],
                  "family_args": {"node_inputs": node_inputs}},
        "data": {"train": str(data), "valid": str(data), "batch_size": 4, "valid_rollout_steps": 5},
        "optim": {"lr": 3e-3, "lr_final": 3e-4},
        "train": {"steps": steps, "out": str(tmp_path / ("run_" + "_".join(node_inputs))), "log_every": 50,
                  "checkpoint_every": 10_000, "valid_every": steps, "normalizer_accumulation_steps": 20},
    })


def test_dataset_attaches_each_entrys_source_and_names_a_missing_field(data, tmp_path):
    ds = MeshStepDataset(data, ["u"], node_inputs=["source"])
    assert ds.node_input_dims == [1]
    with Store(data) as s:
        sources = {n: s.read(n).mesh.point_data["source"] for n in s.names()}
    for k in (0, len(ds) - 1):
        item = ds[k]
        np.testing.assert_array_equal(item.static[:, 0].numpy(), sources[item.entry])
    batch = Batch.from_data_list([ds[0], ds[len(ds) - 1]])
    assert batch.static.shape == (batch.num_nodes, 1)
    with pytest.raises(SimError, match=r"entry '\w+' has no point data \['density'\]"):
        MeshStepDataset(data, ["u"], node_inputs=["density"])
    wide = tmp_path / "wide.h5"  # a vector field is one input of its width
    with Store(data) as s:
        t = s.read(s.names()[0])
    with StoreWriter(wide) as w:
        w.append(Trajectory(Mesh(t.mesh.points, t.mesh.cells,
                                 point_data={"source": np.ones((t.mesh.num_points, 2), np.float32)},
                                 node_type=t.mesh.node_type), t.times, point_fields=t.point_fields))
    ds2 = MeshStepDataset(wide, ["u"], node_inputs=["source"])
    assert ds2.node_input_dims == [2]
    assert ds2[0].static.shape == (t.mesh.num_points, 2)


def _sim():
    torch.manual_seed(0)
    simulator = MeshSimulator("meshgraphnet", {"latent": 16, "steps": 2}, ["u"], [1], edge_in=3,
                              node_inputs=["source"])
    simulator.node_normalizer.accumulate(torch.cat([torch.rand(40, 1), torch.eye(9)[torch.randint(0, 9, (40,))],
                                                    torch.rand(40, 1)], -1))
    simulator.edge_normalizer.accumulate(torch.randn(40, 3))
    simulator.output_normalizer.accumulate(0.01 * torch.randn(40, 1))
    return simulator.eval()


def test_engine_gives_each_trajectory_its_own_source(data):
    simulator = _sim()
    with Store(data) as s:
        a, b = (s.read(n) for n in s.names()[:2])
    assert not np.allclose(a.mesh.point_data["source"], b.mesh.point_data["source"])
    x = [a.point_fields["u"][0][:, None].astype(np.float32)] * 2
    together = rollout(simulator, [a.mesh, b.mesh], x, 3, 0.1)
    for i, t in enumerate((a, b)):
        alone = rollout(simulator, [t.mesh], [x[i]], 3, 0.1)
        np.testing.assert_allclose(together.final[i], alone.final[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(together.final[0], together.final[1])  # same state, the source tells them apart
    bare = Mesh(a.mesh.points, a.mesh.cells, node_type=a.mesh.node_type)
    with pytest.raises(SimError, match=r"has no point data \['source'\]"):
        rollout(simulator, [bare], [x[0]], 3, 0.1)
    wide = Mesh(a.mesh.points, a.mesh.cells, point_data={"source": np.ones((a.mesh.num_points, 2), np.float32)},
                node_type=a.mesh.node_type)
    with pytest.raises(SimError, match=rf"point data 'source' has shape \({a.mesh.num_points}, 2\); the model "
                                       rf"expects \({a.mesh.num_points},\)"):
        rollout(simulator, [wide], [x[0]], 3, 0.1)
    with pytest.raises(ValueError, match="node inputs"):
        simulator.node_features(torch.zeros(5, 1), torch.zeros(5, dtype=torch.long))


def test_the_source_as_input_lets_the_model_learn_what_it_cannot_without(tmp_path, data):
    losses = {}
    for node_inputs in ([], ["source"]):
        summary = train(_config(tmp_path, data, node_inputs), progress=False)
        log = (tmp_path / ("run_" + "_".join(node_inputs)) / "metrics.csv").read_text().splitlines()[1:]
        losses[tuple(node_inputs)] = np.mean([float(r.split(",")[1]) for r in log[-2:]])
        assert np.isfinite(summary["valid_rmse_all"])
    assert losses[("source",)] < 0.3 * losses[()], losses


def test_checkpoint_and_api_read_the_source_from_the_query_mesh(tmp_path, data):
    train(_config(tmp_path, data, ["source"], steps=20), progress=False)
    ckpt = tmp_path / "run_source" / "checkpoint.pt"
    model, _ = load_model(ckpt)
    assert model.config["node_inputs"] == ["source"] and model.config["node_input_dims"] == [1]
    surrogate = sim.load(ckpt)
    assert surrogate.describe()["node_inputs"] == ["source"]
    with Store(data) as s:
        traj = s.read(s.names()[0])
    own = surrogate.rollout(traj, 3)
    ref = traj.point_fields["u"][..., None].astype(np.float32)
    direct = rollout(model, [traj.mesh], [ref[0]], 3, traj.dt, reference=[ref[:4]])
    np.testing.assert_allclose(own.point_fields["u"][-1], direct.final[0][:, 0], rtol=1e-6, atol=1e-7)
    query = Mesh(traj.mesh.points, traj.mesh.cells, point_data={"u": traj.point_fields["u"][0],
                                                                 "source": 3 * traj.mesh.point_data["source"]},
                 node_type=traj.mesh.node_type)
    step = surrogate.predict(query, dt=traj.dt)
    assert not np.allclose(step.point_data["u"], own.point_fields["u"][1])  # the query's own source counts
    bare = Mesh(traj.mesh.points, traj.mesh.cells, point_data={"u": traj.point_fields["u"][0]},
                node_type=traj.mesh.node_type)
    with pytest.raises(SimError, match=r"has no point data \['source'\]"):
        surrogate.predict(bare, dt=traj.dt)
