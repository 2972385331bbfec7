"""Training loop of PROSE (:mod:`sim.models.prose`): AdamW, warmup + inverse square root decay,
gradient clipping, a step or wall-time budget, progress bar and self-describing checkpoints.

.. math:: \\eta_s = \\eta \\min\\Big(\\frac{s + 1}{W}, \\sqrt{\\frac{W}{s + 1}}\\Big)

Determinism: the samples of step ``s`` and the symbol / data noise drawn for them depend
only on (seed, s).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from sim.errors import SimError
from sim.models.prose import PROSE, ODEWindows, PROSECollator, prose_loss
from sim.train.checkpoint import save_checkpoint


@dataclass
class PROSETrainConfig:
    """Args:
        batch_size: samples per step.
        lr: peak learning rate (reached after ``warmup_steps``).
        warmup_steps: linear warmup, then ``lr * sqrt(warmup / step)``.
        weight_decay: AdamW decoupled weight decay.
        grad_clip: maximal gradient norm (0: off).
        data_weight: ``w`` of ``w * relative L2^2 + cross-entropy`` (PROSE: 6).
        p_delete, p_insert: symbol-input noise per sample (PROSE: 0.15 each).
        p_drop: probability of training a sample without any symbol guess.
        data_noise: additive Gaussian noise on the observed window (fraction of its RMS).
        steps: training steps (None: until ``max_seconds``).
        max_seconds: time budget (None: until ``steps``).
        clock: ``wall`` or ``cpu`` (this process's CPU time: a budget that does not shrink when
            other jobs share the machine).
        seed: batches and noise.
        checkpoint: path of the checkpoint written every ``checkpoint_every`` steps and at the end.
        device: ``auto``, ``cpu``, ``cuda``...
    """

    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 300
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    data_weight: float = 6.0
    p_delete: float = 0.15
    p_insert: float = 0.15
    p_drop: float = 0.0
    data_noise: float = 0.0
    steps: int | None = 10_000
    max_seconds: float | None = None
    clock: str = "wall"
    seed: int = 0
    checkpoint: str | None = None
    checkpoint_every: int = 2000
    log_every: int = 50
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.steps is None and self.max_seconds is None:
            raise SimError("PROSE training needs steps or max_seconds")
        if self.clock not in ("wall", "cpu"):
            raise SimError(f"clock must be 'wall' or 'cpu'; got {self.clock!r}")


def inverse_sqrt(step: int, warmup: int) -> float:
    w = max(1, warmup)
    return min((step + 1) / w, math.sqrt(w / (step + 1)))


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def train_prose(model: PROSE, train_set: ODEWindows, cfg: PROSETrainConfig, progress: bool | None = None,
                on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train ``model`` in place; returns ``{steps, seconds, wall_seconds, first_loss, final_loss, history}``
    (``seconds`` on ``cfg.clock``; history: one row per ``log_every`` steps with the mean loss and its
    parts). ``on_step(step, seconds)`` is called after every step (e.g. to keep a snapshot)."""
    from tqdm import tqdm

    device = _device(cfg.device)
    model.to(device).train()
    torch.manual_seed(cfg.seed)
    collator = PROSECollator(model.vocab, model.max_dim, train_set.input_points,
                             symbols="noisy" if model.symbol_input else "off", p_delete=cfg.p_delete,
                             p_insert=cfg.p_insert, p_drop=cfg.p_drop, data_noise=cfg.data_noise,
                             pool=train_set.term_pool(), seed=cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: inverse_sqrt(s, cfg.warmup_steps))
    n = len(train_set)
    perms: dict[int, np.ndarray] = {}

    def batch_indices(step: int) -> list[int]:
        out = []
        for pos in range(step * cfg.batch_size, (step + 1) * cfg.batch_size):
            epoch, i = divmod(pos, n)
            if epoch not in perms:
                perms.clear()
                perms[epoch] = np.random.default_rng([cfg.seed, epoch]).permutation(n)
            out.append(int(perms[epoch][i]))
        return out

    def checkpoint(at: int) -> None:
        if cfg.checkpoint:
            save_checkpoint(cfg.checkpoint, model, {"config": dataclasses.asdict(cfg), "step": at,
                                                    "optimizer": optimizer.state_dict()})

    bar = tqdm(total=cfg.steps, desc="train prose", unit="step",
               disable=(not progress) if progress is not None else None)
    history: list[dict[str, float]] = []
    window: list[dict[str, float]] = []
    losses: list[float] = []
    clock = time.process_time if cfg.clock == "cpu" else time.perf_counter
    t0, wall0 = clock(), time.perf_counter()
    step = 0
    try:
        while cfg.steps is None or step < cfg.steps:
            collator.calls = step  # noise of step s depends on (seed, s) only
            batch = collator([train_set[i] for i in batch_indices(step)]).to(device)
            loss, parts = prose_loss(model, batch, cfg.data_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            value = float(loss.detach())
            if not math.isfinite(value):
                raise SimError(f"the PROSE training loss became {value} at step {step}; lower the learning rate")
            losses.append(value)
            window.append({"loss": value, **parts})
            bar.update(1)
            if step % cfg.log_every == 0:
                row = {"step": step, "seconds": clock() - t0, "lr": scheduler.get_last_lr()[0],
                       **{k: float(np.mean([w[k] for w in window])) for k in window[0]}}
                history.append(row)
                window.clear()
                bar.set_postfix(loss=f"{row['loss']:.4g}", data=f"{row['data_rel_l2_sq']:.3g}")
            if cfg.checkpoint and step % cfg.checkpoint_every == 0:
                checkpoint(step)
            if on_step is not None:
                on_step(step, clock() - t0)
            if cfg.max_seconds is not None and clock() - t0 > cfg.max_seconds:
                break
        checkpoint(step)
    finally:
        bar.close()
    return {"steps": step, "seconds": clock() - t0, "wall_seconds": time.perf_counter() - wall0,
            "first_loss": losses[0] if losses else None,
            "final_loss": float(np.mean(losses[-20:])) if losses else None, "history": history,
            "threads": torch.get_num_threads()}
