"""The mesh time-stepping family (MeshGraphNet, the graph transformer, any registered graph
network inside a :class:`~sim.models.mesh.simulator.MeshSimulator`): one-step dynamics of
point fields on a fixed mesh.

Parts: the mesh-step dataset, the simulator built from the configuration, its validation
rollout, the :class:`~sim.rollout.steppers.MeshStepper` case of the one rollout loop (an
ensemble manifest rolls its members together), the diagnostics' input graph, and the
:class:`MeshSurrogate` / :class:`EnsembleSurrogate` of the API.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import FileFormatError, SimError
from sim.families.base import Family, Recorder, Surrogate, register_family, series_writer, set_precision
from sim.mesh import Mesh, NodeType, Trajectory
from sim.rollout.corrections import Correction


@dataclass
class MeshOptions:
    """``model.family_args`` of mesh models."""

    # applied after every rollout step (sim.rollout.corrections): "divergence_free" projects the
    # velocity update of incompressible flows onto divergence-free fields
    correction: Correction = "none"
    # temporal bundling: frames predicted per model call (Brandstetter et al. 2022); a rollout of n
    # steps makes n / bundle calls, and training asks for the next bundle frames at once
    bundle: int = 1
    # static point data of the mesh the model reads at every node and does not predict (e.g. the
    # heat source density of diffusion3d); the data's meshes and every query mesh must carry them
    node_inputs: list[str] = field(default_factory=list)
    # train through the pushforward steps (unrolled training): the gradient flows through the
    # model's own k steps and the loss is the mean over all k + 1 steps, not the last one only
    unrolled: bool = False


def set_correction(model: Any, name: str) -> None:
    """Roll ``model`` (a simulator or an ensemble's members) out with the correction ``name``
    (:data:`sim.rollout.corrections.CORRECTIONS`) instead of the one it was configured with."""
    from sim.rollout.corrections import check_correction

    name = check_correction(name)
    for member in model if isinstance(model, list) else [model]:
        member.config["correction"] = name


@register_family
class MeshFamily(Family):
    """Mesh time stepping: one-step dynamics of point fields on a fixed mesh (MeshGraphNet, graph
    transformer). The model predicts the nodes it owns; boundary values come from the data or the
    caller. Deep ensembles of it roll out together with a per-node spread."""

    name = "mesh"
    model_names = ("mesh_simulator",)
    formats = ("sim.ensemble",)
    commands = frozenset({"train", "rollout", "eval", "predict", "diagnose"})
    ensembles = True
    options = MeshOptions
    input_noise = True
    tunable = True

    def check_config(self, cfg: Any, source: Any = None) -> None:
        from sim.train.config import ConfigError

        opts = self.parse_options(cfg, source)
        if opts.bundle < 1:
            raise ConfigError(f"model.family_args.bundle must be >= 1 (frames per model call), got {opts.bundle}",
                              source)
        if opts.unrolled and not cfg.model.pushforward:
            raise ConfigError("model.family_args.unrolled trains through the pushforward steps: set "
                              "model.pushforward >= 1", source)

    def build_dataset(self, cfg: Any) -> Any:
        return self._step_dataset(cfg, cfg.data.train, cfg.model.pushforward)

    def _step_dataset(self, cfg: Any, path: Any, steps: int) -> Any:
        """Samples of ``path`` holding the frames of ``steps`` model steps before the trained one."""
        from sim.data.windows import MeshStepDataset

        opts = self.parse_options(cfg)
        return MeshStepDataset(path, cfg.model.fields, scalars=cfg.model.scalars, horizon=(steps + 1) * opts.bundle,
                               history=cfg.model.history, node_inputs=opts.node_inputs)

    def build_model(self, cfg: Any, dataset: Any) -> Any:
        from sim.models.mesh import MeshSimulator
        from sim.models.registry import preset_args

        m = cfg.model
        opts = self.parse_options(cfg)
        args = preset_args(m.network, m.preset) if m.preset else {}
        args.update(m.network_args)
        kwargs: dict[str, Any] = {}
        if m.noise_types is not None:
            kwargs["noise_types"] = m.noise_types
        if m.predicted_types is not None:
            kwargs["predicted_types"] = m.predicted_types
        edge_in = int(dataset[0].edge_attr.shape[-1])
        model = MeshSimulator(m.network, args, m.fields, dataset.dims, edge_in, target=m.target,
                              noise_std=m.noise_std, scalars=m.scalars, pushforward=m.pushforward,
                              history=m.history, correction=opts.correction, bundle=opts.bundle,
                              node_inputs=opts.node_inputs, node_input_dims=dataset.node_input_dims,
                              unrolled=opts.unrolled, **kwargs)
        for norm in (model.node_normalizer, model.edge_normalizer, model.output_normalizer):
            norm.max_accumulations = cfg.train.normalizer_accumulation_steps
        model.initialize(dataset[0])  # graph-aware init plugins (network_args.init); same sample on every rank
        return model

    def tuning_dataset(self, cfg: Any, path: Any) -> Any:
        """Samples holding the frames of the tuning rollout (``rollout_steps`` + 1 model steps),
        which may reach further than the training samples' pushforward."""
        from sim.train.config import self_tuning_options

        return self._step_dataset(cfg, path, max(self_tuning_options(cfg)["rollout_steps"], cfg.model.pushforward))

    def tuning_loss(self, model: Any, batch: Any, cfg: Any) -> Any:
        """Mean squared residual of the step after ``train.self_tuning.rollout_steps`` (default
        ``model.pushforward``; any number, the tuning samples hold its frames) of the model's own
        steps from a clean state: input noise earns its place by what it does to rollouts, not to
        the one-step error it can only raise."""
        from sim.train.config import self_tuning_options

        err, mask = model.rollout_residual(batch, self_tuning_options(cfg)["rollout_steps"])
        return (err ** 2)[mask].mean()

    def validate(self, model: Any, cfg: Any, device: Any) -> dict[str, float]:
        """Rollout RMSE on the first ``data.valid_entries`` trajectories (ground-truth boundaries)."""
        from sim.mesh import Store
        from sim.rollout.evaluate import evaluate_store, mesh_case

        with Store(cfg.data.valid) as store:
            names = store.names()[:cfg.data.valid_entries]
        results = evaluate_store(model, cfg.data.valid, mesh_case, names, cfg.data.valid_rollout_steps,
                                 device=device)
        n = min(r.steps for r in results)
        keys = [k for k in results[0].rmse if k == "all" or int(k) <= n]
        return {f"valid_rmse_{k}": float(np.mean([r.rmse[k] for r in results])) for k in keys}

    def surrogate(self, model: Any, payload: dict[str, Any], path: Path) -> Surrogate:
        if isinstance(model, list):
            return EnsembleSurrogate(model, path, payload)
        return MeshSurrogate(model, path, payload)

    def load(self, path: Path) -> list[Any]:
        """The members of an ensemble manifest."""
        from sim.train.checkpoint import load_model, read_ensemble

        models = []
        for m in read_ensemble(path):
            model, _ = load_model(m)
            if getattr(model, "registered_name", None) not in self.model_names:
                raise FileFormatError(f"ensemble member {m} is a {model.registered_name!r} model; ensembles hold "
                                      "mesh simulators", path)
            models.append(model)
        return models

    def case(self, model: Any) -> Any:
        from sim.rollout.evaluate import mesh_case

        return mesh_case

    def diagnose_sample(self, model: Any, data: Path, entry: str, step: int) -> Any:
        """The training sample of ``entry`` at ``step`` (with the scalars and frames the model reads)."""
        from sim.data.windows import MeshStepDataset

        if isinstance(model, list):
            raise self.refuse("diagnose", "diagnose one member checkpoint of the ensemble")
        c = model.config
        dataset = MeshStepDataset(data, c["fields"], entries=[entry], scalars=c.get("scalars") or [],
                                  history=int(c.get("history", 1)), node_inputs=c.get("node_inputs") or ())
        first = dataset.history - 1  # a model that sees h frames starts at step h - 1
        if not first <= step < first + len(dataset):
            raise SimError(f"step {step} is outside entry {entry!r} (input steps {first}..{first + len(dataset) - 1})",
                           data)
        return dataset[step - first]


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
        self.node_inputs: list[str] = list(simulator.config.get("node_inputs") or [])
        train_cfg = (payload or {}).get("train", {}).get("config", {})
        self.train_data = train_cfg.get("data", {}).get("train")
        self.compiled = False

    def set_precision(self, name: str) -> MeshSurrogate:
        set_precision(self._members(), name)
        return self

    def set_compile(self, on: bool = True) -> MeshSurrogate:
        self.compiled = bool(on)
        return self

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "network": self.network, "fields": dict(zip(self.fields, self.dims)),
                "mesh_dim": self.edge_in - 1, "target": self.simulator.config["target"],
                "predicted_node_types": [NodeType(t).name.lower() for t in self.simulator.config["predicted_types"]],
                "scalars": list(self.scalars), "history": self.history, "node_inputs": list(self.node_inputs),
                "precision": self.simulator.inference_precision, "compiled": self.compiled}

    # ----- checks: one readable error when the query does not fit the model; it names the
    # query's file (``where``, None for an object), not the model's
    def check_mesh(self, mesh: Mesh, where: Any = None) -> None:
        if not isinstance(mesh, Mesh):
            raise SimError(f"expected a sim.mesh.Mesh or Trajectory, got {type(mesh).__name__}", where)
        if mesh.dim + 1 != self.edge_in:
            raise SimError(f"the model was trained on {self.edge_in - 1}D meshes; this mesh is {mesh.dim}D", where)
        if mesh.node_type is None:
            raise SimError("the mesh has no node types; the model needs them to know which nodes it predicts "
                           "and which the boundary conditions prescribe (set mesh.node_type, or give them by "
                           "group name: sim.mesh.node_types_from_groups)", where)
        known = np.array([int(t) for t in NodeType])
        bad = np.setdiff1d(np.unique(mesh.node_type), known)
        if bad.size:
            raise SimError(f"unknown node type value(s) {bad.tolist()} (known: "
                           + ", ".join(f"{int(t)} {t.name.lower()}" for t in NodeType) + ")", where)
        self.simulator.node_input_values(mesh.point_data, mesh.num_points, where)  # one error when one is missing

    def state_from(self, arrays: dict[str, Any], n: int, what: str, where: Any = None) -> np.ndarray:
        """(N, F) state from named point arrays, with a clear error for a missing or misshaped field."""
        missing = [f for f in self.fields if f not in arrays]
        if missing:
            raise SimError(f"{what} has no field(s) {missing} the model needs (it has {sorted(arrays)}; the model "
                           f"uses {dict(zip(self.fields, self.dims))})", where)
        parts = []
        for f, d in zip(self.fields, self.dims):
            a = np.asarray(arrays[f], dtype=np.float32).reshape(n, -1) if np.size(arrays[f]) == n * d else None
            if a is None:
                raise SimError(f"{what}: field {f!r} has shape {np.shape(arrays[f])}; the model expects ({n}, {d})"
                               if d > 1 else f"{what}: field {f!r} has shape {np.shape(arrays[f])}; the model "
                               f"expects ({n},)", where)
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
                               f"{boundary.num_steps} on {boundary.mesh.num_points})")
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
        raise SimError("boundary must be None, a Trajectory, a dict of fields or a function (step, time) -> fields")

    def _initial(self, initial: Any, dt: float | None, where: Any = None
                 ) -> tuple[Mesh, np.ndarray, float, float, Trajectory | None]:
        """Mesh, initial frames (h, N, F) for a model that sees h frames, dt, start time, and the
        rest of the trajectory from the start on (its steps give the default boundary values).
        ``where``: the file ``initial`` came from, named by errors about it."""
        h = self.history
        if isinstance(initial, Trajectory):
            mesh = initial.mesh
            self.check_mesh(mesh, where)
            if initial.num_steps < h:
                raise SimError(f"the model sees {h} frames; the initial trajectory has {initial.num_steps} step(s)",
                               where)
            frames = np.stack([self.state_from({k: v[s] for k, v in initial.point_fields.items()}, mesh.num_points,
                                               f"the initial trajectory's step {s}", where) for s in range(h)])
            step = dt or initial.dt or (float(np.diff(initial.times[:2])[0]) if initial.num_steps > 1 else None)
            rest = initial if h == 1 else Trajectory(
                mesh, initial.times[h - 1:], point_fields={k: v[h - 1:] for k, v in initial.point_fields.items()},
                dt=initial.dt, params=initial.params)
            return mesh, frames, step, float(initial.times[h - 1]), rest
        if isinstance(initial, Mesh):
            self.check_mesh(initial, where)
            if h > 1:
                raise SimError(f"the model sees {h} frames (the state and the {h - 1} before it): start from a "
                               f"Trajectory with at least {h} steps, not a Mesh", where)
            x0 = self.state_from(initial.point_data, initial.num_points, "the initial mesh's point data", where)
            return initial, x0[None], dt, 0.0, None
        raise SimError(f"initial must be a Mesh with the fields in point_data or a Trajectory, not "
                       f"{type(initial).__name__}", where)

    def _members(self) -> list[Any]:
        return [self.simulator]

    def _run(self, mesh: Mesh, frames: np.ndarray, steps: int, dt: float, t0: float, bc: Callable,
             recorders: list[Recorder], params: list[dict[str, Any]]) -> None:
        """The one rollout loop over this surrogate's stepper (an ensemble's members together):
        one trajectory per entry of ``params``, all from ``frames`` on ``mesh``, batched into one
        graph per step, each written to its recorder."""
        from sim.rollout.engine import run
        from sim.rollout.steppers import EnsembleStepper, MeshStepper

        k = len(params)
        steppers = [MeshStepper(m, [mesh] * k, [frames] * k, [dt] * k, [t0] * k, boundary=[bc] * k, params=params,
                                compile=self.compiled) for m in self._members()]
        stepper = steppers[0] if len(steppers) == 1 else EnsembleStepper(steppers)
        with self._lock:
            run(stepper, steps, stepper.times, recorders)

    def _start(self, initial: Any, steps: int, boundary: Any, dt: float | None, where: Any
               ) -> tuple[Mesh, np.ndarray, float, float, Callable]:
        """Mesh, initial frames, dt, start time and boundary function of a rollout from ``initial``
        (one readable error when dt or steps do not fit)."""
        mesh, frames, dt, t0, ref = self._initial(initial, dt, where)
        if dt is None:
            raise SimError("give dt: the initial state carries no time step", where)
        if steps < 1:
            raise SimError(f"steps must be >= 1, got {steps}", self.path)
        return mesh, frames, dt, t0, self._boundary(boundary, mesh, frames[-1], steps, ref)

    def sweep(self, initial: Any, steps: int, params: list[dict[str, Any]], boundary: Any = None,
              dt: float | None = None) -> list[Trajectory]:
        """Roll the model ``steps`` steps from the same ``initial`` state for each of several
        parameter values at once (a parameter sweep: e.g. ``[{"nu": 1e-3}, {"nu": 2e-3}]``), as
        one batched graph per step, so that a sweep costs one model call per step rather than
        one per query. Returns one Trajectory per entry of ``params``, each what
        :meth:`rollout` with those params returns. ``initial``, ``boundary`` and ``dt`` as there
        (one boundary for all queries)."""
        if not isinstance(params, (list, tuple)) or not params or not all(isinstance(p, dict) for p in params):
            raise SimError("sweep needs params as a non-empty list of dicts, one per query (e.g. [{'nu': 1e-3}, "
                           "{'nu': 2e-3}])", self.path)
        initial, where = self.mesh_query(initial, "initial")
        mesh, frames, dt, t0, bc = self._start(initial, steps, boundary, dt, where)
        recs = [Recorder() for _ in params]
        self._run(mesh, frames, steps, dt, t0, bc, recs, [self._params(initial, p) for p in params])
        return [self._trajectory(mesh, r.times, r.states, True) for r in recs]

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

    def rollout(self, initial: Any, steps: int, boundary: Any = None, dt: float | None = None,
                out: str | os.PathLike | None = None, keep: bool = True, params: dict[str, Any] | None = None
                ) -> Trajectory:
        """Roll the model ``steps`` steps from ``initial``.

        Args:
            initial: a Trajectory (its first step is the initial state, or its first h steps
                for a model that sees h frames (``describe()["history"]``), the rollout
                starting from the last; its later steps, when there are enough, give the
                boundary values) or a Mesh with the fields in ``point_data``; a pyvista or
                meshio mesh, or a mesh or series file, is converted first
                (:meth:`~sim.families.base.Surrogate.mesh_query`).
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
        initial, where = self.mesh_query(initial, "initial")
        return self._rollout(initial, where, steps, boundary, dt, out, keep, params)

    def _rollout(self, initial: Mesh | Trajectory, where: Any, steps: int, boundary: Any, dt: float | None,
                 out: str | os.PathLike | None, keep: bool, params: dict[str, Any] | None) -> Trajectory:
        mesh, frames, dt, t0, bc = self._start(initial, steps, boundary, dt, where)
        p = self._params(initial, params)
        rec = Recorder(self._series_writer(out, mesh, dt, std=len(self._members()) > 1), keep or out is None)
        self._run(mesh, frames, steps, dt, t0, bc, [rec], [p])
        return self._trajectory(mesh, rec.times, rec.states, keep)

    def _series_writer(self, out: Any, mesh: Mesh, dt: float, std: bool) -> Any:
        from sim.mesh import SeriesLayout

        names = self.fields + ([f"{f}_std" for f in self.fields] if std else [])
        return series_writer(out, SeriesLayout(mesh, point_fields=names, dt=dt))

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

    def predict(self, query: Any, dt: float | None = None, boundary: Any = None, **scalars: Any):
        """One step: the fields at the next time step on ``query``'s mesh, as a pyvista grid
        (with ``<field>_std`` for ensembles). ``query``: a Mesh with the fields in point_data, or
        a Trajectory (its first step, or its first h for a model that sees h frames); a pyvista
        or meshio mesh, or a mesh or series file, is converted first.
        ``scalars``: the trajectory parameters the model is conditioned on (default: the
        Trajectory's params)."""
        query, where = self.mesh_query(query, "query")
        if dt is None and isinstance(query, Mesh):
            if self.simulator.config["target"] == "derivative":
                raise SimError("give dt: the model predicts a time derivative", self.path)
            dt = 1.0  # a delta target does not depend on dt; the output is labelled t = 1
        traj = self._rollout(query, where, 1, boundary, dt, None, True, scalars)
        grid = Mesh(traj.mesh.points, traj.mesh.cells, node_type=traj.mesh.node_type).to_pyvista()
        for k, v in traj.point_fields.items():
            grid.point_data[k] = v[-1]
        return grid


class EnsembleSurrogate(MeshSurrogate):
    """Deep ensemble of mesh simulators trained from different seeds on the same data: the
    rollout of each member, then per node and step the mean (``<field>``) and the standard
    deviation across members (``<field>_std``), an uncertainty for every prediction path."""

    def __init__(self, members: list[Any], path: Path, payload: dict[str, Any] | None = None):
        super().__init__(members[0], path, payload)
        for i, m in enumerate(members[1:], start=1):
            if (list(m.config["fields"]) != self.fields or list(m.config["field_dims"]) != self.dims
                    or int(m.config["edge_in"]) != self.edge_in
                    or list(m.config.get("scalars") or []) != self.scalars
                    or int(m.config.get("history", 1)) != self.history
                    or list(m.config.get("node_inputs") or []) != self.node_inputs):
                raise FileFormatError(f"ensemble member {i} does not take the same fields, parameters, history, node "
                                      "inputs and mesh as member 0", path)
        self.members = members

    def _members(self) -> list[Any]:
        return self.members

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "members": len(self.members)}


