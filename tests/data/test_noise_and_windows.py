"""Training noise lands only where it should; step datasets read the right pairs lazily."""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.loader import DataLoader

import sim.mesh as sm
from sim.data.noise import mesh_input_noise, random_walk_noise
from sim.data.windows import MeshStepDataset
from sim.mesh import NodeType
from sim.models.mesh.simulator import MeshSimulator
from tests.conftest import trajectory_2d


def test_mesh_noise_only_on_interior_nodes():
    g = torch.Generator().manual_seed(0)
    nt = torch.tensor([NodeType.INTERIOR, NodeType.WALL, NodeType.INFLOW, NodeType.INTERIOR, NodeType.OUTFLOW] * 200)
    noise = mesh_input_noise(torch.zeros(1000, 2), nt, 0.02, generator=g)
    interior = nt == NodeType.INTERIOR
    assert (noise[~interior] == 0).all()
    assert abs(noise[interior].std().item() - 0.02) < 0.002


def test_random_walk_noise_accumulates_along_the_history():
    g = torch.Generator().manual_seed(1)
    noise = random_walk_noise(torch.zeros(20000, 6, 2), std_last_step=3e-4, generator=g)
    assert (noise[:, 0] == 0).all()
    vel = noise[:, 1:] - noise[:, :-1]  # velocity noise: a random walk
    assert abs(vel[:, -1].std().item() - 3e-4) / 3e-4 < 0.05  # last velocity carries the full std
    assert abs(vel[:, 0].std().item() - 3e-4 / 5**0.5) / (3e-4 / 5**0.5) < 0.05


def test_simulator_loss_ignores_prescribed_nodes():
    from sim.graph import mesh_graph

    torch.manual_seed(0)
    sim_ = MeshSimulator("meshgraphnet", {"latent": 8, "steps": 1}, ["u"], [2], edge_in=3)
    mesh = trajectory_2d().mesh
    g = mesh_graph(mesh)
    g.state, g.target = torch.zeros(6, 2), torch.randn(6, 2)
    sim_.loss(g)  # training mode: accumulate normaliser statistics once
    sim_.eval()  # no accumulation, no noise
    clean = sim_.loss(g).item()
    inflow = torch.from_numpy(mesh.node_type == NodeType.INFLOW)
    g.target[inflow] += 1e3  # a huge error on prescribed nodes only
    assert sim_.loss(g).item() == clean
    g.target[~inflow] += 1.0
    assert sim_.loss(g).item() > clean


def test_step_dataset_pairs_and_batches(tmp_path):
    with sm.StoreWriter(tmp_path / "d.h5") as w:
        w.append(trajectory_2d(5), name="a")
        w.append(trajectory_2d(3), name="b")
    ds = MeshStepDataset(tmp_path / "d.h5", ["velocity", "pressure"])
    assert len(ds) == 4 + 2 and ds.num_features == 3
    item = ds[5]  # entry b, step 1 -> 2
    ref = trajectory_2d(3)
    np.testing.assert_array_equal(item.state[:, :2].numpy(), ref.point_fields["velocity"][1])
    np.testing.assert_array_equal(item.target[:, 2].numpy(), ref.point_fields["pressure"][2].astype(np.float32))
    batch = next(iter(DataLoader(ds, batch_size=3, shuffle=False)))
    assert batch.state.shape == (18, 3) and batch.edge_index.max() < 18
    assert batch.dt.shape == (3,)
