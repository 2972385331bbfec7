"""Model families, registered by name (see :mod:`sim.models.registry`)."""

from sim.models.graph_transformer import GraphTransformer
from sim.models.meshgraphnet import MeshGraphNet
from sim.models.prose import PROSE
from sim.models.registry import available_models, build_model, register_model

__all__ = ["GraphTransformer", "MeshGraphNet", "PROSE", "available_models", "build_model", "register_model"]
