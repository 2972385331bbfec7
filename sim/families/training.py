"""Training any family from a configuration: the family is looked up from ``model.family``
and handed to the one trainer (:mod:`sim.train.trainer`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from sim.families.base import Family, get_family
from sim.train import trainer
from sim.train.config import Config, ConfigError
from sim.train.config import load_config as _read_config


def configure(cfg: Config, source: Any = None) -> Family:
    """The family of ``cfg``, after its own checks of the configuration (its typed options)."""
    try:
        family = get_family(cfg.model.family)
    except Exception as exc:
        raise ConfigError(f"model.family: {exc}", source) from None
    family.check_config(cfg, source)
    return family


def load_config(path: str | os.PathLike) -> Config:
    """A configuration file read and checked, the family's options included."""
    cfg = _read_config(path)
    configure(cfg, path)
    return cfg


def train(cfg: Config, resume: bool = False, stop_after: int | None = None, progress: bool | None = None,
          on_step: Any = None, allow_change: Sequence[str] = ()) -> dict[str, Any]:
    """Train (or fit) the configured family's model; see :func:`sim.train.trainer.train`."""
    return trainer.train(cfg, configure(cfg), resume=resume, stop_after=stop_after, progress=progress,
                         on_step=on_step, allow_change=allow_change)


def train_ensemble(cfg: Config, members: int, resume: bool = False, progress: bool | None = None,
                   allow_change: Sequence[str] = ()) -> dict[str, Any]:
    family = configure(cfg)
    if not family.ensembles:
        raise ConfigError(f"the {family.name} family has no ensembles (`sim families` lists them)")
    return trainer.train_ensemble(cfg, family, members, resume=resume, progress=progress, allow_change=allow_change)


def steps_for_budget(cfg: Config, seconds: float, probe_steps: int = 20, warmup_steps: int = 0) -> int:
    return trainer.steps_for_budget(cfg, configure(cfg), seconds, probe_steps, warmup_steps)
