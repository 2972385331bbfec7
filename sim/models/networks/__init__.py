"""Graph networks registered by name, used as the processor of several families
(mesh time stepping, steady fields, the full-resolution particle baseline)."""

from sim.models.networks.graph_transformer import GraphTransformer
from sim.models.networks.meshgraphnet import MeshGraphNet

__all__ = ["GraphTransformer", "MeshGraphNet"]
