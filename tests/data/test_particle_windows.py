"""Particle windows: the acceleration target, pooled statistics, wall features, sparse subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from sim.data.particles import (ParticleStatistics, ParticleWindowDataset, acceleration_target,
                                semi_implicit_euler, velocities, wall_distances)
from sim.data.sampling import sparse_subset, subset_size, trajectory_seed
from sim.errors import SimError
from sim.mesh import Mesh, Store, StoreWriter, Trajectory
from sim.models.particle.simulator import ParticleSimulator
from tests.data.mpm_store import mpm_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return mpm_store(tmp_path_factory.mktemp("mpm") / "water.h5")


def test_acceleration_target_inverts_to_the_next_position(store):
    ds = ParticleWindowDataset(store, history=6)
    for k in (0, len(ds) // 2, len(ds) - 1):
        item = ds[k]
        acc = acceleration_target(item.history.double(), item.target.double(), ds.statistics.dt)
        nxt = semi_implicit_euler(item.history.double(), acc, ds.statistics.dt)
        torch.testing.assert_close(nxt, item.target.double(), rtol=0, atol=1e-12)
    name, t = ds.index[3]
    with Store(store) as s:
        pos = s.entry(name).positions[()]
    item = ds[3]  # window = frames t-5..t, target = frame t+1, all particles at ratio 1
    np.testing.assert_array_equal(item.history.numpy(), pos[t - 5:t + 1].transpose(1, 0, 2))
    np.testing.assert_array_equal(item.target.numpy(), pos[t + 1])
    v = velocities(item.history, ds.statistics.dt)
    assert v.shape == (pos.shape[1], 5, 2)


def test_statistics_are_pooled_over_all_frames_not_averaged_per_trajectory(tmp_path):
    # two trajectories moving at very different speeds: the mean of per-trajectory stds is
    # not the pooled std, and the model must use the pooled one
    rng = np.random.default_rng(0)
    frames, dt = 10, 0.01
    trajs, all_vel = [], []
    for speed, n in ((0.1, 40), (3.0, 10)):
        x0 = rng.uniform(0.3, 0.7, (n, 2))
        v = speed * rng.standard_normal((n, 2))
        pos = x0[None] + v[None] * dt * np.arange(frames)[:, None, None] + 1e-4 * rng.standard_normal((frames, n, 2))
        trajs.append(Trajectory(Mesh(x0), np.arange(frames) * dt, positions=pos, dt=dt))
        all_vel.append((np.diff(pos, axis=0) / dt).reshape(-1, 2))
    from solvers.mpm import dataset_statistics

    with StoreWriter(tmp_path / "s.h5") as w:
        for t in trajs:
            w.append(t)
    stats = dataset_statistics({"train": tmp_path / "s.h5"}, {"n_grid": 64})
    with StoreWriter(tmp_path / "s.h5", append=True, metadata={"statistics": stats}):
        pass
    pooled = np.concatenate(all_vel)
    per_traj = np.mean([v.std(0) for v in all_vel], axis=0)
    assert not np.allclose(pooled.std(0), per_traj, rtol=0.1)
    read = ParticleStatistics.from_store(tmp_path / "s.h5")
    np.testing.assert_allclose(read.vel_std, pooled.std(0), rtol=1e-6)
    sim_ = ParticleSimulator("meshgraphnet", {"latent": 8, "steps": 1}, read.to_dict())
    np.testing.assert_allclose(sim_.velocity_normalizer.std.numpy(), pooled.std(0), rtol=1e-6)
    np.testing.assert_allclose(sim_.velocity_normalizer.mean.numpy(), pooled.mean(0), rtol=1e-6, atol=1e-9)


def test_store_without_statistics_is_refused_with_its_name(tmp_path):
    with StoreWriter(tmp_path / "bare.h5") as w:
        w.append(Trajectory(Mesh(np.random.rand(5, 2)), np.arange(8) * 0.1, positions=np.random.rand(8, 5, 2)))
    with pytest.raises(SimError, match=r"bare\.h5: the store metadata has no particle statistics"):
        ParticleWindowDataset(tmp_path / "bare.h5")
    with StoreWriter(tmp_path / "bare.h5", append=True, metadata={"statistics": {"dt": 0.1, "vel_mean": [0, 0]}}):
        pass
    with pytest.raises(SimError, match=r"bare\.h5: the particle statistics in the store metadata lack \['vel_std'"):
        ParticleWindowDataset(tmp_path / "bare.h5")


def test_wall_distances_are_divided_by_the_radius_and_clipped():
    bounds = torch.tensor([[0.0, 1.0], [0.0, 2.0]])
    pos = torch.tensor([[0.01, 1.0], [0.5, 1.995], [-0.1, 0.0]])
    d = wall_distances(pos, bounds, radius=0.02)
    torch.testing.assert_close(d[0], torch.tensor([0.5, 1.0, 1.0, 1.0]))
    torch.testing.assert_close(d[1], torch.tensor([1.0, 1.0, 1.0, 0.25]))
    torch.testing.assert_close(d[2], torch.tensor([-1.0, 0.0, 1.0, 1.0]))


@pytest.mark.parametrize("method", ["random", "fps"])
def test_sparse_subset_is_fixed_per_trajectory_and_has_the_requested_size(method):
    pts = np.random.default_rng(0).random((1000, 2))
    a = sparse_subset(pts, 0.05, method, trajectory_seed(0, "000001"))
    b = sparse_subset(pts, 0.05, method, trajectory_seed(0, "000001"))
    c = sparse_subset(pts, 0.05, method, trajectory_seed(0, "000002"))
    np.testing.assert_array_equal(a, b)
    assert len(a) == subset_size(1000, 0.05) == 50 and len(np.unique(a)) == 50 and not np.array_equal(a, c)
    assert len(sparse_subset(pts, 0.01, method)) == 10 and len(sparse_subset(pts, 0.25, method)) == 250
    np.testing.assert_array_equal(sparse_subset(pts, 1.0, method), np.arange(1000))


def test_farthest_point_sampling_covers_the_body_better_than_random():
    g = np.stack(np.meshgrid(np.linspace(0, 1, 60), np.linspace(0, 1, 60)), -1).reshape(-1, 2)
    from scipy.spatial import cKDTree

    def covering(idx):
        return cKDTree(g[idx]).query(g)[0].max()

    fps = covering(sparse_subset(g, 0.02, "fps", 3))
    rnd = max(covering(sparse_subset(g, 0.02, "random", s)) for s in range(3))
    assert fps < 0.75 * rnd


def test_sparse_windows_batch_with_their_decoder_neighbours(store):
    ds = ParticleWindowDataset(store, sample_ratio=0.1, sampling="fps", dense_queries=50, decoder_neighbors=6)
    a, b = ds[0], ds[len(ds) - 1]
    assert a.entry != b.entry
    with Store(store) as s:
        n_a = s.entry(a.entry).positions.shape[1]
    assert a.num_nodes == subset_size(n_a, 0.1) and a.decoder_index.shape == (6, 50)
    tr = ds.trajectory(a.entry)
    np.testing.assert_array_equal(a.reference.numpy(), tr["positions"][0][tr["sparse"]])
    batch = Batch.from_data_list([a, b])
    # neighbour ids of the second sample point at the second sample's sparse nodes
    torch.testing.assert_close(batch.decoder_index[:, 50:], b.decoder_index + a.num_nodes)
    torch.testing.assert_close(batch.reference[batch.decoder_index[:, 50:]], b.reference[b.decoder_index])
    # the query displacements are those of the dense particles at the last history frame
    with Store(store) as s:
        pos = s.entry(a.entry).positions[()]
    t = a.step
    q = np.flatnonzero((pos[0][:, None] == a.query_reference.numpy()[None]).all(-1).any(1))
    np.testing.assert_allclose(a.query_displacement.numpy(), pos[t][q] - pos[0][q], atol=1e-7)


def test_the_spacing_rule_keeps_the_sparse_nodes_as_far_apart_on_a_finer_set():
    """A block sampled twice as finely (four times the particles in 2D): a fixed ratio gives four
    times the nodes, the spacing rule the same count and node spacing as on the training set."""
    from sim.data.sampling import particle_spacing, spacing_ratio

    def block(h):
        g = np.arange(0.2, 0.6, h)
        rng = np.random.default_rng(0)
        return np.stack(np.meshgrid(g, g), -1).reshape(-1, 2) + rng.uniform(-0.1, 0.1, (len(g) ** 2, 2)) * h

    coarse, fine = block(0.01), block(0.005)
    assert len(fine) == 4 * len(coarse)
    s = particle_spacing(coarse)
    assert 0.007 < s < 0.011 and 0.4 < particle_spacing(fine) / s < 0.6
    assert spacing_ratio(coarse, 0.05, s) == pytest.approx(0.05)
    r = spacing_ratio(fine, 0.05, s)
    assert len(sparse_subset(fine, 0.05)) == 4 * len(sparse_subset(coarse, 0.05))
    a, b = sparse_subset(coarse, 0.05, "fps", 1), sparse_subset(fine, r, "fps", 1)
    assert abs(len(b) - len(a)) <= 0.15 * len(a)
    assert particle_spacing(fine[b]) == pytest.approx(particle_spacing(coarse[a]), rel=0.15)
    assert spacing_ratio(coarse, 0.9, particle_spacing(fine)) == 1.0  # a coarser set: never more than all
    with pytest.raises(ValueError, match="reference spacing"):
        spacing_ratio(fine, 0.05, 0.0)


def test_a_spacing_model_samples_a_finer_set_at_its_training_spacing(store, tmp_path):
    ds = ParticleWindowDataset(store, sample_ratio=0.1, sample_rule="spacing")
    with Store(store) as s:
        first = s.entry(s.names()[0]).positions[0]
    from sim.data.sampling import particle_spacing

    assert ds.reference_spacing == pytest.approx(particle_spacing(first), rel=0.3)
    stats = ds.statistics.to_dict()
    ratio_model = ParticleSimulator("meshgraphnet", {"latent": 8, "steps": 1}, stats, sample_ratio=0.1)
    assert "sample_rule" not in ratio_model.config  # a ratio model's configuration is as before
    model = ParticleSimulator("meshgraphnet", {"latent": 8, "steps": 1}, stats, sample_ratio=0.1,
                              sample_rule="spacing", reference_spacing=ds.reference_spacing)
    assert model.config["sample_rule"] == "spacing"
    a = ds[0]
    np.testing.assert_array_equal(model.sparse_indices(ds.trajectory(a.entry)["positions"][0], a.entry),
                                  ds.trajectory(a.entry)["sparse"])  # training and rollout pick the same nodes
    # the same bodies with four particles where there was one (each split into a 2 x 2 cluster)
    h = ds.reference_spacing / 4
    finer = np.concatenate([first + np.array(o) for o in [(-h, -h), (-h, h), (h, -h), (h, h)]])
    n_ratio = len(ratio_model.sparse_indices(finer))
    n_spacing = len(model.sparse_indices(finer))
    assert n_ratio == subset_size(len(finer), 0.1)
    assert n_spacing < 0.5 * n_ratio
    with pytest.raises(ValueError, match="reference_spacing"):
        ParticleSimulator("meshgraphnet", {"latent": 8, "steps": 1}, stats, sample_ratio=0.1, sample_rule="spacing")


def test_the_family_records_the_training_spacing_in_the_model(store):
    from sim.families import get_family
    from sim.train import Config

    cfg = Config.from_dict({"model": {"family": "particle", "network": "meshgraphnet",
                                      "network_args": {"latent": 8, "steps": 1},
                                      "family_args": {"sample_ratio": 0.1, "sample_rule": "spacing"}},
                            "data": {"train": str(store)}, "train": {"steps": 1}})
    family = get_family("particle")
    ds = family.build_dataset(cfg)
    model = family.build_model(cfg, ds)
    assert ds.sample_rule == "spacing" and model.config["reference_spacing"] == ds.reference_spacing > 0
