"""Feature plugins: structural node and edge features computed from a graph's adjacency and
appended to a model's inputs (``network_args: {features: [...]}``).

A feature plugin is built with its parameters and called as ``fn(edge_index, num_nodes)``;
it returns ``(node_features (N, node_dim), edge_features (E, edge_dim))`` for the edges in
the order given, and states ``node_dim`` and ``edge_dim`` before it sees a graph. The
features depend on the graph only, so hosts cache them per graph (:class:`FeatureInputs`).

- :mod:`~sim.plugins.features.polynomials`: equivariant graph polynomials (walk counts,
  closed walks, edge-restricted powers of A) up to a degree;
- :mod:`~sim.plugins.features.graphlets`: graphlet orbit counts up to 4 nodes per node and
  per edge.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sim.plugins.features.graphlets import EDGE_ORBITS, NODE_ORBITS, GraphletOrbits, graphlet_orbit_counts
from sim.plugins.features.polynomials import EquivariantPolynomials, polynomial_features
from sim.plugins.registry import build_plugin


def graph_key(edge_index: torch.Tensor, num_nodes: int) -> str:
    """A fingerprint of a graph's edges (its structure, not the tensor's identity)."""
    data = edge_index.detach().to("cpu", torch.int64).contiguous().numpy()
    return f"{num_nodes}:{data.shape[1]}:" + hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()

# (feature entries, graph) -> (node, edge) features, least recently used first; process-wide, so
# a model rebuilt in the same process (a step-budget probe, an ensemble member, an evaluation)
# does not count the same graphs again
_SHARED: OrderedDict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()


class FeatureInputs(nn.Module):
    """The feature plugins of a host model: widths, and the features of a graph (cached).

    Args:
        entries: the host's ``features`` list (names or mappings with ``name``).
        cache_mb: memory for cached features, shared by the hosts of the process (a rollout reuses
            one graph every step; training cycles through the training set's meshes, which should
            fit: about 1 MB per 2,000-node triangle mesh with both feature plugins).
    """

    def __init__(self, entries: Sequence[str | Mapping[str, Any]], cache_mb: float = 1024.0):
        super().__init__()
        self.fns = [build_plugin(e, "feature") for e in entries]
        self.node_dim = sum(f.node_dim for f in self.fns)
        self.edge_dim = sum(f.edge_dim for f in self.fns)
        self._sig = json.dumps([e if isinstance(e, str) else dict(e) for e in entries], sort_keys=True, default=str)
        self._cache = _SHARED  # shared by every host in the process: features depend on the graph only
        self.cache_bytes = int(cache_mb * 2**20)

    def forward(self, edge_index: torch.Tensor, num_nodes: int, dtype: torch.dtype = torch.float32
                ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (self._sig, graph_key(edge_index, num_nodes))
        hit = self._cache.get(key)
        if hit is None:
            ei = edge_index.detach().cpu().numpy()
            parts = [f(ei, num_nodes) for f in self.fns]
            node = np.concatenate([p[0] for p in parts], axis=1)
            edge = np.concatenate([p[1] for p in parts], axis=1)
            hit = (torch.from_numpy(node).float(), torch.from_numpy(edge).float())
            self._cache[key] = hit
            while len(self._cache) > 1 and sum(a.nbytes + b.nbytes for a, b in self._cache.values()) \
                    > self.cache_bytes:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return hit[0].to(edge_index.device, dtype), hit[1].to(edge_index.device, dtype)


__all__ = ["EDGE_ORBITS", "NODE_ORBITS", "EquivariantPolynomials", "FeatureInputs", "GraphletOrbits", "graph_key",
           "graphlet_orbit_counts", "polynomial_features"]
