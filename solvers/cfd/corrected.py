"""Our cylinder-flow solver on a coarser mesh with a learned correction: a hybrid surrogate.

A learned time stepper (MeshGraphNet) has to learn the whole dynamics of the wake; over a long
rollout it drifts to a shedding frequency and amplitude of its own. A coarse solve keeps the
dynamics (conservation, the shedding frequency within a few per cent on half the nodes) and
loses what the coarse mesh cannot resolve: the time-mean wake and the fluctuation amplitude are
off by a systematic amount (``scripts/bench/cylinder_resolution.py``). The hybrid splits the
work: our solver (:class:`~solvers.cfd.navier_stokes.CylinderFlow`) runs on the case meshed
``scale`` times as fine as the stored one, started from the stored state (restricted to the
coarse finite-element spaces), and every stored frame its velocity is evaluated at the stored
nodes (its own P2 field) and a steady graph network (``model.family: steady``) adds the
resolution correction it learned: the true velocity minus the coarse one, read from the coarse
velocity and pressure at the stored nodes, the node types, the geometry (the graph) and the
case's scalars. The correction is not fed back into the coarse solve (the solver's state stays
its own, so the hybrid is as stable as the solver).

- :class:`CoarseFlow`: the coarse solver of one stored case, its restriction from and its
  interpolation to the stored mesh;
- :func:`correction_samples`: the correction's training samples from a store of trajectories
  (steady samples on the stored meshes);
- :func:`coarse_flow`: the factory :mod:`sim.rollout.hybrid` takes (its stepper, case builder and
  ``corrected_rollout`` run any coarse solver with a learned correction; the rollout loop and the
  store evaluator score the hybrid like any mesh model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import SimError
from sim.mesh import Mesh, NodeType, Trajectory
from solvers.cfd.geometry import Channel, channel_mesh
from solvers.cfd.navier_stokes import FlowState

CORRECTOR_INPUTS = ("coarse_velocity", "coarse_pressure")  # point fields the correction reads
CORRECTOR_SCALARS = ("reynolds", "u_mean")


class CoarseFlow:
    """Our solver on the case of a stored cylinder trajectory (``mesh``, ``params``: its mesh and
    parameters, ``dt_store`` its stored step) meshed ``scale`` times as fine (the stored mesh
    sizes divided by ``scale``), with the recipe's solver-step rule, inflow ramp and kick.

    The coarse solver of :mod:`sim.rollout.hybrid`: ``start`` restricts a stored frame (vertex
    velocity and pressure, P1 on the stored mesh) to the coarse spaces (P2 velocity, P1 pressure)
    with the exact boundary values; ``advance`` runs one stored step; ``on_stored`` evaluates the
    coarse fields at the stored nodes (``sampler``: at any points); ``field`` is the field the
    correction is added to and ``prescribed`` the stored nodes whose values the case prescribes."""

    field = "velocity"

    def __init__(self, mesh: Mesh, params: dict[str, Any], dt_store: float, scale: float):
        from sim.mesh.interp import p1_matrix
        from solvers.cfd.cylinder import case_flow

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
        self.flow, self.substeps = case_flow(self.mesh, self.channel, p["u_mean"], p["nu"], {"dt_store": dt_store})
        self.restrict_u = p1_matrix(mesh.points, mesh.cells, self.flow.vb.doflocs.T)
        self.restrict_p = p1_matrix(mesh.points, mesh.cells, self.flow.pb.doflocs.T)
        self.prolong = p1_matrix(self.mesh.points, self.mesh.cells, mesh.points)  # P1 pressure
        self.stored_velocity = self.sampler(mesh.points)
        self.prescribed = prescribed_nodes(mesh)

    def start(self, traj: Trajectory, frame: int) -> FlowState:
        """The coarse state of stored frame ``frame`` of ``traj``."""
        u = self.restrict_u @ np.asarray(traj.point_fields["velocity"][frame], dtype=np.float64)
        pressure = np.asarray(traj.point_fields["pressure"][frame], dtype=np.float64)
        s = FlowState(np.ascontiguousarray(u[:, 0]), np.ascontiguousarray(u[:, 1]), self.restrict_p @ pressure,
                      float(traj.times[frame]))
        s.ux[self.flow.vel_fixed], s.uy[self.flow.vel_fixed] = self.flow.velocity_bc(s.t)
        return s

    def advance(self, s: FlowState) -> FlowState:
        for _ in range(self.substeps):
            s = self.flow.step(s)
        return s

    def on_stored(self, s: FlowState) -> dict[str, np.ndarray]:
        """Velocity (N, 2) and pressure (N,) of state ``s`` at the stored mesh's nodes: the
        solver's own fields evaluated there (P2 velocity, P1 pressure), not an interpolation of
        its vertex values (which would lose the velocity's curvature within each coarse cell)."""
        _, p = self.flow.vertex_values(s)
        return {"velocity": self.stored_velocity(s), "pressure": self.prolong @ p}

    def sampler(self, points: np.ndarray):
        """A function of a state giving its velocity (Q, 2) at ``points`` (Q, 2): the P2 field
        with the exact boundary values, evaluated through a matrix built here, once."""
        probe = self.flow.vb.probes(np.ascontiguousarray(np.asarray(points, dtype=np.float64)[:, :2].T))

        def velocity(s: FlowState) -> np.ndarray:
            ux, uy = s.ux.copy(), s.uy.copy()
            ux[self.flow.vel_fixed], uy[self.flow.vel_fixed] = self.flow.velocity_bc(s.t)
            return np.stack([probe @ ux, probe @ uy], 1)

        return velocity


def coarse_flow(traj: Trajectory, scale: float) -> CoarseFlow:
    """The coarse solver of a stored cylinder trajectory at ``scale`` (the factory of
    :func:`sim.rollout.hybrid.corrected_case` and ``corrected_rollout``)."""
    if not isinstance(traj, Trajectory) or "pressure" not in traj.point_fields:
        raise SimError("the hybrid starts from stored velocity and pressure: give a cylinder_flow trajectory")
    return CoarseFlow(traj.mesh, traj.params, float(traj.dt), scale)


def prescribed_nodes(mesh: Mesh) -> np.ndarray:
    """Nodes whose velocity the case prescribes (inflow, walls, obstacle)."""
    if mesh.node_type is None:
        raise SimError("the mesh has no node types: the hybrid needs them to keep the prescribed velocities")
    return (mesh.node_type != int(NodeType.INTERIOR)) & (mesh.node_type != int(NodeType.OUTFLOW))


def _sample(traj: Trajectory, k: int, coarse: dict[str, np.ndarray], prescribed: np.ndarray) -> Mesh:
    """One steady sample on the stored mesh: the coarse values as inputs, the correction to frame
    ``k`` of ``traj`` as output (zero at the ``prescribed`` nodes, which take their true values)."""
    m, p = traj.mesh, traj.params
    truth = np.asarray(traj.point_fields["velocity"][k], dtype=np.float64)
    correction = truth - coarse["velocity"]
    correction[prescribed] = 0.0
    pd = {**{f"coarse_{name}": v.astype(np.float32) for name, v in coarse.items()},
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
                s = coarse.start(traj, j)
                for k in range(j + 1, min(j + frames, traj.num_steps - 1) + 1):
                    s = coarse.advance(s)
                    if (k - j) % every == 0:
                        sample = _sample(traj, k, coarse.on_stored(s), coarse.prescribed)
                        samples.append((f"{name}_s{j:03d}_{k:03d}", sample))
            with StoreWriter(path, append=True) as w:  # one trajectory's samples at a time
                for entry, sample in samples:
                    w.append(sample, entry)
    return path
