"""Particle rollout: exact integration of the true acceleration, the box, divergence, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim.data.normalizer import Normalizer
from sim.data.particles import ParticleStatistics
from sim.mesh import Mesh, PVDWriter, SeriesLayout, Store, read
from sim.models.particle.simulator import ParticleSimulator
from sim.rollout import RolloutDiverged
from sim.rollout.evaluate import evaluate_store
from sim.rollout.particles import particle_case, particle_rollout
from tests.data.mpm_store import mpm_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return mpm_store(tmp_path_factory.mktemp("mpm") / "jelly.h5", material="jelly", frames=16)


def _positions(store, name="000000"):
    with Store(store) as s:
        return np.asarray(s.entry(name).positions[()], dtype=np.float32)


class Oracle:
    """Returns the true acceleration of the stored trajectory (or NaN from ``nan_at``)."""

    def __init__(self, positions: np.ndarray, stats: ParticleStatistics, nan_at: int | None = None):
        self.truth = positions.astype(np.float64)
        self.config = {"history": 6}
        self.dim, self.dt, self.decoder = positions.shape[-1], stats.dt, None
        self.bounds = torch.tensor(stats.bounds, dtype=torch.float32)
        self.frame, self.nan_at = 5, nan_at

    def sparse_indices(self, reference, name=""):
        return np.arange(len(reference))

    def predict_acceleration(self, state, particle_type, batch=None):
        x = self.truth
        f = self.frame
        self.frame += 1
        acc = (x[f + 1] - 2 * x[f] + x[f - 1]) / self.dt**2
        if self.nan_at is not None and f - 4 == self.nan_at:
            acc[0] = np.nan
        return torch.as_tensor(acc, dtype=state.dtype)


def test_true_accelerations_reproduce_the_trajectory(store):
    pos = _positions(store)
    steps = len(pos) - 6
    res = particle_rollout(Oracle(pos, ParticleStatistics.from_store(store)), [pos[:6]], steps,
                           reference=[pos[5:]])
    assert len(res.mse[0]) == steps and res.mse[0].max() < 1e-11
    np.testing.assert_allclose(res.final[0], pos[-1], atol=2e-6)


def test_divergence_stops_with_a_clear_error_and_leaves_no_files(store, tmp_path):
    pos = _positions(store)
    layout = SeriesLayout(Mesh(pos[0]), point_fields=["displacement"], moving=True, dt=0.005)
    writer = PVDWriter(tmp_path / "r.pvd", layout)
    with pytest.raises(RolloutDiverged, match="at step 3: NaN"):
        particle_rollout(Oracle(pos, ParticleStatistics.from_store(store), nan_at=3), [pos[:6]], 8, writers=[writer])
    assert not (tmp_path / "r.pvd").exists() and not (tmp_path / "r").exists()


def _giorom(store, ratio=0.25, seed=0):
    torch.manual_seed(seed)
    stats = ParticleStatistics.from_store(store).to_dict()
    return ParticleSimulator("giorom", {"latent": 16, "mp_before": 1, "mp_after": 1, "grid": 8, "grid_channels": 8,
                                        "modes": 3, "processor_layers": 1},
                             stats, sample_ratio=ratio, decoder={"neighbors": 8}).eval()


def test_rollout_keeps_particles_inside_the_box(store, tmp_path):
    sim_ = _giorom(store)
    # a model that pushes everything hard towards +x and -y (0.05 per frame squared)
    sim_.acceleration_normalizer = Normalizer.from_statistics([2000.0, -2000.0], [1.0, 1.0])
    pos = _positions(store)
    layout = SeriesLayout(Mesh(pos[0]), point_fields=["displacement"], moving=True, dt=sim_.dt)
    with PVDWriter(tmp_path / "box.pvd", layout) as writer:
        res = particle_rollout(sim_, [pos[:6]], 10, writers=[writer])
    series = read(tmp_path / "box.pvd")
    assert series.positions.shape == (11, pos.shape[1], 2)  # every particle, decoded from the sparse ones
    for p in (series.positions, res.final[0]):
        assert p.min() >= 0.0 and p.max() <= 1.0
    assert np.isclose(res.final[0][:, 0].max(), 1.0) and np.isclose(res.final[0][:, 1].min(), 0.0)  # at the walls


def test_batched_rollout_equals_separate_rollouts(store):
    sim_ = _giorom(store, seed=1)
    a, b = _positions(store, "000000"), _positions(store, "000001")
    both = particle_rollout(sim_, [a[:6], b[:6]], 4, names=["000000", "000001"], reference=[a[5:], b[5:]])
    one = particle_rollout(sim_, [a[:6]], 4, names=["000000"], reference=[a[5:]])
    two = particle_rollout(sim_, [b[:6]], 4, names=["000001"], reference=[b[5:]])
    np.testing.assert_allclose(both.final[0], one.final[0], atol=1e-5)
    np.testing.assert_allclose(both.final[1], two.final[0], atol=1e-5)
    np.testing.assert_array_equal(both.sparse_index[1], two.sparse_index[0])
    assert len(both.sparse_index[0]) == int(np.ceil(0.25 * a.shape[1]))
    np.testing.assert_allclose(both.mse[1], two.mse[0], rtol=1e-3)


def test_store_evaluation_is_the_rollout_of_each_entry(store, tmp_path):
    """``evaluate_store`` with the particle case: the engine's rollout of the entry from its first
    frames, compared with every particle, and a series with prediction, truth and error."""
    sim_ = _giorom(store, seed=2)
    with Store(store) as s:
        traj = s.read("000001")
    pos = np.asarray(traj.positions, dtype=np.float32)
    [res] = evaluate_store(sim_, store, particle_case, ["000001"], steps=4, out=tmp_path / "eval")
    types = traj.mesh.point_data.get("particle_type")
    direct = particle_rollout(sim_, [pos[:6]], 4, names=["000001"], reference=[pos[5:]],
                              particle_types=None if types is None else [types])
    assert res.name == "000001" and res.steps == 4 and len(res.mse) == 4
    np.testing.assert_allclose(res.mse, direct.mse[0], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(res.persistence_rmse["1"], np.sqrt(((pos[6] - pos[5]) ** 2).mean()), rtol=1e-5)
    series = read(tmp_path / "eval" / "000001.pvd")
    assert series.positions.shape == (5, pos.shape[1], 2)
    np.testing.assert_allclose(series.positions[-1], direct.final[0], atol=1e-5)
    np.testing.assert_allclose(series.point_fields["displacement_truth"][-1], pos[9] - pos[0], atol=1e-6)
    np.testing.assert_allclose(series.point_fields["displacement_error"],
                               series.point_fields["displacement"] - series.point_fields["displacement_truth"],
                               atol=1e-6)
