"""The particle family (GIOROM and the GNS-style full-resolution baseline, a
:class:`~sim.models.particle.simulator.ParticleSimulator`): Lagrangian dynamics from a
history of positions; GIOROM steps a sparse subset and decodes the motion at any query point.

Configuration (``model.family: particle``)::

    model:
      family: particle
      network: giorom              # or meshgraphnet: the GNS-style full-resolution baseline
      preset: cpu
      noise_std: 3.0e-4            # random-walk noise on the last velocity (length per frame)
      family_args:                 # ParticleOptions
        sample_ratio: 0.05
        sampling: fps
        decoder: {neighbors: 16}   # default for sample_ratio < 1; null disables it
    data:
      train: datasets/mpm_water_2d/medium/train.h5
      dense_queries: 512           # full-resolution particles per sample for the decoder loss
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sim.errors import SimError
from sim.families.base import Family, Recorder, Surrogate, register_family, series_writer, set_precision
from sim.mesh import Mesh, Trajectory


@dataclass
class ParticleOptions:
    """``model.family_args`` of particle models (the :class:`ParticleSimulator` arguments)."""

    history: int = 6
    sample_ratio: float = 1.0
    sampling: Literal["fps", "random"] = "fps"
    # "ratio": sample_ratio of any particle set; "spacing": the sparse nodes as far apart as in
    # training on any particle set (a finer set runs at the training resolution and is decoded)
    sample_rule: Literal["ratio", "spacing"] = "ratio"
    sampling_seed: int = 0
    connectivity_radius: float | None = None
    type_embedding: int = 16
    max_neighbors: int | None = None
    decoder: dict[str, Any] | None = None
    decoder_loss_weight: float = 1.0


@register_family
class ParticleFamily(Family):
    """Particles: Lagrangian dynamics from a history of positions (GIOROM on a sparse subset with
    a dense decoder at any query point; the full-resolution GNS baseline)."""

    name = "particle"
    model_names = ("particle_simulator",)
    commands = frozenset({"train", "rollout", "eval"})
    options = ParticleOptions
    input_noise = True

    def check_config(self, cfg: Any, source: Any = None) -> None:
        from sim.train.config import ConfigError

        super().check_config(cfg, source)
        opts = self.parse_options(cfg, source)
        if not 0 < opts.sample_ratio <= 1 or opts.history < 2:
            raise ConfigError("model.family_args: sample_ratio must be in (0, 1] and history >= 2", source)
        if not isinstance(cfg.model.noise_std, (int, float)):
            raise ConfigError("model.noise_std of a particle model is one number (random-walk std per frame)", source)

    def simulator_args(self, cfg: Any) -> dict[str, Any]:
        """ParticleSimulator arguments of a configuration, with the defaults filled in (a decoder
        when the network runs on a subset)."""
        import dataclasses

        args = dataclasses.asdict(self.parse_options(cfg))
        if cfg.model.family_args.get("decoder", "unset") == "unset" and args["sample_ratio"] < 1.0:
            args["decoder"] = {}
        return args

    def build_dataset(self, cfg: Any) -> Any:
        from sim.data.particles import ParticleWindowDataset

        a = self.simulator_args(cfg)
        dense = cfg.data.dense_queries if a["decoder"] is not None else 0
        return ParticleWindowDataset(cfg.data.train, history=a["history"], sample_ratio=a["sample_ratio"],
                                     sampling=a["sampling"], seed=a["sampling_seed"], dense_queries=dense,
                                     sample_rule=a["sample_rule"],
                                     decoder_neighbors=int((a["decoder"] or {}).get("neighbors", 16)))

    def build_model(self, cfg: Any, dataset: Any) -> Any:
        from sim.models.particle import ParticleSimulator
        from sim.models.registry import preset_args

        m = cfg.model
        net_args = {**(preset_args(m.network, m.preset) if m.preset else {}), **m.network_args}
        return ParticleSimulator(m.network, net_args, dataset.statistics.to_dict(), noise_std=float(m.noise_std),
                                 reference_spacing=getattr(dataset, "reference_spacing", None),
                                 **self.simulator_args(cfg))

    def validate(self, model: Any, cfg: Any, device: Any) -> dict[str, float]:
        """Rollout RMSE of the dense positions on the first ``data.valid_entries`` trajectories."""
        from sim.mesh import Store
        from sim.rollout.evaluate import evaluate_store
        from sim.rollout.particles import particle_case

        with Store(cfg.data.valid) as store:
            names = store.names()[:cfg.data.valid_entries]
        results = evaluate_store(model, cfg.data.valid, particle_case, names, cfg.data.valid_rollout_steps,
                                 device=device)
        keys = set.intersection(*(set(r.rmse) for r in results))
        return {f"valid_rmse_{k}": float(np.mean([r.rmse[k] for r in results])) for k in keys}

    def case(self, model: Any) -> Any:
        from sim.rollout.particles import particle_case

        return particle_case

    def surrogate(self, model: Any, payload: dict[str, Any], path: Path) -> Surrogate:
        return ParticleSurrogate(model, path)


class ParticleSurrogate(Surrogate):
    """GIOROM or the GNS-style baseline (:class:`~sim.models.particle.simulator.ParticleSimulator`):
    Lagrangian particle dynamics from a history of positions; GIOROM steps a sparse subset and
    decodes the motion at any query points of the reference configuration."""

    family = "particle"

    def __init__(self, model: Any, path: Path):
        super().__init__(path)
        self.model = model
        self.history = int(model.config["history"])
        self.compiled = False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "network": self.model.config["network"], "dim": self.model.dim,
                "history": self.history, "dt": self.model.dt, "dense_decoder": self.model.decoder is not None,
                "precision": self.model.inference_precision, "compiled": self.compiled}

    def set_precision(self, name: str) -> ParticleSurrogate:
        set_precision(self.model, name)
        return self

    def set_compile(self, on: bool = True) -> ParticleSurrogate:
        self.compiled = bool(on)
        return self

    def rollout(self, initial: Trajectory, steps: int, boundary: Any = None, queries: np.ndarray | None = None,
                out: str | os.PathLike | None = None) -> Trajectory:
        """Roll ``steps`` frames on from the first ``history`` frames of ``initial`` (a particle
        Trajectory with moving positions; its first frame is the reference configuration).

        Returns a moving point set: all particles, or the ``queries`` (Q, d) points of the
        reference configuration (GIOROM's dense decoding), with the ``displacement`` field;
        ``out`` (.pvd / .xdmf) also streams it for ParaView.
        """
        from sim.rollout.particles import DISPLACEMENT, particle_rollout

        if boundary is not None:
            raise SimError("particle models take no boundary values: walls are part of the learned dynamics",
                           self.path)
        if not isinstance(initial, Trajectory) or initial.positions is None:
            raise SimError("initial must be a particle Trajectory with moving positions", self.path)
        pos = np.asarray(initial.positions, dtype=np.float32)
        if pos.shape[0] < self.history:
            raise SimError(f"the model needs {self.history} frames to start; the trajectory has {pos.shape[0]}",
                           self.path)
        if pos.shape[2] != self.model.dim:
            raise SimError(f"the model simulates {self.model.dim}D particles; these are {pos.shape[2]}D", self.path)
        rest = pos[0]
        q = rest if queries is None else np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.model.dim:
            raise SimError(f"queries must be (Q, {self.model.dim}) reference positions, got {q.shape}", self.path)
        t0 = float(initial.times[self.history - 1])
        rec = Recorder(self._series_writer(out, q), keep=True)
        types = initial.mesh.point_data.get("particle_type")
        with self._lock:
            particle_rollout(self.model, [pos[: self.history]], steps, rest=[rest],
                             particle_types=None if types is None else [types],
                             queries=None if queries is None else [q], writers=[rec], t0=t0, compile=self.compiled)
        moving = np.stack([q + s[DISPLACEMENT] for s in rec.states])
        return Trajectory(Mesh(q), np.asarray(rec.times), point_fields={DISPLACEMENT: np.stack(
            [s[DISPLACEMENT] for s in rec.states])}, positions=moving, dt=self.model.dt)

    def _series_writer(self, out: Any, points: np.ndarray) -> Any:
        from sim.mesh import SeriesLayout
        from sim.rollout.particles import DISPLACEMENT

        return series_writer(out, SeriesLayout(Mesh(points), point_fields=[DISPLACEMENT], moving=True,
                                                dt=self.model.dt))
