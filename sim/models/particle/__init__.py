"""Particle family: the Lagrangian simulator (GNS baseline, GIOROM) and GIOROM's network."""

from sim.models.particle.giorom import GIOROM
from sim.models.particle.simulator import ParticleSimulator

__all__ = ["GIOROM", "ParticleSimulator"]
