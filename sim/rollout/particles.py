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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim.data.particles import PARTICLE_TYPE, semi_implicit_euler
from sim.errors import SimError
from sim.mesh import Mesh, PVDWriter, SeriesLayout, Store, Trajectory, XDMFWriter
from sim.rollout.engine import RolloutResult, StepWriter, check_diverged, streaming
from sim.rollout.evaluate import ComparisonWriter, EntryResult

DISPLACEMENT = "displacement"


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
                     device: str | torch.device = "cpu") -> ParticleRolloutResult:
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
    """
    k = len(histories)
    c = simulator.config
    h, dim, dt = c["history"], simulator.dim, simulator.dt
    rest = [np.asarray(x[0]) for x in histories] if rest is None else [np.asarray(r) for r in rest]
    names = list(names) if names is not None else [""] * k
    t0s = [float(t0)] * k if np.isscalar(t0) else [float(x) for x in t0]
    writers = list(writers) if writers is not None else [None] * k
    for i, x in enumerate(histories):
        if x.ndim != 3 or x.shape[0] != h or x.shape[2] != dim or rest[i].shape != x.shape[1:]:
            raise SimError(f"trajectory {i}: history has shape {x.shape}, expected ({h}, N, {dim}) with a "
                           f"reference configuration of shape (N, {dim}), got {rest[i].shape}")
    sparse = [simulator.sparse_indices(rest[i], names[i]) for i in range(k)]
    full = [len(s) == len(r) for s, r in zip(sparse, rest)]
    if simulator.decoder is None and (queries is not None or not all(full)):
        raise SimError("this simulator has no dense decoder: it can only report its own particles")
    types = [np.zeros(len(r), np.int64) if particle_types is None else np.asarray(particle_types[i])
             for i, r in enumerate(rest)]
    sizes = [len(s) for s in sparse]
    offsets = np.concatenate([[0], np.cumsum(sizes)])

    def to(a: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

    state = to(np.concatenate([histories[i][:, sparse[i]].transpose(1, 0, 2) for i in range(k)]))  # (n, H, d)
    ptype = to(np.concatenate([types[i][sparse[i]] for i in range(k)]), torch.long)
    batch = torch.repeat_interleave(torch.arange(k, device=device), to(sizes, torch.long)) if k > 1 else None
    lo_box, hi_box = simulator.bounds[:, 0].to(device), simulator.bounds[:, 1].to(device)
    sparse_rest = [to(rest[i][sparse[i]]) for i in range(k)]
    query_pos = [to(rest[i] if queries is None else queries[i]) for i in range(k)]
    mse: list[list[float]] = [[] for _ in range(k)]
    sparse_mse: list[list[float]] = [[] for _ in range(k)]
    with torch.inference_mode():
        plans = [None if queries is None and full[i] else simulator.decode_plan(sparse_rest[i], query_pos[i])
                 for i in range(k)]

        def dense(i: int, positions: torch.Tensor) -> np.ndarray:
            p = positions[offsets[i]:offsets[i + 1]]
            if plans[i] is not None:  # decoded points stay in the box like the simulated ones
                p = torch.minimum(torch.maximum(query_pos[i] + plans[i].apply(p - sparse_rest[i]), lo_box), hi_box)
            return p.cpu().numpy()

        with streaming(writers):
            out = [dense(i, state[:, -1]) for i in range(k)]
            for i, w in enumerate(writers):
                if w is not None:
                    q = query_pos[i].cpu().numpy()
                    w.write(t0s[i], {DISPLACEMENT: out[i] - q}, positions=out[i])
            for s in range(1, steps + 1):
                acc = simulator.predict_acceleration(state, ptype, batch)
                nxt = torch.minimum(torch.maximum(semi_implicit_euler(state, acc, dt), lo_box), hi_box)
                check_diverged(nxt.cpu().numpy(), s)
                state = torch.cat([state[:, 1:], nxt[:, None]], dim=1)
                out = [dense(i, nxt) for i in range(k)]
                for i in range(k):
                    if writers[i] is not None:
                        q = query_pos[i].cpu().numpy()
                        writers[i].write(t0s[i] + s * dt, {DISPLACEMENT: out[i] - q}, positions=out[i])
                    if reference is not None:
                        mse[i].append(float(((out[i] - reference[i][s]) ** 2).mean()))
                        if queries is None:
                            sp = nxt[offsets[i]:offsets[i + 1]].cpu().numpy()
                            sparse_mse[i].append(float(((sp - reference[i][s][sparse[i]]) ** 2).mean()))
    return ParticleRolloutResult(final=out, mse=[np.array(m) for m in mse] if reference is not None else [],
                                 sparse_mse=[np.array(m) for m in sparse_mse] if reference is not None else [],
                                 sparse_index=sparse)


def particle_layout(traj: Trajectory, fields: list[str]) -> SeriesLayout:
    """A moving point-cloud series of the trajectory's particles (reference configuration)."""
    mesh = Mesh(traj.mesh.points, point_data={k: v for k, v in traj.mesh.point_data.items()})
    return SeriesLayout(mesh, point_fields=fields, moving=True, dt=traj.dt, params=traj.params)


def evaluate_particle_store(simulator: Any, data: str | Path, entries: list[str] | None = None,
                            steps: int | None = None, out: Path | None = None, fmt: str = "pvd", plot: bool = False,
                            device: str = "cpu") -> list[EntryResult]:
    """Roll out each entry from its first ``H`` frames and compare every particle with the truth.

    Writes ``out/<entry>.pvd`` (or ``.xdmf``): the dense point cloud (all particles, decoded
    from the sparse nodes for GIOROM) moving through time, with point fields
    ``displacement`` (from the reference configuration), ``displacement_truth`` and
    ``displacement_error``. ``plot`` adds the error-vs-step PNG.
    """
    h, dt_model = simulator.config["history"], simulator.dt
    results = []
    with Store(data) as store:
        for name in entries or store.names():
            traj = store.read(name)
            if not isinstance(traj, Trajectory) or traj.positions is None:
                raise SimError(f"entry {name!r} has no moving positions: particle rollouts need particle "
                               f"trajectories", data)
            if traj.num_steps <= h:
                raise SimError(f"entry {name!r} has {traj.num_steps} frames; the model needs {h} to start", data)
            dt = traj.dt or float(np.diff(traj.times[:2])[0])
            if not np.isclose(dt, dt_model, rtol=1e-6):
                raise SimError(f"entry {name!r} has frame step {dt:g}; the model was trained with {dt_model:g}", data)
            pos = np.asarray(traj.positions, dtype=np.float32)
            rest = pos[0]
            n = traj.num_steps - h if steps is None else min(steps, traj.num_steps - h)
            ref = pos[h - 1: h + n]
            writer, path = None, None
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                path = out / f"{name}.{fmt}"
                fields = [DISPLACEMENT, f"{DISPLACEMENT}_truth", f"{DISPLACEMENT}_error"]
                layout = particle_layout(traj, fields)
                base = PVDWriter(path, layout) if fmt == "pvd" else XDMFWriter(path, layout)
                writer = ComparisonWriter(base, ref - rest, [DISPLACEMENT], [pos.shape[-1]],
                                          float(traj.times[h - 1]), dt)
            types = traj.mesh.point_data.get(PARTICLE_TYPE)
            res = particle_rollout(simulator, [pos[:h]], n, rest=[rest], names=[name],
                                   particle_types=None if types is None else [types], reference=[ref],
                                   writers=[writer], t0=float(traj.times[h - 1]), device=device)
            persistence = np.array([((ref[s] - ref[0]) ** 2).mean() for s in range(1, n + 1)])
            pres = RolloutResult(final=[], mse=[persistence])
            results.append(EntryResult(name, n, res.rmse(0), res.mse[0], pres.rmse(0), path))
            if plot and out is not None:
                from sim.rollout.plots import error_curve_png

                error_curve_png(out / f"{name}_error.png", res.mse[0], persistence, dt, name)
    return results
