"""Training configuration: one YAML file (read with ``yaml.safe_load``) for every model family.

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
      # family: particle
      # network: giorom           # or meshgraphnet (full-resolution GNS-style baseline)
      # family_args: {sample_ratio: 0.05, sampling: fps}
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
      # augment_coreset: {fraction: 0.3, every: 100}   # noise only a weighted coreset (sim.plugins.training.coreset)
      # self_tuning: {noise_std: {init: 0.01, range: [0.002, 0.3]}}   # tuned in the run (plugins.training.self_tuning)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sim.errors import SimError
from sim.train.typed import at_least, build_section, check_device, non_negative, positive


class ConfigError(SimError):
    """A configuration file is invalid."""


def _check(fn: Any) -> dict[str, Any]:
    return {"check": fn}


@dataclass
class ModelConfig:
    family: str = "mesh"  # registered model family: mesh, particle, steady, prose, mmgp (`sim families`)
    network: str = "meshgraphnet"
    preset: str | None = None
    network_args: dict[str, Any] = field(default_factory=dict)
    fields: list[str] = field(default_factory=lambda: ["velocity"])
    target: Literal["delta", "derivative"] = "delta"
    noise_std: float | list[float] = field(default=0.0, metadata=_check(
        lambda v: None if min(v if isinstance(v, list) else [v]) >= 0 else f"must be >= 0, got {v}"))
    # mesh: most no-gradient model steps before the trained one (0: one-step loss)
    pushforward: int = field(default=0, metadata=_check(non_negative))
    # mesh: frames per input, the state and those before it (particles: family_args.history)
    history: int = field(default=1, metadata=_check(at_least(1)))
    noise_types: list[int] | None = None
    predicted_types: list[int] | None = None
    # input scalars: steady and MMGP, of each sample (field data); mesh, trajectory parameters
    # (params) such as the viscosity nu, broadcast to every node
    scalars: list[str] = field(default_factory=list)
    family_args: dict[str, Any] = field(default_factory=dict)  # the family's typed options


@dataclass
class DataConfig:
    train: str = ""
    valid: str | None = None
    batch_size: int = field(default=1, metadata=_check(positive))
    num_workers: int = field(default=0, metadata=_check(non_negative))
    valid_entries: int = field(default=2, metadata=_check(positive))
    valid_rollout_steps: int = field(default=50, metadata=_check(positive))
    dense_queries: int = field(default=0, metadata=_check(non_negative))  # particles: decoder-loss queries


@dataclass
class OptimConfig:
    name: Literal["adam", "adamw"] = "adam"
    lr: float = field(default=1e-4, metadata=_check(positive))
    lr_final: float = field(default=1e-6, metadata=_check(positive))
    schedule: Literal["exponential", "cosine", "constant", "inverse_sqrt"] = "exponential"
    warmup_steps: int = field(default=0, metadata=_check(non_negative))
    weight_decay: float = field(default=0.0, metadata=_check(non_negative))
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999], metadata=_check(
        lambda v: None if len(v) == 2 and all(0 <= b < 1 for b in v) else f"must be two numbers in [0, 1), got {v}"))
    grad_clip: float | None = field(default=1.0, metadata=_check(positive))


@dataclass
class TrainConfig:
    steps: int = field(default=1000, metadata=_check(positive))
    out: str = "runs/run"
    seed: int = 0
    normalizer_accumulation_steps: int = field(default=1000, metadata=_check(non_negative))
    log_every: int = field(default=50, metadata=_check(positive))
    valid_every: int = field(default=0, metadata=_check(non_negative))
    checkpoint_every: int = field(default=500, metadata=_check(positive))
    device: str = field(default="auto", metadata=_check(check_device))
    amp: bool = False
    max_seconds: float | None = field(default=None, metadata=_check(positive))  # stop (with a checkpoint) then
    clock: Literal["wall", "process"] = "wall"  # what max_seconds counts: wall time or this process's CPU time
    tensorboard: bool = True  # also log to out/tensorboard when the tensorboard package is installed
    # split every training graph over this many ranks (mesh models; torchrun's world size a multiple of it:
    # world / partitions groups take different samples, as DDP)
    partitions: int = field(default=1, metadata=_check(positive))
    # input noise on a weighted coreset of the samples only, re-chosen every `every` steps
    # (sim.plugins.training.coreset):
    # {fraction: F, every: N}; None: every sample gets the noise
    augment_coreset: dict[str, Any] | None = None
    # hyperparameters adapted during the run (sim.plugins.training.self_tuning): {noise_std: {init: V, range: [LO, HI]},
    # weight_decay: {...}, every: 10, lr: 0.01, perturb: 0.5, entropy: 0.001, rollout_steps: model.pushforward}
    self_tuning: dict[str, Any] | None = None


SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "train": TrainConfig}
RENAMED = {"simulator": "family", "simulator_args": "family_args"}


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
        """A configuration from a mapping, every value checked against the section's types (one
        readable :class:`ConfigError` for the first problem). The family's own options
        (``model.family_args``) are checked by the family (``sim.families.configure``)."""
        if not isinstance(data, dict):
            raise ConfigError("a configuration must be a mapping", source)
        unknown = set(data) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"unknown section(s) {sorted(unknown)} ({', '.join(SECTIONS)})", source)
        model = data.get("model")
        if isinstance(model, dict):
            for old, new in RENAMED.items():
                if old in model:
                    raise ConfigError(f"model.{old} is now model.{new}", source)
        parts = {name: build_section(typ, data.get(name), name, source, error=ConfigError)
                 for name, typ in SECTIONS.items()}
        cfg = cls(**parts)
        cfg.check(source)
        return cfg

    def check(self, source: Any = None) -> None:
        """Checks across keys (each key's own type and range are checked when it is read)."""
        if not self.data.train:
            raise ConfigError("data.train (a store file) is required", source)
        paths = [("data.train", self.data.train)] + ([("data.valid", self.data.valid)] if self.data.valid else [])
        for key, path in paths:
            if not Path(path).exists():
                raise ConfigError(f"{key}: no such file {path!r}"
                                  + (" (generate it with `sim data generate`)" if path.endswith(".h5") else ""),
                                  source)
        if self.train.valid_every and not self.data.valid:
            raise ConfigError("train.valid_every needs data.valid (a store to validate on)", source)
        if self.train.augment_coreset is not None:
            augment_coreset_options(self, source)
        if self.train.self_tuning is not None:
            self_tuning_options(self, source)


def augment_coreset_options(cfg: Config, source: Any = None) -> tuple[float, int]:
    """(fraction, every) of ``train.augment_coreset``, checked with the keys it depends on (one
    :class:`ConfigError` naming the key otherwise)."""
    value, key = cfg.train.augment_coreset, "train.augment_coreset"
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping {{fraction: F, every: N}}, got {value!r}", source)
    unknown = sorted(str(k) for k in value if k not in ("fraction", "every"))
    if unknown:
        raise ConfigError(f"{key}: unknown key{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))} "
                          "(known: every, fraction)", source)
    missing = [k for k in ("fraction", "every") if k not in value]
    if missing:
        raise ConfigError(f"{key} needs {' and '.join(missing)} (e.g. {{fraction: 0.3, every: 100}})", source)
    fraction, every = value["fraction"], value["every"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ConfigError(f"{key}.fraction must be a number in (0, 1] (the share of the samples that get input "
                          f"noise), got {fraction!r}", source)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"{key}.every must be an integer >= 1 (training steps between coreset selections), got "
                          f"{every!r}", source)
    std = cfg.model.noise_std
    if max(std if isinstance(std, list) else [std]) <= 0:
        raise ConfigError(f"{key} chooses which samples get the input noise, but model.noise_std is 0: set "
                          f"model.noise_std > 0 or drop {key}", source)
    if cfg.train.partitions > 1:
        raise ConfigError(f"{key} computes its gradient proxies on whole graphs: it does not run with "
                          f"train.partitions > 1", source)
    return float(fraction), int(every)


SELF_TUNING_DEFAULTS = {"every": 10, "lr": 0.01, "perturb": 0.5, "entropy": 1e-3, "rollout_steps": None,
                        "warmup": 0, "log_loss": False}


def self_tuning_options(cfg: Config, source: Any = None) -> dict[str, Any]:
    """``train.self_tuning`` checked, defaults filled in: ``hypers`` (name -> (init, lo, hi)),
    ``every``, ``lr``, ``perturb``, ``entropy``, ``rollout_steps``, ``warmup``, ``log_loss`` (one :class:`ConfigError`
    naming the key otherwise)."""
    from sim.plugins.training.self_tuning import HYPERPARAMETERS

    value, key = cfg.train.self_tuning, "train.self_tuning"
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping (e.g. {{noise_std: {{init: 0.01, range: [0.002, 0.3]}}}}), "
                          f"got {value!r}", source)
    known = set(HYPERPARAMETERS) | set(SELF_TUNING_DEFAULTS)
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise ConfigError(f"{key}: unknown key{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(sorted(known))})", source)
    hypers: dict[str, tuple[float, float, float]] = {}
    for name in HYPERPARAMETERS:
        if name not in value:
            continue
        spec = value[name]
        rng = spec.get("range") if isinstance(spec, dict) else None
        init = spec.get("init") if isinstance(spec, dict) else None
        if not (isinstance(spec, dict) and set(spec) <= {"init", "range"} and isinstance(rng, list)
                and len(rng) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng)):
            raise ConfigError(f"{key}.{name} must be {{init: V, range: [LO, HI]}}, got {spec!r}", source)
        lo, hi = float(rng[0]), float(rng[1])
        if not 0 < lo < hi:
            raise ConfigError(f"{key}.{name}.range must be [LO, HI] with 0 < LO < HI (tuned on a log scale), got "
                              f"{rng}", source)
        if init is None:
            init = math.sqrt(lo * hi)
        if isinstance(init, bool) or not isinstance(init, (int, float)) or not lo <= init <= hi:
            raise ConfigError(f"{key}.{name}.init must be a number in its range [{lo:g}, {hi:g}], got {init!r}",
                              source)
        hypers[name] = (float(init), lo, hi)
    if not hypers:
        raise ConfigError(f"{key} names no hyperparameter to tune ({', '.join(HYPERPARAMETERS)})", source)
    out: dict[str, Any] = {**SELF_TUNING_DEFAULTS, **{k: v for k, v in value.items() if k in SELF_TUNING_DEFAULTS}}
    for k in ("lr", "perturb", "entropy"):
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (k != "entropy" and v == 0):
            raise ConfigError(f"{key}.{k} must be a {'non-negative' if k == 'entropy' else 'positive'} number, "
                              f"got {v!r}", source)
    if isinstance(out["every"], bool) or not isinstance(out["every"], int) or out["every"] < 1:
        raise ConfigError(f"{key}.every must be an integer >= 1 (training steps between hyperparameter steps), "
                          f"got {out['every']!r}", source)
    if isinstance(out["warmup"], bool) or not isinstance(out["warmup"], int) or out["warmup"] < 0:
        raise ConfigError(f"{key}.warmup must be an integer >= 0 (training steps before the first hyperparameter "
                          f"step), got {out['warmup']!r}", source)
    if not isinstance(out["log_loss"], bool):
        raise ConfigError(f"{key}.log_loss must be true or false, got {out['log_loss']!r}", source)
    steps = cfg.model.pushforward if out["rollout_steps"] is None else out["rollout_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"{key}.rollout_steps must be an integer >= 0 (model steps before the tuned one), got "
                          f"{steps!r}", source)
    out["rollout_steps"] = steps
    if "noise_std" in hypers:
        std = cfg.model.noise_std
        if max(std if isinstance(std, list) else [std]) <= 0:
            raise ConfigError(f"{key}.noise_std scales the model's input noise: set model.noise_std > 0 (the "
                              "reference the tuned value replaces)", source)
    if cfg.train.partitions > 1:
        raise ConfigError(f"{key} runs in one process per graph: it does not run with train.partitions > 1",
                          source)
    out["hypers"] = hypers
    return out


def load_config(path: str | Path) -> Config:
    path = Path(path)
    if not path.exists():
        raise ConfigError("no such configuration file", path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({' '.join(str(exc).split())})", path) from None
    return Config.from_dict(data, path)
