"""Layer plugins and their placement inside a host graph model.

A layer plugin maps node latents to node latents with the uniform signature
``forward(x, edge_index, edge_attr=None, pos=None, batch=None) -> x`` and is built with
``channels`` = the host's latent width plus its own parameters. A host (MeshGraphNet, the
graph transformer) takes a list of entries in its ``plugins`` argument::

    plugins:
      - {name: sheaf_diffusion, at: [1, 3], stalk_dim: 4, maps: orthogonal}
      - {name: virtual_nodes, at: all}
      - {name: dagnn, hops: 10}          # default placement of dagnn: head

``at`` places the layer after processor block i (0-based; negative counts from the end),
after a list of blocks, after ``all`` blocks, or at the ``head`` (after the processor,
before the decoder); each placement gets its own weights. Without ``at`` a plugin goes
where its registry entry says (``defaults["at"]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from sim.plugins.layers.dagnn import DAGNN, gcn_operator, gcn_propagate
from sim.plugins.layers.sheaf import SheafDiffusion, apply_sheaf_laplacian, reverse_edges, sheaf_laplacian
from sim.plugins.layers.spen import SubgraphEquivariantLayer, ego_pairs
from sim.plugins.layers.virtual_nodes import VirtualNodes
from sim.plugins.registry import PluginError, build_plugin, get_plugin, parse_spec


def placements(at: Any, num_blocks: int, name: str) -> list[int | str]:
    """Block indices (or "head") where a layer goes."""
    if at == "head":
        return ["head"]
    if at == "all":
        return list(range(num_blocks))
    items = [at] if isinstance(at, int) and not isinstance(at, bool) else at
    if not isinstance(items, Sequence) or isinstance(items, str) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise PluginError(f"layer plugin {name!r}: 'at' must be 'head', 'all', a block index or a list of them, "
                          f"not {at!r}")
    out: list[int | str] = []
    for i in items:
        if not -num_blocks <= i < num_blocks:
            raise PluginError(f"layer plugin {name!r}: block {i} does not exist (the processor has {num_blocks})")
        out.append(i % num_blocks)
    return out


class LayerSlots(nn.Module):
    """The layer plugins of a host, by placement.

    Args:
        entries: the host's ``plugins`` list (names or mappings with ``name``).
        channels: the host's node latent width.
        num_blocks: the host's processor blocks.
    """

    def __init__(self, entries: Sequence[str | Mapping[str, Any]], channels: int, num_blocks: int):
        super().__init__()
        self.after = nn.ModuleDict()
        self.head = nn.ModuleList()
        for entry in entries:
            name, params = parse_spec(entry, "layer plugin")
            spec = get_plugin(name, "layer")
            at = params.pop("at", spec.defaults.get("at", "head"))
            for place in placements(at, num_blocks, name):
                layer = build_plugin({"name": name, **params}, "layer", channels=channels)
                if place == "head":
                    self.head.append(layer)
                else:
                    if str(place) not in self.after:
                        self.after[str(place)] = nn.ModuleList()
                    self.after[str(place)].append(layer)

    def __len__(self) -> int:
        return len(self.head) + sum(len(v) for v in self.after.values())

    def receptive_hops(self, block_hops: Sequence[int | None]) -> int | None:
        """Receptive radius of the host's blocks (``block_hops``, in order) with these layers in
        their places; None when any part is global.

        Convention (for every ``receptive_hops`` in sim): a radius r such that a node's output
        computed on its r-hop induced subgraph equals its output on the whole graph, so it
        depends on no input farther than r hops. A layer reads inputs ``receptive_hops`` away
        and may need the graph ``structural_hops`` away (e.g. degrees for a normalisation);
        walking from the output back to the input, r = max(sum of the input hops, offset of a
        layer + its structural hops).
        """
        chain: list[tuple[int | None, int | None]] = []
        for i, hops in enumerate(block_hops):
            chain.append((hops, hops))
            chain += [self._hops(layer) for layer in self.layers_after(i)]
        chain += [self._hops(layer) for layer in self.head]
        offset, radius = 0, 0
        for reads, needs in reversed(chain):
            if reads is None or needs is None:
                return None
            radius = max(radius, offset + needs)
            offset += reads
        return max(radius, offset)

    @staticmethod
    def _hops(layer: nn.Module) -> tuple[int | None, int | None]:
        reads = getattr(layer, "receptive_hops", None)
        return reads, getattr(layer, "structural_hops", reads)

    def layers_after(self, block: int) -> list[nn.Module]:
        key = str(block)
        return list(self.after[key]) if key in self.after else []

    def run_after(self, block: int, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None,
                  pos: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers_after(block):
            x = layer(x, edge_index, edge_attr, pos, batch)
        return x

    def run_head(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None,
                 pos: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.head:
            x = layer(x, edge_index, edge_attr, pos, batch)
        return x

    def aggregation_sites(self, layers: Sequence[nn.Module], edge_index: torch.Tensor, num_nodes: int,
                          batch: torch.Tensor | None = None) -> list:
        """Virgo sites of ``layers`` (those of them that declare any), in order."""
        sites: list = []
        for layer in layers:
            fn = getattr(layer, "aggregation_sites", None)
            if fn is not None:
                sites += fn(edge_index, num_nodes, batch)
        return sites

    def interleave_sites(self, block_sites: Sequence[Any], edge_index: torch.Tensor, num_nodes: int,
                         batch: torch.Tensor | None = None) -> list:
        """The host model's Virgo sites (one per block, in order) with the sites of the plugins
        placed after each block and of the head, in depth order."""
        sites: list = []
        for i, site in enumerate(block_sites):
            sites.append(site)
            sites += self.aggregation_sites(self.layers_after(i), edge_index, num_nodes, batch)
        return sites + self.aggregation_sites(self.head, edge_index, num_nodes, batch)


__all__ = ["DAGNN", "LayerSlots", "SheafDiffusion", "SubgraphEquivariantLayer", "VirtualNodes", "apply_sheaf_laplacian",
           "ego_pairs", "gcn_operator", "gcn_propagate", "placements", "reverse_edges", "sheaf_laplacian"]
