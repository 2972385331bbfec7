"""The rollout engine: one loop for every time-stepping mesh model.

Each step: the model maps the state to an update; the engine integrates it
(``x + delta`` or ``x + dt * derivative``), overwrites the prescribed nodes (every node
type the model does not predict) with boundary values, checks for divergence, and streams
the step to writers and metrics. Nothing but the current state (and, for a model with
``history`` h, the h - 1 frames before it) is held in memory, so long
rollouts of large meshes run in bounded memory. Several trajectories run as one batched
graph. Runs under ``torch.inference_mode``. Particle simulators have their own loop
(:mod:`sim.rollout.particles`) built from the same pieces (:func:`streaming`,
:func:`check_diverged`, :class:`RolloutResult`).

Metrics follow MeshGraphNet: per-step MSE over all nodes and features; the rollout RMSE
at horizon h is ``sqrt(mean of the per-step MSE over steps 1..h)``; ``all`` is the whole
rollout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch_geometric.data import Batch

from sim.errors import SimError
from sim.graph import mesh_graph
from sim.mesh import Mesh, SeriesLayout
from sim.models.mesh.simulator import shift_history

HORIZONS = (1, 10, 20, 50, 100, 200)


class RolloutDiverged(SimError):
    """The rollout produced NaN/inf or a runaway state; nothing is written under the final names."""


class StepWriter(Protocol):
    def write(self, time: float, point_fields: dict[str, Any] | None = None,
              cell_fields: dict[str, Any] | None = None, positions: Any = None) -> None: ...


Boundary = Callable[[int, float], np.ndarray]


@dataclass
class RolloutResult:
    """Per trajectory: ``final`` state, ``mse`` per step (when a reference was given), and
    ``rmse`` at the standard horizons plus ``"all"``."""

    final: list[np.ndarray]
    mse: list[np.ndarray] = field(default_factory=list)

    def rmse(self, i: int = 0) -> dict[str, float]:
        if not self.mse:
            return {}
        mse = self.mse[i]
        out = {str(h): float(np.sqrt(mse[:h].mean())) for h in HORIZONS if h <= len(mse)}
        out["all"] = float(np.sqrt(mse.mean()))
        return out


@contextmanager
def streaming(writers: Sequence[StepWriter | None]) -> Iterator[None]:
    """Close the writers when the body succeeds; abort them (nothing left under the final
    names) when it raises, e.g. :class:`RolloutDiverged` or an interrupt."""
    try:
        yield
    except BaseException:
        for w in writers:
            if w is not None and hasattr(w, "abort"):
                w.abort()
        raise
    for w in writers:
        if w is not None and hasattr(w, "close"):
            w.close()


def check_diverged(state: np.ndarray, step: int, limit: float | None = None) -> None:
    """Raise :class:`RolloutDiverged` on NaN/inf, or when ``|state|`` exceeds ``limit``."""
    if not np.isfinite(state).all():
        raise RolloutDiverged(f"the rollout diverged at step {step}: NaN or infinite values")
    if limit is not None and np.abs(state).max() > limit:
        raise RolloutDiverged(f"the rollout diverged at step {step}: a state of magnitude "
                              f"{np.abs(state).max():.3g} (limit {limit:.3g})")


def split_fields(state: np.ndarray, fields: Sequence[str], dims: Sequence[int]) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for name, d in zip(fields, dims):
        out[name] = state[:, start:start + d] if d > 1 else state[:, start]
        start += d
    return out


def series_layout(mesh: Mesh, fields: Sequence[str], dt: float | None, params: dict[str, Any] | None = None
                  ) -> SeriesLayout:
    """The layout a writer needs for a rollout of ``fields`` on ``mesh``."""
    return SeriesLayout(mesh, point_fields=list(fields), dt=dt, params=params or {})


def rollout(simulator: Any, meshes: Sequence[Mesh], initial: Sequence[np.ndarray], steps: int,
            dt: Sequence[float] | float, boundary: Sequence[Boundary] | None = None,
            reference: Sequence[np.ndarray] | None = None, writers: Sequence[StepWriter | None] | None = None,
            t0: Sequence[float] | float = 0.0, blowup_factor: float = 1e3, device: str | torch.device = "cpu",
            compile: bool = False, params: Sequence[dict[str, Any] | None] | None = None) -> RolloutResult:
    """Roll ``simulator`` forward ``steps`` steps from ``initial`` on each mesh.

    Args:
        simulator: a :class:`~sim.models.mesh.simulator.MeshSimulator` (or anything with
            ``predict_update``, ``predicted_mask`` and ``config``).
        meshes: one mesh per trajectory (fixed connectivity).
        initial: (N_i, F) initial state per trajectory; for a model with ``history`` h > 1,
            its last h frames (h, N_i, F), oldest first (the rollout starts from the last).
        steps: number of steps to predict.
        dt: time step(s).
        boundary: per trajectory ``fn(step, time) -> (N_i, F)`` whose values are imposed on
            prescribed nodes; default: the reference (when given), else the initial values.
        reference: per trajectory (>= steps + 1, N_i, F) ground truth including step 0 (the
            initial state), for metrics.
        writers: per trajectory a step writer (PVDWriter, XDMFWriter, ...) or None; step 0
            is written too. On divergence the writers are aborted.
        blowup_factor: diverged when the state's max norm exceeds this factor times the
            largest of the initial and reference states' max norm.
        compile: run the one-step map through ``torch.compile`` (the graph is fixed during a
            rollout, so it compiles once; worth it for long rollouts, costs a compile at start).
        params: per trajectory its parameters (``Trajectory.params``), from which a model
            conditioned on ``scalars`` (e.g. the viscosity) takes its values.
    """
    k = len(meshes)
    dts = [float(dt)] * k if np.isscalar(dt) else [float(x) for x in dt]
    t0s = [float(t0)] * k if np.isscalar(t0) else [float(x) for x in t0]
    writers = list(writers) if writers is not None else [None] * k
    h = int(simulator.config.get("history", 1))
    frames = [np.asarray(x)[None] if np.ndim(x) == 2 and h == 1 else np.asarray(x) for x in initial]
    for i, (m, x) in enumerate(zip(meshes, frames)):
        if x.shape != (h, m.num_points, simulator.num_features):
            expected = f"({m.num_points}, {simulator.num_features})" if h == 1 else \
                f"({h}, {m.num_points}, {simulator.num_features}) (the model sees {h} frames)"
            raise SimError(f"trajectory {i}: initial state has shape {np.shape(x)}, expected {expected} "
                           f"for fields {simulator.config['fields']}")
    initial = [x[-1] for x in frames]
    if boundary is None:
        boundary = [(lambda s, t, r=r: r[s]) for r in reference] if reference is not None else \
                   [(lambda s, t, x=x: x) for x in initial]
    names = simulator.config.get("scalars") or []
    if names:
        if params is None or len(params) != k:
            raise SimError(f"the model is conditioned on trajectory parameter(s) {names}: give params for each "
                           f"of the {k} trajectories")
        scalars = torch.as_tensor(np.stack([simulator.scalar_values(p, what=f"trajectory {i}")
                                            for i, p in enumerate(params)]), device=device)
    else:
        scalars = None
    graphs = Batch.from_data_list([mesh_graph(m) for m in meshes]).to(device)
    sizes = [m.num_points for m in meshes]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    node_dt = torch.cat([torch.full((n, 1), d) for n, d in zip(sizes, dts)]).to(device)
    prescribed = ~simulator.predicted_mask(graphs.node_type).cpu().numpy()
    state = torch.as_tensor(np.concatenate(initial), dtype=torch.float32, device=device)
    past = torch.as_tensor(np.concatenate([x[:-1] for x in frames], axis=1).transpose(1, 0, 2),
                           dtype=torch.float32, device=device) if h > 1 else None
    scale = max(float(np.abs(x).max()) for x in frames)
    if reference is not None:
        scale = max(scale, max(float(np.abs(r[: steps + 1]).max()) for r in reference))
    limit = blowup_factor * max(scale, 1e-12)
    fields, dims = simulator.config["fields"], simulator.config["field_dims"]
    mse: list[list[float]] = [[] for _ in range(k)]
    derivative = simulator.config["target"] == "derivative"
    predict = torch.compile(simulator.predict_update, dynamic=False) if compile else simulator.predict_update
    with streaming(writers):
        for i, w in enumerate(writers):
            if w is not None:
                w.write(t0s[i], split_fields(initial[i], fields, dims))
        with torch.inference_mode():
            for s in range(1, steps + 1):
                upd = predict(state, graphs.node_type, graphs.edge_index, graphs.edge_attr, graphs.mesh_pos,
                              graphs.batch, scalars, past)
                past = shift_history(past, state)
                state = state + (node_dt * upd if derivative else upd)
                host = state.cpu().numpy()
                for i in range(k):
                    lo, hi = offsets[i], offsets[i + 1]
                    bc = np.asarray(boundary[i](s, t0s[i] + s * dts[i]), dtype=np.float32)
                    host[lo:hi][prescribed[lo:hi]] = bc[prescribed[lo:hi]]
                check_diverged(host, s, limit)
                state = torch.from_numpy(host).to(device)
                for i in range(k):
                    lo, hi = offsets[i], offsets[i + 1]
                    if writers[i] is not None:
                        writers[i].write(t0s[i] + s * dts[i], split_fields(host[lo:hi], fields, dims))
                    if reference is not None:
                        mse[i].append(float(((host[lo:hi] - reference[i][s]) ** 2).mean()))
    host = state.cpu().numpy()
    return RolloutResult(final=[host[offsets[i]:offsets[i + 1]] for i in range(k)],
                         mse=[np.array(m) for m in mse] if reference is not None else [])
