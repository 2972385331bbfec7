"""Online normalisation statistics, as in MeshGraphNet.

Statistics are accumulated over the first ``max_accumulations`` batches seen in training
mode and frozen afterwards; they live in buffers, so they are saved with the model's
``state_dict`` and restored by a checkpoint. Under DDP, call :meth:`sync` after each
accumulation so every rank holds the same statistics.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Normalizer(nn.Module):
    r"""Per-feature standardisation :math:`(x - \mu) / \max(\sigma, \epsilon)`.

    Args:
        size: number of features (last dimension).
        max_accumulations: batches whose statistics are accumulated (then frozen).
        std_epsilon: lower bound on the standard deviation.

    Shapes:
        x (..., size) -> (..., size)
    """

    def __init__(self, size: int, max_accumulations: int = 10**6, std_epsilon: float = 1e-8):
        super().__init__()
        self.max_accumulations = max_accumulations
        self.std_epsilon = std_epsilon
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("accumulations", torch.zeros((), dtype=torch.long))
        self.register_buffer("sum", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("sum_sq", torch.zeros(size, dtype=torch.float64))

    @classmethod
    def from_statistics(cls, mean: list[float] | torch.Tensor, std: list[float] | torch.Tensor,
                        std_epsilon: float = 1e-8) -> "Normalizer":
        """A frozen normaliser with given (e.g. pooled dataset) mean and std per feature."""
        mean = torch.as_tensor(mean, dtype=torch.float64)
        std = torch.as_tensor(std, dtype=torch.float64)
        norm = cls(mean.shape[0], max_accumulations=0, std_epsilon=std_epsilon)
        norm.count.fill_(1.0)
        norm.sum.copy_(mean)
        norm.sum_sq.copy_(std**2 + mean**2)
        return norm

    @torch.no_grad()
    def accumulate(self, x: torch.Tensor) -> None:
        if int(self.accumulations) >= self.max_accumulations:
            return
        flat = x.detach().reshape(-1, x.shape[-1]).to(torch.float64)
        stats = torch.cat([torch.tensor([flat.shape[0]], dtype=torch.float64, device=flat.device),
                           flat.sum(0), (flat**2).sum(0)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
        n = self.sum.shape[0]
        self.count += stats[0]
        self.sum += stats[1:1 + n]
        self.sum_sq += stats[1 + n:]
        self.accumulations += 1

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / self.count.clamp(min=1.0)

    @property
    def std(self) -> torch.Tensor:
        var = self.sum_sq / self.count.clamp(min=1.0) - self.mean**2
        return torch.sqrt(var.clamp(min=0.0)).clamp(min=self.std_epsilon)

    def forward(self, x: torch.Tensor, accumulate: bool | None = None, rows: Any = None) -> torch.Tensor:
        """``rows``: accumulate only these rows of ``x`` (an index, slice or mask: the nodes one
        rank owns in partitioned training), normalise all."""
        if accumulate if accumulate is not None else self.training:
            self.accumulate(x if rows is None else x[rows])
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x.dtype) + self.mean.to(x.dtype)
