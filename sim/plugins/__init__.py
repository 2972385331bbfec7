"""Graph-learning components as plugins: layers, initialisation, diagnostics, data selection
(active learning), generators, ..., behind one registry.

``sim plugins list`` shows what is installed. Configurations name plugins with their
parameters (``network_args: {plugins: [{name: dagnn, hops: 10}], init: virgo}``); other
packages add plugins through the entry-point group ``sim.plugins``
(:mod:`sim.plugins.registry`).

Layering: ``sim.plugins`` sits below ``sim.models`` (models read plugins through the
registry by name); plugins never import ``sim.models``, so diagnostics work on any model
through its forward signature.
"""

from sim.plugins import (  # noqa: F401  (built-in plugins register on import)
    conditioning,
    diagnostics,
    features,
    generators,
    init,
    layers,
    pruning,
    selection,
    training,
)
from sim.plugins.registry import (
                                  ENTRY_POINT_GROUP,
                                  KINDS,
                                  PluginError,
                                  PluginSpec,
                                  available_plugins,
                                  build_plugin,
                                  get_plugin,
                                  parse_spec,
                                  register,
                                  register_plugin,
)

__all__ = ["ENTRY_POINT_GROUP", "KINDS", "PluginError", "PluginSpec", "available_plugins", "build_plugin",
           "get_plugin", "parse_spec", "register", "register_plugin"]
