"""Run by torchrun in tests: gradients of step 0 under DDP, written by rank 0."""

from __future__ import annotations

import sys

import torch
from torch import nn
from torch_geometric.data import Batch

from sim.train.trainer import StepBatchSampler, _LossModule, build_simulator
from sim.data.windows import MeshStepDataset
from sim.train.config import Config


def gradients(cfg: Config, rank: int, world: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(cfg.train.seed)
    ds = MeshStepDataset(cfg.data.train, cfg.model.fields)
    simulator = build_simulator(cfg, ds)
    module: nn.Module = _LossModule(simulator)
    if world > 1:
        module = nn.parallel.DistributedDataParallel(module)
    idx = StepBatchSampler(len(ds), cfg.data.batch_size, cfg.train.seed, 0, 1, rank, world).global_batch(0)
    batch = Batch.from_data_list([ds[i] for i in idx[rank::world]])
    loss = module(batch, torch.Generator().manual_seed(0))
    loss.backward()
    return {k: p.grad.clone() for k, p in simulator.named_parameters()}


if __name__ == "__main__":
    torch.distributed.init_process_group("gloo")
    cfg = Config.from_dict({"model": {"network_args": {"latent": 16, "steps": 2}, "fields": ["u"]},
                            "data": {"train": sys.argv[1], "batch_size": 2}})
    grads = gradients(cfg, torch.distributed.get_rank(), torch.distributed.get_world_size())
    if torch.distributed.get_rank() == 0:
        torch.save(grads, sys.argv[2])
    torch.distributed.destroy_process_group()
