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
:class:`~sim.plugins.diagnostics.bounds.Interval` box (CROWN-tightened enclosures of every
pre-activation inside the MLPs, so ReLUs whose sign is fixed over B contribute their
exact derivative), then propagates rows of the Jacobian backwards through the Clarke
derivative enclosures; message passing needs no special rule, since gathers and scatters
are linear maps. The lower bound is the largest :math:`\lVert \nabla f_i(x) \rVert_1`
found at sampled points of B (its centre, random corners and random interior points),
computed by autograd.

Guarantees: ``lower <= true L <= upper`` row by row (the upper bound is sound in exact
arithmetic; it is computed in float64), and for an affine map both equal
:math:`\max_i \lVert W_i \rVert_1`.

Our deviations: the paper bounds the Jacobian graph itself with linear relaxations
(CROWN on the backward pass) and tightens it by branch and bound; we use CROWN for the
forward pre-activation bounds and interval arithmetic for the backward (Jacobian) pass,
without branching: sound and linear in the model's cost, but looser when many ReLUs are
unstable (small boxes keep them stable). Supported operations are those of
:mod:`~sim.plugins.diagnostics.bounds` (MLP and message-passing blocks; attention's
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

from sim.plugins.diagnostics import bounds
from sim.plugins.diagnostics.bounds import BoundError, Interval, jacobian_rows, unstable_fraction
from sim.plugins.registry import PluginError, register_plugin


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
        method: ``"crown"`` or ``"ibp"`` (interval bounds only).
        samples: sampled points for the lower bound.
        rows_per_pass: output rows per backward pass (memory grows with it).
    """
    if method not in ("crown", "ibp"):
        raise PluginError(f"local_lipschitz: method must be 'crown' or 'ibp', not {method!r}")
    t0 = time.perf_counter()
    radius = torch.as_tensor(eps, dtype=x0.dtype, device=x0.device).expand_as(x0).clone()
    with torch.no_grad():
        y0 = fn(x0)
    rows_t = torch.arange(y0.numel()) if rows is None else torch.as_tensor(rows, dtype=torch.long).reshape(-1)
    if rows_t.numel() == 0 or int(rows_t.max()) >= y0.numel() or int(rows_t.min()) < 0:
        raise PluginError(f"local_lipschitz: rows must be indices into the {y0.numel()} outputs")
    previous = bounds.CROWN["enabled"]
    bounds.CROWN["enabled"] = method == "crown"
    try:
        with torch.no_grad():
            box = Interval.box(x0.detach(), radius)
            out = fn(box)
            if not isinstance(out, Interval):
                raise BoundError("the map does not depend on its input")
            mask = (radius > 0).to(x0.dtype)
            uppers = []
            for r0 in range(0, rows_t.numel(), rows_per_pass):
                glo, ghi = jacobian_rows(out, rows_t[r0:r0 + rows_per_pass].to(x0.device), box)
                mag = torch.maximum(glo.abs(), ghi.abs()) * mask
                uppers.append(mag.reshape(mag.shape[0], -1).sum(1).cpu())
            frac = unstable_fraction(out)
            del out, box
    finally:
        bounds.CROWN["enabled"] = previous
    upper = torch.cat(uppers)
    gen = torch.Generator().manual_seed(seed)
    lower = torch.cat([sampled_lower_bound(fn, x0, radius, rows_t[r0:r0 + rows_per_pass].to(x0.device), samples, gen)
                       for r0 in range(0, rows_t.numel(), rows_per_pass)])
    eps_value = float(radius.max())
    return LipschitzResult(float(upper.max()), float(lower.max()), upper.numpy(), lower.numpy(), rows_t.numpy(),
                           eps_value, method, frac, time.perf_counter() - t0)


def mesh_lipschitz(simulator: nn.Module, graph: Any, eps: float = 0.01, nodes: int = 8, seed: int = 0,
                   method: str = "crown", samples: int = 16, map: str = "step", rows_per_pass: int = 4
                   ) -> LipschitzResult:
    """Local Lipschitz bounds of a mesh simulator's one-step map on one graph.

    The map is the physical state (N, F) -> the next state ``x + dt^k * update`` (``map="step"``,
    what a rollout iterates; nodes the engine prescribes are not outputs) or the update
    alone (``map="update"``). The box perturbs every node's state by ``eps`` times the
    training standard deviation of each state feature (from the checkpoint's normaliser);
    outputs are the state features of ``nodes`` nodes sampled among the predicted ones.

    Args:
        simulator: a :class:`~sim.models.simulator.MeshSimulator` (or any module with its
            forward signature, ``output_normalizer``, ``node_normalizer`` and ``config``).
        graph: ``Data`` with ``state``, ``node_type``, ``edge_index``, ``edge_attr``, ``mesh_pos``
            and optionally ``dt``.
    """
    if map not in ("step", "update"):
        raise PluginError(f"mesh_lipschitz: map must be 'step' or 'update', not {map!r}")
    model = copy.deepcopy(simulator).double().eval()
    state = graph.state.double()
    n, f = state.shape
    node_type = graph.node_type
    scale = 1.0
    if model.config.get("target") == "derivative":
        scale = float(getattr(graph, "dt", torch.tensor([1.0])).reshape(-1)[0])
    edge_attr = graph.edge_attr.double()
    pos = graph.mesh_pos.double() if getattr(graph, "mesh_pos", None) is not None else None

    def fn(s: Any) -> Any:
        update = model.output_normalizer.inverse(model(s, node_type, graph.edge_index, edge_attr, pos=pos))
        return s + scale * update if map == "step" else scale * update

    predicted = torch.nonzero(model.predicted_mask(node_type)).squeeze(-1).numpy()
    if len(predicted) == 0:
        raise PluginError("mesh_lipschitz: the graph has no node the model predicts")
    chosen = np.sort(np.random.default_rng(seed).choice(predicted, size=min(nodes, len(predicted)), replace=False))
    rows = torch.as_tensor((chosen[:, None] * f + np.arange(f)[None, :]).reshape(-1))
    std = model.node_normalizer.std[:f].to(torch.float64)
    radius = (eps * std).expand(n, f)
    res = local_lipschitz(fn, state, radius, rows, method=method, samples=samples, seed=seed,
                          rows_per_pass=rows_per_pass)
    res.eps = float(eps)
    res.extra.update({"map": map, "nodes": [int(c) for c in chosen], "eps_units": "training std of each state feature",
                      "radius": [float(v) for v in eps * std], "fields": list(model.config.get("fields", []))})
    return res
