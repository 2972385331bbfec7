r"""Local Lipschitz constant of a model's one-step map (after Shi, Wang, Zhang, Kolter, Hsieh,
NeurIPS 2022, "Efficiently Computing Local Lipschitz Constants of Neural Networks via
Bound Propagation").

For a map f and the box :math:`B = \{x : |x - x_0| \le \varepsilon\}` the local
:math:`\ell_\infty` Lipschitz constant of output i is

.. math::
    L_i = \sup_{x \in B} \lVert \partial f_i(x) \rVert_1
        \quad (\text{over the Clarke generalised Jacobian } \partial f),

and :math:`L = \max_i L_i` bounds :math:`\lVert f(x) - f(y) \rVert_\infty \le L
\lVert x - y \rVert_\infty` for x, y in B. The upper bound runs the model on an
:class:`~sim.verify.Interval` box; two methods:

- ``"crown"`` (default): CROWN-tightened enclosures of every pre-activation inside the
  MLPs (ReLUs whose sign is fixed over B contribute their exact derivative), then rows of
  the Jacobian propagated backwards through the Clarke derivative enclosures; cost grows
  with the number of output rows. ``"ibp"``: the same without CROWN.
- ``"centred"``: the forward-mode centred form (Jacobian enclosure carried forward,
  mean-value tightening of every enclosure); much tighter for smooth activations (tanh,
  GELU), cost grows with the number of perturbed inputs.

Message passing needs no special rule, since gathers and scatters are linear maps. On a
mesh, each output node is bounded on its receptive-field subgraph when the model declares
``receptive_hops``. The lower bound is the largest :math:`\lVert \nabla f_i(x) \rVert_1`
found at sampled points of B (its centre, random corners and random interior points),
computed by autograd.

Guarantees: ``lower <= true L <= upper`` row by row (the upper bound is sound in exact
arithmetic; it is computed in float64), and for an affine map both equal
:math:`\max_i \lVert W_i \rVert_1`.

Our deviations: the paper bounds the Jacobian graph itself with linear relaxations
(CROWN on the backward pass) and tightens it by branch and bound; we use CROWN for the
forward pre-activation bounds and interval (midpoint-radius) arithmetic for the Jacobian,
without branching. That is sound and cheap, but not relational: a Jacobian enclosure's
radius is carried through |W| rather than W, so it grows geometrically with depth. The
bound is tight for MLP blocks and small boxes, and converges linearly to the exact
Jacobian norm as the box shrinks; for a deep trained message-passing stack (6 MeshGraphNet
blocks with LayerNorms) it is astronomically loose even for tiny boxes (measured: 1e52 at
eps = 1e-7 against a sampled 1.02), i.e. not informative there. Supported operations are those of
:mod:`~sim.verify` (MLP and message-passing blocks; attention's
softmax is not supported).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sim.plugins.registry import PluginError, register_plugin
from sim.verify import BoundError, Interval, jacobian_rows, unstable_fraction

METHODS = ("centred", "crown", "ibp")


@dataclass
class LipschitzResult:
    """Bounds of the local l_inf Lipschitz constant: ``upper`` / ``lower`` (max over rows) and
    per row (``rows_upper``, ``rows_lower``, for output indices ``rows``)."""

    upper: float
    lower: float
    rows_upper: np.ndarray
    rows_lower: np.ndarray
    rows: np.ndarray
    eps: float
    method: str
    unstable_relu_fraction: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"upper": self.upper, "lower": self.lower, "ratio": self.upper / self.lower if self.lower > 0 else None,
                "eps": self.eps, "method": self.method, "unstable_relu_fraction": self.unstable_relu_fraction,
                "seconds": self.seconds, "rows": [int(r) for r in self.rows],
                "rows_upper": [float(v) for v in self.rows_upper], "rows_lower": [float(v) for v in self.rows_lower],
                **self.extra}


def sampled_lower_bound(fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, radius: torch.Tensor,
                        rows: torch.Tensor, samples: int = 32, generator: torch.Generator | None = None
                        ) -> torch.Tensor:
    """max over sampled x in the box of ||d f_row / d x||_1 (perturbed entries only), per row (R,)."""
    mask = (radius > 0).to(x0.dtype)
    best = torch.zeros(rows.numel(), dtype=x0.dtype)
    eye = torch.eye(rows.numel(), dtype=x0.dtype, device=x0.device)
    for k in range(samples + 1):
        if k == 0:
            u = torch.zeros_like(x0)
        elif k % 2:  # a random corner
            u = torch.randint(0, 2, x0.shape, generator=generator).to(x0) * 2 - 1
        else:
            u = torch.rand(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device) * 2 - 1
        x = (x0 + u * radius).detach().requires_grad_(True)
        y = fn(x).reshape(-1)[rows]
        (jac,) = torch.autograd.grad(y, x, grad_outputs=eye, is_grads_batched=True)
        norms = (jac.abs() * mask).reshape(rows.numel(), -1).sum(1).detach().cpu()
        best = torch.maximum(best, norms)
    return best


@register_plugin("local_lipschitz", "diagnostic",
                 paper="Shi et al. 2022, Efficiently Computing Local Lipschitz Constants of Neural Networks via "
                       "Bound Propagation (NeurIPS)",
                 summary="sound upper bound (bound propagation, Clarke Jacobian) and sampled lower bound of the "
                         "local l_inf Lipschitz constant")
def local_lipschitz(fn: Callable[[Any], Any], x0: torch.Tensor, eps: float | torch.Tensor,
                    rows: Sequence[int] | torch.Tensor | None = None, method: str = "crown", samples: int = 32,
                    seed: int = 0, rows_per_pass: int = 8) -> LipschitzResult:
    """Bounds of the local l_inf Lipschitz constant of ``fn`` on the box ``x0 ± eps``.

    Args:
        fn: the map; it is called with a tensor and with an :class:`Interval` (run it in the
            dtype of ``x0``, float64 recommended).
        x0: the centre of the box.
        eps: box radius, a number or a tensor broadcastable to ``x0`` (0 = not perturbed;
            the norm runs over perturbed entries).
        rows: flat indices of the outputs to bound (default: all).
        method: ``"centred"`` (forward-mode Jacobian enclosure with mean-value tightening;
            memory grows with the number of perturbed entries), ``"crown"`` (CROWN / interval
            forward bounds and a backward interval Jacobian pass; memory grows with the rows)
            or ``"ibp"`` (intervals only).
        samples: sampled points for the lower bound.
        rows_per_pass: output rows per backward pass (``crown``, ``ibp``).
    """
    if method not in METHODS:
        raise PluginError(f"local_lipschitz: method must be one of {METHODS}, not {method!r}")
    t0 = time.perf_counter()
    radius = torch.as_tensor(eps, dtype=x0.dtype, device=x0.device).expand_as(x0).clone()
    with torch.no_grad():
        y0 = fn(x0)
    rows_t = torch.arange(y0.numel()) if rows is None else torch.as_tensor(rows, dtype=torch.long).reshape(-1)
    if rows_t.numel() == 0 or int(rows_t.max()) >= y0.numel() or int(rows_t.min()) < 0:
        raise PluginError(f"local_lipschitz: rows must be indices into the {y0.numel()} outputs")
    with torch.no_grad():
        box = Interval.box(x0.detach(), radius, mode=method)
        out = fn(box)
        if not isinstance(out, Interval):
            raise BoundError("the map does not depend on its input")
        if method == "centred":
            jlo, jhi = out.jacobian()
            mag = torch.maximum(jlo.abs(), jhi.abs()).reshape(out.numel(), -1)[rows_t.to(x0.device)]
            upper = mag.sum(1).cpu()
            frac = float("nan")  # no tape to count ReLUs on
        else:
            mask = (radius > 0).to(x0.dtype)
            uppers = []
            for r0 in range(0, rows_t.numel(), rows_per_pass):
                glo, ghi = jacobian_rows(out, rows_t[r0:r0 + rows_per_pass].to(x0.device), box)
                mag = torch.maximum(glo.abs(), ghi.abs()) * mask
                uppers.append(mag.reshape(mag.shape[0], -1).sum(1).cpu())
            upper = torch.cat(uppers)
            frac = unstable_fraction(out)
        del out, box
    gen = torch.Generator().manual_seed(seed)
    lower = torch.cat([sampled_lower_bound(fn, x0, radius, rows_t[r0:r0 + rows_per_pass].to(x0.device), samples, gen)
                       for r0 in range(0, rows_t.numel(), rows_per_pass)])
    eps_value = float(radius.max())
    return LipschitzResult(float(upper.max()), float(lower.max()), upper.numpy(), lower.numpy(), rows_t.numpy(),
                           eps_value, method, frac, time.perf_counter() - t0)


def mesh_lipschitz(simulator: nn.Module, graph: Any, eps: float = 1e-3, nodes: int = 8, seed: int = 0,
                   method: str = "crown", samples: int = 16, map: str = "step", rows_per_pass: int = 4,
                   max_symbols: int = 4000, progress: bool = False) -> LipschitzResult:
    """Local Lipschitz bounds of a mesh simulator's one-step map on one graph.

    The map is the physical state (N, F) -> the next state ``x + dt^k * update`` (``map="step"``,
    what a rollout iterates; nodes the engine prescribes are not outputs) or the update
    alone (``map="update"``). The box perturbs every node's state by ``eps`` times the
    training standard deviation of each state feature (from the checkpoint's normaliser);
    outputs are the state features of ``nodes`` nodes sampled among the predicted ones.

    A node's output depends only on the inputs within the model's ``receptive_hops``; when the
    model declares them, each output node is bounded on its receptive-field subgraph (the
    same constant, far fewer symbols for the centred form). Global models (virtual nodes,
    global attention) use the whole graph, limited to ``max_symbols`` perturbed entries with
    the centred form.

    Args:
        simulator: a mesh simulator: its one-step map (``step_inputs``, ``update``), ``node_normalizer``,
            ``predicted_mask`` and ``config`` (e.g. :class:`~sim.models.mesh.simulator.MeshSimulator`).
        graph: a training sample: ``Data`` with ``state``, ``node_type``, ``edge_index``, ``edge_attr``,
            ``mesh_pos``, and the ``dt``, ``scalars`` and ``past`` the model reads.
    """
    from torch_geometric.utils import k_hop_subgraph
    from tqdm import tqdm

    if map not in ("step", "update"):
        raise PluginError(f"mesh_lipschitz: map must be 'step' or 'update', not {map!r}")
    model = copy.deepcopy(simulator).double().eval()
    state = graph.state.double()
    n, f = state.shape
    inputs = model.step_inputs(graph).to(torch.float64)  # the simulator's own one-step inputs
    hops = getattr(model, "receptive_hops", None)
    predicted = torch.nonzero(model.predicted_mask(graph.node_type)).squeeze(-1).numpy()
    if len(predicted) == 0:
        raise PluginError("mesh_lipschitz: the graph has no node the model predicts")
    chosen = np.sort(np.random.default_rng(seed).choice(predicted, size=min(nodes, len(predicted)), replace=False))
    std = model.node_normalizer.std[:f].to(torch.float64)

    def one_step(ctx: Any) -> Callable[[Any], Any]:
        def fn(s: Any) -> Any:
            change = ctx.scale * model.update(s, ctx)
            return s + change if map == "step" else change
        return fn

    groups: list[tuple[np.ndarray, Any, torch.Tensor, torch.Tensor]] = []
    if hops is None:
        if method == "centred" and n * f > max_symbols:
            raise PluginError(f"mesh_lipschitz: the model reaches the whole graph and the centred form would need "
                              f"{n * f} Jacobian columns (max_symbols {max_symbols}); use method 'crown'")
        fn = one_step(inputs)
        rows = torch.as_tensor((chosen[:, None] * f + np.arange(f)[None, :]).reshape(-1))
        groups.append((chosen, fn, state, rows))
    else:
        for v in chosen:
            subset, sub_ei, mapping, edge_mask = k_hop_subgraph(int(v), hops, graph.edge_index, relabel_nodes=True,
                                                                num_nodes=n)
            fn = one_step(inputs.subgraph(subset, sub_ei, edge_mask))
            rows = torch.as_tensor(int(mapping[0]) * f + np.arange(f))
            groups.append((np.array([v]), fn, state[subset], rows))
    parts = []
    t0 = time.perf_counter()
    for _, fn, x0, rows in tqdm(groups, desc="lipschitz", disable=not progress):
        radius = (eps * std).expand(x0.shape[0], f)
        parts.append(local_lipschitz(fn, x0, radius, rows, method=method, samples=samples, seed=seed,
                                     rows_per_pass=rows_per_pass))
    up = np.concatenate([p.rows_upper for p in parts])
    low = np.concatenate([p.rows_lower for p in parts])
    fracs = [p.unstable_relu_fraction for p in parts]
    res = LipschitzResult(float(up.max()), float(low.max()), up, low,
                          (chosen[:, None] * f + np.arange(f)[None, :]).reshape(-1), float(eps), method,
                          float(np.mean(fracs)), time.perf_counter() - t0)
    res.extra.update({"map": map, "nodes": [int(c) for c in chosen], "eps_units": "training std of each state feature",
                      "radius": [float(v) for v in eps * std], "fields": list(model.config.get("fields", [])),
                      "receptive_hops": hops,
                      "symbols_per_node": [int(g[2].numel()) for g in groups] if hops is not None else int(n * f)})
    return res
