"""Rollout of learned particle simulators (GNS baseline, GIOROM) with dense decoding.

Per step, for every trajectory of the batch: the simulator predicts the acceleration of
the last frame of the (sparse) position history on a radius graph rebuilt from the current
positions; the engine integrates it with semi-implicit Euler
(:func:`~sim.data.particles.semi_implicit_euler`), keeps the particles inside the domain
box, shifts the history, checks for divergence, then evaluates the dense motion at the
query points (a :class:`~sim.nn.dense_decoder.DecodePlan` built once per query set;
without a decoder the particles themselves are the output) and streams it to the writers
and the metrics. Same conventions as the mesh engine (:mod:`sim.rollout.engine`): runs
under ``torch.inference_mode``, holds only the current history, writers are aborted when
the rollout diverges or is interrupted, per-step MSE and horizon RMSE in
:class:`RolloutResult` (here of positions, over all query points).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sim.data.particles import PARTICLE_TYPE
from sim.errors import SimError
from sim.mesh import Mesh, SeriesLayout, Trajectory
from sim.rollout.engine import RolloutResult, StepWriter, run
from sim.rollout.evaluate import Case
from sim.rollout.steppers import DISPLACEMENT, ParticleStepper


@dataclass
class ParticleRolloutResult(RolloutResult):
    """``final``: dense positions per trajectory; ``mse``: per-step MSE of the dense positions
    (over query points and components); ``sparse_mse``: the same on the simulated particles."""

    sparse_mse: list[np.ndarray] = field(default_factory=list)
    sparse_index: list[np.ndarray] = field(default_factory=list)


def particle_rollout(simulator: Any, histories: Sequence[np.ndarray], steps: int,
                     rest: Sequence[np.ndarray] | None = None, particle_types: Sequence[np.ndarray] | None = None,
                     names: Sequence[str] | None = None, queries: Sequence[np.ndarray] | None = None,
                     reference: Sequence[np.ndarray] | None = None,
                     writers: Sequence[StepWriter | None] | None = None, t0: Sequence[float] | float = 0.0,
                     device: str | torch.device = "cpu", compile: bool = False) -> ParticleRolloutResult:
    """Roll a :class:`~sim.models.particle.simulator.ParticleSimulator` forward ``steps`` frames.

    Args:
        histories: per trajectory the last H frames of all particles, (H, N_i, d).
        rest: per trajectory the reference configuration (N_i, d) (default: ``histories[i][0]``);
            the sparse subset and the dense decoding live there.
        particle_types: per trajectory (N_i,) (default zeros).
        names: entry names (seed the per-trajectory sparse subsets as in training).
        queries: per trajectory the reference positions (Q_i, d) where the motion is wanted
            (default: every particle). Needs a dense decoder unless it runs on all particles.
        reference: per trajectory the true positions of the query points, (>= steps + 1, Q_i, d)
            with frame 0 the last history frame, for the metrics.
        writers: per trajectory a moving-point writer (point field ``displacement``), or None.
            Step 0 (the last history frame, decoded) is written too.
        compile: ``torch.compile`` the acceleration (dynamic shapes: the radius graph changes).
    """
    k = len(histories)
    t0s = [float(t0)] * k if np.isscalar(t0) else [float(x) for x in t0]
    stepper = ParticleStepper(simulator, histories, rest, particle_types, names, queries, t0s, device,
                              sparse_reference=reference if queries is None else None, compile=compile)
    res = run(stepper, steps, stepper.times, writers, reference)
    return ParticleRolloutResult(final=res.final, mse=res.mse,
                                 sparse_mse=[np.array(m) for m in stepper.sparse_mse] if reference is not None and
                                 queries is None else [], sparse_index=stepper.sparse)


def particle_layout(traj: Trajectory, fields: list[str]) -> SeriesLayout:
    """A moving point-cloud series of the trajectory's particles (reference configuration)."""
    mesh = Mesh(traj.mesh.points, point_data={k: v for k, v in traj.mesh.point_data.items()})
    return SeriesLayout(mesh, point_fields=fields, moving=True, dt=traj.dt, params=traj.params)


def particle_case(simulator: Any, traj: Trajectory, name: str, steps: int | None, data: Any, device: Any = "cpu",
                  compile: bool = False) -> Case:
    """Rollout of a store entry from its first ``H`` frames, compared with every particle: the
    dense point cloud (all particles, decoded from the sparse nodes for GIOROM) with point
    fields ``displacement`` (from the reference configuration), ``displacement_truth`` and
    ``displacement_error``."""
    h, dt_model = simulator.config["history"], simulator.dt
    if not isinstance(traj, Trajectory) or traj.positions is None:
        raise SimError(f"entry {name!r} has no moving positions: particle rollouts need particle trajectories", data)
    if traj.num_steps <= h:
        raise SimError(f"entry {name!r} has {traj.num_steps} frames; the model needs {h} to start", data)
    dt = traj.dt or float(np.diff(traj.times[:2])[0])
    if not np.isclose(dt, dt_model, rtol=1e-6):
        raise SimError(f"entry {name!r} has frame step {dt:g}; the model was trained with {dt_model:g}", data)
    pos = np.asarray(traj.positions, dtype=np.float32)
    rest = pos[0]
    n = traj.num_steps - h if steps is None else min(steps, traj.num_steps - h)
    ref = pos[h - 1: h + n]
    types = traj.mesh.point_data.get(PARTICLE_TYPE)
    t0 = float(traj.times[h - 1])
    stepper = ParticleStepper(simulator, [pos[:h]], [rest], None if types is None else [types], [name], None, [t0],
                              device, compile=compile)
    layout = particle_layout(traj, [DISPLACEMENT, f"{DISPLACEMENT}_truth", f"{DISPLACEMENT}_error"])
    return Case(stepper, ref, ref - rest, n, t0, dt, layout)
