"""Graph transformer for mesh simulation (Garnier et al. 2025, "Training Transformers for
Mesh-Based Simulations").

Attention is masked by the mesh: node i attends only to the senders of its mask. Three
ways to widen the receptive field without dense attention, each a constructor option:

- ``k_hop``: every layer attends to all nodes within k hops (adjacency powers);
- ``dilation``: layer l attends to the nodes at exactly ``dilation[l % len]`` hops (Dilated
  Sliding Windows, the graph analogue of dilated attention: depth reaches far with the
  edge count of a single hop ring per layer); ``hops`` gives any per-layer hop sets;
- Global Attention: ``global_nodes`` mesh nodes per graph (farthest-point sampled by hop
  distance) attend to and are attended by every node of their graph, so one layer links
  every node to them and two layers link every pair; ``global_tokens`` adds learned
  virtual tokens with the same connectivity; ``random_edges``: BigBird-style random
  long-range senders per node.

Blocks are pre-norm: ``x += W_o MHA(RMSNorm(x))``; ``x += GatedMLP(RMSNorm(x))`` with
``GatedMLP(x) = W_3 (GELU(W_1 x) * W_2 x)``. Encoder and decoder are MLPs. As in the
public code there are no self-loops (a node sees itself through the residual) and no edge
features; relative geometry enters through node coordinates (``coord_dim``) or rotary
encoding of Q/K by coordinates (``rope``). Masks are computed once per mesh and cached.

Plugins (:mod:`sim.plugins`): ``plugins`` inserts layer plugins on the mesh nodes' latents
after transformer blocks or as a head (global tokens pass by them unchanged); ``init``
names an initialisation plugin (``virgo``) applied by :meth:`GraphTransformer.initialize`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from sim.graph.edges import hop_edges
from sim.nn.attention import MaskedAttention
from sim.nn.layers import mlp
from sim.models.registry import register_model
from sim.plugins.features import FeatureInputs
from sim.plugins.init import AggregationSite, apply_init, mean_operator
from sim.plugins.layers import LayerSlots

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"dim": 32, "layers": 4, "heads": 2},
    "small": {"dim": 64, "layers": 6, "heads": 4},
    "base": {"dim": 128, "layers": 10, "heads": 4},
    "large": {"dim": 256, "layers": 15, "heads": 8},
}


class GatedMLP(nn.Module):
    def __init__(self, dim: int, ratio: int = 3):
        super().__init__()
        self.w1 = nn.Linear(dim, ratio * dim)
        self.w2 = nn.Linear(dim, ratio * dim)
        self.w3 = nn.Linear(ratio * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(nn.functional.gelu(self.w1(x)) * self.w2(x))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int = 3, rope: bool = False):
        super().__init__()
        self.norm1 = nn.RMSNorm(dim)
        self.attn = MaskedAttention(dim, heads, rope)
        self.norm2 = nn.RMSNorm(dim)
        self.mlp = GatedMLP(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, mask_index: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask_index, pos)
        return x + self.mlp(self.norm2(x))


@register_model("graph_transformer")
class GraphTransformer(nn.Module):
    """Args:
        node_in, edge_in, out_dim: feature widths (``edge_in`` is accepted and unused).
        dim, layers, heads, mlp_ratio: transformer size (see :data:`PRESETS`).
        k_hop: hop radius of every layer's mask (1 = mesh neighbours).
        dilation: per-layer single hop distances, cycled over layers (overrides ``k_hop``).
        hops: explicit per-layer hop sets, e.g. ``[[1], [1, 2], [4]]`` (overrides both).
        global_nodes: farthest-point-sampled mesh nodes per graph connected to all others.
        global_tokens: learned global tokens per graph.
        random_edges: random senders per node added to every layer.
        coord_dim: width of node coordinates appended to the inputs (0: none).
        rope: rotary encoding of Q/K by node coordinates.
        rope_scale: coordinates are multiplied by this before the rotary encoding. Its
            frequencies span 1 to 1/100 radian per unit, so mesh spacing h is resolved when
            ``rope_scale`` is about 1/h (e.g. 50-100 for cylinder flow in metres).
        checkpointing: recompute block activations in backward (large meshes).
        seed: seed of the random edges (they depend only on it and the mesh).
        plugins: layer plugins and their placement (see :mod:`sim.plugins.layers`).
        features: feature plugins whose node features of the graph are appended to ``x``.
        init: initialisation plugin (``None``: PyTorch's default), see :meth:`initialize`.

    Shapes:
        x (N, node_in), edge_index (2, E) mesh edges, pos (N, c), batch (N,) -> (N, out_dim)
    """

    presets = PRESETS

    def __init__(self, node_in: int, edge_in: int, out_dim: int, dim: int = 64, layers: int = 6, heads: int = 4,
                 mlp_ratio: int = 3, k_hop: int = 1, dilation: list[int] | None = None,
                 hops: list[list[int]] | None = None, global_nodes: int = 0, global_tokens: int = 0,
                 random_edges: int = 0,
                 coord_dim: int = 0, rope: bool = False, rope_scale: float = 1.0, checkpointing: bool = False,
                 seed: int = 0, plugins: list[Any] | None = None, init: Any = None,
                 features: list[Any] | None = None):
        super().__init__()
        self.config = {"node_in": node_in, "edge_in": edge_in, "out_dim": out_dim, "dim": dim, "layers": layers,
                       "heads": heads, "mlp_ratio": mlp_ratio, "k_hop": k_hop, "dilation": dilation, "hops": hops,
                       "global_nodes": global_nodes, "global_tokens": global_tokens, "random_edges": random_edges, "coord_dim": coord_dim,
                       "rope": rope, "rope_scale": rope_scale, "checkpointing": checkpointing, "seed": seed}
        if plugins:  # only when used, so plain checkpoints keep their configuration
            self.config["plugins"] = list(plugins)
        if init is not None:
            self.config["init"] = init
        if features:
            self.config["features"] = list(features)
        self.features = FeatureInputs(features) if features else None
        if hops is not None:
            if len(hops) != layers:
                raise ValueError(f"hops gives {len(hops)} hop sets for {layers} layers")
            self.layer_hops = [tuple(sorted(set(h))) for h in hops]
        elif dilation:
            self.layer_hops = [(int(dilation[i % len(dilation)]),) for i in range(layers)]
        else:
            self.layer_hops = [tuple(range(1, k_hop + 1))] * layers
        if min(min(h) for h in self.layer_hops) < 1:
            raise ValueError("hop distances must be >= 1")
        extra = self.features.node_dim if features else 0  # node features only (attention has no edges)
        self.encoder = mlp(node_in + coord_dim + extra, dim, dim, 2, layer_norm=True, activation=nn.GELU)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, rope) for _ in range(layers))
        self.decoder = mlp(dim, dim, out_dim, 2, layer_norm=False, activation=nn.GELU)
        self.tokens = nn.Parameter(torch.randn(global_tokens, dim) * dim**-0.5) if global_tokens else None
        self.plugins = LayerSlots(plugins, dim, layers) if plugins else None
        self._mask_cache: OrderedDict[tuple, dict[tuple, torch.Tensor]] = OrderedDict()

    # ----- masks -----------------------------------------------------------------------
    def _fingerprint(self, edge_index: torch.Tensor, n: int, batch: torch.Tensor | None) -> tuple:
        h = hashlib.blake2b(edge_index.detach().cpu().numpy().tobytes(), digest_size=16)
        if batch is not None:
            h.update(batch.detach().cpu().numpy().tobytes())
        return (n, edge_index.shape[1], h.hexdigest())

    def masks(self, edge_index: torch.Tensor, n: int, batch: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per-layer mask index (2, M_l) over the N nodes plus the global tokens (cached per mesh)."""
        key = self._fingerprint(edge_index, n, batch)
        if key not in self._mask_cache:
            ei = edge_index.detach().cpu().numpy()
            extra = [self._global_pairs(n, batch), self._global_node_pairs(ei, n, batch),
                     self._random_pairs(n, batch, key)]
            per_hops = {}
            for hs in set(self.layer_hops):
                base = ei if hs == (1,) else hop_edges(ei, n, hs)
                per_hops[hs] = torch.from_numpy(np.concatenate([base] + [e for e in extra if e is not None], axis=1))
            self._mask_cache[key] = per_hops
            if len(self._mask_cache) > 256:
                self._mask_cache.popitem(last=False)
        self._mask_cache.move_to_end(key)
        return [self._mask_cache[key][hs].to(edge_index.device) for hs in self.layer_hops]

    def _graph_ids(self, n: int, batch: torch.Tensor | None) -> np.ndarray:
        return np.zeros(n, dtype=np.int64) if batch is None else batch.detach().cpu().numpy().astype(np.int64)

    def _global_pairs(self, n: int, batch: torch.Tensor | None) -> np.ndarray | None:
        g = self.config["global_tokens"]
        if not g:
            return None
        gid = self._graph_ids(n, batch)
        nodes = np.arange(n)
        pairs = []
        for t in range(g):
            tok = n + gid * g + t  # token t of each node's graph
            pairs += [np.stack([nodes, tok]), np.stack([tok, nodes])]
        num_graphs = int(gid.max()) + 1 if n else 0
        for b in range(num_graphs):  # tokens of a graph see each other
            toks = n + b * g + np.arange(g)
            s, r = np.meshgrid(toks, toks)
            keep = s != r
            pairs.append(np.stack([s[keep], r[keep]]))
        return np.concatenate(pairs, axis=1)

    def global_node_ids(self, edge_index: np.ndarray, n: int, batch: torch.Tensor | None = None) -> np.ndarray:
        """Farthest-point sampling by hop distance, per graph, starting from each graph's first node."""
        from scipy.sparse.csgraph import shortest_path

        from sim.graph.edges import adjacency

        k = self.config["global_nodes"]
        gid = self._graph_ids(n, batch)
        adj = adjacency(edge_index, n)
        chosen = []
        for b in np.unique(gid):
            nodes = np.flatnonzero(gid == b)
            picked = [int(nodes[0])]
            best = shortest_path(adj, unweighted=True, directed=False, indices=picked[-1])[nodes]
            for _ in range(min(k, len(nodes)) - 1):
                nxt = int(nodes[np.argmax(np.where(np.isinf(best), np.inf, best))])
                if nxt in picked:
                    break
                picked.append(nxt)
                best = np.minimum(best, shortest_path(adj, unweighted=True, directed=False, indices=nxt)[nodes])
            chosen += picked
        return np.array(chosen, dtype=np.int64)

    def _global_node_pairs(self, edge_index: np.ndarray, n: int, batch: torch.Tensor | None) -> np.ndarray | None:
        if not self.config["global_nodes"]:
            return None
        gid = self._graph_ids(n, batch)
        pairs = []
        for g in self.global_node_ids(edge_index, n, batch):
            others = np.flatnonzero((gid == gid[g]) & (np.arange(n) != g))
            pairs += [np.stack([others, np.full_like(others, g)]), np.stack([np.full_like(others, g), others])]
        return np.concatenate(pairs, axis=1)

    def _random_pairs(self, n: int, batch: torch.Tensor | None, key: tuple) -> np.ndarray | None:
        r = self.config["random_edges"]
        if not r:
            return None
        rng = np.random.default_rng([self.config["seed"], int(key[2][:8], 16)])
        gid = self._graph_ids(n, batch)
        _, starts, counts = np.unique(gid, return_index=True, return_counts=True)
        senders = (starts[gid][:, None] + rng.integers(0, counts[gid][:, None], size=(n, r))).ravel()
        receivers = np.repeat(np.arange(n), r)
        keep = senders != receivers
        return np.stack([senders[keep], receivers[keep]])

    # ----- forward ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None,
                pos: torch.Tensor | None = None, batch: torch.Tensor | None = None,
                masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``masks``: the per-layer mask indices of :meth:`masks`, when the caller has them (they are
        built on the host, so a traced export, :mod:`sim.export`, takes them as inputs)."""
        n = x.shape[0]
        if x.shape[-1] != self.config["node_in"]:
            raise ValueError(f"graph transformer expects node features of width {self.config['node_in']}, "
                             f"got {x.shape[-1]}")
        if self.config["coord_dim"]:
            if pos is None or pos.shape[-1] != self.config["coord_dim"]:
                raise ValueError(f"the model takes {self.config['coord_dim']}D coordinates as inputs (pos)")
            x = torch.cat([x, pos.to(x.dtype)], dim=-1)
        if self.features is not None:
            x = torch.cat([x, self.features(edge_index, n, x.dtype)[0]], dim=-1)
        h = self.encoder(x)
        masks = self.masks(edge_index, n, batch) if masks is None else masks
        p = pos * self.config["rope_scale"] if (pos is not None and self.config["rope"]) else pos
        if self.tokens is not None:
            num_graphs = 1 if batch is None or n == 0 else int(batch.max()) + 1
            h = torch.cat([h, self.tokens.repeat(num_graphs, 1)], dim=0)
            if p is not None:  # tokens sit at their graph's origin; rotary leaves them unrotated
                p = torch.cat([p, p.new_zeros((num_graphs * self.tokens.shape[0], p.shape[1]))], dim=0)
        for i, (block, mask) in enumerate(zip(self.blocks, masks)):
            if self.config["checkpointing"] and self.training:
                h = checkpoint(block, h, mask, p, use_reentrant=False)
            else:
                h = block(h, mask, p)
            if self.plugins is not None and self.plugins.layers_after(i):
                h = torch.cat([self.plugins.run_after(i, h[:n], edge_index, None, pos, batch), h[n:]], dim=0)
        h = h[:n]
        if self.plugins is not None:
            h = self.plugins.run_head(h, edge_index, None, pos, batch)
        return self.decoder(h)

    @property
    def receptive_hops(self) -> int | None:
        """Radius r whose r-hop subgraph reproduces a node's output (the convention of
        :meth:`sim.plugins.layers.LayerSlots.receptive_hops`); None when global nodes, tokens or
        random edges reach the whole graph."""
        c = self.config
        if c["global_nodes"] or c["global_tokens"] or c["random_edges"]:
            return None
        blocks = [max(h) for h in self.layer_hops]
        return sum(blocks) if self.plugins is None else self.plugins.receptive_hops(blocks)

    def aggregation_sites(self, edge_index: torch.Tensor, num_nodes: int, batch: torch.Tensor | None = None
                          ) -> list[AggregationSite]:
        """Where messages are aggregated, in depth order (for Virgo): each block's output projection
        reads an attention average over its mask, a neighbour mean at initialisation (mesh nodes;
        global tokens are left out of the operator)."""
        sites = []
        for block, mask in zip(self.blocks, self.masks(edge_index, num_nodes, batch)):
            mesh = mask[:, (mask[0] < num_nodes) & (mask[1] < num_nodes)]
            sites.append(AggregationSite(block.attn.out, None, *mean_operator(mesh, num_nodes)))
        return sites if self.plugins is None else self.plugins.interleave_sites(sites, edge_index, num_nodes, batch)

    def initialize(self, edge_index: torch.Tensor, num_nodes: int, x: torch.Tensor | None = None,
                   batch: torch.Tensor | None = None) -> None:
        """Apply the ``init`` plugin with a representative graph (no-op without one)."""
        apply_init(self, self.config.get("init"), edge_index, num_nodes, x, batch)
