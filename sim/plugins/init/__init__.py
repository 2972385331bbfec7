"""Initialisation plugins: ``init:`` in a graph model's configuration.

``init`` is ``None`` / ``"default"`` (PyTorch's initialisation) or an init plugin by name
with parameters (``"virgo"``, ``{"name": "virgo", "mean": "forward"}``). Graph-aware
initialisations need a representative graph, so models apply them in
``initialize(edge_index, num_nodes, x, batch)``, which the trainer calls with the first
training sample before training starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sim.plugins.init.virgo import (AggregationSite, graph_pool_operator, mean_operator, sum_operator,
                                    virgo_init_, virgo_variances)
from sim.plugins.registry import build_plugin


def apply_init(model: nn.Module, spec: str | Mapping[str, Any] | None, edge_index: torch.Tensor, num_nodes: int,
               x: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> Any:
    """Run the init plugin named by ``spec`` on ``model`` (nothing for None / "default")."""
    if spec is None or spec == "default":
        return None
    return build_plugin(spec, "init", model=model, edge_index=edge_index, num_nodes=num_nodes, x=x, batch=batch)


__all__ = ["AggregationSite", "apply_init", "graph_pool_operator", "mean_operator", "sum_operator", "virgo_init_",
           "virgo_variances"]
