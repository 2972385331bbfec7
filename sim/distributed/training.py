"""Partitioned training: every training graph (a batch of samples) split over the ranks of a
group, each rank computing the loss of the nodes it owns on its part plus a halo as deep as
the model's receptive field; the parts' losses sum to the single-process loss and their
gradients, summed over the group, to its gradients.

What keeps it exact (:class:`HaloContext`, read by
:class:`~sim.models.mesh.simulator.MeshSimulator`):

- input noise is drawn for the whole graph from the step's generator (the same on every rank
  of the group) and each rank keeps its rows, so a node shared as halo gets its owner's noise;
- the pushforward steps exchange the halo's state after every model step, as a partitioned
  rollout does;
- the normalisers accumulate the owned nodes and the edges into owned nodes only (their
  all-reduce sums the parts);
- the loss is the owned predicted nodes' squared error divided by the whole graph's count.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sim.distributed.partition import graph_part

#: per-graph attributes of a batch (not sliced by node)
PER_GRAPH = ("scalars", "dt", "ptr", "entry", "step")


@dataclass
class HaloContext:
    """What a simulator needs to train on a part of a graph.

    Attributes:
        rows: global node ids of the local nodes (owned first).
        num_owned: owned local nodes.
        num_global: nodes of the whole graph.
        predicted_global: nodes of the whole graph the loss counts (the model's predicted types).
        exchange: fills the halo rows of a local (num_local, ...) tensor from their owners.
    """

    rows: torch.Tensor
    num_owned: int
    num_global: int
    predicted_global: int
    exchange: Callable[[torch.Tensor], torch.Tensor]


def local_sample(batch: Any, nodes: np.ndarray) -> Any:
    """The induced subgraph of ``batch`` on ``nodes`` (in that order), node and edge attributes
    sliced, per-graph attributes kept."""
    n = int(batch.num_nodes)
    idx = torch.as_tensor(nodes, dtype=torch.long, device=batch.edge_index.device)
    remap = torch.full((n,), -1, dtype=torch.long, device=idx.device)
    remap[idx] = torch.arange(len(idx), device=idx.device)
    keep = (remap[batch.edge_index[0]] >= 0) & (remap[batch.edge_index[1]] >= 0)
    out = batch.clone()
    for key in list(out.keys()):
        value = out[key]
        if key == "edge_index":
            out[key] = remap[value[:, keep]]
        elif key == "edge_attr" or (torch.is_tensor(value) and value.dim() and value.shape[0] == keep.shape[0]
                                    and key not in PER_GRAPH and value.shape[0] != n):
            out[key] = value[keep]
        elif torch.is_tensor(value) and value.dim() and value.shape[0] == n and key not in PER_GRAPH:
            out[key] = value[idx]
    out.num_nodes = len(idx)
    return out


class GraphPartitioner:
    """Cuts the graphs of training batches into this rank's part, caching the cut per graph."""

    def __init__(self, parts: int, rank: int, halo: int, group: Any = None, method: str = "auto", cache: int = 256):
        self.parts, self.rank, self.halo, self.group, self.method = parts, rank, halo, group, method
        self._cache: OrderedDict[tuple, tuple[np.ndarray, int, Any]] = OrderedDict()
        self.cache = cache

    def _key(self, batch: Any) -> tuple:
        import hashlib

        ei = batch.edge_index.detach().cpu().numpy()
        return int(batch.num_nodes), hashlib.blake2b(ei.tobytes(), digest_size=16).hexdigest()

    def split(self, batch: Any, predicted: Callable[[torch.Tensor], torch.Tensor]) -> tuple[Any, HaloContext]:
        """(this rank's local batch, its context) for ``batch`` (the whole graph, the same on
        every rank of the group); ``predicted(node_type)``: the loss's node mask."""
        from sim.distributed.comm import HaloExchange

        key = self._key(batch)
        if key not in self._cache:
            pos = getattr(batch, "mesh_pos", None)
            nodes, owned = graph_part(batch.edge_index.cpu().numpy(), int(batch.num_nodes), self.parts, self.halo,
                                      self.rank, None if pos is None else pos.cpu().numpy(), self.method)
            owner_box = np.full(int(batch.num_nodes), -1, dtype=np.int64)
            owner_box[nodes[:owned]] = self.rank
            owner = torch.as_tensor(owner_box)
            if self.parts > 1:
                torch.distributed.all_reduce(owner, op=torch.distributed.ReduceOp.MAX, group=self.group)
            exchange = HaloExchange(nodes, owned, owner.numpy(), self.group) if self.parts > 1 else (lambda x: x)
            self._cache[key] = (nodes, owned, exchange)
            if len(self._cache) > self.cache:  # every rank of the group sees the same graphs: same evictions
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        nodes, owned, exchange = self._cache[key]
        local = local_sample(batch, nodes)
        ctx = HaloContext(torch.as_tensor(nodes, device=batch.edge_index.device), owned, int(batch.num_nodes),
                          int(predicted(batch.node_type).sum()), exchange)
        return local, ctx
