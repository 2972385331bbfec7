"""Training: configuration, the one trainer (single process or torchrun DDP, driven by a
family's task: ``sim.families.train`` looks the family up), self-describing checkpoints."""

from sim.train.checkpoint import load_model, read_checkpoint, save_checkpoint
from sim.train.config import Config, ConfigError
from sim.train.trainer import Task

__all__ = ["Config", "ConfigError", "Task", "load_model", "read_checkpoint", "save_checkpoint"]
