r"""Channel pruning of MeshGraphNet with a graph metanetwork.

Liu, Wang, Zhang, *Meta Pruning via Graph Metanetworks: A Universal Meta Learning Framework for
Network Pruning*, 2025.

A neural network is a graph: neurons are nodes, weights are edges, and permuting the hidden
neurons of a layer (with their incoming and outgoing weights) leaves its function unchanged.
A graph metanetwork, a GNN on that graph, is equivariant to those permutations by
construction. The paper meta-trains such a metanetwork to map a trained network to one that
is easier to prune, then prunes by a standard criterion and fine-tunes.

Here, for a trained MeshGraphNet:

- the graph: every hidden neuron of every MLP (encoders, processor edge and node MLPs,
  decoder) is a node, with features from its weights (norms of its incoming and outgoing
  weights, its bias) and its mean activation on a few training samples; edges join the
  neurons of consecutive hidden layers of one MLP, weighted by |W|;
- the metanetwork (two rounds of message passing, shared weights) gives every neuron a score
  z = m + r: the standard criterion m (the log of the product of its incoming and outgoing
  weight norms, standardised per layer) plus a learned correction r, zero at initialisation;
- the correction is trained with the surrogate frozen on the surrogate's own training loss
  through gates sigmoid((z - t) / T) that multiply the activations, t half-way between the
  k-th and (k+1)-th largest score of the layer (k the neurons kept) and the temperature T
  annealed from the scores' spread to a hundredth of it, each layer's outgoing weights refitted
  to its gates by least squares in the forward pass (:func:`gated_refit`) as they will be after
  the cut: early on every neuron gets a gradient, at the end the gates are the hard cut itself,
  so the metanetwork learns which channels the surrogate can lose under the exact budget (a soft
  penalty on mean gates trains a network of partial gates that the hard cut then departs from);
  a second output scales each gate (:func:`gate_scale`; one at first), which matters when the
  refit is off;
- pruning keeps the ``(1 - sparsity)`` fraction of neurons with the largest scores in every
  hidden layer (one hidden width for the whole network, so the pruned model is a plain
  MeshGraphNet with ``mlp_hidden`` set and runs faster), refits each pruned layer's outgoing
  weights and bias by least squares to what all its neurons fed forward on a few training
  samples (:func:`refit_outputs`), and fine-tunes every weight for ``finetune_steps``.

``method="magnitude"`` prunes by the standard criterion instead (the product of the norms of a
neuron's incoming and outgoing weights), with the same fine-tuning, as the baseline.

Deviation: the paper meta-trains one metanetwork over a population of networks; a surrogate
user has one network, so the metanetwork is trained on it alone (a per-model search of
channel importances by a permutation-equivariant network of the weights).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import trange

from sim.plugins.registry import PluginError, register_plugin


@dataclass
class HiddenGroup:
    """One hidden layer of an MLP: ``lin_in`` makes it, ``act`` activates it, ``lin_out`` reads it;
    ``mlp`` and ``depth`` (hidden layer index in its MLP) place it."""

    name: str
    lin_in: nn.Linear
    act: nn.Module
    lin_out: nn.Linear
    mlp: str
    depth: int

    @property
    def width(self) -> int:
        return self.lin_in.out_features


def _mlps(net: nn.Module) -> dict[str, nn.Sequential]:
    out = {"node_encoder": net.node_encoder, "edge_encoder": net.edge_encoder, "decoder": net.decoder}
    for i, block in enumerate(net.processor):
        out[f"processor.{i}.edge_mlp"] = block.edge_mlp
        out[f"processor.{i}.node_mlp"] = block.node_mlp
    return out


def hidden_groups(net: nn.Module) -> list[HiddenGroup]:
    """The hidden layers of every MLP of a MeshGraphNet, in order."""
    if not all(hasattr(net, a) for a in ("node_encoder", "edge_encoder", "processor", "decoder")):
        raise PluginError(f"pruning applies to MeshGraphNet models, not {type(net).__name__}")
    if getattr(net, "hyper", None) is not None or getattr(net, "plugins", None) is not None:
        raise PluginError("pruning does not handle layer or hypernetwork plugins yet: prune a plain MeshGraphNet")
    groups = []
    for name, seq in _mlps(net).items():
        linears = [i for i, m in enumerate(seq) if isinstance(m, nn.Linear)]
        for d, (a, b) in enumerate(zip(linears[:-1], linears[1:])):
            groups.append(HiddenGroup(f"{name}.{d}", seq[a], seq[a + 1], seq[b], name, d))
    return groups


def magnitude_scores(groups: list[HiddenGroup]) -> list[torch.Tensor]:
    """The standard criterion: |incoming weights| x |outgoing weights| per neuron."""
    return [g.lin_in.weight.detach().norm(dim=1) * g.lin_out.weight.detach().norm(dim=0) for g in groups]


def neuron_features(groups: list[HiddenGroup], activations: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-neuron input features of the metanetwork (permutation-equivariant per layer): log
    norms of incoming and outgoing weights, bias, log mean activation, depth in its MLP."""
    feats = []
    for g, a in zip(groups, activations):
        w_in, w_out = g.lin_in.weight.detach(), g.lin_out.weight.detach()
        bias = g.lin_in.bias.detach() if g.lin_in.bias is not None else torch.zeros(g.width)
        cols = [torch.log(w_in.norm(dim=1) + 1e-8), torch.log(w_out.norm(dim=0) + 1e-8), bias,
                torch.log(a + 1e-8), torch.full((g.width,), float(g.depth))]
        feats.append(torch.stack(cols, dim=1))
    return feats


class MetaNetwork(nn.Module):
    """A GNN on the hidden-neuron graph: neurons of consecutive hidden layers of one MLP
    exchange messages weighted by |W| (row-normalised); returns per neuron a score correction
    and the log of a scale of its activation (columns 0 and 1)."""

    def __init__(self, in_dim: int = 5, width: int = 32, rounds: int = 2):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.rounds = nn.ModuleList(nn.Sequential(nn.Linear(3 * width, width), nn.SiLU(), nn.Linear(width, width))
                                    for _ in range(rounds))
        self.out = nn.Linear(width, 2)  # score correction, log scale of the kept activation
        nn.init.zeros_(self.out.weight)  # both start at zero: the standard criterion, unscaled
        nn.init.zeros_(self.out.bias)

    def forward(self, groups: list[HiddenGroup], feats: list[torch.Tensor]) -> list[torch.Tensor]:
        h = [self.embed(f) for f in feats]
        # consecutive hidden layers of one MLP: group k -> k + 1 through group k's lin_out
        nxt = {k: k + 1 for k in range(len(groups) - 1) if groups[k + 1].mlp == groups[k].mlp}
        prv = {v: k for k, v in nxt.items()}
        for layer in self.rounds:
            new = []
            for k, g in enumerate(groups):
                up = torch.zeros_like(h[k])
                down = torch.zeros_like(h[k])
                if k in prv:  # from the layer before: weights of its lin_out (this layer's lin_in)
                    w = g.lin_in.weight.detach().abs()
                    up = (w / (w.sum(1, keepdim=True) + 1e-12)) @ h[prv[k]]
                if k in nxt:  # from the layer after: weights of this layer's lin_out
                    w = g.lin_out.weight.detach().abs().T
                    down = (w / (w.sum(1, keepdim=True) + 1e-12)) @ h[nxt[k]]
                new.append(h[k] + layer(torch.cat([h[k], up, down], dim=1)))
            h = new
        return [self.out(x) for x in h]


def magnitude_prior(groups: list[HiddenGroup]) -> list[torch.Tensor]:
    """log of the magnitude criterion, standardised per layer: the metanetwork's starting scores."""
    out = []
    for s in magnitude_scores(groups):
        ls = torch.log(s + 1e-12)
        out.append((ls - ls.mean()) / (ls.std() + 1e-8) if len(ls) > 1 else ls - ls)
    return out


def topk_gates(z: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """Gates sigmoid((z - t) / (temperature x spread of z)), t half-way between the k-th and
    (k+1)-th largest entries of ``z`` (held fixed in the gradient): as the temperature falls they
    become the 0/1 mask of the top k."""
    zd = z.detach()
    if k >= len(z):
        return torch.ones_like(z)
    top = torch.topk(zd, k + 1).values
    t = 0.5 * (top[k - 1] + top[k])
    return torch.sigmoid((z - t) / (temperature * (zd.std() + 1e-8)))


def gate_scale(o: torch.Tensor) -> torch.Tensor:
    """Scales exp(tanh(o) - mean tanh(o)) of a layer's activations: in [e^-2, e^2], geometric mean
    one. The mean is fixed because a common scale of a layer is free under the LayerNorm that
    ends most MLPs of MeshGraphNet: left free, it drifts to tiny values (measured: median 1e-2 to
    1e-5) and the folded weights then stall the fine-tuning."""
    t = torch.tanh(o)
    return torch.exp(t - t.mean())


@dataclass
class PruneResult:
    model: Any
    method: str
    sparsity: float
    hidden_before: int
    hidden_after: int
    params_before: int
    params_after: int
    meta_losses: list[float] = field(default_factory=list)
    finetune_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("method", "sparsity", "hidden_before", "hidden_after", "params_before",
                                               "params_after", "meta_losses", "finetune_losses", "seconds")}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _over_activations(model: Any, groups: list[HiddenGroup], samples: list[Any],
                      visit: Callable[[int, torch.Tensor], None]) -> None:
    """Call ``visit(k, h)`` with the activations h (rows: nodes or edges) of every hidden layer k
    while ``model`` (in eval mode, no gradients) steps on each sample."""
    hooks = [g.act.register_forward_hook(lambda _m, _i, out, k=k: visit(k, out.detach().reshape(-1, out.shape[-1])))
             for k, g in enumerate(groups)]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for smp in samples:
                model.update(smp.state, model.step_inputs(smp))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)


def _mean_activations(model: Any, groups: list[HiddenGroup], samples: list[Any]) -> list[torch.Tensor]:
    sums = [torch.zeros(g.width) for g in groups]
    counts = [0] * len(groups)

    def visit(k: int, h: torch.Tensor) -> None:
        sums[k] += h.abs().sum(0)
        counts[k] += h.shape[0]

    _over_activations(model, groups, samples, visit)
    return [sm / max(c, 1) for sm, c in zip(sums, counts)]


def activation_grams(model: Any, groups: list[HiddenGroup], samples: list[Any]) -> list[torch.Tensor]:
    """Per hidden layer, the Gram matrix [h, 1]^T [h, 1] of its activations h (with a ones column)
    over every node or edge of ``samples``: all the least-squares refits below need."""
    grams = [torch.zeros(g.width + 1, g.width + 1, dtype=torch.float64) for g in groups]

    def visit(k: int, h: torch.Tensor) -> None:
        ha = torch.cat([h.double(), torch.ones(h.shape[0], 1, dtype=torch.float64)], dim=1)
        grams[k] += ha.T @ ha

    _over_activations(model, groups, samples, visit)
    return grams


def refit_outputs(groups: list[HiddenGroup], pruned_groups: list[HiddenGroup], keep: list[torch.Tensor],
                  grams: list[torch.Tensor], ridge: float = 1e-6) -> None:
    """Refit every pruned layer's outgoing weights and bias by least squares so that the kept
    activations reproduce, over the sampled nodes and edges, what all the original activations
    fed forward (He et al. 2017, channel pruning by feature-map reconstruction; the bias absorbs
    the mean of the removed channels). Each layer is refitted against the original activations."""
    for k, (g, pg) in enumerate(zip(groups, pruned_groups)):
        same_next = k + 1 < len(groups) and groups[k + 1].mlp == g.mlp
        rows = keep[k + 1] if same_next else torch.arange(g.lin_out.out_features)
        w = g.lin_out.weight.detach().double()[rows]  # (r, width)
        b = g.lin_out.bias.detach().double()[rows]
        full = torch.cat([w.T, b[None]], dim=0)  # (width + 1, r): [h, 1] @ full = original output
        idx = torch.cat([keep[k], torch.tensor([g.width])])
        gram = grams[k]
        a = gram[idx][:, idx]
        a = a + ridge * gram.diagonal().mean() * torch.eye(len(idx), dtype=a.dtype)
        sol = torch.linalg.solve(a, gram[idx] @ full)  # (k + 1, r)
        with torch.no_grad():
            pg.lin_out.weight.copy_(sol[:-1].T.to(pg.lin_out.weight.dtype))
            pg.lin_out.bias.copy_(sol[-1].to(pg.lin_out.bias.dtype))


def _gated_solution(gram: torch.Tensor, full: torch.Tensor, gate: torch.Tensor,
                    ridge: float) -> torch.Tensor:
    ga = torch.cat([gate.double(), torch.ones(1, dtype=torch.float64)])
    a = ga[:, None] * gram * ga[None, :]
    a = a + ridge * gram.diagonal().mean() * torch.eye(len(ga), dtype=a.dtype)
    return torch.linalg.solve(a, ga[:, None] * (gram @ full))


def gated_refit(gram: torch.Tensor, full: torch.Tensor, gate: torch.Tensor,
                ridge: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Outgoing weights (width, out) and bias of a layer whose activations are multiplied by
    ``gate``, refitted by least squares to the original outputs ``[h, 1] @ full`` (``gram`` of
    [h, 1]); differentiable in the gates. A gate of zero gives its neuron zero weight; at 0/1
    gates this is :func:`refit_outputs`."""
    sol = _gated_solution(gram, full, gate, ridge)
    return sol[:-1].float(), sol[-1].float()


def _pruned_copy(model: Any, groups: list[HiddenGroup], keep: list[torch.Tensor], scale: list[torch.Tensor | None],
                 width: int) -> Any:
    """A new simulator with ``mlp_hidden = width``: kept rows of each hidden layer's lin_in, kept
    columns of its lin_out (times ``scale``: folded gates)."""
    cfg = dict(model.config)
    cfg["network_args"] = {**cfg["network_args"], "mlp_hidden": width}
    new = type(model)(**cfg)  # the simulator rebuilds from its own configuration
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # start from a full copy of everything that is not a hidden layer, then slice the hidden ones
    own = new.state_dict()
    names = {id(m): n for n, m in model.named_modules()}
    sliced: dict[str, torch.Tensor] = {}
    for g, idx, sc in zip(groups, keep, scale):
        n_in, n_out = names[id(g.lin_in)], names[id(g.lin_out)]
        w_in = sliced.get(f"{n_in}.weight", state[f"{n_in}.weight"])
        sliced[f"{n_in}.weight"] = w_in[idx]
        sliced[f"{n_in}.bias"] = sliced.get(f"{n_in}.bias", state[f"{n_in}.bias"])[idx]
        w_out = sliced.get(f"{n_out}.weight", state[f"{n_out}.weight"])[:, idx]
        sliced[f"{n_out}.weight"] = w_out * sc[idx][None] if sc is not None else w_out
    state.update(sliced)
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise PluginError(f"pruning produced {k} of shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
    new.load_state_dict(state)
    return new


def step_cpu_seconds(model: Any, sample: Any, repeats: int = 15) -> float:
    """Median CPU seconds of one update of ``model`` on ``sample`` (after 3 warm-up calls)."""
    inputs = model.step_inputs(sample)
    with torch.no_grad():
        for _ in range(3):
            model.update(sample.state, inputs)
        times = []
        for _ in range(repeats):
            t = time.process_time()
            model.update(sample.state, inputs)
            times.append(time.process_time() - t)
    return float(np.median(times))


def finetune(model: Any, batch: Any, steps: int, lr: float = 1e-4, generator: torch.Generator | None = None,
             progress: bool = False) -> list[float]:
    """``steps`` Adam steps of the model's own training loss on samples ``batch()`` (what
    :func:`prune_model` does after pruning; the same on an unpruned model is the fair control);
    returns the losses."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in trange(steps, desc="fine-tune", disable=not progress):
        loss = model.loss(batch(), generator=generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@register_plugin("meta_pruning", "pruning",
                 paper="Liu, Wang, Zhang 2025, Meta Pruning via Graph Metanetworks: A Universal Meta Learning "
                       "Framework for Network Pruning",
                 summary="a graph metanetwork on the hidden neurons proposes which channels to remove; prune to a "
                         "uniform width, refit the outgoing weights by least squares, fine-tune (sim prune)")
def prune_model(model: Any, dataset: Any, sparsity: float = 0.5, method: str = "meta", meta_steps: int = 50,
                finetune_steps: int = 300, lr: float = 1e-4, meta_lr: float = 3e-4, t_start: float = 1.0,
                t_end: float = 0.01, refit_samples: int = 16, seed: int = 0, progress: bool = False) -> PruneResult:
    """Prune the hidden channels of a trained mesh simulator's MeshGraphNet (see module).

    ``dataset``: training samples (a :class:`~sim.data.windows.MeshStepDataset`);
    ``sparsity``: fraction of each hidden layer removed; ``t_start``/``t_end``: the gates'
    temperature (relative to the spread of a layer's scores) at the first and last metanetwork
    step, annealed geometrically; ``refit_samples``: training samples whose activations the
    outgoing weights of every pruned layer are refitted to (:func:`refit_outputs`; 0: no refit)."""
    if not 0.0 < sparsity < 1.0:
        raise PluginError(f"sparsity must be in (0, 1), got {sparsity}")
    if method not in ("meta", "magnitude"):
        raise PluginError(f"unknown pruning method {method!r} (meta, magnitude)")
    t0 = time.process_time()
    net = model.network
    groups = hidden_groups(net)
    width0 = groups[0].width
    width = max(1, int(round(width0 * (1.0 - sparsity))))
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    def batch() -> Any:
        return dataset[int(rng.integers(len(dataset)))]

    was_training = model.training
    res = PruneResult(model, method, sparsity, width0, width, _count(model), 0)
    grams = activation_grams(model, groups, [batch() for _ in range(refit_samples)]) if refit_samples else None
    if method == "magnitude":
        scores, scales = magnitude_scores(groups), [None] * len(groups)
    else:
        model.eval()
        acts = _mean_activations(model, groups, [batch() for _ in range(4)])
        feats = neuron_features(groups, acts)
        prior = magnitude_prior(groups)
        torch.manual_seed(seed)
        meta = MetaNetwork(feats[0].shape[1])
        opt = torch.optim.Adam(meta.parameters(), lr=meta_lr)
        for p in model.parameters():
            p.requires_grad_(False)
        gates: list[torch.Tensor] = []
        hooks = [g.act.register_forward_hook(lambda _m, _i, out, k=k: out * gates[k]) for k, g in enumerate(groups)]
        refits: list[tuple[torch.Tensor, torch.Tensor]] = []
        if grams is not None:  # every layer's outgoing weights refitted to its gates, as after the cut
            fulls = [torch.cat([g.lin_out.weight.detach().double().T, g.lin_out.bias.detach().double()[None]])
                     for g in groups]
            hooks += [g.lin_out.register_forward_hook(lambda _m, inp, _o, k=k: inp[0] @ refits[k][0] + refits[k][1])
                      for k, g in enumerate(groups)]
        model.train()
        temps = np.geomspace(t_start, t_end, max(meta_steps, 1))
        try:
            for i in trange(meta_steps, desc="metanetwork", disable=not progress):
                out = meta(groups, feats)
                gates[:] = [topk_gates(m + o[:, 0], width, float(temps[i])) * gate_scale(o[:, 1])
                            for m, o in zip(prior, out)]
                if grams is not None:
                    refits[:] = [gated_refit(gm, f, gt) for gm, f, gt in zip(grams, fulls, gates)]
                loss = model.loss(batch(), generator=gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
                res.meta_losses.append(float(loss.detach()))
            with torch.no_grad():
                out = meta(groups, feats)
                scores = [m + o[:, 0] for m, o in zip(prior, out)]
                scales = [topk_gates(zk, width, float(temps[-1])) * gate_scale(o[:, 1]) for zk, o in zip(scores, out)]
        finally:
            for h in hooks:
                h.remove()
            for p in model.parameters():
                p.requires_grad_(True)
    keep = [torch.sort(torch.topk(s, width).indices).values for s in scores]
    pruned = _pruned_copy(model, groups, keep, scales, width)
    if grams is not None:
        refit_outputs(groups, hidden_groups(pruned.network), keep, grams)
    res.params_after = _count(pruned)
    if finetune_steps:
        res.finetune_losses = finetune(pruned, batch, finetune_steps, lr, gen, progress)
    pruned.eval()
    model.train(was_training)
    res.model = pruned
    res.seconds = time.process_time() - t0
    return res


