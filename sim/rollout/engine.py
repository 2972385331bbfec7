"""The rollout engine: one loop (:func:`run`) for every time-stepping model.

A *stepper* (:mod:`sim.rollout.steppers`) holds a family's state and knows how to advance
it one step: mesh simulators integrate their update and impose boundary values on the
nodes they do not predict, particle simulators integrate accelerations and decode the dense
motion, an ensemble advances its members together. The loop owns everything else, the same
for all: it writes step 0 and every step to streaming writers (aborted, so nothing is left
under the final names, when the rollout diverges or is interrupted), stops with
:class:`RolloutDiverged` on NaN/inf or a runaway state (beyond :data:`BLOWUP_FACTOR` times
the data's largest magnitude, see :func:`run`), and records the per-step error against a
reference. Nothing but the current state (and the frames a model sees) is held,
so long rollouts of large meshes run in bounded memory. Runs under ``torch.inference_mode``.

Metrics follow MeshGraphNet: per-step MSE over all nodes and features; the rollout RMSE
at horizon h is ``sqrt(mean of the per-step MSE over steps 1..h)``; ``all`` is the whole
rollout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from sim.errors import SimError
from sim.mesh import Mesh, SeriesLayout

HORIZONS = (1, 10, 20, 50, 100, 200)

# The default divergence limit of run(), in multiples of the data's largest magnitude (why 10: see run).
BLOWUP_FACTOR = 10.0
_blowup_factor: ContextVar[float] = ContextVar("blowup_factor", default=BLOWUP_FACTOR)


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


def check_blowup_factor(factor: float) -> float:
    """``factor`` as a float, refused unless it is a positive number or 0 (only NaN/inf checked)."""
    try:
        value = float(factor)
    except (TypeError, ValueError):
        value = math.nan
    if not value >= 0:
        raise SimError(f"the blow-up factor (--blowup-factor) must be a positive number, or 0 to check only for "
                       f"NaN/inf, got {factor!r}")
    return value


@contextmanager
def blowup_guard(factor: float) -> Iterator[None]:
    """Rollouts run inside the block that do not pass their own ``blowup_factor`` use ``factor``
    (0: only NaN/inf). This is how ``sim rollout/eval --blowup-factor`` reaches the rollouts of
    a family's store evaluator, and how API users set it around ``Surrogate.rollout``."""
    token = _blowup_factor.set(check_blowup_factor(factor))
    try:
        yield
    finally:
        _blowup_factor.reset(token)


def check_diverged(state: np.ndarray, step: int, limit: float | None = None, what: str = "") -> None:
    """Raise :class:`RolloutDiverged` on NaN/inf, or when ``|state|`` exceeds ``limit``
    (``what`` says where the limit comes from)."""
    if not np.isfinite(state).all():
        raise RolloutDiverged(f"the rollout diverged at step {step}: NaN or infinite values")
    if limit is not None and np.abs(state).max() > limit:
        raise RolloutDiverged(f"the rollout diverged at step {step}: a state of magnitude {np.abs(state).max():.3g} "
                              f"exceeds the limit {limit:.3g}{what}; if such growth is physical, raise "
                              f"--blowup-factor (0 checks only for NaN/inf)")


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


class Stepper(Protocol):
    """What :func:`run` drives: ``size`` trajectories, ``fields``/``dims`` of the values it
    reports, :meth:`outputs` of the current step and :meth:`advance` to the next."""

    size: int

    def outputs(self) -> list["Frame"]: ...

    def advance(self, step: int) -> None: ...


@dataclass
class Frame:
    """One trajectory's current step: ``values`` (N, F), compared with the reference;
    ``fields`` written to the series; ``positions`` of moving points (None on a fixed mesh)."""

    values: np.ndarray
    fields: dict[str, np.ndarray]
    positions: np.ndarray | None = None


def run(stepper: Stepper, steps: int, times: Sequence[Callable[[int], float]],
        writers: Sequence[StepWriter | None] | None = None, reference: Sequence[np.ndarray] | None = None,
        blowup_factor: float | None = None) -> RolloutResult:
    """Advance ``stepper`` ``steps`` steps; the one rollout loop.

    Args:
        times: per trajectory ``time(step)``, the time each step is written at.
        writers: per trajectory a step writer (or None); step 0 is written too.
        reference: per trajectory (>= steps + 1, N, F) true values including step 0, for the
            per-step MSE (over nodes and features) of :class:`RolloutResult`.
        blowup_factor: diverged when the values' max norm exceeds this factor times the largest
            of the initial and reference values' max norm; 0: only NaN/inf. None: the factor of
            the enclosing :func:`blowup_guard`, else :data:`BLOWUP_FACTOR`.

    Why 10 by default: the truth over the rolled steps bounds what the physics reaches (a flow
    past an obstacle peaks at a small multiple of its inflow, diffusion stays within its data,
    particles in their box), so a state 10x beyond all of it is no longer an inaccurate
    prediction but a blow-up whose metrics mean nothing. Runaways grow geometrically, so the
    limit stops them (and the series of garbage being written) a few steps after they leave the
    physical range, where 1000x let one reach 100x the data and still succeed. Without a
    reference the initial state alone sets the scale, so a rollout that legitimately grows from
    a small start (a flow from rest) needs a larger factor.
    """
    if steps < 1:
        raise SimError(f"steps must be >= 1, got {steps}")
    factor = _blowup_factor.get() if blowup_factor is None else check_blowup_factor(blowup_factor)
    k = stepper.size
    writers = list(writers) if writers is not None else [None] * k
    mse: list[list[float]] = [[] for _ in range(k)]
    with streaming(writers), torch.inference_mode():
        out = stepper.outputs()
        limit, what = None, ""
        if factor:
            scale = max(float(np.abs(o.values).max()) for o in out)
            if reference is not None:
                scale = max(scale, max(float(np.abs(r[: steps + 1]).max()) for r in reference))
            limit = factor * max(scale, 1e-12)
            source = "initial state" if reference is None else "data"
            what = f" ({factor:g} x {scale:.3g}, the largest magnitude of the {source})"
        for i, w in enumerate(writers):
            if w is not None:
                w.write(times[i](0), out[i].fields, positions=out[i].positions)
        for s in range(1, steps + 1):
            stepper.advance(s)
            out = stepper.outputs()
            for o in out:
                check_diverged(o.values, s, limit, what)
            for i in range(k):
                if writers[i] is not None:
                    writers[i].write(times[i](s), out[i].fields, positions=out[i].positions)
                if reference is not None:
                    mse[i].append(float(((out[i].values - reference[i][s]) ** 2).mean()))
    return RolloutResult(final=[o.values for o in out], mse=[np.array(m) for m in mse] if reference is not None else [])


def rollout(simulator: Any, meshes: Sequence[Mesh], initial: Sequence[np.ndarray], steps: int,
            dt: Sequence[float] | float, boundary: Sequence[Boundary] | None = None,
            reference: Sequence[np.ndarray] | None = None, writers: Sequence[StepWriter | None] | None = None,
            t0: Sequence[float] | float = 0.0, blowup_factor: float | None = None, device: str | torch.device = "cpu",
            compile: bool = False, params: Sequence[dict[str, Any] | None] | None = None) -> RolloutResult:
    """Roll a mesh simulator forward ``steps`` steps from ``initial`` on each mesh (several
    trajectories run as one batched graph).

    Args:
        simulator: a :class:`~sim.models.mesh.simulator.MeshSimulator`.
        meshes: one mesh per trajectory (fixed connectivity).
        initial: (N_i, F) initial state per trajectory; for a model with ``history`` h > 1,
            its last h frames (h, N_i, F), oldest first (the rollout starts from the last).
        steps: number of steps to predict.
        dt: time step(s).
        boundary: per trajectory ``fn(step, time) -> (N_i, F)`` whose values are imposed on
            prescribed nodes; default: the reference (when given), else the initial values.
        reference: per trajectory (>= steps + 1, N_i, F) ground truth including step 0 (the
            initial state), for metrics.
        writers: per trajectory a step writer (PVDWriter, XDMFWriter, ...) or None.
        blowup_factor: see :func:`run`.
        compile: run the one-step map through ``torch.compile`` (the graph is fixed during a
            rollout, so it compiles once; worth it for long rollouts, costs a compile at start).
        params: per trajectory its parameters (``Trajectory.params``), from which a model
            conditioned on ``scalars`` (e.g. the viscosity) takes its values.
    """
    from sim.rollout.steppers import MeshStepper

    k = len(meshes)
    dts = [float(dt)] * k if np.isscalar(dt) else [float(x) for x in dt]
    t0s = [float(t0)] * k if np.isscalar(t0) else [float(x) for x in t0]
    if boundary is None and reference is not None:
        boundary = [(lambda s, t, r=r: r[s]) for r in reference]
    stepper = MeshStepper(simulator, meshes, initial, dts, t0s, boundary=boundary, params=params, device=device,
                          compile=compile)
    return run(stepper, steps, stepper.times, writers, reference, blowup_factor)
