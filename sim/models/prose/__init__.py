"""PROSE (Liu, Zhang, Schaeffer 2023): trajectories and their equations from one multimodal transformer.

- :mod:`~sim.models.prose.symbols`: the token vocabulary (prefix notation, 3-token floats, skeletons);
- :mod:`~sim.models.prose.model`: the network (registered as ``prose``) and its query function;
- :mod:`~sim.models.prose.data`: windows of stored ODE trajectories, batching, symbol-input noise;
- :mod:`~sim.models.prose.loss`: ``w * relative L2^2 + cross-entropy``;
- :mod:`~sim.models.prose.evaluate`: data and expression metrics.

Training: the one trainer, through the ``prose`` family (:mod:`sim.families.prose`).
"""

from sim.models.prose.data import ODESample, ODEWindows, PROSEBatch, PROSECollator
from sim.models.prose.loss import prose_loss, relative_l2
from sim.models.prose.model import PRESETS, PROSE
from sim.models.prose.symbols import SymbolError, SymbolVocabulary

__all__ = ["PRESETS", "PROSE", "ODESample", "ODEWindows", "PROSEBatch", "PROSECollator", "SymbolError",
           "SymbolVocabulary", "prose_loss", "relative_l2"]
