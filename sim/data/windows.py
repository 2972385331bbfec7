"""Training samples from the store: one (state at t, target at t+1) pair per sample, with
the ``history - 1`` frames before t and ``horizon - 1`` frames after t+1 when asked.

:class:`MeshStepDataset` reads lazily (each DataLoader worker opens the store itself, and
only the steps a sample needs are read), caches the mesh graph of each trajectory, and
returns torch_geometric ``Data`` objects that batch across trajectories of different
meshes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from sim.data.store_dataset import StoreDataset
from sim.errors import SimError
from sim.graph import mesh_graph
from sim.mesh import Store


def trajectory_scalars(params: dict | None, names: list[str], where: object = None, what: str = "the trajectory"
                       ) -> np.ndarray:
    """The (S,) values of the parameters ``names`` from a trajectory's ``params``; one
    :class:`SimError` naming ``what`` (at ``where``) and every missing or non-numeric name."""
    params = params or {}
    missing = [k for k in names if k not in params]
    if missing:
        raise SimError(f"{what} has no parameter(s) {missing} to condition the model on (has {sorted(params)})",
                       where)
    try:
        return np.array([float(params[k]) for k in names], dtype=np.float32)
    except (TypeError, ValueError):
        raise SimError(f"{what}: parameters {names} must be numbers, got {[params[k] for k in names]}",
                       where) from None


def static_node_inputs(point_data: dict, names: list[str], n: int, where: object = None, what: str = "the mesh",
                       dims: list[int] | None = None) -> np.ndarray:
    """(N, K) float32: the static point fields ``names`` of a mesh's ``point_data``, each
    flattened per node and concatenated; one :class:`SimError` naming ``what`` (at ``where``) and
    the missing fields, or a field whose size is not ``n`` nodes times its width in ``dims``."""
    missing = [k for k in names if k not in point_data]
    if missing:
        raise SimError(f"{what} has no point data {missing} (the model reads them at every node; it has "
                       f"{sorted(point_data)})", where)
    parts = []
    for i, k in enumerate(names):
        a = np.asarray(point_data[k], dtype=np.float32)
        if a.ndim == 0 or a.shape[0] != n or (dims is not None and a.size != n * dims[i]):
            want = f"({n},)" if dims is None or dims[i] == 1 else f"({n}, {dims[i]})"
            raise SimError(f"{what}: point data {k!r} has shape {a.shape}; the model expects {want}", where)
        parts.append(a.reshape(n, -1))
    return np.concatenate(parts, axis=1)


def node_input_widths(node_inputs: Sequence[str], node_input_dims: Sequence[int] | None, predicted: Sequence[str],
                      what: str = "state fields") -> list[int]:
    """The widths of a model's node inputs (1 each unless ``node_input_dims`` says), checked: one
    per input, positive, and no input among the fields the model predicts (``predicted``)."""
    dims = [1] * len(node_inputs) if node_input_dims is None else [int(d) for d in node_input_dims]
    if len(dims) != len(node_inputs) or min(dims, default=1) < 1:
        raise ValueError(f"node_input_dims {node_input_dims} do not fit node_inputs {list(node_inputs)}")
    if set(node_inputs) & set(predicted):
        raise ValueError(f"node inputs {sorted(set(node_inputs) & set(predicted))} are also {what}")
    return dims


class MeshStepDataset(StoreDataset):
    """Pairs (fields at t, fields at t+1) from every trajectory of a store.

    Args:
        path: store file.
        fields: names of the point fields that form the state (each (T, N) or (T, N, c)).
        entries: entry names to use (default: all).
        graph_cache: number of trajectory graphs kept in memory per worker.
        scalars: names of trajectory parameters (each entry's ``params``) to attach.
        horizon: future steps per sample; beyond t+1 they come as ``future`` (for the
            pushforward loss, which rolls the model forward before the trained step).
        history: frames per input, the state at t and the ``history - 1`` before it, which
            come as ``past`` (for models that see recent changes, e.g. second-order dynamics
            stored as positions only). Samples start at the trajectory's step ``history - 1``.
        node_inputs: names of static point data of each entry's mesh to attach as ``static``
            (N, K) (inputs the model reads and does not predict, e.g. a source density); their
            widths are ``node_input_dims``.

    Each item is a ``Data`` with ``state`` (N, F) at t, ``target`` (N, F) at t+1 (fields
    concatenated in ``fields`` order), ``edge_index``, ``edge_attr``, ``node_type``,
    ``mesh_pos``, ``dt``, ``scalars`` (1, S), with node inputs ``static`` (N, K), with
    ``horizon > 1`` ``future`` (N, horizon - 1, F) at t+2.., with ``history > 1`` ``past``
    (N, history - 1, F) at t-history+1..t-1 (oldest first), and ``entry``/``step`` identifying it.
    """

    def __init__(self, path: str | os.PathLike, fields: list[str], entries: list[str] | None = None,
                 graph_cache: int = 64, scalars: list[str] | tuple[str, ...] = (), horizon: int = 1, history: int = 1,
                 node_inputs: list[str] | tuple[str, ...] = ()):
        if horizon < 1 or history < 1:
            raise ValueError(f"horizon and history must be >= 1, got {horizon} and {history}")
        self.path = Path(path)
        self.fields = list(fields)
        self.scalar_names = list(scalars)
        self.node_inputs = list(node_inputs)
        self.node_input_dims: list[int] | None = None
        self.horizon = int(horizon)
        self.history = int(history)
        self.scalars: dict[str, np.ndarray] = {}
        self.graph_cache = graph_cache
        with Store(self.path) as store:
            names = entries if entries is not None else store.names()
            self.index: list[tuple[str, int]] = []
            self.dims: list[int] | None = None
            for name in names:
                e = store.entry(name)
                self.dims = self._widths(name, e.point_fields, self.fields, 2, "point field(s)", "field", self.dims)
                if self.node_inputs:
                    self._check_node_inputs(e, name)
                self.scalars[name] = trajectory_scalars(e.attrs.get("params"), self.scalar_names, self.path,
                                                        f"entry {name!r}")[None]
                self.index += [(name, t) for t in range(self.history - 1, e.num_steps - self.horizon)]
        if not self.index:
            raise SimError(f"no samples: the store has no trajectory with more than "
                           f"{self.history - 1 + self.horizon} steps", self.path)
        self._reset_store()

    def _check_node_inputs(self, entry: object, name: str) -> None:
        """The node inputs exist on ``entry``'s mesh, one value row per node, with the widths of
        the first entry (read from the file's shapes, not the arrays)."""
        pd = entry.point_data
        n = int(entry.attrs.get("num_points", 0))
        dims = self._widths(name, pd, self.node_inputs, 1, "point data", "node input", self.node_input_dims)
        bad = [k for k in self.node_inputs if pd[k].ndim == 0 or pd[k].shape[0] != n]
        if bad:
            raise SimError(f"entry {name!r}: point data {bad} are not one row per node ({n})", self.path)
        self.node_input_dims = dims

    def _widths(self, name: str, arrays: dict, names: list[str], lead: int, kind: str, label: str,
                known: list[int] | None) -> list[int]:
        """The widths of ``names`` in an entry's ``arrays`` (beyond ``lead`` axes); one error naming
        the entry and the missing arrays, or widths that differ from the entries before."""
        missing = [k for k in names if k not in arrays]
        if missing:
            raise SimError(f"entry {name!r} has no {kind} {missing} (has {sorted(arrays)})", self.path)
        dims = [int(np.prod(arrays[k].shape[lead:])) for k in names]
        if known is not None and dims != known:
            raise SimError(f"entry {name!r}: {label} widths {dims} differ from {known}", self.path)
        return dims

    @property
    def num_features(self) -> int:
        return int(sum(self.dims or []))

    def graph(self, name: str) -> Data:
        if name not in self._cache:
            entry = self._open().entry(name)
            mesh = entry.mesh()
            g = mesh_graph(mesh)
            g.dt = float(entry.attrs.get("dt", 1.0))
            if self.node_inputs:
                g.static = torch.from_numpy(static_node_inputs(mesh.point_data, self.node_inputs, mesh.num_points,
                                                               self.path, f"entry {name!r}", self.node_input_dims))
            self._cache[name] = g
            if len(self._cache) > self.graph_cache:
                self._cache.popitem(last=False)
        self._cache.move_to_end(name)
        return self._cache[name]

    def read_state(self, name: str, t: slice | int) -> np.ndarray:
        """Fields at step(s) ``t`` concatenated: (N, F) or (len(t), N, F)."""
        pf = self._open().entry(name).point_fields
        parts = []
        for f in self.fields:
            a = pf[f][t]
            lead = a.shape[: (2 if isinstance(t, slice) else 1)]
            parts.append(a.reshape(*lead, -1))
        return np.concatenate(parts, axis=-1).astype(np.float32)

    def __getitem__(self, k: int) -> Data:
        name, t = self.index[k]
        g = self.graph(name)
        h = self.history - 1
        frames = self.read_state(name, slice(t - h, t + 1 + self.horizon))
        data = Data(edge_index=g.edge_index, edge_attr=g.edge_attr, node_type=g.node_type, mesh_pos=g.mesh_pos,
                    state=torch.from_numpy(frames[h]), target=torch.from_numpy(frames[h + 1]),
                    dt=torch.tensor([g.dt]), scalars=torch.from_numpy(self.scalars[name]), num_nodes=g.num_nodes,
                    entry=name, step=t)
        if self.horizon > 1:
            data.future = torch.from_numpy(np.ascontiguousarray(frames[h + 2:].transpose(1, 0, 2)))
        if h:
            data.past = torch.from_numpy(np.ascontiguousarray(frames[:h].transpose(1, 0, 2)))
        if self.node_inputs:
            data.static = g.static
        return data

