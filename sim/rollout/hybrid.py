"""Hybrid rollouts: a numerical solver on a coarse mesh plus a learned correction of what that
mesh loses, driven by the one rollout loop and scored like any mesh model.

The coarse solver is any object with this protocol (:class:`solvers.cfd.corrected.CoarseFlow`
is the cylinder-flow one), built per trajectory by a factory ``coarse_for(traj, scale)``:

- ``start(traj, frame)``: its state from a stored frame; ``advance(state)``: one stored step;
- ``on_stored(state)``: its point fields at the stored mesh's nodes (name -> (N,) or (N, c));
- ``field``: the field the correction is added to (and the rollout reports);
- ``prescribed``: (N,) mask of the stored nodes whose values the case prescribes;
- optionally ``sampler(points)``: a function of a state giving ``field`` at other points (its
  own discretisation evaluated there), for rollouts reported at points other than the stored
  nodes (:func:`corrected_rollout`'s ``points``).

The correction is a steady model (``model.family: steady``) whose output field is
``correction`` and whose node inputs are the coarse fields as ``coarse_<name>``; its scalars are
read from the trajectory's parameters. It is added to the output, not fed back into the solver,
so the solver's state stays its own and the hybrid is as stable as the solver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from sim.errors import SimError
from sim.mesh import Mesh, SeriesLayout, Trajectory

CoarseFactory = Callable[[Trajectory, float], Any]


class CorrectedStepper:
    """The hybrid on one stored trajectory, as a stepper of :func:`sim.rollout.engine.run`: the
    coarse solve from stored frame ``start`` and, every stored step, its ``coarse.field`` on the
    stored mesh plus the correction of each of ``correctors`` (steady models; none: the coarse
    solve alone), the prescribed nodes set from ``boundary(step)`` (the true values). Several
    correctors share the one coarse solve and report the mean and their spread
    (``<field>_std``)."""

    size = 1

    def __init__(self, correctors: list[Any], coarse: Any, traj: Trajectory, start: int, boundary: Any):
        from sim.graph import mesh_graph

        self.correctors, self.coarse, self.traj, self.boundary = list(correctors), coarse, traj, boundary
        self.fields, self.dims = [coarse.field], [int(np.prod(np.shape(traj.point_fields[coarse.field])[2:]))]
        self.prescribed = coarse.prescribed
        dt, t0 = float(traj.dt), float(traj.times[start])
        self.times = [lambda s: t0 + s * dt]
        self.state = coarse.start(traj, start)
        self.values = np.asarray(traj.point_fields[coarse.field][start], dtype=np.float32)
        self.coarse_values = np.asarray(coarse.on_stored(self.state)[coarse.field], dtype=np.float32)
        self.spread = np.zeros_like(self.values)
        self.scalars = [{k: float(traj.params[k]) for k in c.config.get("scalars") or []} for c in self.correctors]
        self.graph = mesh_graph(traj.mesh) if self.correctors else None

    def outputs(self) -> list[Any]:
        from sim.rollout.engine import Frame

        fields = {self.fields[0]: self.values}
        if len(self.correctors) > 1:
            fields[f"{self.fields[0]}_std"] = self.spread
        return [Frame(self.values, fields)]

    def advance(self, step: int) -> None:
        self.state = self.coarse.advance(self.state)
        coarse = self.coarse.on_stored(self.state)
        v = coarse[self.fields[0]]
        members = [v]
        if self.correctors:
            m = self.traj.mesh
            sample = Mesh(m.points, m.cells, node_type=m.node_type,
                          point_data={f"coarse_{k}": np.asarray(x, dtype=np.float32) for k, x in coarse.items()})
            members = [v + c.predict(sample, s, graph=self.graph)["correction"]
                       for c, s in zip(self.correctors, self.scalars)]
        for x in members:
            x[self.prescribed] = self.boundary(step)[self.prescribed]
        stack = np.stack(members)
        self.coarse_values = np.asarray(v, dtype=np.float32)
        self.values = stack.mean(0).astype(np.float32)
        self.spread = stack.std(0).astype(np.float32)


def corrected_case(coarse_for: CoarseFactory, scale: float, member_scales: list[float] | None = None):
    """A case builder of :func:`sim.rollout.evaluate.evaluate_store` for the hybrid whose coarse
    solver ``coarse_for(traj, scale)`` builds: the model is a corrector (a loaded steady model),
    a list of them (an ensemble over the one coarse solve) or None (the coarse solve alone).

    ``member_scales`` (one per corrector of the list): each member runs its own coarse solve at
    its own scale instead (an ensemble of perturbed coarse models, whose dynamics drift apart as
    the members' resolutions differ: a spread that grows with the uncertainty of the dynamics,
    which correctors sharing one coarse solve cannot show)."""
    from sim.rollout.evaluate import Case, flow_statistics
    from sim.rollout.steppers import EnsembleStepper

    def case(model: Any, traj: Trajectory, name: str, steps: int | None, data: Any, device: Any = "cpu",
             compile: bool = False) -> Case:
        if not isinstance(traj, Trajectory):
            raise SimError(f"entry {name!r} is a static mesh; a hybrid rollout starts from a trajectory", data)
        if traj.num_steps < 2:
            raise SimError(f"entry {name!r} has {traj.num_steps} step(s); a rollout needs two", data)
        correctors = [] if model is None else list(model) if isinstance(model, (list, tuple)) else [model]
        n = traj.num_steps - 1 if steps is None else min(steps, traj.num_steps - 1)
        if member_scales is not None:
            if len(member_scales) != len(correctors) or len(correctors) < 2:
                raise SimError(f"{len(member_scales)} member scales for {len(correctors)} correctors: give one "
                               "per member of an ensemble")
            members = [CorrectedStepper([c], coarse_for(traj, sc), traj, 0, None)
                       for c, sc in zip(correctors, member_scales)]
            stepper: Any = EnsembleStepper(members)
        else:
            members = [CorrectedStepper(correctors, coarse_for(traj, scale), traj, 0, None)]
            stepper = members[0]
        field, dim = members[0].fields[0], members[0].dims[0]
        ref = np.asarray(traj.point_fields[field][:n + 1], dtype=np.float32).reshape(n + 1, traj.mesh.num_points, dim)
        for m in members:
            m.boundary = lambda s: ref[s]
        dt, t0 = float(traj.dt), float(traj.times[0])
        series = [field, f"{field}_truth", f"{field}_error"] + ([f"{field}_std"] if len(correctors) > 1 else [])
        layout = SeriesLayout(traj.mesh, point_fields=series, dt=dt, params=traj.params)
        return Case(stepper, ref, ref, n, t0, dt, layout, mesh_snapshot=traj,
                    flow=flow_statistics(traj, [field], [dim], ref, t0, dt))

    return case


def corrected_rollout(correctors: Any, traj: Trajectory, coarse_for: CoarseFactory, scale: float,
                      steps: int | None = None, member_scales: list[float] | None = None,
                      points: np.ndarray | None = None) -> Trajectory:
    """The hybrid rolled out from the first frame of the stored trajectory ``traj`` for ``steps``
    stored steps (default: as many as it has), the prescribed values from ``traj``: a trajectory
    on its mesh with the corrected field (and ``<field>_std`` for an ensemble).
    ``correctors``: checkpoint paths or loaded steady models (a list: an ensemble), or None for
    the coarse solve alone; ``coarse_for``, ``scale``, ``member_scales`` as in
    :func:`corrected_case`. ``points`` (Q, d): report the field at these points instead (a point
    cloud trajectory, e.g. the nodes of a finer mesh of the same domain): the coarse solver's own
    field there (its ``sampler``) plus the correction interpolated (P1) from the stored mesh, so
    the output keeps what the coarse discretisation resolves between the stored nodes."""
    from sim.rollout.engine import run
    from sim.train import load_model

    members = [] if correctors is None else list(correctors) if isinstance(correctors, (list, tuple)) \
        else [correctors]
    members = [load_model(m)[0] if isinstance(m, (str, Path)) else m for m in members]
    c = corrected_case(coarse_for, scale, member_scales)(
        members if len(members) > 1 else (members[0] if members else None), traj, "trajectory", steps, None)
    frames: dict[str, list[np.ndarray]] = {}
    at_points = None
    if points is not None:
        from sim.mesh.interp import p1_matrix

        stepper = c.stepper
        if member_scales is not None or not hasattr(stepper.coarse, "sampler"):
            raise SimError("a hybrid reports at other points only with one coarse solve that has a sampler")
        points = np.asarray(points, dtype=np.float64)
        sample, interp = stepper.coarse.sampler(points), p1_matrix(traj.mesh.points, traj.mesh.cells, points)

        def at_points(field: str, values: np.ndarray) -> np.ndarray:
            if field.endswith("_std"):
                return interp @ values
            return sample(stepper.state) + interp @ (values - stepper.coarse_values)

    class Keep:
        def write(self, time: float, point_fields: dict[str, Any] | None = None, **_: Any) -> None:
            for k, v in (point_fields or {}).items():
                v = v if at_points is None else at_points(k, np.asarray(v, dtype=np.float64))
                frames.setdefault(k, []).append(np.array(v, dtype=np.float32))

    run(c.stepper, c.steps, c.stepper.times, [Keep()])
    times = traj.times[0] + np.arange(c.steps + 1) * float(traj.dt)
    mesh = traj.mesh if points is None else Mesh(points)
    return Trajectory(mesh, times, point_fields={k: np.stack(v) for k, v in frames.items()}, dt=traj.dt,
                      params=dict(traj.params))
