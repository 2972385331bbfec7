"""MeshGraphNet (Pfaff, Fortunato, Sanchez-Gonzalez, Battaglia, ICLR 2021).

Encode-process-decode on the mesh graph:

- encoder: node MLP on node features (fields + node-type one-hot), edge MLP on edge
  features (relative mesh position and its norm), both to ``latent`` with LayerNorm;
- processor: ``steps`` :class:`~sim.nn.layers.GraphNetBlock` s with residuals, unshared
  weights;
- decoder: node MLP without LayerNorm to ``out_dim`` (a normalised delta or derivative; the
  rollout engine owns the integration).

Defaults are the paper's (latent 128, 15 steps, 2 hidden layers); :data:`PRESETS` has a
CPU-sized variant.

Plugins (:mod:`sim.plugins`): ``plugins`` inserts layer plugins on the node latents after
processor blocks or as a head before the decoder (e.g. ``[{name: dagnn, hops: 10}]``);
``init`` names an initialisation plugin (``virgo``) applied by :meth:`MeshGraphNet.initialize`;
``features`` appends feature plugins' structural node and edge features (e.g.
``[{name: equivariant_polynomials, degree: 3}, graphlet_orbits]``) to the encoders' inputs;
``hypernet`` (``{name: mip_hypernet, ...}``) predicts the decoder's output layer from the
trajectory's parameters (``cond``) instead of reading them as node inputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sim.models.registry import register_model
from sim.nn.layers import GraphNetBlock, mlp
from sim.plugins.features import FeatureInputs
from sim.plugins.init import AggregationSite, apply_init, sum_operator
from sim.plugins.layers import LayerSlots
from sim.plugins.registry import build_plugin

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"latent": 128, "steps": 15, "hidden_layers": 2},
    "cpu": {"latent": 64, "steps": 6, "hidden_layers": 2},
}


@register_model("meshgraphnet")
class MeshGraphNet(nn.Module):
    """Args:
        node_in: node feature width.
        edge_in: edge feature width.
        out_dim: output width per node.
        latent: latent width (128 in the paper).
        steps: message-passing steps (15 in the paper).
        hidden_layers: hidden layers per MLP (2 in the paper).
        plugins: layer plugins and their placement (see :mod:`sim.plugins.layers`).
        init: initialisation plugin (``None``: PyTorch's default), see :meth:`initialize`.
        features: feature plugins whose node/edge features of the graph are appended to ``x``
            and ``edge_attr`` (``node_in``/``edge_in`` stay the caller's widths).
        hypernet: a conditioning plugin (``mip_hypernet``) whose hypernetwork predicts the
            decoder's output layer from ``cond`` (N, cond_dim) given to :meth:`forward`.
        cond_dim: the number of conditioning values (with ``hypernet``).
        mlp_hidden: width of every MLP's hidden layers (default: ``latent``; ``sim prune`` makes
            it smaller).

    Shapes:
        x (N, node_in), edge_index (2, E), edge_attr (E, edge_in) -> (N, out_dim)
    """

    presets = PRESETS

    def __init__(self, node_in: int, edge_in: int, out_dim: int, latent: int = 128, steps: int = 15,
                 hidden_layers: int = 2, plugins: list[Any] | None = None, init: Any = None,
                 features: list[Any] | None = None, hypernet: Any = None, cond_dim: int = 0,
                 mlp_hidden: int | None = None):
        super().__init__()
        self.config = {"node_in": node_in, "edge_in": edge_in, "out_dim": out_dim, "latent": latent,
                       "steps": steps, "hidden_layers": hidden_layers}
        if plugins:  # only when used, so plain checkpoints keep their configuration
            self.config["plugins"] = list(plugins)
        if init is not None:
            self.config["init"] = init
        if features:
            self.config["features"] = list(features)
        if mlp_hidden is not None:
            self.config["mlp_hidden"] = int(mlp_hidden)
        width = mlp_hidden or latent
        self.features = FeatureInputs(features) if features else None
        extra_node, extra_edge = (self.features.node_dim, self.features.edge_dim) if features else (0, 0)
        self.node_encoder = mlp(node_in + extra_node, width, latent, hidden_layers)
        self.edge_encoder = mlp(edge_in + extra_edge, width, latent, hidden_layers)
        self.processor = nn.ModuleList(GraphNetBlock(latent, hidden_layers, width) for _ in range(steps))
        self.plugins = LayerSlots(plugins, latent, steps) if plugins else None
        self.decoder = mlp(latent, width, out_dim, hidden_layers, layer_norm=False)
        self.hyper = None
        if hypernet is not None:
            self.config["hypernet"], self.config["cond_dim"] = hypernet, int(cond_dim)
            self.decoder = self.decoder[:-1]  # the output layer is the hypernetwork's
            self.hyper = build_plugin(hypernet, "conditioning", in_features=width, out_features=out_dim,
                                      cond_dim=int(cond_dim))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
                pos: torch.Tensor | None = None, batch: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        """``pos`` and ``batch`` are accepted for a uniform signature across graph networks (unused);
        ``cond`` (N, cond_dim): the conditioning values of each node's graph (with ``hypernet``)."""
        if x.shape[-1] != self.config["node_in"] or edge_attr.shape[-1] != self.config["edge_in"]:
            raise ValueError(
                f"MeshGraphNet expects node features of width {self.config['node_in']} and edge features of "
                f"width {self.config['edge_in']}, got {x.shape[-1]} and {edge_attr.shape[-1]}")
        if self.features is not None:
            fx, fe = self.features(edge_index, x.shape[0], x.dtype)
            x, edge_attr = torch.cat([x, fx], dim=-1), torch.cat([edge_attr, fe], dim=-1)
        v = self.node_encoder(x)
        e = self.edge_encoder(edge_attr)
        for i, block in enumerate(self.processor):
            v, e = block(v, edge_index, e)
            if self.plugins is not None:
                v = self.plugins.run_after(i, v, edge_index, e, pos, batch)
        if self.plugins is not None:
            v = self.plugins.run_head(v, edge_index, e, pos, batch)
        if self.hyper is not None:
            if cond is None or cond.shape != (v.shape[0], self.config["cond_dim"]):
                raise ValueError(f"the hypernetwork needs cond of shape (N, {self.config['cond_dim']})")
            return self.hyper(self.decoder(v), cond)
        return self.decoder(v)

    @property
    def receptive_hops(self) -> int | None:
        """Radius r whose r-hop subgraph reproduces a node's output (the convention of
        :meth:`sim.plugins.layers.LayerSlots.receptive_hops`); None when a plugin is global."""
        blocks = [1] * self.config["steps"]
        return len(blocks) if self.plugins is None else self.plugins.receptive_hops(blocks)

    def aggregation_sites(self, edge_index: torch.Tensor, num_nodes: int, batch: torch.Tensor | None = None
                          ) -> list[AggregationSite]:
        """Where messages are aggregated, in depth order (for Virgo): each block's node MLP reads
        the sum of its incoming edge messages in its second half of input columns."""
        latent = self.config["latent"]
        fwd, adj = sum_operator(edge_index, num_nodes)
        sites = [AggregationSite(block.node_mlp[0], slice(latent, 2 * latent), fwd, adj) for block in self.processor]
        return sites if self.plugins is None else self.plugins.interleave_sites(sites, edge_index, num_nodes, batch)

    def initialize(self, edge_index: torch.Tensor, num_nodes: int, x: torch.Tensor | None = None,
                   batch: torch.Tensor | None = None) -> None:
        """Apply the ``init`` plugin with a representative graph (no-op without one)."""
        apply_init(self, self.config.get("init"), edge_index, num_nodes, x, batch)
