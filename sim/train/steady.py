"""What the trainer needs for steady field models (``model.simulator: steady``): the sample
dataset, the simulator built from the configuration, and the validation error.

Configuration (see :mod:`sim.train.config`)::

    model:
      simulator: steady
      network: meshgraphnet        # or graph_transformer
      preset: cpu
      fields: [u, von_mises]       # output point fields of each sample
      scalars: [E, nu, load]       # input scalars (field data of each sample)
    data:
      train: datasets/elasticity_shapes/medium/train.h5
      valid: datasets/elasticity_shapes/medium/test.h5
"""

from __future__ import annotations

import numpy as np
import torch

from sim.data.samples import MeshSampleDataset
from sim.models.registry import preset_args
from sim.models.steady.simulator import SteadySimulator
from sim.train.config import Config


def build_steady_dataset(cfg: Config) -> MeshSampleDataset:
    return MeshSampleDataset(cfg.data.train, cfg.model.fields, cfg.model.scalars)


def build_steady_simulator(cfg: Config, dataset: MeshSampleDataset) -> SteadySimulator:
    m = cfg.model
    args = {**(preset_args(m.network, m.preset) if m.preset else {}), **m.network_args}
    edge_in = int(dataset[0].edge_attr.shape[-1])
    return SteadySimulator(m.network, args, m.fields, dataset.dims, m.scalars, edge_in,
                           **m.simulator_args)


def rrmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """PLAID's per-sample relative RMSE: RMS error over nodes and components / max |truth|."""
    return float(np.sqrt(((pred - truth) ** 2).mean()) / max(float(np.abs(truth).max()), 1e-30))


def steady_validation(simulator: SteadySimulator, path: str, entries: int, steps: int, device: torch.device
                      ) -> dict[str, float]:
    """RRMSE per field (RMS over the first ``entries`` samples of ``path``); ``steps`` is unused."""
    ds = MeshSampleDataset(path, simulator.config["fields"], simulator.config["scalars"])
    from sim.mesh import Store

    simulator.eval()
    per: dict[str, list[float]] = {f: [] for f in simulator.config["fields"]}
    try:
        with Store(path) as store:
            for item in ds.items[:entries]:
                mesh = store.read(item.entry)
                inputs = {k: float(np.asarray(mesh.field_data[k]).reshape(-1)[0]) for k in simulator.config["scalars"]}
                pred = simulator.to("cpu").predict(mesh, inputs)
                for f in per:
                    truth = np.asarray(mesh.point_data[f]).reshape(np.shape(pred[f]))
                    per[f].append(rrmse(np.asarray(pred[f]), truth))
    finally:
        simulator.to(device).train()
    return {f"valid_rrmse_{f}": float(np.sqrt(np.mean(np.square(v)))) for f, v in per.items()}
