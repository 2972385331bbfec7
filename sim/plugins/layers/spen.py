r"""Subgraph permutation-equivariant layer on k-hop ego subgraphs.

Mitton, Murray-Smith, *Subgraph Permutation Equivariant Networks*, TMLR 2023.

Each node v owns its k-hop ego subgraph S_v; a representation h_{v,u} lives on every pair
(v, u) with u in S_v (the "bag" of subgraphs). One layer runs a permutation-equivariant
update inside each subgraph and aggregates the subgraphs back to the nodes:

.. math::
    h^0_{v,u} = W_a x_u + W_b x_v + e_{d(v,u)} \qquad
    m_{v,u} = \sum_{w \in N(u) \cap S_v} \phi(h^0_{v,w}) \qquad
    g_v = \operatorname{mean}_{w \in S_v} h^0_{v,w}

.. math::
    h^1_{v,u} = \operatorname{MLP}([h^0_{v,u} \,\|\, m_{v,u} \,\|\, g_v]) \qquad
    \operatorname{out}_u = x_u + W_o [\operatorname{mean}_{v: u \in S_v} h^1_{v,u} \,\|\,
    \operatorname{mean}_{w \in S_u} h^1_{u,w}]

(e_d: a learned embedding of the hop distance d(v, u) = 0..k, which marks the root). The
update inside S_v uses only the subgraph's own adjacency, its node set and the root, so it is
equivariant to the subgraph's permutations, and the layer to the graph's. Because the
neighbours of u are counted inside each ego subgraph, it sees structure 1-WL cannot: with
k = 1 a node of a triangle and a node of a hexagon have the same degree and the same 1-WL
colours, but the triangle's neighbours are adjacent inside the ego subgraph and the
hexagon's are not.

Deviations: the paper stacks several equivariant layers per subgraph with representations
of order 1 and 2 on the subgraph's automorphism group; here one layer of order 1 (message
passing inside the subgraph plus a subgraph-mean term), stacked by the host (``at: all``
places one after every processor block). Ego subgraphs are built with scipy (a sparse BFS,
cached per graph) rather than PyG's ego-net transform (PyG's needs torch-sparse for this).

Cost: pairs P = sum_v |S_v| (about 7n for k = 1 and 19n for k = 2 on a 2-D triangle mesh)
and P x mean degree internal messages, each with C channels: a layer costs about |S| times
a message-passing block. Output radius 2k (a node sees the subgraphs of the nodes k hops
away, each reaching k further).

Shapes:
    x (N, C), edge_index (2, E) -> (N, C)
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from sim.plugins.features import graph_key
from sim.plugins.registry import PluginError, register_plugin


def ego_pairs(edge_index: np.ndarray, num_nodes: int, hops: int) -> dict[str, np.ndarray]:
    """The bag of k-hop ego subgraphs: ``root``, ``member`` and ``dist`` per pair (root v,
    member u, hop distance), and the internal edges ``src``/``dst`` (pair ids) joining pair
    (v, w) to pair (v, u) for every graph edge w -> u inside S_v."""
    n = num_nodes
    s, t = np.asarray(edge_index[0], np.int64), np.asarray(edge_index[1], np.int64)
    keep = s != t
    a = sp.coo_matrix((np.ones(int(keep.sum())), (s[keep], t[keep])), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.int8).tocsr()
    reached = sp.identity(n, dtype=np.int8, format="csr")
    frontier = reached
    dist = sp.identity(n, dtype=np.int16, format="csr") * 0
    for d in range(1, hops + 1):
        nxt = ((frontier @ a) > 0).astype(np.int8)
        new = (nxt - nxt.multiply(reached)).tocsr()
        new.eliminate_zeros()
        dist = dist + new.astype(np.int16) * d
        reached = ((reached + new) > 0).astype(np.int8).tocsr()
        frontier = new
    reached = reached.tocoo()
    order = np.lexsort((reached.col, reached.row))
    root, member = reached.row[order].astype(np.int64), reached.col[order].astype(np.int64)
    d = np.asarray(dist.tocsr()[root, member]).ravel().astype(np.int64)
    codes = root * n + member  # sorted
    # internal edges: for each pair (v, u) and each graph edge w -> u, keep it when (v, w) is a pair
    und = a.tocsr()
    deg = np.diff(und.indptr)
    rep = np.repeat(np.arange(len(root)), deg[member])
    offs = np.arange(len(rep)) - np.repeat(np.cumsum(deg[member]) - deg[member], deg[member])
    w = und.indices[np.repeat(und.indptr[member], deg[member]) + offs]
    q = root[rep] * n + w
    pos = np.minimum(np.searchsorted(codes, q), len(codes) - 1)
    inside = codes[pos] == q
    return {"root": root, "member": member, "dist": d, "src": pos[inside].astype(np.int64),
            "dst": rep[inside].astype(np.int64)}


@register_plugin("spen", "layer",
                 paper="Mitton, Murray-Smith 2023, Subgraph Permutation Equivariant Networks (TMLR)",
                 summary="permutation-equivariant update on each node's k-hop ego subgraph, aggregated back "
                         "(past 1-WL)", at="all")
class SubgraphEquivariantLayer(nn.Module):
    """Args:
        channels: the host's latent width C.
        hops: k, the ego subgraphs' radius (1 or 2 on meshes; the bag grows like the k-ball).
        cache_size: graphs whose ego-subgraph bags are kept.
    """

    def __init__(self, channels: int, hops: int = 1, cache_size: int = 128):
        super().__init__()
        if not isinstance(hops, int) or isinstance(hops, bool) or hops < 1:
            raise PluginError(f"layer plugin 'spen': hops must be an integer >= 1, got {hops!r}")
        self.hops = hops
        c = channels
        self.member_in = nn.Linear(c, c)
        self.root_in = nn.Linear(c, c, bias=False)
        self.dist = nn.Embedding(hops + 1, c)
        self.message = nn.Sequential(nn.Linear(c, c), nn.SiLU())
        self.update = nn.Sequential(nn.Linear(3 * c, c), nn.SiLU(), nn.Linear(c, c))
        self.out = nn.Linear(2 * c, c)
        self.norm = nn.LayerNorm(c)
        self._cache: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self.cache_size = cache_size

    @property
    def receptive_hops(self) -> int:
        return 2 * self.hops

    def bag(self, edge_index: torch.Tensor, num_nodes: int) -> dict[str, torch.Tensor]:
        """:func:`ego_pairs` of the graph as tensors, with the subgraph sizes ``root_count`` and
        the subgraphs per node ``member_count`` (N, 1); cached per graph."""
        key = graph_key(edge_index, num_nodes)
        hit = self._cache.get(key)
        if hit is None:
            pairs = ego_pairs(edge_index.detach().cpu().numpy(), num_nodes, self.hops)
            hit = {k: torch.from_numpy(v) for k, v in pairs.items()}
            for name in ("root", "member"):
                hit[f"{name}_count"] = torch.bincount(hit[name], minlength=num_nodes).reshape(-1, 1)
            self._cache[key] = hit
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return {k: v.to(edge_index.device) for k, v in hit.items()}

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None,
                pos: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        n, c = x.shape
        b = self.bag(edge_index, n)
        root, member = b["root"], b["member"]
        size, member_count = b["root_count"].to(x.dtype), b["member_count"].to(x.dtype)
        h0 = self.member_in(x)[member] + self.root_in(x)[root] + self.dist(b["dist"])
        msg = torch.zeros_like(h0).index_add_(0, b["dst"], self.message(h0)[b["src"]])
        glob = torch.zeros(n, c, dtype=x.dtype, device=x.device).index_add_(0, root, h0) / size
        h1 = self.update(torch.cat([h0, msg, glob[root]], dim=-1))
        as_member = torch.zeros(n, c, dtype=x.dtype, device=x.device).index_add_(0, member, h1)
        as_root = torch.zeros(n, c, dtype=x.dtype, device=x.device).index_add_(0, root, h1) / size
        both = torch.stack([as_member / member_count, as_root], dim=1)  # (N, 2, C), each half normalised
        return x + self.out(self.norm(both).view(n, 2 * c))
