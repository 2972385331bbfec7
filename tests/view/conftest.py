"""A small rollout series (prediction, truth and error of a velocity, and a pressure) in each
format the viewer reads."""

from __future__ import annotations

import numpy as np
import pytest

from sim.mesh import Mesh, Trajectory


def channel(nx: int = 30, ny: int = 12) -> Mesh:
    x, y = np.meshgrid(np.linspace(0.0, 3.0, nx), np.linspace(0.0, 1.0, ny))
    pts = np.c_[x.ravel(), y.ravel()]
    tri = []
    for j in range(ny - 1):
        for i in range(nx - 1):
            a = j * nx + i
            tri += [[a, a + 1, a + nx + 1], [a, a + nx + 1, a + nx]]
    return Mesh(pts, {"triangle": np.array(tri)})


def rollout(steps: int = 12) -> Trajectory:
    """A travelling wave (the truth) and a prediction whose error grows linearly with the step."""
    mesh = channel()
    p = mesh.points
    truth = np.stack([np.stack([np.sin(2 * p[:, 0] - 0.3 * k), np.cos(3 * p[:, 1] + 0.2 * k)], 1)
                      for k in range(steps)])
    pred = truth + 0.05 * np.arange(steps)[:, None, None] * np.sin(p[:, :1])[None]
    return Trajectory(mesh, np.arange(steps) * 0.1, {"velocity": pred, "velocity_truth": truth,
                                                     "velocity_error": pred - truth, "pressure": 2 * truth[..., :1]})


@pytest.fixture
def traj() -> Trajectory:
    return rollout()
