"""Training samples from the store: one (state at t, target at t+1) pair per sample.

:class:`MeshStepDataset` reads lazily (each DataLoader worker opens the store itself, and
only the steps a sample needs are read), caches the mesh graph of each trajectory, and
returns torch_geometric ``Data`` objects that batch across trajectories of different
meshes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from sim.errors import SimError
from sim.graph import mesh_graph
from sim.mesh import Store


class MeshStepDataset(torch.utils.data.Dataset):
    """Pairs (fields at t, fields at t+1) from every trajectory of a store.

    Args:
        path: store file.
        fields: names of the point fields that form the state (each (T, N) or (T, N, c)).
        entries: entry names to use (default: all).
        graph_cache: number of trajectory graphs kept in memory per worker.

    Each item is a ``Data`` with ``state`` (N, F) at t, ``target`` (N, F) at t+1 (fields
    concatenated in ``fields`` order), ``edge_index``, ``edge_attr``, ``node_type``,
    ``mesh_pos``, ``dt`` and ``entry``/``step`` identifying it.
    """

    def __init__(self, path: str | os.PathLike, fields: list[str], entries: list[str] | None = None,
                 graph_cache: int = 64):
        self.path = Path(path)
        self.fields = list(fields)
        self.graph_cache = graph_cache
        with Store(self.path) as store:
            names = entries if entries is not None else store.names()
            self.index: list[tuple[str, int]] = []
            self.dims: list[int] | None = None
            for name in names:
                e = store.entry(name)
                pf = e.point_fields
                missing = [f for f in self.fields if f not in pf]
                if missing:
                    raise SimError(f"entry {name!r} has no point field(s) {missing} (has {sorted(pf)})", self.path)
                dims = [int(np.prod(pf[f].shape[2:])) for f in self.fields]
                if self.dims is not None and dims != self.dims:
                    raise SimError(f"entry {name!r}: field widths {dims} differ from {self.dims}", self.path)
                self.dims = dims
                self.index += [(name, t) for t in range(e.num_steps - 1)]
        if not self.index:
            raise SimError("no (t, t+1) pairs: the store has no trajectory with two or more steps", self.path)
        self._store: Store | None = None
        self._pid: int | None = None
        self._graphs: OrderedDict[str, Data] = OrderedDict()

    @property
    def num_features(self) -> int:
        return int(sum(self.dims or []))

    def __len__(self) -> int:
        return len(self.index)

    def _open(self) -> Store:
        if self._store is None or self._pid != os.getpid():  # h5py handles do not survive fork
            self._store = Store(self.path)
            self._pid = os.getpid()
            self._graphs.clear()
        return self._store

    def graph(self, name: str) -> Data:
        if name not in self._graphs:
            entry = self._open().entry(name)
            g = mesh_graph(entry.mesh())
            g.dt = float(entry.attrs.get("dt", 1.0))
            self._graphs[name] = g
            if len(self._graphs) > self.graph_cache:
                self._graphs.popitem(last=False)
        self._graphs.move_to_end(name)
        return self._graphs[name]

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
        pair = self.read_state(name, slice(t, t + 2))
        return Data(edge_index=g.edge_index, edge_attr=g.edge_attr, node_type=g.node_type, mesh_pos=g.mesh_pos,
                    state=torch.from_numpy(pair[0]), target=torch.from_numpy(pair[1]),
                    dt=torch.tensor([g.dt]), num_nodes=g.num_nodes, entry=name, step=t)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"], state["_pid"], state["_graphs"] = None, None, OrderedDict()
        return state
