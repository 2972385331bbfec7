"""Steady field regression on meshes with a graph network: the graph-model baseline of MMGP.

The network sees, per node, the node-type one-hot, the sample's input scalars (broadcast to
every node), its input point fields (``node_inputs``: e.g. a load or source density, or a
coarse solution to correct) and optionally the node coordinates, all normalised; edges carry the relative
mesh position and its norm (as MeshGraphNet). It outputs the normalised fields at every
node in one pass (no time stepping). Loss: MSE of the normalised fields over all nodes.
This is how the PLAID benchmarks train MeshGraphNet on steady problems under geometry
variation (Tensile2d, Rotor37), the comparison MMGP reports against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sim.data.normalizer import Normalizer
from sim.data.windows import node_input_widths
from sim.mesh import NUM_NODE_TYPES, Mesh
from sim.models.registry import build_model, register_model


@register_model("steady_simulator")
class SteadySimulator(nn.Module):
    """Args:
        network: registered graph network (``meshgraphnet``, ``graph_transformer``).
        network_args: its constructor arguments except ``node_in``, ``edge_in``, ``out_dim``.
        fields / field_dims: output fields and their widths.
        scalars: names of the input scalars.
        edge_in: edge feature width (mesh dimension + 1).
        coords: append node coordinates to the node inputs.
        node_inputs / node_input_dims: names and widths of point fields of each sample's mesh the
            network reads at every node (its inputs, not predicted).

    Shapes:
        node_type (N,), scalars (N, S), pos (N, d), edge_index (2, E), edge_attr (E, d + 1),
        inputs (N, K) -> (N, F)
    """

    def __init__(self, network: str, network_args: dict[str, Any], fields: Sequence[str], field_dims: Sequence[int],
                 scalars: Sequence[str], edge_in: int, coords: bool = True, node_inputs: Sequence[str] = (),
                 node_input_dims: Sequence[int] | None = None):
        super().__init__()
        self.config = {"network": network, "network_args": dict(network_args), "fields": list(fields),
                       "field_dims": [int(d) for d in field_dims], "scalars": list(scalars), "edge_in": int(edge_in),
                       "coords": bool(coords)}
        dims = node_input_widths(node_inputs, node_input_dims, fields, "output fields")
        if node_inputs:  # only when used, so checkpoints without them keep their configuration
            self.config.update(node_inputs=list(node_inputs), node_input_dims=dims)
        self.num_outputs = int(sum(field_dims))
        node_in = NUM_NODE_TYPES + len(scalars) + sum(dims) + ((edge_in - 1) if coords else 0)
        self.network = build_model(network, node_in=node_in, edge_in=edge_in, out_dim=self.num_outputs, **network_args)
        self.node_normalizer = Normalizer(node_in)
        self.edge_normalizer = Normalizer(edge_in)
        self.output_normalizer = Normalizer(self.num_outputs)

    def forward(self, node_type: torch.Tensor, scalars: torch.Tensor, pos: torch.Tensor, edge_index: torch.Tensor,
                edge_attr: torch.Tensor, batch: torch.Tensor | None = None, inputs: torch.Tensor | None = None
                ) -> torch.Tensor:
        one_hot = nn.functional.one_hot(node_type.long().clamp(0, NUM_NODE_TYPES - 1), NUM_NODE_TYPES)
        parts = [one_hot.to(pos.dtype), scalars.to(pos.dtype)]
        if self.config.get("node_inputs"):
            if inputs is None:
                raise ValueError(f"the model reads the node inputs {self.config['node_inputs']}; none were given")
            parts.append(inputs.to(pos.dtype))
        parts += [pos] if self.config["coords"] else []
        x = self.node_normalizer(torch.cat(parts, dim=-1))
        return self.network(x, edge_index, self.edge_normalizer(edge_attr), pos=pos, batch=batch)

    @staticmethod
    def _node_scalars(batch: Any) -> torch.Tensor:
        s = batch.scalars  # (graphs, S)
        return s[batch.batch] if getattr(batch, "batch", None) is not None else s.expand(batch.num_nodes, -1)

    def loss(self, batch: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        pred = self(batch.node_type, self._node_scalars(batch), batch.mesh_pos, batch.edge_index, batch.edge_attr,
                    getattr(batch, "batch", None), getattr(batch, "inputs", None))
        return ((pred - self.output_normalizer(batch.target)) ** 2).mean()

    def node_inputs(self, mesh: Mesh, where: Any = None) -> torch.Tensor | None:
        """(N, K) the node inputs the model reads from ``mesh``'s point data (None when it reads
        none); one SimError naming a missing or misshaped field."""
        from sim.data.windows import static_node_inputs

        names = self.config.get("node_inputs")
        if not names:
            return None
        return torch.from_numpy(static_node_inputs(mesh.point_data, names, mesh.num_points, where, "the mesh",
                                                   self.config["node_input_dims"]))

    @torch.no_grad()
    def predict(self, mesh: Mesh, scalars: dict[str, float], graph: Any = None) -> dict[str, np.ndarray]:
        """Fields on ``mesh``'s nodes: name -> (N,) or (N, c). ``graph``: ``mesh_graph(mesh)``
        when the caller has it (several predictions on one mesh build it once)."""
        from sim.graph import mesh_graph

        missing = [k for k in self.config["scalars"] if k not in scalars]
        if missing:
            raise ValueError(f"missing input scalar(s) {missing} (the model takes {self.config['scalars']})")
        inputs = self.node_inputs(mesh)
        g = mesh_graph(mesh) if graph is None else graph
        s = torch.tensor([[float(scalars[k]) for k in self.config["scalars"]]], dtype=torch.float32)
        out = self.output_normalizer.inverse(self(g.node_type, s.expand(g.num_nodes, -1), g.mesh_pos, g.edge_index,
                                                  g.edge_attr, inputs=inputs)).numpy()
        res, start = {}, 0
        for f, d in zip(self.config["fields"], self.config["field_dims"]):
            res[f] = out[:, start] if d == 1 else out[:, start:start + d]
            start += d
        return res
