"""Run by torchrun in tests: gradients of step 0 under DDP, written by rank 0."""

from __future__ import annotations

import sys

import torch
from torch import nn

from sim.families import get_family
from sim.train.config import Config
from sim.train.trainer import StepBatchSampler, _LossModule


def gradients(cfg: Config, rank: int, world: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(cfg.train.seed)
    family = get_family(cfg.model.family)
    ds = family.build_dataset(cfg)
    simulator = family.build_model(cfg, ds)
    module: nn.Module = _LossModule(simulator, family, cfg)
    if world > 1:
        module = nn.parallel.DistributedDataParallel(module)
    sampler = StepBatchSampler(len(ds), cfg.data.batch_size, cfg.train.seed, 0, 1, rank, world)
    [pairs] = list(sampler)  # this rank's share of step 0: (step, index) pairs
    assert [i for _, i in pairs] == sampler.global_batch(0)[rank::world] and {s for s, _ in pairs} == {0}
    batch = family.collator(cfg, ds, simulator)([ds[i] for _, i in pairs], 0)
    loss, parts = module(batch, torch.Generator().manual_seed(0))
    assert isinstance(parts, dict)
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
