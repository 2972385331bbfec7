"""Models, registered by name (see :mod:`sim.models.registry`): graph networks
(:mod:`~sim.models.networks`) and each family's model (``mesh``, ``particle``, ``steady``,
``prose``, ``mmgp``)."""

from sim.models.mesh import MeshSimulator
from sim.models.networks import GraphTransformer, MeshGraphNet
from sim.models.particle import GIOROM, ParticleSimulator
from sim.models.prose import PROSE
from sim.models.registry import available_models, build_model, register_model
from sim.models.steady import SteadySimulator

__all__ = ["GIOROM", "GraphTransformer", "MeshGraphNet", "MeshSimulator", "PROSE", "ParticleSimulator",
           "SteadySimulator", "available_models", "build_model", "register_model"]
