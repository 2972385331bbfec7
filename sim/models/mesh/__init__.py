"""Mesh time-stepping family: the one-step simulator around a graph network."""

from sim.models.mesh.simulator import MeshSimulator, StepInputs, shift_history

__all__ = ["MeshSimulator", "StepInputs", "shift_history"]
