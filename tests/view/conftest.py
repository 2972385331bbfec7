"""A small rollout series (prediction, truth and error of a velocity, and a pressure) in each
format the viewer reads."""

from __future__ import annotations

import numpy as np
import pytest

from sim.mesh import Trajectory
from tests.channel import channel


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
