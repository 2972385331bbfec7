"""Trajectory parameters as model inputs (``model.scalars``): the dataset attaches them, the
simulator broadcasts them per graph, the engine and the API pass each trajectory's own, and a
model that sees the diffusion coefficient learns dynamics that one without it cannot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

import sim
from sim.data.windows import MeshStepDataset
from sim.errors import SimError
from sim.families import train
from sim.mesh import Store
from sim.models.mesh.simulator import MeshSimulator
from sim.rollout import rollout
from sim.train import Config, load_model
from tests.train.diffusion_data import diffusion_store

KAPPAS = [0.02, 0.14]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return diffusion_store(tmp_path_factory.mktemp("kappa") / "diff.h5", trajectories=6, kappas=KAPPAS)


def _config(tmp_path, data, scalars, steps=300):
    return Config.from_dict({
        "model": {"network_args": {"latent": 32, "steps": 2}, "fields": ["u"], "scalars": scalars},
        "data": {"train": str(data), "valid": str(data), "batch_size": 4, "valid_rollout_steps": 5},
        "optim": {"lr": 3e-3, "lr_final": 3e-4},
        "train": {"steps": steps, "out": str(tmp_path / ("run_" + "_".join(scalars))), "log_every": 50,
                  "checkpoint_every": 10_000, "valid_every": steps, "normalizer_accumulation_steps": 20},
    })


def test_dataset_attaches_each_entrys_parameters_and_names_missing_ones(data):
    ds = MeshStepDataset(data, ["u"], scalars=["kappa"])
    per_entry = {}
    for k in range(len(ds)):
        item = ds[k]
        per_entry.setdefault(item.entry, set()).add(float(item.scalars[0, 0]))
    with Store(data) as s:
        expect = {n: {float(np.float32(s.read(n).params["kappa"]))} for n in s.names()}
    assert per_entry == expect
    batch = Batch.from_data_list([ds[0], ds[len(ds) - 1]])
    assert batch.scalars.shape == (2, 1)
    with pytest.raises(SimError, match=r"entry '\w+' has no parameter\(s\) \['reynolds'\]"):
        MeshStepDataset(data, ["u"], scalars=["reynolds"])


def _sim():
    torch.manual_seed(0)
    simulator = MeshSimulator("meshgraphnet", {"latent": 16, "steps": 2}, ["u"], [1], edge_in=3, scalars=["kappa"])
    # normaliser statistics as after training: u in [0, 1], 9 node types, kappa in KAPPAS
    simulator.node_normalizer.accumulate(torch.cat([torch.rand(40, 1), torch.eye(9)[torch.randint(0, 9, (40,))],
                                                    torch.tensor(KAPPAS).repeat(20)[:, None]], -1))
    simulator.edge_normalizer.accumulate(torch.randn(40, 3))
    simulator.output_normalizer.accumulate(0.01 * torch.randn(40, 1))
    return simulator.eval()


def test_engine_gives_each_trajectory_its_own_parameters(data):
    simulator = _sim()
    with Store(data) as s:
        a, b = (s.read(n) for n in s.names()[:2])
    assert a.params["kappa"] != b.params["kappa"]
    x = [t.point_fields["u"][0][:, None].astype(np.float32) for t in (a, b)]
    together = rollout(simulator, [a.mesh, b.mesh], x, 3, 0.1, params=[a.params, b.params])
    for i, t in enumerate((a, b)):
        alone = rollout(simulator, [t.mesh], [x[i]], 3, 0.1, params=[t.params])
        np.testing.assert_allclose(together.final[i], alone.final[0], rtol=1e-5, atol=1e-6)
    swapped = rollout(simulator, [a.mesh], [x[0]], 3, 0.1, params=[b.params])
    assert not np.allclose(swapped.final[0], together.final[0])  # the parameter reaches the output
    with pytest.raises(SimError, match=r"conditioned on trajectory parameter\(s\) \['kappa'\]"):
        rollout(simulator, [a.mesh], [x[0]], 3, 0.1)
    with pytest.raises(SimError, match=r"trajectory 0 has no parameter\(s\) \['kappa'\]"):
        rollout(simulator, [a.mesh], [x[0]], 3, 0.1, params=[{"nu": 1.0}])


def test_the_coefficient_as_input_lets_the_model_learn_what_it_cannot_without(tmp_path, data):
    """Half the trajectories diffuse 7x faster: without kappa the one-step map is ambiguous."""
    losses = {}
    for scalars in ([], ["kappa"]):
        summary = train(_config(tmp_path, data, scalars), progress=False)
        log = (tmp_path / ("run_" + "_".join(scalars)) / "metrics.csv").read_text().splitlines()[1:]
        losses[tuple(scalars)] = np.mean([float(r.split(",")[1]) for r in log[-2:]])
        assert np.isfinite(summary["valid_rmse_all"])
    assert losses[("kappa",)] < 0.5 * losses[()], losses


def test_checkpoint_and_api_carry_the_parameters(tmp_path, data):
    train(_config(tmp_path, data, ["kappa"], steps=20), progress=False)
    ckpt = tmp_path / "run_kappa" / "checkpoint.pt"
    model, _ = load_model(ckpt)
    assert model.config["scalars"] == ["kappa"]
    surrogate = sim.load(ckpt)
    assert surrogate.describe()["scalars"] == ["kappa"]
    with Store(data) as s:
        traj = s.read(s.names()[0])
    own = surrogate.rollout(traj, 3)  # the trajectory's params give kappa
    ref = traj.point_fields["u"][..., None].astype(np.float32)
    direct = rollout(model, [traj.mesh], [ref[0]], 3, traj.dt, reference=[ref[:4]], params=[traj.params])
    np.testing.assert_allclose(own.point_fields["u"][-1], direct.final[0][:, 0], rtol=1e-6, atol=1e-7)
    other = surrogate.rollout(traj, 3, params={"kappa": 0.3})
    assert not np.allclose(other.point_fields["u"][-1], own.point_fields["u"][-1])
    step = surrogate.predict(traj, kappa=traj.params["kappa"])
    np.testing.assert_allclose(step.point_data["u"], own.point_fields["u"][1], rtol=1e-6, atol=1e-7)
    bare = sim.mesh.Mesh(traj.mesh.points, traj.mesh.cells, point_data={"u": traj.point_fields["u"][0]},
                         node_type=traj.mesh.node_type)
    with pytest.raises(SimError, match=r"conditioned on \['kappa'\]: give \['kappa'\]"):
        surrogate.predict(bare)
    with pytest.raises(SimError, match=r"takes no parameter\(s\) \['nu'\]"):
        surrogate.rollout(traj, 2, params={"nu": 1.0})
