"""Training configuration: one YAML file (read with ``yaml.safe_load``) for every graph model.

Example::

    model:
      network: meshgraphnet
      preset: cpu                 # or network_args: {latent: 128, steps: 15}
      fields: [velocity]
      target: delta               # or derivative
      noise_std: 0.02
      scalars: [nu]               # trajectory parameters the model is conditioned on (optional)
      history: 1                  # frames per input: the state and the ones before it (optional)
      # particles (GIOROM / GNS baseline) instead of meshes:
      # simulator: particle
      # network: giorom           # or meshgraphnet (full-resolution GNS-style baseline)
      # simulator_args: {sample_ratio: 0.05, sampling: fps}
    data:
      train: datasets/cylinder_flow/small/train.h5
      valid: datasets/cylinder_flow/small/valid.h5
      batch_size: 2
    optim:
      name: adam                  # or adamw
      lr: 1.0e-4
      lr_final: 1.0e-6
      schedule: exponential       # or cosine, constant
      warmup_steps: 0
      grad_clip: 1.0
    train:
      steps: 2000
      out: runs/mgn_small
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim.errors import SimError


class ConfigError(SimError):
    """A configuration file is invalid."""


@dataclass
class ModelConfig:
    network: str = "meshgraphnet"
    preset: str | None = None
    network_args: dict[str, Any] = field(default_factory=dict)
    fields: list[str] = field(default_factory=lambda: ["velocity"])
    target: str = "delta"
    noise_std: float | list[float] = 0.0
    pushforward: int = 0  # mesh: most no-gradient model steps before the trained one (0: one-step loss)
    history: int = 1  # mesh: frames per input, the state and those before it (particles: simulator_args)
    noise_types: list[int] | None = None
    predicted_types: list[int] | None = None
    simulator: str = "mesh"  # or "particle" (ParticleSimulator: GNS baseline, GIOROM), "steady" (SteadySimulator)
    # input scalars: steady, of each sample (field data); mesh, trajectory parameters (params) such
    # as the viscosity nu, broadcast to every node
    scalars: list[str] = field(default_factory=list)
    simulator_args: dict[str, Any] = field(default_factory=dict)  # extra ParticleSimulator arguments


@dataclass
class DataConfig:
    train: str = ""
    valid: str | None = None
    batch_size: int = 1
    num_workers: int = 0
    valid_entries: int = 2
    valid_rollout_steps: int = 50
    dense_queries: int = 0  # particles: full-resolution particles per sample for the dense decoder's loss


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-4
    lr_final: float = 1e-6
    schedule: str = "exponential"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float | None = 1.0


@dataclass
class TrainConfig:
    steps: int = 1000
    out: str = "runs/run"
    seed: int = 0
    normalizer_accumulation_steps: int = 1000
    log_every: int = 50
    valid_every: int = 0
    checkpoint_every: int = 500
    device: str = "auto"
    amp: bool = False
    max_seconds: float | None = None  # stop (with a checkpoint) after this much training time
    clock: str = "wall"  # what max_seconds counts: "wall" time or this "process"'s CPU time
    tensorboard: bool = True  # also log to out/tensorboard when the tensorboard package is installed


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: Any = None) -> "Config":
        if not isinstance(data, dict):
            raise ConfigError("a configuration must be a mapping", source)
        unknown = set(data) - {"model", "data", "optim", "train"}
        if unknown:
            raise ConfigError(f"unknown section(s) {sorted(unknown)} (model, data, optim, train)", source)
        parts = {}
        for name, typ in (("model", ModelConfig), ("data", DataConfig), ("optim", OptimConfig),
                          ("train", TrainConfig)):
            section = data.get(name) or {}
            known = {f.name for f in dataclasses.fields(typ)}
            bad = set(section) - known
            if bad:
                raise ConfigError(f"unknown key(s) {sorted(bad)} in '{name}' (known: {', '.join(sorted(known))})",
                                  source)
            parts[name] = typ(**section)
        cfg = cls(**parts)
        cfg.check(source)
        return cfg

    def check(self, source: Any = None) -> None:
        if self.model.simulator not in ("mesh", "particle", "steady"):
            raise ConfigError(f"model.simulator must be 'mesh', 'particle' or 'steady', not {self.model.simulator!r}",
                              source)
        if self.model.target not in ("delta", "derivative"):
            raise ConfigError(f"model.target must be 'delta' or 'derivative', not {self.model.target!r}", source)
        if self.optim.name not in ("adam", "adamw"):
            raise ConfigError(f"optim.name must be 'adam' or 'adamw', not {self.optim.name!r}", source)
        if self.optim.schedule not in ("exponential", "cosine", "constant"):
            raise ConfigError(f"optim.schedule must be exponential, cosine or constant, not {self.optim.schedule!r}",
                              source)
        if self.train.clock not in ("wall", "process"):
            raise ConfigError(f"train.clock must be 'wall' or 'process', not {self.train.clock!r}", source)
        if self.train.steps < 1 or self.data.batch_size < 1:
            raise ConfigError("train.steps and data.batch_size must be positive", source)
        if self.model.pushforward < 0 or self.model.history < 1:
            raise ConfigError("model.pushforward must be >= 0 and model.history >= 1", source)
        if self.model.simulator != "mesh" and (self.model.pushforward or self.model.history != 1):
            raise ConfigError("model.pushforward and model.history are options of mesh simulators (particle "
                              "simulators take their history in simulator_args)", source)
        if not self.data.train:
            raise ConfigError("data.train (a store file) is required", source)


def load_config(path: str | Path) -> Config:
    path = Path(path)
    if not path.exists():
        raise ConfigError("no such configuration file", path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({' '.join(str(exc).split())})", path) from None
    return Config.from_dict(data, path)
