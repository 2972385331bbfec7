"""Diagnostic plugins: measurements of a trained graph model on data.

- :mod:`~sim.plugins.diagnostics.hop_influence`: hop-wise Jacobian influence T_h and the
  range score R (``sim diagnose range``);
- :mod:`~sim.plugins.diagnostics.lipschitz`: sound upper and sampled lower bounds of the
  local Lipschitz constant of the one-step map (``sim diagnose lipschitz``), on the
  bound-propagation engine of :mod:`~sim.verify`;
- :mod:`~sim.plugins.diagnostics.harmful`: SGD-influence of each training trajectory on the
  validation rollout error (``sim diagnose harmful``).
"""

from sim.plugins.diagnostics.harmful import HarmfulResult, harmful_samples, valid_rollout_error, validation_starts
from sim.plugins.diagnostics.hop_influence import InfluenceResult, MeshInfluenceModel, hop_influence, influence_png
from sim.plugins.diagnostics.lipschitz import LipschitzResult, local_lipschitz, mesh_lipschitz

__all__ = ["HarmfulResult", "InfluenceResult", "LipschitzResult", "MeshInfluenceModel", "harmful_samples",
           "hop_influence", "influence_png", "local_lipschitz", "mesh_lipschitz", "valid_rollout_error",
           "validation_starts"]
