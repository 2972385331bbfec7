"""Coreset augmentation (``train.augment_coreset``): input noise on a weighted coreset of the
samples instead of on every sample, after Liu & Mirzasoleiman, "Data-Efficient Augmentation
for Training Neural Networks" (NeurIPS 2022).

Every ``every`` training steps the trainer chooses, among the samples the next ``every``
steps will train on (the batches are a function of (seed, step), so they are known ahead),
a fraction ``fraction`` of them by greedy maximisation of the facility-location function

    F(S) = sum_i max_{j in S} sim(i, j),   sim(i, j) = max distance - |g_i - g_j|

on a per-sample gradient proxy g (:func:`gradient_proxy`). Each chosen sample represents the
samples nearest to it (its weight: how many); until the next selection the chosen samples
get the model's input noise and carry their weight, normalised to average 1 over the
coreset, in the loss; the others train clean with weight 1.

Why the upcoming samples and not all of them: a mesh dataset indexes (trajectory, time)
windows, tens of thousands of them (the medium cylinder set: ~30,000), and a proxy needs one
forward pass per sample; the samples of the next ``every`` steps are a uniformly random
subset (the paper's selection from random subsets of a large dataset), every trained sample
has a defined status, exactly ``fraction`` of them are noised, and the proxy cost is one
gradient-free forward pass per trained sample (less when an epoch is shorter than a period
and samples repeat). Choosing whole trajectories instead would leave a handful of items to
choose from and ignore how a flow's state changes over time. More than :data:`MAX_POOL`
candidates are split into chunks (in their random order), each with its own coreset.

The proxy is the gradient of a sample's loss with respect to the model's output, i.e. the
(normalised) prediction minus target on the nodes the loss counts, taken with clean input by
the current model (the paper's last-layer gradient approximation); it is pooled per output
channel into its mean and standard deviation over the sample's nodes (the mean is, up to a
constant, the gradient with respect to the output layer's bias), so that samples on meshes of
different sizes compare.

Selection uses no random numbers, so an interrupted run resumed from its checkpoint (which
holds the current coreset) continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

MAX_POOL = 2048  # most candidates one facility-location problem holds (a dense MAX_POOL^2 matrix)


def similarity(features: np.ndarray) -> np.ndarray:
    """(n, n) similarities ``max distance - distance`` (Euclidean) of the rows of ``features``:
    non-negative, so the facility-location function is monotone submodular with F({}) = 0."""
    from scipy.spatial.distance import cdist

    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    d = cdist(x, x)
    return d.max() - d if d.size else d


def facility_value(sim: np.ndarray, chosen: Sequence[int]) -> float:
    """F(S) = sum_i max_{j in S} sim[i, j] (0 for the empty set)."""
    chosen = list(chosen)
    return float(sim[:, chosen].max(axis=1).sum()) if chosen else 0.0


def facility_location(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy (lazy) maximisation of the facility-location function over the rows of
    ``features`` (n, d): the ``k`` chosen row indices, in the order chosen, and their weights,
    the number of rows nearest to each (the rows it represents; they sum to n). Greedy is
    within 1 - 1/e of the best set of k; lazy evaluation gives the same set with far fewer
    gain evaluations (a gain can only shrink as the set grows)."""
    n = len(features)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n} (the number of samples), got {k}")
    sim = similarity(features)
    best = np.zeros(n)  # max similarity of each row to the chosen set
    heap = [(-float(sim[:, j].sum()), j) for j in range(n)]  # upper bounds of the gains
    heapq.heapify(heap)
    chosen: list[int] = []
    while len(chosen) < k:
        _, j = heapq.heappop(heap)
        gain = float(np.maximum(sim[:, j] - best, 0.0).sum())
        if not heap or gain >= -heap[0][0]:  # still the best once re-evaluated
            chosen.append(j)
            best = np.maximum(best, sim[:, j])
        else:
            heapq.heappush(heap, (-gain, j))
    idx = np.asarray(chosen, dtype=np.int64)
    nearest = np.argmax(sim[:, idx], axis=1)
    nearest[idx] = np.arange(k)  # a chosen row represents itself (ties with duplicates)
    return idx, np.bincount(nearest, minlength=k).astype(np.int64)


def gradient_proxy(residual: torch.Tensor, graph: torch.Tensor | None = None, num_graphs: int = 1,
                   mask: torch.Tensor | None = None) -> np.ndarray:
    """Per-sample gradient proxies (G, 2C) from the loss's residual (N, C) (prediction minus
    target in the loss's units: the gradient of a squared-error loss with respect to the
    output, up to a constant): per output channel the mean and the standard deviation over
    each sample's nodes, counting the nodes of ``mask`` (N,) (default: all). ``graph`` (N,):
    the sample of each node (default: one sample)."""
    r = residual.detach().to(torch.float64).reshape(residual.shape[0], -1)
    n = r.shape[0]
    g = torch.zeros(n, dtype=torch.long, device=r.device) if graph is None else graph.to(r.device).long()
    keep = torch.ones(n, dtype=torch.bool, device=r.device) if mask is None else mask.to(r.device).bool()
    r, g = r[keep], g[keep]
    count = torch.zeros(num_graphs, dtype=torch.float64, device=r.device).index_add_(
        0, g, torch.ones_like(g, dtype=torch.float64)).clamp(min=1.0)[:, None]
    total = torch.zeros((num_graphs, r.shape[1]), dtype=torch.float64, device=r.device)
    mean = total.index_add(0, g, r) / count
    var = total.index_add(0, g, (r - mean[g]) ** 2) / count
    return torch.cat([mean, var.sqrt()], dim=1).cpu().numpy()


class CoresetAugmentation:
    """The trainer's side of coreset augmentation: which samples of the current period get
    input noise and with which loss weight, re-chosen every ``every`` steps.

    ``residual(model, batch) -> (residual (N, C), mask (N,))``: the loss's clean residual of a
    batch (the family's ``loss_residual``, called with the model in eval mode: no noise)."""

    def __init__(self, fraction: float, every: int, residual: Callable[[Any, Any], tuple[torch.Tensor, Any]],
                 batch_size: int = 1, clock: Callable[[], float] = time.perf_counter, max_pool: int = MAX_POOL):
        if not 0 < fraction <= 1 or every < 1:
            raise ValueError(f"fraction must be in (0, 1] and every >= 1, got {fraction} and {every}")
        self.fraction, self.every, self.residual = float(fraction), int(every), residual
        self.batch_size, self.clock, self.max_pool = max(1, int(batch_size)), clock, int(max_pool)
        self.period = -1  # the period (step // every) the current coreset was chosen for
        self.weights: dict[int, float] = {}  # dataset index -> loss weight of the noised samples
        self.selections, self.seconds, self.seen, self.noised = 0, 0.0, 0, 0

    # -- selection ---------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        return step // self.every != self.period

    def upcoming(self, step: int, global_batch: Callable[[int], list[int]]) -> list[int]:
        """The distinct samples of the steps from ``step`` to the end of its period, in the order
        they are drawn."""
        end = (step // self.every + 1) * self.every
        return list(dict.fromkeys(i for s in range(step, end) for i in global_batch(s)))

    def select(self, candidates: Sequence[int], features: np.ndarray) -> dict[int, float]:
        """The coreset of ``candidates`` (dataset indices) with their proxies ``features``:
        index -> weight (how many candidates each represents, normalised to average 1 over the
        coreset); chunks of at most ``max_pool`` candidates are chosen from separately."""
        chosen: dict[int, float] = {}
        parts = max(1, math.ceil(len(candidates) / self.max_pool))
        for part in np.array_split(np.arange(len(candidates)), parts):
            k = min(len(part), max(1, math.floor(self.fraction * len(part) + 0.5)))
            idx, counts = facility_location(features[part], k)
            for j, c in zip(idx, counts):
                chosen[int(candidates[part[j]])] = float(c) * k / len(part)
        return chosen

    @torch.no_grad()
    def proxies(self, model: torch.nn.Module, dataset: Any, collate: Callable[[list[Any], int], Any],
                indices: Sequence[int], step: int, device: torch.device) -> np.ndarray:
        """Gradient proxies (len(indices), 2C) of the samples ``indices`` under ``model`` (clean
        input: eval mode, which also leaves the normalisers' statistics alone)."""
        was = model.training
        model.eval()
        try:
            out = []
            for a in range(0, len(indices), self.batch_size):
                chunk = list(indices[a:a + self.batch_size])
                batch = collate([dataset[i] for i in chunk], step).to(device)
                residual, mask = self.residual(model, batch)
                out.append(gradient_proxy(residual, getattr(batch, "batch", None), len(chunk), mask))
        finally:
            model.train(was)
        return np.concatenate(out)

    def prepare(self, step: int, model: torch.nn.Module, dataset: Any, collate: Callable[[list[Any], int], Any],
                global_batch: Callable[[int], list[int]], device: torch.device) -> None:
        """Choose the coreset of ``step``'s period when it has not been chosen yet."""
        if not self.due(step):
            return
        t = self.clock()
        candidates = self.upcoming(step, global_batch)
        self.weights = self.select(candidates, self.proxies(model, dataset, collate, candidates, step, device))
        self.period = step // self.every
        self.selections += 1
        self.seconds += self.clock() - t

    # -- use ---------------------------------------------------------------------------------
    def mark(self, batch: Any, indices: Sequence[int]) -> None:
        """Attach to ``batch`` (the samples ``indices``, in batch order) the per-node
        ``noise_scale`` (1: noised, 0: clean) and ``loss_weight`` the families' losses read."""
        on = torch.tensor([float(i in self.weights) for i in indices], dtype=torch.float32)
        w = torch.tensor([self.weights.get(int(i), 1.0) for i in indices], dtype=torch.float32)
        graph = getattr(batch, "batch", None)
        if graph is None:
            graph = torch.zeros(int(batch.num_nodes), dtype=torch.long)
        graph = graph.cpu()
        device = batch.node_type.device if hasattr(batch, "node_type") else graph.device
        batch.noise_scale = on[graph].to(device)
        batch.loss_weight = w[graph].to(device)
        self.seen += len(indices)
        self.noised += int(on.sum())

    def summary(self) -> dict[str, Any]:
        return {"coreset_selections": self.selections, "coreset_seconds": self.seconds,
                "noised_fraction": self.noised / self.seen if self.seen else None}

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        keys = sorted(self.weights)
        return {"period": self.period, "indices": torch.tensor(keys, dtype=torch.long),
                "weights": torch.tensor([self.weights[k] for k in keys], dtype=torch.float64),
                "selections": self.selections, "seconds": self.seconds, "seen": self.seen, "noised": self.noised}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.period = int(state["period"])
        self.weights = {int(i): float(w) for i, w in zip(state["indices"].tolist(), state["weights"].tolist())}
        self.selections, self.seconds = int(state["selections"]), float(state["seconds"])
        self.seen, self.noised = int(state["seen"]), int(state["noised"])
