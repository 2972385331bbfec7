"""Physics-level flow metrics: the shedding frequency of a synthetic wake, zero error of the truth
against itself, the ensemble spread-error rank correlation, and the obstacle found from walls."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import Delaunay

from sim.mesh import Mesh, NodeType
from sim.rollout.flow import FlowStatistics, dominant_frequency, find_obstacle, probe_nodes

PARAMS = {"cx": 0.2, "cy": 0.2, "radius": 0.05, "u_mean": 1.0}


def channel(n: int = 41) -> Mesh:
    x, y = np.meshgrid(np.linspace(0, 1.6, 4 * n), np.linspace(0, 0.4, n))
    pts = np.column_stack([x.ravel(), y.ravel()])
    pts = pts[np.hypot(pts[:, 0] - 0.2, pts[:, 1] - 0.2) > 0.05]
    ring = 0.2 + 0.05 * np.column_stack([np.cos(a := np.linspace(0, 2 * np.pi, 24, endpoint=False)), np.sin(a)])
    pts = np.vstack([pts, ring])
    node_type = np.zeros(len(pts), np.int32)
    node_type[-len(ring):] = NodeType.WALL
    node_type[np.isclose(pts[:, 1], 0) | np.isclose(pts[:, 1], 0.4)] = NodeType.WALL
    node_type[np.isclose(pts[:, 0], 0)] = NodeType.INFLOW
    return Mesh(pts, {"triangle": Delaunay(pts).simplices.astype(np.int64)}, node_type=node_type)


def wake(mesh: Mesh, f: float, steps: int, dt: float, phase: float = 0.0) -> np.ndarray:
    """(T, N, 2): a uniform stream and a transverse wave of frequency f travelling downstream."""
    t = dt * np.arange(steps)[:, None]
    x = mesh.points[None, :, 0]
    v = np.sin(2 * np.pi * f * (t - x / 1.0) + phase) * np.exp(-((mesh.points[None, :, 1] - 0.2) / 0.1) ** 2)
    return np.stack([np.ones_like(v), v], -1)


def feed(stats: FlowStatistics, pred: np.ndarray, std: np.ndarray | None = None) -> None:
    for s in range(len(pred)):
        fields = {"velocity": pred[s], **({"velocity_std": std[s]} if std is not None else {})}
        stats.write(stats.t0 + s * stats.dt, fields)


@pytest.mark.parametrize("f", [2.7, 3.9, 6.1])
def test_frequency_of_a_synthetic_wake_within_one_percent(f):
    mesh, dt = channel(), 0.01
    truth = wake(mesh, f, 300, dt)
    probes = probe_nodes(mesh, find_obstacle(mesh, PARAMS))
    assert len(probes) >= 5 and (mesh.points[probes, 0] > 0.2 + 2 * 0.1 - 0.05).all()  # behind the obstacle
    assert dominant_frequency(truth[1:, probes, 1], dt) == pytest.approx(f, rel=0.01)
    stats = FlowStatistics(mesh, PARAMS, "velocity", truth, 0.0, dt)
    feed(stats, wake(mesh, 1.1 * f, 300, dt))  # a prediction shedding 10 % too fast
    m = stats.metrics()
    assert m["shedding_freq_true"] == pytest.approx(f, rel=0.01)
    assert m["shedding_freq_err"] == pytest.approx(0.1, abs=0.01)
    assert m["strouhal_true"] == pytest.approx(f * 0.1 / 1.0, rel=0.01)  # f D / U


def test_the_truth_against_itself_scores_zero():
    mesh, dt = channel(), 0.01
    truth = wake(mesh, 3.0, 200, dt)
    stats = FlowStatistics(mesh, PARAMS, "velocity", truth, 0.5, dt)
    feed(stats, truth)
    m = stats.metrics()
    assert m["shedding_freq_err"] == 0 and m["mean_field_rrmse"] == 0 and m["fluct_rrmse"] == 0
    shifted = FlowStatistics(mesh, PARAMS, "velocity", truth, 0.5, dt)
    feed(shifted, 1.5 * truth)  # the mean flow and the fluctuations both 50 % too strong
    m = shifted.metrics()
    assert m["mean_field_rrmse"] == pytest.approx(0.5, rel=1e-6) and m["fluct_rrmse"] == pytest.approx(0.5, rel=1e-6)


def test_ensemble_spread_that_tracks_the_error_ranks_it():
    mesh, dt = channel(21), 0.01
    rng = np.random.default_rng(0)
    truth = wake(mesh, 3.0, 60, dt)
    scale = rng.uniform(0.01, 1.0, (60, mesh.num_points, 1))  # where and when the members disagree
    pred = truth + scale * rng.normal(size=truth.shape)  # ... the mean is that far off
    stats = FlowStatistics(mesh, PARAMS, "velocity", truth, 0.0, dt)
    feed(stats, pred, np.broadcast_to(scale, truth.shape))
    assert stats.metrics()["spread_error_spearman"] > 0.5
    blind = FlowStatistics(mesh, PARAMS, "velocity", truth, 0.0, dt)
    feed(blind, pred, rng.uniform(0.01, 1.0, truth.shape))  # a spread unrelated to the error
    assert abs(blind.metrics()["spread_error_spearman"]) < 0.1


def test_obstacle_from_the_walls_without_recipe_parameters():
    mesh = channel()
    obstacle = find_obstacle(mesh, {})
    np.testing.assert_allclose(obstacle.center, [0.2, 0.2], atol=1e-3)
    assert obstacle.diameter == pytest.approx(0.1, rel=0.02)
    bare = Mesh(mesh.points, mesh.cells, node_type=np.where(mesh.node_type == NodeType.WALL, 0, mesh.node_type))
    assert find_obstacle(bare, {}) is None  # no obstacle, no shedding metrics
