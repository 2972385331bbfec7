"""Model cost: parameters and floating-point operations of one forward (and training) step.

FLOPs are counted by running the model once under :class:`torch.utils.flop_counter.FlopCounterMode`,
which records the matrix products and convolutions torch actually dispatches (2 FLOPs per
multiply-add). Gathers, scatters, normalisations and elementwise activations are not
counted: on graphs they are memory-bound and small next to the MLP matmuls, so the count
is the compute that scales with width and depth, the quantity scaling laws are written in.
A training step is counted as forward + backward of the loss (about 3x the forward).

Use it to put models of different families on one compute axis, e.g. error against
``train_flops_per_step * steps`` (``scripts/bench/scaling.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class ModelCost:
    """``params``: trainable parameters; ``forward_flops``: one forward call;
    ``train_flops``: forward + backward of one training step (when measured)."""

    params: int
    forward_flops: int
    train_flops: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parameter_count(model: nn.Module, trainable_only: bool = True) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


def count_flops(fn: Callable[[], Any], backward: bool = False) -> int:
    """FLOPs of ``fn()`` (and of ``fn().backward()`` when ``backward``; ``fn`` must return a scalar then)."""
    with FlopCounterMode(display=False) as counter:
        out = fn()
        if backward:
            out.backward()
    return int(counter.get_total_flops())


def model_cost(model: nn.Module, inputs: tuple, loss: Callable[[], torch.Tensor] | None = None) -> ModelCost:
    """Parameters and FLOPs of ``model(*inputs)`` (under ``no_grad``), and of a training step
    ``loss().backward()`` when ``loss`` is given (gradients are zeroed afterwards)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        fwd = count_flops(lambda: model(*inputs))
    model.train(was_training)
    train = None
    if loss is not None:
        train = count_flops(loss, backward=True)
        model.zero_grad(set_to_none=True)
    return ModelCost(parameter_count(model), fwd, train)
