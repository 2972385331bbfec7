"""Generator plugins: graphs made without a mesher (for tests and scaling benchmarks).

- :mod:`~sim.plugins.generators.random_spatial`: random spatial networks (Lang et al. 2017).
"""

from sim.plugins.generators.random_spatial import KERNELS, SpatialGraph, random_spatial_network

__all__ = ["KERNELS", "SpatialGraph", "random_spatial_network"]
