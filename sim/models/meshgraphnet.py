"""MeshGraphNet (Pfaff, Fortunato, Sanchez-Gonzalez, Battaglia, ICLR 2021).

Encode-process-decode on the mesh graph:

- encoder: node MLP on node features (fields + node-type one-hot), edge MLP on edge
  features (relative mesh position and its norm), both to ``latent`` with LayerNorm;
- processor: ``steps`` :class:`~sim.models.layers.GraphNetBlock` s with residuals, unshared
  weights;
- decoder: node MLP without LayerNorm to ``out_dim`` (a normalised delta or derivative; the
  rollout engine owns the integration).

Defaults are the paper's (latent 128, 15 steps, 2 hidden layers); :data:`PRESETS` has a
CPU-sized variant.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sim.models.layers import GraphNetBlock, mlp
from sim.models.registry import register_model

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

    Shapes:
        x (N, node_in), edge_index (2, E), edge_attr (E, edge_in) -> (N, out_dim)
    """

    presets = PRESETS

    def __init__(self, node_in: int, edge_in: int, out_dim: int, latent: int = 128, steps: int = 15,
                 hidden_layers: int = 2):
        super().__init__()
        self.config = {"node_in": node_in, "edge_in": edge_in, "out_dim": out_dim, "latent": latent,
                       "steps": steps, "hidden_layers": hidden_layers}
        self.node_encoder = mlp(node_in, latent, latent, hidden_layers)
        self.edge_encoder = mlp(edge_in, latent, latent, hidden_layers)
        self.processor = nn.ModuleList(GraphNetBlock(latent, hidden_layers) for _ in range(steps))
        self.decoder = mlp(latent, latent, out_dim, hidden_layers, layer_norm=False)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
                pos: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        """``pos`` and ``batch`` are accepted for a uniform signature across graph networks (unused)."""
        if x.shape[-1] != self.config["node_in"] or edge_attr.shape[-1] != self.config["edge_in"]:
            raise ValueError(
                f"MeshGraphNet expects node features of width {self.config['node_in']} and edge features of "
                f"width {self.config['edge_in']}, got {x.shape[-1]} and {edge_attr.shape[-1]}")
        v = self.node_encoder(x)
        e = self.edge_encoder(edge_attr)
        for block in self.processor:
            v, e = block(v, edge_index, e)
        return self.decoder(v)
