"""Conditioning plugins: how a model takes the parameters of a trajectory (viscosity, inflow,
material constants) other than as extra node inputs.

- :mod:`~sim.plugins.conditioning.mip`: a hypernetwork predicting a layer's weights from the
  parameters, with magnitude-invariant encoding and additive (residual) weights.
"""

from sim.plugins.conditioning.mip import HyperLinear, mip_encode

__all__ = ["HyperLinear", "mip_encode"]
