"""Model families, registered by name (see :mod:`sim.models.registry`)."""

from sim.models.giorom import GIOROM
from sim.models.graph_transformer import GraphTransformer
from sim.models.meshgraphnet import MeshGraphNet
from sim.models.particle_simulator import ParticleSimulator
from sim.models.prose import PROSE
from sim.models.registry import available_models, build_model, register_model
from sim.models.steady import SteadySimulator

__all__ = ["GIOROM", "GraphTransformer", "MeshGraphNet", "PROSE", "ParticleSimulator", "SteadySimulator",
           "available_models", "build_model", "register_model"]
