"""Model families behind one protocol (:class:`Family`): mesh time stepping, particles,
steady fields, PROSE and MMGP, each registered once; the trainer, the rollout loop, the
evaluator, the loader, the CLI and the API look them up."""

from sim.families.base import (COMMANDS, Evaluation, Family, Recorder, Surrogate, available_families, family_of,
                               get_family, register_family)
from sim.families.loading import load, load_model_file
from sim.families.training import configure, load_config, steps_for_budget, train, train_ensemble

__all__ = ["COMMANDS", "Evaluation", "Family", "Recorder", "Surrogate", "available_families", "family_of",
           "get_family", "load", "load_model_file", "register_family", "configure", "load_config", "steps_for_budget",
           "train", "train_ensemble"]
