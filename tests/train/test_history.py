"""Models that see several frames (``model.history``): the dataset gives the frames before the
state, the simulator feeds their changes, the engine, the pushforward unroll, evaluation and the
API carry them, and on second-order dynamics stored without velocities a model that sees two
frames learns what a one-frame model cannot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

import sim
from sim.data.windows import MeshStepDataset
from sim.errors import SimError
from sim.families import configure, train
from sim.mesh import Mesh, Store
from sim.models.mesh.simulator import MeshSimulator
from sim.rollout import rollout
from sim.rollout.evaluate import evaluate_store, mesh_case
from sim.train import Config, load_model
from sim.train.config import ConfigError
from tests.train.diffusion_data import wave_store

STEPS = 12


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return wave_store(tmp_path_factory.mktemp("wave") / "wave.h5", trajectories=6, steps=STEPS)


def _truth(data, name):
    with Store(data) as s:
        traj = s.read(name)
    return traj, traj.point_fields["u"][..., None].astype(np.float32)


def _config(tmp_path, data, history, steps=300):
    return Config.from_dict({
        "model": {"network_args": {"latent": 32, "steps": 2}, "fields": ["u"], "history": history},
        "data": {"train": str(data), "valid": str(data), "batch_size": 4, "valid_rollout_steps": 5},
        "optim": {"lr": 3e-3, "lr_final": 3e-4},
        "train": {"steps": steps, "out": str(tmp_path / f"run_h{history}"), "log_every": 50,
                  "checkpoint_every": 10_000, "valid_every": steps, "normalizer_accumulation_steps": 20},
    })


def _fitted(data, history, pushforward=0):
    """An untrained simulator whose normalisers have seen (and frozen on) one sample."""
    torch.manual_seed(0)
    simulator = MeshSimulator("meshgraphnet", {"latent": 16, "steps": 2}, ["u"], [1], edge_in=3, history=history,
                              pushforward=pushforward)
    for n in (simulator.node_normalizer, simulator.edge_normalizer, simulator.output_normalizer):
        n.max_accumulations = 1
    simulator.train()
    simulator.loss(Batch.from_data_list([MeshStepDataset(data, ["u"], history=history)[0]]))
    return simulator.eval()


def test_dataset_gives_the_frames_before_the_state(data):
    assert len(MeshStepDataset(data, ["u"])) == 6 * (STEPS - 1)
    ds = MeshStepDataset(data, ["u"], history=3, horizon=2)
    assert len(ds) == 6 * (STEPS - 2 - 2)  # starts at step 2, keeps two frames after the state
    item = ds[0]
    assert item.step == 2
    _, u = _truth(data, item.entry)
    np.testing.assert_array_equal(item.past.numpy(), u[[0, 1]].transpose(1, 0, 2))
    np.testing.assert_array_equal(item.state.numpy(), u[2])
    np.testing.assert_array_equal(item.target.numpy(), u[3])
    np.testing.assert_array_equal(item.future.numpy()[:, 0], u[4])
    batch = Batch.from_data_list([ds[0], ds[len(ds) - 1]])
    assert batch.past.shape == (2 * u.shape[1], 2, 1)
    with pytest.raises(SimError, match=f"no trajectory with more than {STEPS + 1} steps"):
        MeshStepDataset(data, ["u"], history=STEPS, horizon=2)


def test_node_features_are_the_state_then_its_latest_changes():
    simulator = MeshSimulator("meshgraphnet", {"latent": 8, "steps": 1}, ["a", "b"], [1, 2], edge_in=3, history=3,
                              scalars=["k"])
    assert simulator.network.config["node_in"] == 3 * 3 + 9 + 1
    g = torch.Generator().manual_seed(1)
    state, past = torch.rand(4, 3, generator=g), torch.rand(4, 2, 3, generator=g)
    node_type = torch.tensor([0, 0, 6, 4])
    x = simulator.node_features(state, node_type, None, torch.tensor([[0.5]]), past)
    expect = torch.cat([state, state - past[:, 1], past[:, 1] - past[:, 0],
                        torch.nn.functional.one_hot(node_type, 9).float(), torch.full((4, 1), 0.5)], -1)
    torch.testing.assert_close(x, expect)
    with pytest.raises(ValueError, match=r"pass the 2 before the state as past \(N, 2, 3\), got none"):
        simulator.node_features(state, node_type, None, torch.tensor([[0.5]]))
    with pytest.raises(ValueError, match="history must be >= 1"):
        MeshSimulator("meshgraphnet", {"latent": 8, "steps": 1}, ["a"], [1], edge_in=3, history=0)


def test_engine_carries_the_frames_before_the_state(data):
    simulator = _fitted(data, history=2)
    with Store(data) as s:
        names = s.names()[:2]
    trajs, truths = zip(*(_truth(data, n) for n in names))
    # by hand: step the one-step map, shift the frames, prescribe the walls from the truth
    u = truths[0]
    keep = simulator.predicted_mask(torch.as_tensor(trajs[0].mesh.node_type)).numpy()
    from sim.graph import mesh_graph

    g = mesh_graph(trajs[0].mesh)
    prev, cur = u[0], u[1]
    for s in range(1, 4):
        upd = simulator.predict_update(torch.as_tensor(cur), g.node_type, g.edge_index, g.edge_attr, g.mesh_pos,
                                       past=torch.as_tensor(prev)[:, None]).numpy()
        prev, cur = cur, np.where(keep[:, None], cur + upd, u[1 + s])
    out = rollout(simulator, [trajs[0].mesh], [u[:2]], 3, 0.1, reference=[u[1:]])
    np.testing.assert_allclose(out.final[0], cur, rtol=1e-5, atol=1e-6)
    together = rollout(simulator, [t.mesh for t in trajs], [x[:2] for x in truths], 3, 0.1,
                       reference=[x[1:] for x in truths])
    np.testing.assert_allclose(together.final[0], cur, rtol=1e-5, atol=1e-6)
    alone = rollout(simulator, [trajs[1].mesh], [truths[1][:2]], 3, 0.1, reference=[truths[1][1:]])
    np.testing.assert_allclose(together.final[1], alone.final[0], rtol=1e-5, atol=1e-6)
    # the frame before matters: another one gives another rollout
    other = rollout(simulator, [trajs[0].mesh], [np.stack([u[1], u[1]])], 3, 0.1, reference=[u[1:]])
    assert not np.allclose(other.final[0], cur)
    with pytest.raises(SimError, match=r"expected \(2, \d+, 1\) \(the model sees 2 frames\)"):
        rollout(simulator, [trajs[0].mesh], [u[1]], 3, 0.1)


def test_pushforward_with_history_is_the_engines_rollout(data):
    simulator = _fitted(data, history=2, pushforward=2)
    ds = MeshStepDataset(data, ["u"], history=2, horizon=3)
    batch = Batch.from_data_list([ds[4]])
    state, inputs = simulator.pushforward(batch, batch.state, 2)
    traj, u = _truth(data, ds[4].entry)
    t = ds[4].step

    def run(k):
        return rollout(simulator, [traj.mesh], [u[t - 1:t + 1]], k, traj.dt, reference=[u[t:]]).final[0]

    np.testing.assert_allclose(state.numpy(), run(2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inputs.past.numpy()[:, 0], run(1), rtol=1e-5, atol=1e-6)


def test_two_frames_learn_second_order_dynamics_that_one_frame_cannot(tmp_path, data):
    """The wave's next state depends on its velocity, which one frame does not show."""
    losses = {}
    for history in (1, 2):
        summary = train(_config(tmp_path, data, history, steps=200), progress=False)
        log = (tmp_path / f"run_h{history}" / "metrics.csv").read_text().splitlines()[1:]
        losses[history] = np.mean([float(r.split(",")[1]) for r in log[-2:]])
        assert np.isfinite(summary["valid_rmse_all"])
    assert losses[2] < 0.1 * losses[1], losses


def test_evaluation_and_api_start_from_the_last_of_the_frames(tmp_path, data):
    train(_config(tmp_path, data, 2, steps=20), progress=False)
    ckpt = tmp_path / "run_h2" / "checkpoint.pt"
    model, _ = load_model(ckpt)
    assert model.config["history"] == 2
    with Store(data) as s:
        name = s.names()[0]
    traj, u = _truth(data, name)
    [res] = evaluate_store(model, data, mesh_case, [name], out=tmp_path / "eval")
    assert res.steps == STEPS - 2
    np.testing.assert_allclose(res.persistence_rmse["1"], np.sqrt(((u[2] - u[1]) ** 2).mean()), rtol=1e-5)
    direct = rollout(model, [traj.mesh], [u[:2]], STEPS - 2, traj.dt, reference=[u[1:]])
    np.testing.assert_allclose(res.mse, direct.mse[0], rtol=1e-6)

    surrogate = sim.load(ckpt)
    assert surrogate.describe()["history"] == 2
    out = surrogate.rollout(traj, 3)
    np.testing.assert_allclose(out.times, traj.times[1:5])
    np.testing.assert_allclose(out.point_fields["u"][-1], rollout(model, [traj.mesh], [u[:2]], 3, traj.dt,
                                                                  reference=[u[1:]]).final[0][:, 0],
                               rtol=1e-6, atol=1e-7)
    bare = Mesh(traj.mesh.points, traj.mesh.cells, point_data={"u": u[0, :, 0]}, node_type=traj.mesh.node_type)
    with pytest.raises(SimError, match="the model sees 2 frames .* start from a Trajectory with at least 2 steps"):
        surrogate.predict(bare)


def test_history_is_an_option_of_mesh_simulators(data):
    base = {"data": {"train": str(data)}}
    with pytest.raises(ConfigError, match=r"model\.history must be >= 1, got 0"):
        Config.from_dict({**base, "model": {"history": 0}})
    assert configure(Config.from_dict({**base, "model": {"history": 2, "pushforward": 1}})).name == "mesh"
    for family in ("steady", "prose"):
        cfg = Config.from_dict({**base, "model": {"family": family, "history": 2}})
        with pytest.raises(ConfigError, match=f"model.pushforward and model.history are options of mesh models, "
                                              f"not of the {family} family"):
            configure(cfg)


@pytest.mark.parametrize("key", ["history", "pushforward"])
def test_particle_models_refuse_the_mesh_history_and_pushforward(data, key):
    cfg = Config.from_dict({"data": {"train": str(data)}, "model": {"family": "particle", key: 2}})
    with pytest.raises(ConfigError, match="options of mesh models, not of the particle family"):
        configure(cfg)
