"""Active learning with the solver in the loop: the surrogate chooses which simulations to run.

:func:`run_active` (``sim active``) fits a surrogate on a few simulations, scores a pool of
candidate simulations drawn from a dataset recipe (meshed, not solved), runs the solver on the
batch a selection strategy picks (``kecor``, ``random``, ``variance``: plugins of kind
``selection``, :mod:`sim.plugins.selection`), and repeats until the solver budget is spent,
resumably. Each model family takes part through a surrogate adapter (:mod:`sim.active.adapters`).

Layering: above :mod:`sim.families` and :mod:`sim.models` (it fits models), below the CLI.
"""

from sim.active.adapters import MMGPAdapter, SurrogateAdapter, adapter_for, register_adapter
from sim.active.candidates import Stages, recipe_stages
from sim.active.loop import ActiveError, ActiveResult, load_model_config, run_active

__all__ = ["ActiveError", "ActiveResult", "MMGPAdapter", "Stages", "SurrogateAdapter", "adapter_for",
           "load_model_config", "recipe_stages", "register_adapter", "run_active"]
