"""Steppers: each family's state and its one step, driven by the one loop (:func:`~sim.rollout.engine.run`).

- :class:`MeshStepper`: a mesh simulator's state on a batched graph of fixed meshes; a step
  is the simulator's own map (:meth:`~sim.models.mesh.simulator.MeshSimulator.advance`:
  scalars, history and boundary handling included), with the boundary values of each
  trajectory at that step.
- :class:`ParticleStepper`: the (sparse) position history of a particle simulator; a step
  predicts accelerations on a radius graph rebuilt from the current positions, integrates
  them (semi-implicit Euler), keeps the particles in the domain box and decodes the dense
  motion at the query points.
- :class:`EnsembleStepper`: members advanced together; reports their mean and, per field,
  ``<field>_std``, the spread across members.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch

from sim.data.particles import semi_implicit_euler
from sim.data.windows import static_node_inputs
from sim.errors import SimError
from sim.graph import mesh_graph
from sim.mesh import Mesh
from sim.rollout.corrections import DivergenceFree, check_correction, vector_field_slice
from sim.rollout.engine import Boundary, Frame, split_fields

DISPLACEMENT = "displacement"


def _times(t0s: Sequence[float], dts: Sequence[float]) -> list[Callable[[int], float]]:
    return [(lambda s, t0=t0, dt=dt: t0 + s * dt) for t0, dt in zip(t0s, dts)]


def per_distinct(meshes: Sequence[Mesh], build: Callable[[Mesh], Any]) -> list[Any]:
    """``build(mesh)`` for each mesh, built once per distinct mesh object (a sweep repeats one
    mesh: its graph and factorisations are shared)."""
    built: dict[int, Any] = {}
    for m in meshes:
        if id(m) not in built:
            built[id(m)] = build(m)
    return [built[id(m)] for m in meshes]


class MeshStepper:
    """Mesh simulator state for ``len(meshes)`` trajectories (see :func:`~sim.rollout.engine.rollout`)."""

    def __init__(self, simulator: Any, meshes: Sequence[Mesh], initial: Sequence[np.ndarray], dts: Sequence[float],
                 t0s: Sequence[float], boundary: Sequence[Boundary] | None = None,
                 params: Sequence[dict[str, Any] | None] | None = None, device: str | torch.device = "cpu",
                 compile: bool = False, correction: str | None = None):
        k = self.size = len(meshes)
        self.simulator, self.device = simulator, device
        c = simulator.config
        self.fields, self.dims = list(c["fields"]), list(c["field_dims"])
        h = int(c.get("history", 1))
        frames = [np.asarray(x)[None] if np.ndim(x) == 2 and h == 1 else np.asarray(x) for x in initial]
        for i, (m, x) in enumerate(zip(meshes, frames)):
            if x.shape != (h, m.num_points, simulator.num_features):
                expected = f"({m.num_points}, {simulator.num_features})" if h == 1 else \
                    f"({h}, {m.num_points}, {simulator.num_features}) (the model sees {h} frames)"
                raise SimError(f"trajectory {i}: initial state has shape {np.shape(x)}, expected {expected} "
                               f"for fields {self.fields}")
        first = [x[-1] for x in frames]
        self.boundary = list(boundary) if boundary is not None else [(lambda s, t, x=x: x) for x in first]
        self.times = _times(t0s, dts)
        names = c.get("scalars") or []
        scalars = None
        if names:
            if params is None or len(params) != k:
                raise SimError(f"the model is conditioned on trajectory parameter(s) {names}: give params for each "
                               f"of the {k} trajectories")
            scalars = torch.as_tensor(np.stack([simulator.scalar_values(p, what=f"trajectory {i}")
                                                for i, p in enumerate(params)]), device=device)
        graphs = Batch.from_data_list(per_distinct(meshes, self._graph)).to(device)
        self.offsets = np.concatenate([[0], np.cumsum([m.num_points for m in meshes])])
        past = torch.as_tensor(np.concatenate([x[:-1] for x in frames], axis=1).transpose(1, 0, 2),
                               dtype=torch.float32, device=device) if h > 1 else None
        self.inputs = simulator.step_inputs(graphs, scalars=scalars, past=past, dt=torch.tensor(list(dts)))
        self.state = torch.as_tensor(np.concatenate(first), dtype=torch.float32, device=device)
        self.update = torch.compile(simulator.predict_update, dynamic=False) if compile else None
        self.bundle = int(c.get("bundle", 1))
        self.queue: list[torch.Tensor] = []  # a bundling model's frames not yet handed out
        self.correction = check_correction(correction if correction is not None else c.get("correction"))
        self.correctors: list[Any] = []
        if self.correction == "divergence_free":
            self.columns = vector_field_slice(c, meshes[0].dim)
            self.correctors = per_distinct(meshes, DivergenceFree)

    def _graph(self, mesh: Mesh) -> Any:
        """The graph of ``mesh`` with the static node inputs the model reads (its point data)."""
        g = mesh_graph(mesh)
        c = self.simulator.config
        if c.get("node_inputs"):
            g.static = torch.from_numpy(static_node_inputs(mesh.point_data, c["node_inputs"], mesh.num_points,
                                                           dims=c["node_input_dims"]))
        return g

    def outputs(self) -> list[Frame]:
        host = self.state.cpu().numpy()
        out = []
        for i in range(self.size):
            v = host[self.offsets[i]:self.offsets[i + 1]]
            out.append(Frame(v, split_fields(v, self.fields, self.dims)))
        return out

    def _boundary(self, step: int) -> np.ndarray:
        return np.concatenate([np.asarray(self.boundary[i](step, self.times[i](step)), dtype=np.float32)
                               for i in range(self.size)])

    def _correct(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        if not self.correctors:
            return after
        b, a = before.cpu().numpy(), after.cpu().numpy().copy()
        cols = self.columns
        for i, fix in enumerate(self.correctors):
            rows = slice(self.offsets[i], self.offsets[i + 1])
            a[rows, cols] = fix(b[rows, cols], a[rows, cols])
        return torch.as_tensor(a, dtype=after.dtype, device=after.device)

    def advance(self, step: int) -> None:
        if self.bundle == 1:
            previous = self.state
            self.state, self.inputs = self.simulator.advance(self.state, self.inputs,
                                                             torch.from_numpy(self._boundary(step)).to(self.device),
                                                             update=self.update)
            self.state = self._correct(previous, self.state)
            return
        if not self.queue:  # one model call for the next `bundle` frames
            bcs = []
            for s in range(step, step + self.bundle):
                try:
                    bcs.append(self._boundary(s))
                except IndexError:  # past the end of the boundary data: frames never handed out
                    bcs.append(bcs[-1])
            before = self.inputs
            frames, self.inputs = self.simulator.advance(self.state, self.inputs,
                                                         torch.from_numpy(np.stack(bcs)).to(self.device),
                                                         update=self.update)
            previous, raw_prev = self.state, self.state
            for f in frames:  # each frame's change from the one before, corrected in turn
                fixed = self._correct(raw_prev, f) if self.correctors else f
                if self.correctors:
                    fixed = previous + (fixed - raw_prev)
                self.queue.append(fixed)
                previous, raw_prev = fixed, f
            if self.correctors and before.past is not None:  # the next call sees the corrected frames
                self.inputs = before
                for f in [self.state, *self.queue[:-1]]:
                    self.inputs = self.inputs.shifted(f)
        self.state = self.queue.pop(0)


class EnsembleStepper:
    """Members (steppers of the same trajectories) advanced together; outputs the mean
    (``<field>``) and the spread across members (``<field>_std``)."""

    def __init__(self, members: Sequence[Any]):
        self.members = list(members)
        self.size = self.members[0].size
        self.fields, self.dims = self.members[0].fields, self.members[0].dims
        self.times = self.members[0].times

    def outputs(self) -> list[Frame]:
        outs = [m.outputs() for m in self.members]
        frames = []
        for i in range(self.size):
            stack = np.stack([o[i].values for o in outs])
            mean, std = stack.mean(0), stack.std(0)
            fields = {**split_fields(mean, self.fields, self.dims),
                      **{f"{f}_std": v for f, v in split_fields(std, self.fields, self.dims).items()}}
            frames.append(Frame(mean, fields))
        return frames

    def advance(self, step: int) -> None:
        for m in self.members:
            m.advance(step)


class ParticleStepper:
    """Particle simulator state (see :func:`~sim.rollout.particles.particle_rollout`); outputs
    the dense positions (values), the ``displacement`` from the query points (field) and the
    moving points (positions)."""

    def __init__(self, simulator: Any, histories: Sequence[np.ndarray], rest: Sequence[np.ndarray] | None = None,
                 particle_types: Sequence[np.ndarray] | None = None, names: Sequence[str] | None = None,
                 queries: Sequence[np.ndarray] | None = None, t0s: Sequence[float] | None = None,
                 device: str | torch.device = "cpu", sparse_reference: Sequence[np.ndarray] | None = None,
                 compile: bool = False):
        k = self.size = len(histories)
        c = simulator.config
        h, dim = c["history"], simulator.dim
        self.simulator, self.device = simulator, device
        self.fields, self.dims = [DISPLACEMENT], [dim]
        rest = [np.asarray(x[0]) for x in histories] if rest is None else [np.asarray(r) for r in rest]
        names = list(names) if names is not None else [""] * k
        self.times = _times(t0s if t0s is not None else [0.0] * k, [simulator.dt] * k)
        for i, x in enumerate(histories):
            if x.ndim != 3 or x.shape[0] != h or x.shape[2] != dim or rest[i].shape != x.shape[1:]:
                raise SimError(f"trajectory {i}: history has shape {x.shape}, expected ({h}, N, {dim}) with a "
                               f"reference configuration of shape (N, {dim}), got {rest[i].shape}")
        self.sparse = [simulator.sparse_indices(rest[i], names[i]) for i in range(k)]
        full = [len(s) == len(r) for s, r in zip(self.sparse, rest)]
        if simulator.decoder is None and (queries is not None or not all(full)):
            raise SimError("this simulator has no dense decoder: it can only report its own particles")
        types = [np.zeros(len(r), np.int64) if particle_types is None else np.asarray(particle_types[i])
                 for i, r in enumerate(rest)]
        sizes = [len(s) for s in self.sparse]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.state = self._to(np.concatenate([histories[i][:, self.sparse[i]].transpose(1, 0, 2)
                                              for i in range(k)]))  # (n, H, d)
        self.ptype = self._to(np.concatenate([types[i][self.sparse[i]] for i in range(k)]), torch.long)
        self.batch = torch.repeat_interleave(torch.arange(k, device=device), self._to(sizes, torch.long)) \
            if k > 1 else None
        self.lo, self.hi = simulator.bounds[:, 0].to(device), simulator.bounds[:, 1].to(device)
        self.sparse_rest = [self._to(rest[i][self.sparse[i]]) for i in range(k)]
        self.query_pos = [self._to(rest[i] if queries is None else queries[i]) for i in range(k)]
        self.query_host = [q.cpu().numpy() for q in self.query_pos]  # displacements are written every frame
        with torch.inference_mode():
            self.plans = [None if queries is None and full[i] else
                          simulator.decode_plan(self.sparse_rest[i], self.query_pos[i]) for i in range(k)]
        self.sparse_reference = sparse_reference
        self.sparse_mse: list[list[float]] = [[] for _ in range(k)]
        # compile the network only: the radius graph is rebuilt eagerly (KD-tree) every frame
        self.network = torch.compile(simulator.network, dynamic=True) if compile else None

    def _to(self, a: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=self.device)

    def _dense(self, i: int) -> np.ndarray:
        p = self.state[self.offsets[i]:self.offsets[i + 1], -1]
        if self.plans[i] is not None:  # decoded points stay in the box like the simulated ones
            p = torch.minimum(torch.maximum(self.query_pos[i] + self.plans[i].apply(p - self.sparse_rest[i]),
                                            self.lo), self.hi)
        return p.cpu().numpy()

    def outputs(self) -> list[Frame]:
        out = []
        for i in range(self.size):
            pos = self._dense(i)
            out.append(Frame(pos, {DISPLACEMENT: pos - self.query_host[i]}, positions=pos))
        return out

    def advance(self, step: int) -> None:
        kw = {} if self.network is None else {"network": self.network}
        acc = self.simulator.predict_acceleration(self.state, self.ptype, self.batch, **kw)
        nxt = torch.minimum(torch.maximum(semi_implicit_euler(self.state, acc, self.simulator.dt), self.lo), self.hi)
        self.state = torch.cat([self.state[:, 1:], nxt[:, None]], dim=1)
        if self.sparse_reference is not None:
            for i in range(self.size):
                sp = nxt[self.offsets[i]:self.offsets[i + 1]].cpu().numpy()
                self.sparse_mse[i].append(float(((sp - self.sparse_reference[i][step][self.sparse[i]]) ** 2).mean()))
