"""Steady-field family: a graph network from a mesh and input scalars to fields."""

from sim.models.steady.simulator import SteadySimulator

__all__ = ["SteadySimulator"]
