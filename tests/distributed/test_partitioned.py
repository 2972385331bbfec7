"""Partitions with halos, and partitioned rollouts equal to the single-process rollout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sim.distributed import build_partition, model_halo, partition_mesh, read_partition, write_partition
from sim.distributed.partition import hop_depth, node_adjacency
from sim.errors import SimError
from sim.graph.edges import cell_edges
from sim.mesh import Mesh, Store, StoreWriter, Trajectory
from tests.channel import channel


def _edge_set(ei: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(ei[0].tolist(), ei[1].tolist()))


@pytest.mark.parametrize("method", ["metis", "geometric"])
@pytest.mark.parametrize("parts", [2, 3])
def test_parts_own_every_node_once_and_keep_every_edge_near_them(method, parts):
    mesh = channel(40, 16)
    halo = 3
    p = partition_mesh(mesh, parts, halo, method=method)
    assert p.method == method
    counts = np.bincount(np.concatenate([q.owned for q in p.parts]), minlength=mesh.num_points)
    assert np.all(counts == 1)
    # owned counts balanced within 10 %
    owned = np.array([q.num_owned for q in p.parts])
    assert owned.max() <= 1.1 * mesh.num_points / parts
    full = _edge_set(cell_edges(mesh.cells, mesh.num_points))
    adj = node_adjacency(mesh)
    written = np.zeros(mesh.num_cells, dtype=int)
    for q in p.parts:
        depth = hop_depth(adj, p.owner == q.rank, halo + 1)
        assert np.all(depth[q.nodes] <= halo)  # triangles: the local nodes lie within the halo
        local = q.nodes[cell_edges(q.cells, q.num_local)]
        have = _edge_set(local)
        near = set(np.flatnonzero(depth <= halo - 1).tolist())
        needed = {e for e in full if e[1] in near}  # every edge into a node within halo - 1 hops
        assert needed <= have
        assert have <= full
        for k in q.cells:
            written[q.cell_ids[q.written[k]]] += 1
    assert np.all(written == 1)  # the pieces tile the mesh


def test_partition_file_round_trip_and_bad_inputs(tmp_path):
    mesh = channel(20, 8)
    p = partition_mesh(mesh, 2, 2, method="geometric")
    path = write_partition(p, tmp_path / "p.h5")
    back = read_partition(path)
    assert np.array_equal(back.owner, p.owner) and back.halo == 2
    for a, b in zip(p.parts, back.parts):
        assert np.array_equal(a.nodes, b.nodes) and a.num_owned == b.num_owned
        assert all(np.array_equal(a.cells[k], b.cells[k]) for k in a.cells)
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(SimError, match="bad.h5"):
        read_partition(tmp_path / "bad.h5")
    with pytest.raises(SimError, match="parts"):
        partition_mesh(mesh, 0, 2)
    with pytest.raises(SimError, match="halo"):
        build_partition(mesh, p.owner, 0)


def _flow_store(path: Path, mesh: Mesh, steps: int = 6) -> Path:
    x, y = mesh.points[:, 0], mesh.points[:, 1]
    t = np.arange(steps) * 0.05
    u = np.stack([np.sin(2 * x[None] - t[:, None] * 3) * y[None] * (1 - y[None]) * 4,
                  0.3 * np.cos(3 * x[None] + t[:, None]) * np.sin(np.pi * y[None])], axis=-1).astype(np.float32)
    traj = Trajectory(mesh=mesh, times=t, point_fields={"velocity": u}, dt=0.05, params={"nu": 0.01})
    with StoreWriter(path) as w:
        w.append(traj, "flow")
    return path


def _model(network: str, args: dict, store: Path, history: int = 1):
    from sim.data.windows import MeshStepDataset
    from sim.models.mesh.simulator import MeshSimulator

    torch.manual_seed(0)
    model = MeshSimulator(network, args, ["velocity"], [2], edge_in=3, scalars=["nu"], history=history)
    ds = MeshStepDataset(store, ["velocity"], scalars=["nu"], history=history)
    model.train()
    for i in range(min(3, len(ds))):  # normaliser statistics of the data
        s = ds[i]
        model.loss(s)
    model.eval()
    return model


def _single_rollout(model, store: Path, steps: int) -> np.ndarray:
    from sim.rollout.steppers import MeshStepper

    with Store(store) as s:
        traj = s.read("flow")
    h = model.config["history"]
    u = traj.point_fields["velocity"]
    st = MeshStepper(model, [traj.mesh], [u[:h]], [traj.dt], [float(traj.times[h - 1])],
                     boundary=[lambda k, t: u[h - 1 + k]], params=[traj.params])
    with torch.no_grad():
        for k in range(1, steps + 1):
            st.advance(k)
    return st.state.numpy()


@pytest.mark.parametrize("network,args,history", [
    ("meshgraphnet", {"latent": 16, "steps": 3, "hidden_layers": 1}, 1),
    ("meshgraphnet", {"latent": 16, "steps": 2, "hidden_layers": 1}, 2),
    ("graph_transformer", {"dim": 16, "layers": 3, "heads": 2, "dilation": [1, 2]}, 1),
])
def test_two_rank_rollout_equals_single_process(tmp_path, network, args, history):
    import pyvista as pv

    from sim.families.partitioned import partitioned_rollout
    from sim.train.checkpoint import save_checkpoint

    mesh = channel(90, 36)  # 3,240 nodes
    store = _flow_store(tmp_path / "flow.h5", mesh)
    model = _model(network, args, store, history)
    ckpt = save_checkpoint(tmp_path / "m.pt", model)
    steps = 4
    ref = _single_rollout(model, store, steps)
    res = partitioned_rollout(ckpt, store, 2, out=tmp_path / "out", steps=steps, threads=1)
    assert res["halo"] == model_halo(model.network)
    assert [r["owned"] for r in res["ranks"]] and sum(r["owned"] for r in res["ranks"]) == mesh.num_points
    pvd = Path(res["series"])
    assert pvd.exists() and len(list((tmp_path / "out" / "flow").glob("*.pvtu"))) == steps + 1
    last = pv.read(tmp_path / "out" / "flow" / f"flow_{steps:06d}.pvtu")
    gid = np.asarray(last.point_data["global_id"])
    got = np.asarray(last.point_data["velocity"])[:, :2]
    assert set(gid.tolist()) == set(range(mesh.num_points))
    scale = np.abs(ref).max()
    assert np.abs(got - ref[gid]).max() <= 1e-5 * scale
    with Store(store) as s:
        u = s.read("flow").point_fields["velocity"]
    truth = u[history - 1 + steps]
    assert np.abs(ref - u[history - 1]).max() > 1e-3  # the model moved the state
    # the RMSE it reports is the single-process one
    assert res["rmse_per_step"][-1] == pytest.approx(float(np.sqrt(((ref - truth) ** 2).mean())), rel=1e-4)


def test_partitioned_rollout_refuses_what_it_cannot_split(tmp_path):
    from sim.families.partitioned import partitioned_rollout
    from sim.train.checkpoint import save_checkpoint

    mesh = channel(20, 8)
    store = _flow_store(tmp_path / "flow.h5", mesh)
    model = _model("graph_transformer", {"dim": 8, "layers": 1, "heads": 1, "global_tokens": 1}, store)
    ckpt = save_checkpoint(tmp_path / "g.pt", model)
    with pytest.raises(SimError, match="receptive field"):
        partitioned_rollout(ckpt, store, 2, steps=1, threads=1)
    model = _model("meshgraphnet", {"latent": 8, "steps": 1, "hidden_layers": 1}, store)
    ckpt = save_checkpoint(tmp_path / "m.pt", model)
    with pytest.raises(SimError, match="correction"):
        partitioned_rollout(ckpt, store, 2, steps=1, threads=1, correction="divergence_free")
    small = partition_mesh(mesh, 2, 1, method="geometric")
    write_partition(small, tmp_path / "p.h5")
    deeper = save_checkpoint(tmp_path / "m2.pt", _model("meshgraphnet", {"latent": 8, "steps": 2, "hidden_layers": 1},
                                                        store))
    with pytest.raises(SimError, match="halo is 1 hops deep; the model needs 2"):
        partitioned_rollout(deeper, store, 2, steps=1, threads=1, partition=tmp_path / "p.h5")


def _grads_on_part(rank, world, ckpt, store, seed, pushforward, frozen):
    """One training loss on this rank's part; the summed loss and gradients over the ranks."""
    from torch_geometric.data import Batch

    from sim.data.windows import MeshStepDataset
    from sim.distributed.training import GraphPartitioner
    from sim.train import load_model

    model, batch, gen = _training_case(ckpt, store, seed, pushforward, frozen, load_model, MeshStepDataset, Batch)
    part = GraphPartitioner(world, rank, model_halo(model.network))
    local, ctx = part.split(batch, model.predicted_mask)
    model.halo = ctx
    loss = model.loss(local, gen)
    loss.backward()
    flat = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    total = loss.detach().reshape(1).clone()
    torch.distributed.all_reduce(flat)
    torch.distributed.all_reduce(total)
    stats = torch.cat([model.node_normalizer.sum, model.edge_normalizer.sum, model.output_normalizer.sum])
    return {"loss": total, "grads": flat, "stats": stats, "local": torch.tensor(local.num_nodes),
            "owned": torch.tensor(ctx.num_owned)}


def _training_case(ckpt, store, seed, pushforward, frozen, load_model, dataset_cls, batch_cls):
    model, _ = load_model(ckpt)
    model.train()
    model.config["pushforward"] = pushforward
    if frozen:
        for n in (model.node_normalizer, model.edge_normalizer, model.output_normalizer):
            n.max_accumulations = int(n.accumulations)
    ds = dataset_cls(store, ["velocity"], scalars=["nu"], horizon=pushforward + 1, history=model.config["history"])
    batch = batch_cls.from_data_list([ds[0]])  # one large graph (two of one mesh would split without a cut)
    return model, batch, torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("pushforward,frozen", [(0, False), (2, True)])
def test_two_rank_training_step_has_the_single_process_loss_and_gradients(tmp_path, pushforward, frozen):
    from torch_geometric.data import Batch

    from sim.data.windows import MeshStepDataset
    from sim.distributed.comm import launch
    from sim.train import load_model
    from sim.train.checkpoint import save_checkpoint

    mesh = channel(90, 36)  # 3,240 nodes
    store = _flow_store(tmp_path / "flow.h5", mesh)
    model = _model("meshgraphnet", {"latent": 16, "steps": 2, "hidden_layers": 1}, store)
    model.config["noise_std"] = 0.05
    ckpt = save_checkpoint(tmp_path / "m.pt", model)
    for seed in range(20):  # a seed whose pushforward draw is not zero steps
        ref_model, batch, gen = _training_case(ckpt, store, seed, pushforward, frozen, load_model, MeshStepDataset,
                                               Batch)
        torch.randn((batch.num_nodes, 2), generator=gen)
        if not pushforward or ref_model._pushforward_steps(gen):
            break
    ref_model, batch, gen = _training_case(ckpt, store, seed, pushforward, frozen, load_model, MeshStepDataset, Batch)
    loss = ref_model.loss(batch, gen)
    loss.backward()
    ref = torch.cat([p.grad.reshape(-1) for p in ref_model.parameters()])
    ref_stats = torch.cat([ref_model.node_normalizer.sum, ref_model.edge_normalizer.sum,
                           ref_model.output_normalizer.sum])
    res = launch(_grads_on_part, 2, str(ckpt), str(store), seed, pushforward, frozen, threads=1)
    assert int(res["owned"]) < int(res["local"]) < batch.num_nodes  # rank 0 computed on a part and its halo
    assert float(res["loss"]) == pytest.approx(float(loss.detach()), rel=1e-5)
    assert torch.allclose(res["grads"], ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
    assert torch.allclose(res["stats"], ref_stats, rtol=1e-9)


def _train_config(store: Path, out: Path, partitions: int) -> dict:
    return {"model": {"family": "mesh", "network": "meshgraphnet",
                      "network_args": {"latent": 16, "steps": 2, "hidden_layers": 1}, "fields": ["velocity"],
                      "noise_std": 0.05, "pushforward": 1, "scalars": ["nu"]},
            "data": {"train": str(store), "batch_size": 1},
            "optim": {"lr": 1e-3},
            "train": {"steps": 6, "out": str(out), "seed": 3, "log_every": 1, "normalizer_accumulation_steps": 2,
                      "tensorboard": False, "checkpoint_every": 100, "partitions": partitions, "device": "cpu"}}


def _train_rank(rank, world, cfg):
    from sim.families import train
    from sim.train import Config

    return {"loss": torch.tensor(train(Config.from_dict(cfg), progress=False)["final_loss"])}


def test_partitioned_training_run_follows_the_single_process_run(tmp_path):
    import csv

    from sim.distributed.comm import launch
    from sim.families import train
    from sim.train import Config, load_model

    store = _flow_store(tmp_path / "flow.h5", channel(80, 30), steps=8)
    train(Config.from_dict(_train_config(store, tmp_path / "one", 1)), progress=False)
    launch(_train_rank, 2, _train_config(store, tmp_path / "two", 2), threads=1)

    def losses(run: Path) -> list[float]:
        with open(run / "metrics.csv") as f:
            return [float(r["loss"]) for r in csv.DictReader(f)]

    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(a) == len(b) == 6
    assert np.allclose(a, b, rtol=1e-4)
    wa = load_model(tmp_path / "one" / "checkpoint.pt")[0].state_dict()
    wb = load_model(tmp_path / "two" / "checkpoint.pt")[0].state_dict()
    for k in wa:
        assert torch.allclose(wa[k].double(), wb[k].double(), rtol=1e-3, atol=1e-5), k


def test_partitioned_training_refusals(tmp_path):
    from sim.families import train
    from sim.train import Config, ConfigError

    store = _flow_store(tmp_path / "flow.h5", channel(20, 8))
    with pytest.raises(ConfigError, match="torchrun"):
        train(Config.from_dict(_train_config(store, tmp_path / "r", 2)), progress=False)


def test_rollout_from_a_partition_file_equals_single_process(tmp_path):
    import pyvista as pv

    from sim.families.partitioned import partitioned_rollout
    from sim.train.checkpoint import save_checkpoint

    mesh = channel(60, 30)
    store = _flow_store(tmp_path / "flow.h5", mesh)
    model = _model("meshgraphnet", {"latent": 16, "steps": 2, "hidden_layers": 1}, store)
    ckpt = save_checkpoint(tmp_path / "m.pt", model)
    ref = _single_rollout(model, store, 3)
    write_partition(partition_mesh(mesh, 3, 2, method="geometric"), tmp_path / "p.h5")
    res = partitioned_rollout(ckpt, store, 3, out=tmp_path / "out", steps=3, partition=tmp_path / "p.h5", threads=1)
    last = pv.read(tmp_path / "out" / "flow" / "flow_000003.pvtu")
    gid = np.asarray(last.point_data["global_id"])
    assert np.abs(np.asarray(last.point_data["velocity"])[:, :2] - ref[gid]).max() <= 1e-5 * np.abs(ref).max()
    assert sorted(set(np.asarray(last.cell_data["rank"]).tolist())) == [0, 1, 2]
    assert len(res["ranks"]) == 3
