"""Our cylinder-flow solver on a coarser mesh with a learned correction: a hybrid surrogate.

A learned time stepper (MeshGraphNet) has to learn the whole dynamics of the wake; over a long
rollout it drifts to a shedding frequency and amplitude of its own. A coarse solve keeps the
dynamics (conservation, the shedding frequency within a few per cent on half the nodes) and
loses what the coarse mesh cannot resolve: the time-mean wake and the fluctuation amplitude are
off by a systematic amount (``scripts/bench/cylinder_resolution.py``). The hybrid splits the
work: our solver (:class:`~solvers.cfd.navier_stokes.CylinderFlow`) runs on the case meshed
``scale`` times as fine as the stored one, started from the stored state (restricted to the
coarse finite-element spaces), and every stored frame its velocity is interpolated (P1) to the
stored mesh and a steady graph network (``model.family: steady``) adds the resolution
correction it learned: the true velocity minus the interpolated coarse one, read from the
interpolated coarse velocity and pressure, the node types, the geometry (the graph) and the
case's scalars. The correction is not fed back into the coarse solve (the solver's state stays
its own, so the hybrid is as stable as the solver).

- :class:`CoarseFlow`: the coarse solver of one stored case, its restriction from and its
  interpolation to the stored mesh;
- :func:`correction_samples`: the correction's training samples from a store of trajectories
  (steady samples on the stored meshes);
- :func:`corrected_rollout`: the hybrid rolled out from a stored trajectory, as a trajectory;
- :class:`CorrectedStepper` / :func:`corrected_case`: the hybrid as a stepper of the one rollout
  loop (:func:`sim.rollout.evaluate.evaluate_store` scores it like any mesh model; several
  correctors roll out as an ensemble).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import SimError
from sim.mesh import Mesh, NodeType, Trajectory
from solvers.cfd.geometry import Channel, channel_mesh
from solvers.cfd.navier_stokes import CylinderFlow, FlowState

CORRECTOR_INPUTS = ("coarse_velocity", "coarse_pressure")  # point fields the correction reads
CORRECTOR_SCALARS = ("reynolds", "u_mean")


class CoarseFlow:
    """Our solver on the case of a stored cylinder trajectory (``mesh``, ``params``: its mesh and
    parameters, ``dt_store`` its stored step) meshed ``scale`` times as fine (the stored mesh
    sizes divided by ``scale``), with the recipe's solver-step rule, inflow ramp and kick.

    ``start`` restricts a stored state (vertex velocity and pressure, P1 on the stored mesh) to
    the coarse spaces (P2 velocity, P1 pressure) with the exact boundary values; ``advance`` runs
    one stored step; ``on_stored`` interpolates the coarse vertex values to the stored nodes."""

    def __init__(self, mesh: Mesh, params: dict[str, Any], dt_store: float, scale: float):
        from sim.mesh.interp import p1_matrix
        from solvers.cfd.cylinder import DEFAULTS, solver_substeps

        missing = [k for k in ("length", "height", "cx", "cy", "radius", "u_mean", "nu", "mesh_size",
                               "mesh_size_min") if k not in params]
        if missing:
            raise SimError(f"the trajectory has no parameter(s) {missing}: not a cylinder_flow trajectory of our "
                           "solver")
        if not 0 < scale <= 4:
            raise SimError(f"scale must be in (0, 4], got {scale}")
        p = params
        self.channel = Channel(p["length"], p["height"], p["cx"], p["cy"], p["radius"])
        self.mesh = channel_mesh(self.channel, size=p["mesh_size"] / scale, size_min=p["mesh_size_min"] / scale)
        self.substeps = solver_substeps(self.mesh, p["u_mean"], dt_store, DEFAULTS["max_cfl"])
        self.flow = CylinderFlow(self.mesh, self.channel, nu=p["nu"], u_mean=p["u_mean"],
                                 dt=dt_store / self.substeps, ramp=DEFAULTS["ramp"],
                                 kick=DEFAULTS["kick"] * p["u_mean"], kick_time=DEFAULTS["kick_time"])
        self.restrict_u = p1_matrix(mesh.points, mesh.cells, self.flow.vb.doflocs.T)
        self.restrict_p = p1_matrix(mesh.points, mesh.cells, self.flow.pb.doflocs.T)
        self.prolong = p1_matrix(self.mesh.points, self.mesh.cells, mesh.points)

    def start(self, velocity: np.ndarray, pressure: np.ndarray, t: float) -> FlowState:
        u = self.restrict_u @ np.asarray(velocity, dtype=np.float64)
        s = FlowState(np.ascontiguousarray(u[:, 0]), np.ascontiguousarray(u[:, 1]),
                      self.restrict_p @ np.asarray(pressure, dtype=np.float64), float(t))
        s.ux[self.flow.vel_fixed], s.uy[self.flow.vel_fixed] = self.flow.velocity_bc(s.t)
        return s

    def advance(self, s: FlowState) -> FlowState:
        for _ in range(self.substeps):
            s = self.flow.step(s)
        return s

    def on_stored(self, s: FlowState) -> tuple[np.ndarray, np.ndarray]:
        """Velocity (N, 2) and pressure (N,) of state ``s`` at the stored mesh's nodes."""
        v, p = self.flow.vertex_values(s)
        return self.prolong @ v, self.prolong @ p


def prescribed_nodes(mesh: Mesh) -> np.ndarray:
    """Nodes whose velocity the case prescribes (inflow, walls, obstacle)."""
    if mesh.node_type is None:
        raise SimError("the mesh has no node types: the hybrid needs them to keep the prescribed velocities")
    return (mesh.node_type != int(NodeType.INTERIOR)) & (mesh.node_type != int(NodeType.OUTFLOW))


def _sample(traj: Trajectory, k: int, velocity: np.ndarray, pressure: np.ndarray) -> Mesh:
    """One steady sample on the stored mesh: the coarse values as inputs, the correction to frame
    ``k`` of ``traj`` as output (zero at the prescribed nodes, which take their true values)."""
    m, p = traj.mesh, traj.params
    truth = np.asarray(traj.point_fields["velocity"][k], dtype=np.float64)
    correction = truth - velocity
    correction[prescribed_nodes(m)] = 0.0
    pd = {"coarse_velocity": velocity.astype(np.float32), "coarse_pressure": pressure.astype(np.float32),
          "correction": correction.astype(np.float32)}
    return Mesh(m.points, m.cells, point_data=pd, node_type=m.node_type,
                field_data={k2: np.array([float(p[k2])]) for k2 in CORRECTOR_SCALARS})


def correction_samples(source: str | Path, path: str | Path, scale: float, starts: tuple[int, ...] = (0, 100, 200),
                       frames: int = 30, every: int = 2, entries: list[str] | None = None) -> Path:
    """The training samples of the learned correction: for each trajectory of the store
    ``source`` (or ``entries`` of it), the coarse solve (:class:`CoarseFlow` at ``scale``) started
    from each stored frame of ``starts`` and run ``frames`` stored steps, one sample every
    ``every`` steps (:func:`_sample`: inputs ``coarse_velocity``, ``coarse_pressure``, output
    ``correction``, scalars ``reynolds``, ``u_mean``). Written to the store ``path``, appended
    trajectory by trajectory (resumable: trajectories already there are kept)."""
    from tqdm import tqdm

    from sim.mesh import Store, StoreWriter

    path = Path(path)
    done: set[str] = set()
    if path.exists():
        with Store(path) as s:
            done = {n.rsplit("_s", 1)[0] for n in s.names()}  # <trajectory>_s<start>_<frame>
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        StoreWriter(path).close()  # an empty store, then appended to: every finished trajectory survives a kill
    with Store(source) as src:
        names = entries or src.names()
        for name in tqdm(names, desc="correction samples", unit="traj"):
            if name in done:
                continue
            traj = src.read(name)
            coarse = CoarseFlow(traj.mesh, traj.params, float(traj.dt), scale)
            samples = []
            for j in starts:
                if j + 1 >= traj.num_steps:
                    continue
                s = coarse.start(traj.point_fields["velocity"][j], traj.point_fields["pressure"][j],
                                 float(traj.times[j]))
                for k in range(j + 1, min(j + frames, traj.num_steps - 1) + 1):
                    s = coarse.advance(s)
                    if (k - j) % every == 0:
                        samples.append((f"{name}_s{j:03d}_{k:03d}", _sample(traj, k, *coarse.on_stored(s))))
            with StoreWriter(path, append=True) as w:  # one trajectory's samples at a time
                for entry, sample in samples:
                    w.append(sample, entry)
    return path


class CorrectedStepper:
    """The hybrid on one stored trajectory, as a stepper of :func:`sim.rollout.engine.run`: the
    coarse solve from the stored state at frame ``start`` and, every stored step, its velocity on
    the stored mesh plus the correction of each of ``correctors`` (steady models; none: the coarse
    solve alone), the prescribed nodes set from ``boundary(step)`` (the true values). Several
    correctors share the one coarse solve and report the mean (``velocity``) and their spread
    (``velocity_std``)."""

    size = 1

    def __init__(self, correctors: list[Any], coarse: CoarseFlow, traj: Trajectory, start: int, boundary: Any):
        from sim.graph import mesh_graph

        self.correctors, self.coarse, self.traj, self.boundary = list(correctors), coarse, traj, boundary
        self.fields, self.dims = ["velocity"], [2]
        self.prescribed = prescribed_nodes(traj.mesh)
        dt, t0 = float(traj.dt), float(traj.times[start])
        self.times = [lambda s: t0 + s * dt]
        self.state = coarse.start(traj.point_fields["velocity"][start], traj.point_fields["pressure"][start], t0)
        self.velocity = np.asarray(traj.point_fields["velocity"][start], dtype=np.float32)
        self.spread = np.zeros_like(self.velocity)
        self.scalars = {k: float(traj.params[k]) for k in CORRECTOR_SCALARS}
        self.graph = mesh_graph(traj.mesh) if self.correctors else None

    def outputs(self) -> list[Any]:
        from sim.rollout.engine import Frame

        fields = {"velocity": self.velocity}
        if len(self.correctors) > 1:
            fields["velocity_std"] = self.spread
        return [Frame(self.velocity, fields)]

    def advance(self, step: int) -> None:
        self.state = self.coarse.advance(self.state)
        v, p = self.coarse.on_stored(self.state)
        members = [v]
        if self.correctors:
            m = self.traj.mesh
            sample = Mesh(m.points, m.cells, node_type=m.node_type,
                          point_data={"coarse_velocity": v.astype(np.float32), "coarse_pressure": p.astype(np.float32)})
            members = [v + c.predict(sample, self.scalars, graph=self.graph)["correction"] for c in self.correctors]
        for x in members:
            x[self.prescribed] = self.boundary(step)[self.prescribed]
        stack = np.stack(members)
        self.velocity = stack.mean(0).astype(np.float32)
        self.spread = stack.std(0).astype(np.float32)


def corrected_case(scale: float, member_scales: list[float] | None = None):
    """A case builder of :func:`sim.rollout.evaluate.evaluate_store` for the hybrid at ``scale``:
    the model is a corrector (a loaded steady model), a list of them (an ensemble over the one
    coarse solve) or None (the coarse solve alone).

    ``member_scales`` (one per corrector of the list): each member runs its own coarse solve at
    its own scale instead (an ensemble of perturbed coarse models, whose shedding drifts apart
    as the members' resolutions differ: a spread that grows with the uncertainty of the
    dynamics, which correctors sharing one coarse solve cannot show)."""
    from sim.mesh.series import SeriesLayout
    from sim.rollout.evaluate import Case, flow_statistics
    from sim.rollout.steppers import EnsembleStepper

    def case(model: Any, traj: Trajectory, name: str, steps: int | None, data: Any, device: Any = "cpu",
             compile: bool = False) -> Case:
        if not isinstance(traj, Trajectory) or "velocity" not in traj.point_fields \
                or "pressure" not in traj.point_fields:
            raise SimError(f"entry {name!r} is not a flow trajectory with velocity and pressure", data)
        if traj.num_steps < 2:
            raise SimError(f"entry {name!r} has {traj.num_steps} step(s); a rollout needs two", data)
        n = traj.num_steps - 1 if steps is None else min(steps, traj.num_steps - 1)
        ref = np.asarray(traj.point_fields["velocity"][:n + 1], dtype=np.float32)
        correctors = [] if model is None else list(model) if isinstance(model, (list, tuple)) else [model]
        if member_scales is not None:
            if len(member_scales) != len(correctors) or len(correctors) < 2:
                raise SimError(f"{len(member_scales)} member scales for {len(correctors)} correctors: give one "
                               "per member of an ensemble")
            stepper = EnsembleStepper([CorrectedStepper([c], CoarseFlow(traj.mesh, traj.params, float(traj.dt), sc),
                                                        traj, 0, lambda s: ref[s])
                                       for c, sc in zip(correctors, member_scales)])
        else:
            stepper = CorrectedStepper(correctors, CoarseFlow(traj.mesh, traj.params, float(traj.dt), scale), traj,
                                       0, lambda s: ref[s])
        dt, t0 = float(traj.dt), float(traj.times[0])
        series = ["velocity", "velocity_truth", "velocity_error"] + (["velocity_std"] if len(correctors) > 1 else [])
        layout = SeriesLayout(traj.mesh, point_fields=series, dt=dt, params=traj.params)
        return Case(stepper, ref, ref, n, t0, dt, layout, mesh_snapshot=traj,
                    flow=flow_statistics(traj, ["velocity"], [2], ref, t0, dt))

    return case


def corrected_rollout(correctors: Any, traj: Trajectory, scale: float, steps: int | None = None,
                      member_scales: list[float] | None = None) -> Trajectory:
    """The hybrid rolled out from the first frame of the stored trajectory ``traj`` for ``steps``
    stored steps (default: as many as it has), the prescribed velocities from ``traj``: a
    trajectory on its mesh with ``velocity`` (and ``velocity_std`` for an ensemble).
    ``correctors``: checkpoint paths or loaded steady models (a list: an ensemble), or None for
    the coarse solve alone; ``member_scales`` as in :func:`corrected_case`."""
    from sim.rollout.engine import run
    from sim.train import load_model

    members = [] if correctors is None else list(correctors) if isinstance(correctors, (list, tuple)) \
        else [correctors]
    members = [load_model(m)[0] if isinstance(m, (str, Path)) else m for m in members]
    c = corrected_case(scale, member_scales)(members if len(members) > 1 else (members[0] if members else None),
                                             traj, "trajectory", steps, None)
    frames: dict[str, list[np.ndarray]] = {}

    class Keep:
        def write(self, time: float, point_fields: dict[str, Any] | None = None, **_: Any) -> None:
            for k, v in (point_fields or {}).items():
                frames.setdefault(k, []).append(np.array(v, dtype=np.float32))

    run(c.stepper, c.steps, c.stepper.times, [Keep()])
    times = traj.times[0] + np.arange(c.steps + 1) * float(traj.dt)
    return Trajectory(traj.mesh, times, point_fields={k: np.stack(v) for k, v in frames.items()}, dt=traj.dt,
                      params=dict(traj.params))
