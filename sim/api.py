"""The Python API: ``sim.load(path) -> Surrogate``, then ``predict`` and ``rollout``.

Every model family answers the same two questions on the caller's own data:

- ``Surrogate.rollout(initial, steps, boundary=None)``: a time series from an initial
  state (time-stepping families), returned as a :class:`~sim.mesh.Trajectory` and
  optionally streamed to a ParaView series while it runs;
- ``Surrogate.predict(query, **scalars)``: fields on the caller's mesh as a pyvista
  object (the next step for time-stepping models; the steady fields with ``<field>_std``
  for MMGP and for ensembles).

``load`` needs nothing but the file: checkpoints carry their model name, constructor
arguments, normalisers and format version (``sim.train.checkpoint``); MMGP files carry their
fitted state as arrays and JSON; an ensemble is a small JSON manifest naming member
checkpoints. No file executes code when loaded.

Surrogates are safe to query from several threads: each query builds its own graph and
state, and the shared network runs under a per-surrogate lock (torch parallelises inside
each step already; the lock also guards the caches some networks keep per mesh).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import FileFormatError, SimError
from sim.mesh import Mesh, NodeType, Trajectory

_ADAPTERS: dict[str, Callable[[Any, dict[str, Any], Path], "Surrogate"]] = {}


def register_surrogate(model_name: str) -> Callable:
    """Register the Surrogate class that serves checkpoints of the registered model ``model_name``."""

    def deco(factory: Callable[[Any, dict[str, Any], Path], "Surrogate"]):
        _ADAPTERS[model_name] = factory
        return factory

    return deco


class Surrogate:
    """A loaded model. ``family`` names the model family; ``describe()`` says what it expects."""

    family = "surrogate"

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "path": str(self.path)}

    def predict(self, query: Any, **scalars: Any) -> Any:
        raise SimError(f"{self.family} surrogates do not answer predict()", self.path)

    def rollout(self, initial: Any, steps: int, boundary: Any = None, **kwargs: Any) -> Any:
        raise SimError(f"{self.family} surrogates are not time-stepping models: use predict()", self.path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.family} from {self.path}>"


# --------------------------------------------------------------------------- mesh models
class _Recorder:
    """A step writer that keeps the predicted states (and forwards each step to another writer)."""

    def __init__(self, forward: Any = None, keep: bool = True):
        self.forward, self.keep = forward, keep
        self.times: list[float] = []
        self.states: list[dict[str, np.ndarray]] = []

    def write(self, time: float, point_fields: dict[str, Any] | None = None, **kw: Any) -> None:
        if self.keep:
            self.times.append(float(time))
            self.states.append({k: np.array(v) for k, v in (point_fields or {}).items()})
        if self.forward is not None:
            self.forward.write(time, point_fields, **kw)

    def close(self) -> None:
        if self.forward is not None:
            self.forward.close()

    def abort(self) -> None:
        if self.forward is not None and hasattr(self.forward, "abort"):
            self.forward.abort()


class MeshSurrogate(Surrogate):
    """MeshGraphNet or the graph transformer (any :class:`~sim.models.mesh.simulator.MeshSimulator`
    checkpoint): one-step dynamics of point fields on a fixed mesh."""

    family = "mesh"

    def __init__(self, simulator: Any, path: Path, payload: dict[str, Any] | None = None):
        super().__init__(path)
        self.simulator = simulator
        self.fields: list[str] = list(simulator.config["fields"])
        self.dims: list[int] = list(simulator.config["field_dims"])
        self.edge_in = int(simulator.config["edge_in"])
        self.network = simulator.config["network"]
        self.scalars: list[str] = list(simulator.config.get("scalars") or [])
        self.history = int(simulator.config.get("history", 1))  # frames per input (older checkpoints: 1)
        train_cfg = (payload or {}).get("train", {}).get("config", {})
        self.train_data = train_cfg.get("data", {}).get("train")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "network": self.network, "fields": dict(zip(self.fields, self.dims)),
                "mesh_dim": self.edge_in - 1, "target": self.simulator.config["target"],
                "predicted_node_types": [NodeType(t).name.lower() for t in self.simulator.config["predicted_types"]],
                "scalars": list(self.scalars), "history": self.history}

    # ----- checks: one readable error when the query does not fit the model
    def check_mesh(self, mesh: Mesh) -> None:
        if not isinstance(mesh, Mesh):
            raise SimError(f"expected a sim.mesh.Mesh or Trajectory, got {type(mesh).__name__}", self.path)
        if mesh.dim + 1 != self.edge_in:
            raise SimError(f"the model was trained on {self.edge_in - 1}D meshes; this mesh is {mesh.dim}D",
                           self.path)
        if mesh.node_type is None:
            raise SimError("the mesh has no node types; the model needs them to know which nodes it predicts "
                           "and which the boundary conditions prescribe (set mesh.node_type)", self.path)
        known = np.array([int(t) for t in NodeType])
        bad = np.setdiff1d(np.unique(mesh.node_type), known)
        if bad.size:
            raise SimError(f"unknown node type value(s) {bad.tolist()} (known: "
                           + ", ".join(f"{int(t)} {t.name.lower()}" for t in NodeType) + ")", self.path)

    def state_from(self, arrays: dict[str, Any], n: int, what: str) -> np.ndarray:
        """(N, F) state from named point arrays, with a clear error for a missing or misshaped field."""
        missing = [f for f in self.fields if f not in arrays]
        if missing:
            raise SimError(f"{what} has no field(s) {missing} the model needs (it has {sorted(arrays)}; the model "
                           f"uses {dict(zip(self.fields, self.dims))})", self.path)
        parts = []
        for f, d in zip(self.fields, self.dims):
            a = np.asarray(arrays[f], dtype=np.float32).reshape(n, -1) if np.size(arrays[f]) == n * d else None
            if a is None:
                raise SimError(f"{what}: field {f!r} has shape {np.shape(arrays[f])}; the model expects ({n}, {d})"
                               if d > 1 else f"{what}: field {f!r} has shape {np.shape(arrays[f])}; the model "
                               f"expects ({n},)", self.path)
            parts.append(a)
        return np.concatenate(parts, axis=1)

    def _boundary(self, boundary: Any, mesh: Mesh, x0: np.ndarray, steps: int, reference: Trajectory | None
                  ) -> Callable[[int, float], np.ndarray]:
        n = mesh.num_points
        if boundary is None and reference is not None and reference.num_steps > steps:
            boundary = reference
        if boundary is None:
            return lambda s, t: x0  # prescribed nodes keep their initial values
        if isinstance(boundary, Trajectory):
            if boundary.mesh.num_points != n or boundary.num_steps <= steps:
                raise SimError(f"the boundary trajectory needs {steps + 1} steps on {n} points (it has "
                               f"{boundary.num_steps} on {boundary.mesh.num_points})", self.path)
            frames = {f: boundary.point_fields[f] for f in self.fields if f in boundary.point_fields}
            frames_state = [self.state_from({f: a[s] for f, a in frames.items()}, n, f"boundary step {s}")
                            for s in range(steps + 1)]
            return lambda s, t: frames_state[s]
        if callable(boundary):
            def call(s: int, t: float) -> np.ndarray:
                v = boundary(s, t)
                return self.state_from(v, n, f"boundary({s}, {t:.6g})") if isinstance(v, dict) else \
                    np.asarray(v, dtype=np.float32).reshape(n, -1)
            return call
        if isinstance(boundary, dict):
            fixed = self.state_from(boundary, n, "boundary")
            return lambda s, t: fixed
        raise SimError("boundary must be None, a Trajectory, a dict of fields or a function (step, time) -> fields",
                       self.path)

    def _initial(self, initial: Any, dt: float | None) -> tuple[Mesh, np.ndarray, float, float, Trajectory | None]:
        """Mesh, initial frames (h, N, F) for a model that sees h frames, dt, start time, and the
        rest of the trajectory from the start on (its steps give the default boundary values)."""
        h = self.history
        if isinstance(initial, Trajectory):
            mesh = initial.mesh
            self.check_mesh(mesh)
            if initial.num_steps < h:
                raise SimError(f"the model sees {h} frames; the initial trajectory has {initial.num_steps} step(s)",
                               self.path)
            frames = np.stack([self.state_from({k: v[s] for k, v in initial.point_fields.items()}, mesh.num_points,
                                               f"the initial trajectory's step {s}") for s in range(h)])
            step = dt or initial.dt or (float(np.diff(initial.times[:2])[0]) if initial.num_steps > 1 else None)
            rest = initial if h == 1 else Trajectory(
                mesh, initial.times[h - 1:], point_fields={k: v[h - 1:] for k, v in initial.point_fields.items()},
                dt=initial.dt, params=initial.params)
            return mesh, frames, step, float(initial.times[h - 1]), rest
        if isinstance(initial, Mesh):
            self.check_mesh(initial)
            if h > 1:
                raise SimError(f"the model sees {h} frames (the state and the {h - 1} before it): start from a "
                               f"Trajectory with at least {h} steps, not a Mesh", self.path)
            x0 = self.state_from(initial.point_data, initial.num_points, "the initial mesh's point data")
            return initial, x0[None], dt, 0.0, None
        raise SimError(f"initial must be a Mesh with the fields in point_data or a Trajectory, not "
                       f"{type(initial).__name__}", self.path)

    def _members(self) -> list[Any]:
        return [self.simulator]

    def _run(self, simulator: Any, mesh: Mesh, frames: np.ndarray, steps: int, dt: float, t0: float,
             bc: Callable, writer: Any = None, keep: bool = True, params: dict[str, Any] | None = None) -> _Recorder:
        from sim.rollout import rollout

        rec = _Recorder(writer, keep)
        with self._lock:
            rollout(simulator, [mesh], [frames], steps, dt, boundary=[bc], writers=[rec], t0=t0, params=[params])
        return rec

    def _params(self, initial: Any, params: dict[str, Any] | None) -> dict[str, Any]:
        """The trajectory parameters of a query: ``initial.params`` (a Trajectory) updated with
        ``params``; one error naming the missing ones when the model is conditioned on more."""
        merged = {**(initial.params if isinstance(initial, Trajectory) else {}), **(params or {})}
        extra = sorted(set(params or {}) - set(self.scalars))
        if extra:
            raise SimError(f"the model takes no parameter(s) {extra} (it is conditioned on {self.scalars or 'none'})",
                           self.path)
        missing = [k for k in self.scalars if k not in merged]
        if missing:
            raise SimError(f"the model is conditioned on {self.scalars}: give {missing} (params={{...}} or "
                           "a Trajectory whose params hold them)", self.path)
        return merged

    def rollout(self, initial: Mesh | Trajectory, steps: int, boundary: Any = None, dt: float | None = None,
                out: str | os.PathLike | None = None, keep: bool = True, params: dict[str, Any] | None = None
                ) -> Trajectory:
        """Roll the model ``steps`` steps from ``initial``.

        Args:
            initial: a Trajectory (its first step is the initial state, or its first h steps
                for a model that sees h frames (``describe()["history"]``), the rollout
                starting from the last; its later steps, when there are enough, give the
                boundary values) or a Mesh with the fields in ``point_data``.
            boundary: values of the prescribed nodes (every node type the model does not
                predict): a Trajectory, a dict of fields, or ``fn(step, time)`` returning a dict
                of fields or an (N, F) array; default: from ``initial`` as above, else held at
                the initial values.
            dt: time step (default: the trajectory's).
            out: also stream every step to this ``.pvd`` or ``.xdmf`` series as it is computed.
            keep: hold the predicted steps in memory and return them (False: only the last
                step is returned, for very long rollouts of large meshes streamed to ``out``).
            params: values of the trajectory parameters the model is conditioned on
                (``describe()["scalars"]``, e.g. ``{"nu": 1e-3}``); default: ``initial.params``.
        """
        mesh, frames, dt, t0, ref = self._initial(initial, dt)
        x0 = frames[-1]
        if dt is None:
            raise SimError("give dt: the initial state carries no time step", self.path)
        if steps < 1:
            raise SimError(f"steps must be >= 1, got {steps}", self.path)
        bc = self._boundary(boundary, mesh, x0, steps, ref)
        p = self._params(initial, params)
        members = self._members()
        if len(members) == 1:
            writer = self._series_writer(out, mesh, dt, std=False)
            rec = self._run(members[0], mesh, frames, steps, dt, t0, bc, writer, keep or out is None, p)
            return self._trajectory(mesh, rec.times, rec.states, keep)
        recs = [self._run(m, mesh, frames, steps, dt, t0, bc, params=p) for m in members]
        stack = {f: np.stack([[s[f] for s in r.states] for r in recs]) for f in self.fields}  # (M, T, N, ...)
        states = [{**{f: stack[f][:, i].mean(0) for f in self.fields},
                   **{f"{f}_std": stack[f][:, i].std(0) for f in self.fields}} for i in range(len(recs[0].times))]
        if out is not None:
            writer = self._series_writer(out, mesh, dt, std=True)
            try:
                for t, s in zip(recs[0].times, states):
                    writer.write(t, s)
            except BaseException:
                writer.abort()
                raise
            writer.close()
        return self._trajectory(mesh, recs[0].times, states, keep)

    def _series_writer(self, out: Any, mesh: Mesh, dt: float, std: bool) -> Any:
        if out is None:
            return None
        from sim.mesh import PVDWriter, SeriesLayout, XDMFWriter

        out = Path(out)
        names = self.fields + ([f"{f}_std" for f in self.fields] if std else [])
        layout = SeriesLayout(mesh, point_fields=names, dt=dt)
        if out.suffix.lower() == ".pvd":
            return PVDWriter(out, layout)
        if out.suffix.lower() == ".xdmf":
            return XDMFWriter(out, layout)
        raise SimError("rollout series are written as .pvd or .xdmf", out)

    def _trajectory(self, mesh: Mesh, times: list[float], states: list[dict[str, np.ndarray]], keep: bool
                    ) -> Trajectory:
        if not keep:
            times, states = times[-1:], states[-1:]
        fields = {k: np.stack([s[k] for s in states]) for k in states[0]}
        if any(k in mesh.point_data for k in fields):  # an initial Mesh carried the state as static data
            mesh = Mesh(mesh.points, mesh.cells, {k: v for k, v in mesh.point_data.items() if k not in fields},
                        mesh.cell_data, mesh.field_data, node_type=mesh.node_type)
        return Trajectory(mesh, np.asarray(times), point_fields=fields,
                          dt=float(np.diff(times[:2])[0]) if len(times) > 1 else None)

    def predict(self, query: Mesh | Trajectory, dt: float | None = None, boundary: Any = None, **scalars: Any):
        """One step: the fields at the next time step on ``query``'s mesh, as a pyvista grid
        (with ``<field>_std`` for ensembles). ``query``: a Mesh with the fields in point_data, or
        a Trajectory (its first step, or its first h for a model that sees h frames).
        ``scalars``: the trajectory parameters the model is conditioned on (default: the
        Trajectory's params)."""
        if dt is None and isinstance(query, Mesh):
            if self.simulator.config["target"] == "derivative":
                raise SimError("give dt: the model predicts a time derivative", self.path)
            dt = 1.0  # a delta target does not depend on dt; the output is labelled t = 1
        traj = self.rollout(query, 1, boundary=boundary, dt=dt, params=scalars)
        grid = Mesh(traj.mesh.points, traj.mesh.cells, node_type=traj.mesh.node_type).to_pyvista()
        for k, v in traj.point_fields.items():
            grid.point_data[k] = v[-1]
        return grid


class EnsembleSurrogate(MeshSurrogate):
    """Deep ensemble of mesh simulators trained from different seeds on the same data: the
    rollout of each member, then per node and step the mean (``<field>``) and the standard
    deviation across members (``<field>_std``), an uncertainty for every prediction path."""

    family = "mesh-ensemble"

    def __init__(self, members: list[Any], path: Path, payload: dict[str, Any] | None = None):
        super().__init__(members[0], path, payload)
        for i, m in enumerate(members[1:], start=1):
            if (list(m.config["fields"]) != self.fields or list(m.config["field_dims"]) != self.dims
                    or int(m.config["edge_in"]) != self.edge_in
                    or list(m.config.get("scalars") or []) != self.scalars
                    or int(m.config.get("history", 1)) != self.history):
                raise FileFormatError(f"ensemble member {i} does not take the same fields, parameters, history and "
                                      "mesh as member 0", path)
        self.members = members

    def _members(self) -> list[Any]:
        return self.members

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "members": len(self.members)}


@register_surrogate("mesh_simulator")
def _mesh_simulator(model: Any, payload: dict[str, Any], path: Path) -> Surrogate:
    return MeshSurrogate(model, path, payload)


# --------------------------------------------------------------------------- steady graph models
class SteadySurrogate(Surrogate):
    """A graph network that maps a mesh and input scalars to steady fields
    (:class:`~sim.models.steady.simulator.SteadySimulator`)."""

    family = "steady"

    def __init__(self, model: Any, path: Path):
        super().__init__(path)
        self.model = model

    def describe(self) -> dict[str, Any]:
        c = self.model.config
        return {**super().describe(), "network": c["network"], "scalars_in": list(c["scalars"]),
                "fields": dict(zip(c["fields"], c["field_dims"])), "mesh_dim": c["edge_in"] - 1}

    def predict(self, query: Mesh, **scalars: Any):
        """Fields on ``query``'s nodes as a pyvista grid."""
        if not isinstance(query, Mesh):
            raise SimError(f"steady models predict on a Mesh, got {type(query).__name__}", self.path)
        c = self.model.config
        if query.dim + 1 != c["edge_in"]:
            raise SimError(f"the model was trained on {c['edge_in'] - 1}D meshes; this mesh is {query.dim}D", self.path)
        missing = [k for k in c["scalars"] if k not in scalars]
        if missing:
            raise SimError(f"missing input scalar(s) {missing} (the model takes {c['scalars']})", self.path)
        if query.node_type is not None:
            bad = np.setdiff1d(np.unique(query.node_type), [int(t) for t in NodeType])
            if bad.size:
                raise SimError(f"unknown node type value(s) {bad.tolist()}", self.path)
        with self._lock:
            res = self.model.predict(query, scalars)
        grid = Mesh(query.points, query.cells, node_type=query.node_type).to_pyvista()
        for k, v in res.items():
            grid.point_data[k] = v
        return grid


@register_surrogate("steady_simulator")
def _steady_simulator(model: Any, payload: dict[str, Any], path: Path) -> Surrogate:
    return SteadySurrogate(model, path)


# --------------------------------------------------------------------------- particles
class ParticleSurrogate(Surrogate):
    """GIOROM or the GNS-style baseline (:class:`~sim.models.particle.simulator.ParticleSimulator`):
    Lagrangian particle dynamics from a history of positions; GIOROM steps a sparse subset and
    decodes the motion at any query points of the reference configuration."""

    family = "particle"

    def __init__(self, model: Any, path: Path):
        super().__init__(path)
        self.model = model
        self.history = int(model.config["history"])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "network": self.model.config["network"], "dim": self.model.dim,
                "history": self.history, "dt": self.model.dt, "dense_decoder": self.model.decoder is not None}

    def rollout(self, initial: Trajectory, steps: int, boundary: Any = None, queries: np.ndarray | None = None,
                out: str | os.PathLike | None = None) -> Trajectory:
        """Roll ``steps`` frames on from the first ``history`` frames of ``initial`` (a particle
        Trajectory with moving positions; its first frame is the reference configuration).

        Returns a moving point set: all particles, or the ``queries`` (Q, d) points of the
        reference configuration (GIOROM's dense decoding), with the ``displacement`` field;
        ``out`` (.pvd / .xdmf) also streams it for ParaView.
        """
        from sim.rollout.particles import DISPLACEMENT, particle_rollout

        if boundary is not None:
            raise SimError("particle models take no boundary values: walls are part of the learned dynamics",
                           self.path)
        if not isinstance(initial, Trajectory) or initial.positions is None:
            raise SimError("initial must be a particle Trajectory with moving positions", self.path)
        pos = np.asarray(initial.positions, dtype=np.float32)
        if pos.shape[0] < self.history:
            raise SimError(f"the model needs {self.history} frames to start; the trajectory has {pos.shape[0]}",
                           self.path)
        if pos.shape[2] != self.model.dim:
            raise SimError(f"the model simulates {self.model.dim}D particles; these are {pos.shape[2]}D", self.path)
        rest = pos[0]
        q = rest if queries is None else np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.model.dim:
            raise SimError(f"queries must be (Q, {self.model.dim}) reference positions, got {q.shape}", self.path)
        t0 = float(initial.times[self.history - 1])
        rec = _Recorder(self._series_writer(out, q), keep=True)
        types = initial.mesh.point_data.get("particle_type")
        with self._lock:
            particle_rollout(self.model, [pos[: self.history]], steps, rest=[rest],
                             particle_types=None if types is None else [types],
                             queries=None if queries is None else [q], writers=[rec], t0=t0)
        moving = np.stack([q + s[DISPLACEMENT] for s in rec.states])
        return Trajectory(Mesh(q), np.asarray(rec.times), point_fields={DISPLACEMENT: np.stack(
            [s[DISPLACEMENT] for s in rec.states])}, positions=moving, dt=self.model.dt)

    def _series_writer(self, out: Any, points: np.ndarray) -> Any:
        if out is None:
            return None
        from sim.mesh import PVDWriter, SeriesLayout, XDMFWriter
        from sim.rollout.particles import DISPLACEMENT

        out = Path(out)
        layout = SeriesLayout(Mesh(points), point_fields=[DISPLACEMENT], moving=True, dt=self.model.dt)
        if out.suffix.lower() in (".pvd", ".xdmf"):
            return (PVDWriter if out.suffix.lower() == ".pvd" else XDMFWriter)(out, layout)
        raise SimError("rollout series are written as .pvd or .xdmf", out)


@register_surrogate("particle_simulator")
def _particle_simulator(model: Any, payload: dict[str, Any], path: Path) -> Surrogate:
    return ParticleSurrogate(model, path)


# --------------------------------------------------------------------------- PROSE
class ProseSurrogate(Surrogate):
    """PROSE: from an observed window of an ODE trajectory (and optionally a guess of its
    equations), the future trajectory at any query times and the equations as sympy."""

    family = "prose"

    def __init__(self, model: Any, path: Path):
        super().__init__(path)
        self.model = model

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_dim": self.model.max_dim, "symbol_input": self.model.symbol_input}

    def predict(self, query: Trajectory | tuple[np.ndarray, np.ndarray], query_times: Any = None,
                symbols: Any = None, beam_size: int = 1, **scalars: Any) -> tuple[Trajectory, list | None]:
        """(future trajectory, equations). ``query``: a Trajectory whose ``state`` field (T, 1, d)
        is the observed window, or ``(times (T,), values (T, d))``. ``query_times`` default to
        twice the window's length beyond it at the same spacing. ``symbols``: a guess of the
        equations (prefix string, sympy expressions or infix strings, one per component)."""
        if scalars:
            raise SimError(f"PROSE takes no scalar inputs (got {sorted(scalars)})", self.path)
        if isinstance(query, Trajectory):
            if "state" not in query.point_fields:
                raise SimError(f"the trajectory has no 'state' field (has {sorted(query.point_fields)})", self.path)
            times, values = np.asarray(query.times), np.asarray(query.point_fields["state"]).reshape(query.num_steps, -1)
        else:
            times, values = (np.asarray(a) for a in query)
        if query_times is None:
            step = float(np.mean(np.diff(times))) if len(times) > 1 else 1.0
            query_times = times[-1] + step * np.arange(1, 2 * len(times) + 1)
        with self._lock:
            pred, exprs = self.model.query(times, values, query_times, symbols=symbols, beam_size=beam_size)
        traj = Trajectory(Mesh(np.zeros((1, 1))), np.asarray(query_times, dtype=np.float64),
                          point_fields={"state": pred[:, None, :]},
                          params={"equations": None if exprs is None else [str(e) for e in exprs]})
        return traj, exprs


@register_surrogate("prose")
def _prose(model: Any, payload: dict[str, Any], path: Path) -> Surrogate:
    return ProseSurrogate(model, path)


# --------------------------------------------------------------------------- MMGP
class MMGPSurrogate(Surrogate):
    """MMGP: steady fields and scalars on the caller's mesh, with predictive std."""

    family = "mmgp"

    def __init__(self, model: Any, path: Path):
        super().__init__(path)
        self.model = model

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {**super().describe(), "scalars_in": list(m.scalar_names_), "fields": dict(m.field_components_),
                "scalars_out": list(m.output_gps_)}

    def predict(self, query: Mesh, **scalars: Any):
        """Fields (``<field>``, ``<field>_std``) on ``query``'s nodes as a pyvista grid, output
        scalars (and ``<name>_std``) in its field data."""
        if not isinstance(query, Mesh):
            raise SimError(f"MMGP predicts on a Mesh (2D triangles), got {type(query).__name__}", self.path)
        if query.dim != 2 or "triangle" not in query.cells:
            raise SimError(f"MMGP was fitted on 2D triangle meshes; this mesh is {query.dim}D with cells "
                           f"{list(query.cells)}", self.path)
        return self.model.predict_pyvista(query, scalars)  # no shared mutable state: safe without the lock


# --------------------------------------------------------------------------- loading
def _load_ensemble(path: Path) -> Surrogate:
    from sim.train.checkpoint import load_model, read_ensemble

    models = []
    for m in read_ensemble(path):
        model, payload = load_model(m)
        if getattr(model, "registered_name", None) != "mesh_simulator":
            raise FileFormatError(f"ensemble member {m} is a {model.registered_name!r} model; ensembles hold mesh "
                                  "simulators", path)
        models.append(model)
    return EnsembleSurrogate(models, path, payload)


def load(path: str | os.PathLike) -> Surrogate:
    """Load any saved model as a :class:`Surrogate` (checkpoint, MMGP file or ensemble manifest)."""
    path = Path(path)
    if not path.exists():
        raise FileFormatError("no such model file", path)
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.lstrip().startswith(b"{"):
        return _load_ensemble(path)
    if path.suffix.lower() == ".npz":
        from sim.models.mmgp import MMGP

        return MMGPSurrogate(MMGP.load(path), path)
    from sim.train.checkpoint import load_model

    model, payload = load_model(path)
    name = payload["model"]["name"]
    if name not in _ADAPTERS:
        raise FileFormatError(f"no surrogate adapter for model {name!r} (known: {', '.join(sorted(_ADAPTERS))})", path)
    return _ADAPTERS[name](model, payload, path)
