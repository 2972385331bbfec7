"""Parametric ODE families with symbolic right-hand sides (ground truth for PROSE).

Data model fit: an ODE trajectory has no mesh. It is stored as a :class:`~sim.mesh.Trajectory`
on a Mesh of a single point (``points`` = [[0]], no cells) with the point field ``state``
of shape (T, 1, d) (and ``state_noisy`` when noise is added), so it lives in the same store,
converts with the same tools and feeds the same loaders as every other dataset; the
system's name, parameters and right-hand side (prefix string and sympy ``srepr``) are in
``Trajectory.params``.
"""

from sim.symbolic import from_prefix, rhs_function, to_prefix  # shared with sim.models.prose (sim.symbolic)
from solvers.odes.catalogue import SYSTEMS, ODESystem
from solvers.odes.generate import generate

__all__ = ["SYSTEMS", "ODESystem", "from_prefix", "generate", "rhs_function", "to_prefix"]
