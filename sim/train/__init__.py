"""Training: configuration, trainer (single process or torchrun DDP), self-describing checkpoints."""

from sim.train.checkpoint import load_model, read_checkpoint, save_checkpoint
from sim.train.config import Config, ConfigError, load_config
from sim.train.trainer import train, train_ensemble

__all__ = ["Config", "ConfigError", "load_config", "load_model", "read_checkpoint", "save_checkpoint", "train", "train_ensemble"]
