"""Training plugins: options of the one trainer that change how a model learns, not what it is.

- ``coreset_augment`` (``train.augment_coreset``, :mod:`sim.plugins.training.coreset`): input noise on a
  weighted coreset of the samples, chosen by facility location on gradient proxies;
- ``self_tuning`` (``train.self_tuning``, :mod:`sim.plugins.training.self_tuning`): hyperparameters (input
  noise scale, weight decay) adapted during the run through a structured best-response.

The factories build the objects the trainer uses (imported when called, so that listing plugins
stays light); a configuration turns them on through the ``train`` keys above.
"""

from __future__ import annotations

from typing import Any

from sim.plugins.registry import register_plugin


@register_plugin("coreset_augment", "training",
                 paper="Liu, Mirzasoleiman 2022, Data-Efficient Augmentation for Training Neural Networks (NeurIPS)",
                 summary="input noise on a weighted coreset of the samples only (facility location on gradient "
                         "proxies, re-chosen periodically): train.augment_coreset")
def coreset_augment(fraction: float, every: int, residual: Any, batch_size: int = 1) -> Any:
    """A :class:`~sim.plugins.training.coreset.CoresetAugmentation`."""
    from sim.plugins.training.coreset import CoresetAugmentation

    return CoresetAugmentation(fraction, every, residual, batch_size=batch_size)


@register_plugin("self_tuning", "training",
                 paper="MacKay, Vicol, Lorraine, Duvenaud, Grosse 2019, Self-Tuning Networks: Bilevel Optimization "
                       "of Hyperparameters using Structured Best-Response Functions (ICLR)",
                 summary="input noise scale and weight decay tuned during one run through a learned best-response "
                         "of the weights: train.self_tuning")
def self_tuning(model: Any, hypers: Any, **options: Any) -> Any:
    """A :class:`~sim.plugins.training.self_tuning.SelfTuning` of ``model``."""
    from sim.plugins.training.self_tuning import SelfTuning

    return SelfTuning(model, hypers, **options)
