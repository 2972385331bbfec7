r"""Harmful training data: which training trajectories raise the validation rollout error.

Terashita, Ohashi, Nagano, Hara, *Influence Estimation for Generative Adversarial Networks*
("data cleansing for GANs"), ICLR 2021, on the SGD-influence of Hara, Nitanda, Maehara,
*Data Cleansing for Models Trained with SGD*, NeurIPS 2019.

SGD-influence estimates how the parameters at the end of training would change if one
training instance had been left out, by linearising the SGD trajectory around the steps that
used it: leaving out instance i at step t moves theta_{t+1} by +eta_t grad l_i(theta_t), and
each later step carries that change through (I - eta_s H_s). The GAN paper's point is to
judge harm by the downstream metric, not by the training loss; here the metric is the
validation *rollout* error (a short differentiable rollout on validation trajectories with
their true boundary values), so the estimate is

    Delta L_val(-i) = sum_{t: i used at t} eta_t u_{t+1} . grad l_i(theta_t),
    u_T = grad L_val(theta_T),  u_t = u_{t+1} - eta_t H_t u_{t+1}

computed backwards with one Hessian-vector product per step (Hara et al.'s reverse
algorithm). Negative Delta L_val: removing the instance lowers the validation error
(harmful).

Deviations: the training run itself is not stored, so the estimate replays a short SGD
segment from the trained checkpoint (``samples_per_entry`` one-step samples of every training
trajectory, in random order, batch size 1, learning rate ``lr``) and propagates through it;
the per-sample loss is the model's noise-free one-step loss; a trajectory's score is the sum
over its sampled steps scaled to all its steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sim.plugins.registry import register_plugin


@dataclass
class HarmfulResult:
    """``scores[name]``: the estimated change of the validation rollout error (mean squared, in
    the fields' units) if that training trajectory were removed; most negative = most harmful."""

    scores: dict[str, float]
    valid_error: float
    samples: list[tuple[str, int, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def ranking(self) -> list[tuple[str, float]]:
        """Trajectories from most harmful (most negative change) to most helpful."""
        return sorted(self.scores.items(), key=lambda kv: kv[1])

    def to_dict(self) -> dict[str, Any]:
        return {"valid_error": self.valid_error, "ranking": [{"entry": n, "delta_valid_error": s}
                                                             for n, s in self.ranking()],
                "samples": [{"entry": n, "step": t, "delta_valid_error": s} for n, t, s in self.samples],
                **self.extra}


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def _flat(tensors: list[torch.Tensor | None], like: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(t if t is not None else torch.zeros_like(p)).reshape(-1) for t, p in zip(tensors, like)])


def _assign(params: list[torch.Tensor], vec: torch.Tensor) -> None:
    with torch.no_grad():
        i = 0
        for p in params:
            n = p.numel()
            p.copy_(vec[i:i + n].view_as(p))
            i += n


def validation_starts(model: Any, path: str | Path, steps: int, entries: int | None = None) -> list[Any]:
    """The first sample (with ``steps`` frames ahead) of each of the first ``entries``
    trajectories of the store ``path``, as the model reads them: the starts of
    :func:`valid_rollout_error`'s rollouts."""
    from sim.data.windows import MeshStepDataset
    from sim.mesh import Store

    cfg = model.config
    with Store(path) as store:
        names = store.names()[:entries] if entries else store.names()
    ds = MeshStepDataset(path, cfg["fields"], entries=names, scalars=cfg["scalars"],
                         history=int(cfg.get("history", 1)), horizon=steps)
    first: dict[str, int] = {}
    for k, (name, _) in enumerate(ds.index):
        first.setdefault(name, k)
    return [ds[k] for k in first.values()]


def valid_rollout_error(model: Any, samples: list[Any], steps: int) -> torch.Tensor:
    """Mean squared error of ``steps``-step rollouts from each validation sample (with its true
    boundary values), over the predicted nodes and steps; differentiable in the parameters."""

    def update(*args: Any) -> torch.Tensor:
        return model.output_normalizer.inverse(model(*args))

    if getattr(model, "bundle", 1) != 1:
        from sim.errors import SimError

        raise SimError("the validation rollout error of harmful-sample ranking steps one frame per call; this model "
                       f"bundles {model.bundle} frames")
    total = 0.0
    for s in samples:
        frames = [s.target, *s.future.unbind(1)] if getattr(s, "future", None) is not None else [s.target]
        state, inputs = s.state, model.step_inputs(s)
        mask = model.predicted_mask(s.node_type)
        err = 0.0
        for j in range(min(steps, len(frames))):
            state, inputs = model.advance(state, inputs, boundary=frames[j], update=update)
            err = err + ((state - frames[j]) ** 2)[mask].mean()
        total = total + err / min(steps, len(frames))
    return total / len(samples)


@register_plugin("harmful_samples", "diagnostic",
                 paper="Terashita, Ohashi, Nagano, Hara 2021, Influence Estimation for Generative Adversarial Networks "
                       "(ICLR); Hara et al. 2019, Data Cleansing for Models Trained with SGD (NeurIPS)",
                 summary="ranks training trajectories by their estimated effect on the validation rollout error "
                         "(SGD-influence)")
def harmful_samples(model: Any, train: str | Path, valid: str | Path, samples_per_entry: int = 2,
                    valid_entries: int = 4, valid_steps: int = 10, lr: float = 1e-3, seed: int = 0,
                    progress: bool = False) -> HarmfulResult:
    """SGD-influence of every training trajectory of ``train`` on the rollout error over
    ``valid_steps`` steps of the first ``valid_entries`` trajectories of ``valid`` (see module).

    ``model``: a mesh time-stepping simulator (:class:`~sim.models.mesh.simulator.MeshSimulator`).
    Cost: 2 x samples_per_entry x trajectories one-step gradients plus as many Hessian-vector
    products, and one copy of the parameters per replayed step in memory."""
    from tqdm import tqdm

    from sim.data.windows import MeshStepDataset

    cfg = model.config
    ds = MeshStepDataset(train, cfg["fields"], scalars=cfg["scalars"], history=int(cfg.get("history", 1)))
    vsamples = validation_starts(model, valid, valid_steps, valid_entries)

    rng = np.random.default_rng(seed)
    by_entry: dict[str, list[int]] = {}
    for k, (name, _) in enumerate(ds.index):
        by_entry.setdefault(name, []).append(k)
    order: list[int] = []
    for name, ks in by_entry.items():
        order += list(rng.choice(ks, size=min(samples_per_entry, len(ks)), replace=False))
    order = [int(k) for k in rng.permutation(order)]

    was_training = model.training
    model.eval()  # noise-free loss, normalisers frozen
    params = _params(model)
    theta0 = torch.cat([p.detach().reshape(-1) for p in params]).clone()
    bar = tqdm(total=2 * len(order) + 1, desc="influence", unit="grad", disable=not progress)
    try:
        # forward replay: theta_t for every step
        thetas = []
        for k in order:
            thetas.append(torch.cat([p.detach().reshape(-1) for p in params]).clone())
            g = torch.autograd.grad(model.loss(ds[k]), params, allow_unused=True)
            _assign(params, thetas[-1] - lr * _flat(list(g), params))
            bar.update(1)
        loss_val = valid_rollout_error(model, vsamples, valid_steps)
        u = _flat(list(torch.autograd.grad(loss_val, params, allow_unused=True)), params).detach()
        bar.update(1)
        per_sample = np.zeros(len(order))
        for t in reversed(range(len(order))):
            _assign(params, thetas[t])
            grads = torch.autograd.grad(model.loss(ds[order[t]]), params, create_graph=True, allow_unused=True)
            g = _flat(list(grads), params)
            dot = torch.dot(g, u)
            per_sample[t] = lr * float(dot.detach())
            hv = torch.autograd.grad(dot, params, allow_unused=True)
            u = u - lr * _flat(list(hv), params).detach()
            bar.update(1)
        _assign(params, theta0)
        valid_error = float(valid_rollout_error(model, vsamples, valid_steps).detach())
    finally:
        _assign(params, theta0)
        model.train(was_training)
        bar.close()
    scores = {name: 0.0 for name in by_entry}
    samples = []
    sampled = {name: 0 for name in by_entry}
    for t, k in enumerate(order):
        name, step = ds.index[k]
        sampled[name] += 1
        samples.append((name, int(step), float(per_sample[t])))
    for name, step, s in samples:
        scores[name] += s * len(by_entry[name]) / sampled[name]
    return HarmfulResult(scores, valid_error, samples,
                         {"samples_per_entry": samples_per_entry, "valid_entries": len(vsamples),
                          "valid_steps": valid_steps, "lr": lr, "seed": seed,
                          "parameters": int(theta0.numel()), "replayed_steps": len(order)})


__all__ = ["HarmfulResult", "harmful_samples", "valid_rollout_error", "validation_starts"]
