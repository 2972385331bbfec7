"""Self-tuned hyperparameters (``train.self_tuning``): the input-noise scale (and the weight
decay) adapted during one training run, after MacKay, Vicol, Lorraine, Duvenaud & Grosse,
"Self-Tuning Networks: Bilevel Optimization of Hyperparameters using Structured Best-Response
Functions" (ICLR 2019).

Each hyperparameter lives on an unconstrained axis ``u``; its value is log-uniform in its
declared range, ``lo * (hi / lo) ** sigmoid(u)``, so it can never leave the range. The network's
weights are made a function of the hyperparameters (the structured best-response): every
``nn.Linear`` output is scaled per unit by ``1 + (u' - u) @ U``, with ``U`` (hyperparameters x
units, zero at the start) learned. Two alternating steps:

- training steps: draw ``u' = u + sigma * eps`` (eps standard normal, seeded by (seed, step)),
  train with the hyperparameters at ``u'`` (the noise drawn for the batch is scaled to its value,
  the optimiser's weight decay set to its value) and the scaled layers; the weights and ``U``
  learn (``U``: how the best weights move with the hyperparameters);
- every ``every`` training steps (after the first ``warmup`` steps) one hyperparameter step: the
  family's tuning loss
  (:meth:`~sim.families.base.Family.tuning_loss`: for mesh models the error of the step after
  ``valid_steps`` of the model's own steps from a clean state, on ``data.valid`` when the run
  has it, else on training samples), with the weights at ``u' = u + sigma * eps``, minus
  ``entropy`` times the perturbation's entropy (sum of log sigma), is minimised over ``u`` and
  ``log sigma`` by Adam (``lr``) through ``U``: the loss sees the hyperparameters only through the
  best-response, which is why the weights must depend on them. With ``log_loss`` the logarithm
  of the tuning loss is minimised instead: its gradient is the relative change, so a batch
  whose rollout error is a hundred times another's does not take a hundred times the step.

Options beyond the paper: ``warmup`` holds the hyperparameters for the first training steps
(the responses ``U`` already learn), because a short-horizon tuning loss early in training
measures how well a barely trained model fits, which less input noise always helps, rather
than how its rollouts hold; and ``log_loss`` above.

After a hyperparameter step from ``u`` to ``u_new`` the response ``1 + (u_new - u) @ U`` is folded
into the layers' weights and biases, so the model's own weights are always the best response at
the current hyperparameters: checkpoints hold a plain model (inference needs nothing of this),
and the scaling is centred (exactly 1 at ``u``). The trajectory of values is logged
(``self_tuning.csv``: step, value of each hyperparameter, sigma, tuning loss) and returned.

Deterministic: the perturbations and the tuning batches depend only on (seed, step), and the
state (``u``, ``log sigma``, ``U``, the hyperparameter optimiser) is in the checkpoint, so an
interrupted run resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

HYPERPARAMETERS = ("noise_std", "weight_decay")  # what a run can tune


def to_unit(value: float, lo: float, hi: float) -> float:
    """The unconstrained coordinate ``u`` of ``value`` in the log-uniform range (lo, hi)."""
    p = math.log(value / lo) / math.log(hi / lo)
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def from_unit(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``lo * (hi / lo) ** sigmoid(u)``: strictly inside (lo, hi) for any finite ``u``."""
    return lo * torch.exp(torch.sigmoid(u) * math.log(hi / lo))


class SelfTuning:
    """The hyperparameters of one run and their best-response layers.

    Args:
        model: the network; every ``nn.Linear`` in it gets a response ``U`` and a forward hook.
        hypers: name -> (initial value, lo, hi), names from :data:`HYPERPARAMETERS`.
        every: training steps between hyperparameter steps.
        lr: Adam learning rate of ``u`` and ``log sigma``.
        perturb: initial sigma (unconstrained units).
        entropy: weight of the perturbation's entropy in the tuning objective.
        seed: the run's seed (perturbations are seeded by (seed, step)).
        warmup: training steps before the first hyperparameter step.
        log_loss: minimise the log of the tuning loss (relative changes) instead of the loss.
    """

    def __init__(self, model: nn.Module, hypers: Mapping[str, Sequence[float]], every: int = 10, lr: float = 0.01,
                 perturb: float = 0.5, entropy: float = 1e-3, seed: int = 0, warmup: int = 0,
                 log_loss: bool = False):
        unknown = set(hypers) - set(HYPERPARAMETERS)
        if unknown or not hypers:
            raise ValueError(f"self-tuned hyperparameters are {', '.join(HYPERPARAMETERS)}; got {sorted(hypers)}")
        self.names = list(hypers)
        self.ranges = [(float(hypers[n][1]), float(hypers[n][2])) for n in self.names]
        for n, (lo, hi), init in zip(self.names, self.ranges, (hypers[n][0] for n in self.names)):
            if not 0 < lo < hi or not lo <= init <= hi:
                raise ValueError(f"{n}: need 0 < lo < hi and lo <= init <= hi; got init {init}, range [{lo}, {hi}]")
        device = next(model.parameters()).device
        self.u = torch.tensor([to_unit(float(hypers[n][0]), *r) for n, r in zip(self.names, self.ranges)],
                              dtype=torch.float64, device=device, requires_grad=True)
        self.log_sigma = torch.full((len(self.names),), math.log(perturb), dtype=torch.float64, device=device,
                                    requires_grad=True)
        self.every, self.entropy, self.seed = int(every), float(entropy), int(seed)
        self.warmup, self.log_loss = int(warmup), bool(log_loss)
        self.optimizer = torch.optim.Adam([self.u, self.log_sigma], lr=lr)
        self.layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not self.layers:
            raise ValueError("self-tuning scales the outputs of the model's linear layers; this model has none")
        dtype = next(model.parameters()).dtype
        self.response = [torch.zeros(len(self.names), m.out_features, dtype=dtype, device=device, requires_grad=True)
                         for m in self.layers]
        self.delta: torch.Tensor | None = None  # u' - u of the current forward passes (None: no scaling)
        self.hooks = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.layers)]
        self.history: list[dict[str, float]] = []

    # -- the structured best-response ----------------------------------------------------------
    def _hook(self, i: int) -> Callable[..., torch.Tensor | None]:
        def scale(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor | None:
            if self.delta is None:
                return None
            return out * (1 + self.delta.to(out.dtype) @ self.response[i])
        return scale

    def parameters(self) -> list[torch.Tensor]:
        """The responses ``U``: trained with the model's weights (add them to its optimiser)."""
        return self.response

    def values(self, u: torch.Tensor | None = None) -> dict[str, float]:
        """Hyperparameter values at ``u`` (default: the current ones)."""
        u = self.u if u is None else u
        return {n: float(from_unit(u[i].detach(), *r)) for i, (n, r) in enumerate(zip(self.names, self.ranges))}

    def _eps(self, step: int, salt: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step * 7919 + salt)
        return torch.randn(len(self.names), generator=g, dtype=torch.float64).to(self.u.device)

    def sample(self, step: int) -> dict[str, float]:
        """Before training step ``step``: draw ``u'``, scale the layers to it; its values."""
        with torch.no_grad():
            delta = self.log_sigma.exp() * self._eps(step, 1)
        self.delta = delta
        return self.values(self.u.detach() + delta)

    def due(self, step: int) -> bool:
        """A hyperparameter step after training step ``step`` (counted from 1)?"""
        return step > self.warmup and step % self.every == 0

    def tune(self, step: int, loss_fn: Callable[[], torch.Tensor]) -> float:
        """One hyperparameter step: ``loss_fn()`` (the tuning loss, run under the layers scaled to
        ``u' = u + sigma * eps``) minus the entropy term, minimised over ``u`` and ``log sigma``;
        then the move of ``u`` is folded into the weights. Returns the tuning loss."""
        u_old = self.u.detach().clone()
        self.delta = (self.u + self.log_sigma.exp() * self._eps(step, 2)) - u_old
        try:
            loss = loss_fn()
            objective = (torch.log(loss) if self.log_loss else loss) - self.entropy * self.log_sigma.sum()
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            for r in self.response:  # only u and sigma move here; the responses learn in training steps
                r.grad = None
            self.optimizer.step()
        finally:
            self.delta = None
        self.fold(self.u.detach() - u_old)
        row = {"step": float(step), **self.values(), **{f"sigma_{n}": float(s) for n, s in
                                                        zip(self.names, self.log_sigma.detach().exp())},
               "tuning_loss": float(loss.detach())}
        self.history.append(row)
        return row["tuning_loss"]

    @torch.no_grad()
    def fold(self, du: torch.Tensor) -> None:
        """Scale every layer's weights and bias by ``1 + du @ U``: the best response after ``u``
        moved by ``du`` becomes the model's own weights."""
        for m, r in zip(self.layers, self.response):
            c = 1 + du.to(r.dtype) @ r
            m.weight.mul_(c[:, None])
            if m.bias is not None:
                m.bias.mul_(c)

    def release(self) -> None:
        """Remove the hooks (the model is plain again)."""
        self.delta = None
        for h in self.hooks:
            h.remove()
        self.hooks = []

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"u": self.u.detach().cpu(), "log_sigma": self.log_sigma.detach().cpu(),
                "response": [r.detach().cpu() for r in self.response], "optimizer": self.optimizer.state_dict(),
                "history": [dict(row) for row in self.history]}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        if state is None:
            raise ValueError("the checkpoint holds no self-tuning state (was the run self-tuned?)")
        with torch.no_grad():
            self.u.copy_(state["u"])
            self.log_sigma.copy_(state["log_sigma"])
            for r, saved in zip(self.response, state["response"], strict=True):
                r.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = [dict(row) for row in state["history"]]

    def summary(self) -> dict[str, Any]:
        """Final values (``self_tuned_<name>``) and the logged trajectory."""
        return {**{f"self_tuned_{n}": v for n, v in self.values().items()},
                "self_tuning_history": [dict(row) for row in self.history]}


def tuning_batches(dataset: Any, collate: Callable[[list[Any], int], Any], batch_size: int, seed: int
                   ) -> Callable[[int], Any]:
    """``batch(step)``: a batch of ``dataset`` drawn by (seed, step) for the tuning loss."""
    n = len(dataset)

    def batch(step: int) -> Any:
        rng = np.random.default_rng([seed, step, 17])
        idx = rng.choice(n, size=min(batch_size, n), replace=False)
        return collate([dataset[int(i)] for i in idx], step)
    return batch
