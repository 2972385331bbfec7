"""What the trainer needs for particle simulators (``model.simulator: particle``): the window
dataset, the simulator built from the configuration, and the validation rollout.

Configuration (see :mod:`sim.train.config`)::

    model:
      simulator: particle
      network: giorom              # or meshgraphnet: the GNS-style full-resolution baseline
      preset: cpu                  # the network's presets (sim.models.particle.giorom / meshgraphnet)
      noise_std: 3.0e-4            # random-walk noise on the last velocity (length per frame)
      simulator_args:              # ParticleSimulator arguments
        sample_ratio: 0.05
        sampling: fps
        decoder: {neighbors: 16}   # default for sample_ratio < 1; null disables it
    data:
      train: /work/data/mpm_water_2d/medium/train.h5
      dense_queries: 512           # full-resolution particles per sample for the decoder loss
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sim.data.particles import ParticleWindowDataset
from sim.errors import SimError
from sim.models.particle import giorom  # noqa: F401 - registers the network
from sim.models.particle.simulator import ParticleSimulator
from sim.models.registry import preset_args
from sim.rollout.particles import evaluate_particle_store
from sim.train.config import Config


def simulator_args(cfg: Config) -> dict[str, Any]:
    """ParticleSimulator arguments of a configuration, with the defaults filled in."""
    args = dict(cfg.model.simulator_args)
    ratio = float(args.get("sample_ratio", 1.0))
    if "decoder" not in args and ratio < 1.0:
        args["decoder"] = {}
    return args


def build_particle_dataset(cfg: Config) -> ParticleWindowDataset:
    args = simulator_args(cfg)
    dense = cfg.data.dense_queries if args.get("decoder") is not None else 0
    return ParticleWindowDataset(cfg.data.train, history=int(args.get("history", 6)),
                                 sample_ratio=float(args.get("sample_ratio", 1.0)),
                                 sampling=str(args.get("sampling", "fps")), seed=int(args.get("sampling_seed", 0)),
                                 dense_queries=dense,
                                 decoder_neighbors=int((args.get("decoder") or {}).get("neighbors", 16)))


def build_particle_simulator(cfg: Config, dataset: ParticleWindowDataset) -> ParticleSimulator:
    m = cfg.model
    net_args = {**(preset_args(m.network, m.preset) if m.preset else {}), **m.network_args}
    if not isinstance(m.noise_std, (int, float)):
        raise SimError("model.noise_std of a particle simulator is one number (random-walk std per frame)")
    return ParticleSimulator(m.network, net_args, dataset.statistics.to_dict(), noise_std=float(m.noise_std),
                             **simulator_args(cfg))


def particle_validation(simulator: ParticleSimulator, path: str, entries: int, steps: int, device: torch.device
                        ) -> dict[str, float]:
    """Rollout RMSE of the dense positions on the first ``entries`` trajectories of ``path``."""
    from sim.mesh import Store

    with Store(path) as store:
        names = store.names()[:entries]
    simulator.eval()
    try:
        results = evaluate_particle_store(simulator, path, names, steps, device=device)
    finally:
        simulator.train()
    keys = set.intersection(*(set(r.rmse) for r in results))
    return {f"valid_rmse_{k}": float(np.mean([r.rmse[k] for r in results])) for k in keys}
