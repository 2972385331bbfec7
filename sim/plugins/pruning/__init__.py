"""Pruning plugins: smaller, faster surrogates from trained ones.

- :mod:`~sim.plugins.pruning.meta`: a graph metanetwork on the network's hidden neurons
  proposes which channels to remove; prune to a uniform hidden width, fine-tune (``sim prune``).
"""

from sim.plugins.pruning.meta import (
                                      HiddenGroup,
                                      MetaNetwork,
                                      PruneResult,
                                      finetune,
                                      hidden_groups,
                                      magnitude_scores,
                                      prune_model,
                                      step_cpu_seconds,
)

__all__ = ["HiddenGroup", "MetaNetwork", "PruneResult", "finetune", "hidden_groups", "magnitude_scores", "prune_model",
           "step_cpu_seconds"]
