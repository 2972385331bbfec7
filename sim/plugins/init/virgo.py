r"""Virgo initialisation (Li, Song, Song, Wipf, ICML 2023, "On the Initialization of Graph
Neural Networks").

Classic initialisations keep the variance of activations (Kaiming forward: 2/fan_in) or
of gradients (backward: 2/fan_out) constant across the layers of an MLP; in a GNN every
layer also aggregates over neighbours, which multiplies the variance by a factor that
depends on the graph and on how many aggregations came before. For a layer that consumes
the aggregation :math:`A` of a signal that has already passed the aggregations before it,
Virgo sets the weight variance to

.. math::
    \sigma^2_{\mathrm{fwd}} = \frac{2}{m_\mathrm{in}}
        \frac{\lVert P_\ell x \rVert^2}{\lVert A_\ell P_\ell x \rVert^2}, \qquad
    \sigma^2_{\mathrm{bwd}} = \frac{2}{m_\mathrm{out}}
        \frac{\lVert Q_{\ell} \mathbf{1} \rVert^2}{\lVert A_\ell^\top Q_{\ell} \mathbf{1} \rVert^2},
    \qquad
    \sigma^2 = \frac{2}{1/\sigma^2_{\mathrm{fwd}} + 1/\sigma^2_{\mathrm{bwd}}}

with :math:`P_\ell = A_{\ell-1} \cdots A_0` (the aggregations before layer l, applied to
the per-node mean x of the input features) and :math:`Q_\ell = A_{\ell+1}^\top \cdots
A_{L-1}^\top` (those after it, applied to the output gradient, modelled as ones); the
weights are drawn uniformly on :math:`\pm\sqrt{3\sigma^2}`. On a regular graph with a
normalised operator the ratios are 1 and Virgo is the harmonic mean of the two Kaiming
variances.

A model tells Virgo where it aggregates with a method ``aggregation_sites(edge_index,
num_nodes, batch)`` returning :class:`AggregationSite` s in depth order.

Our deviations: the paper treats plain GCN/SAGE/GIN stacks; mesh models add MLPs,
residuals and mixed inputs, so (i) every ``nn.Linear`` gets the graph-free harmonic mean
of :math:`g^2/m_\mathrm{in}` and :math:`g^2/m_\mathrm{out}` (g² = 2 when a ReLU-like
activation follows it in its ``nn.Sequential``, 1 otherwise), and (ii) at an aggregation
site only the input columns that carry the aggregated messages (e.g. the summed edge
messages of a MeshGraphNet node MLP) get the graph ratios; (iii) ratios are of mean
squares, so non-square operators (pooling to virtual nodes) fit; (iv) biases start at 0;
(v) the classification-specific output term of the paper's backward pass is replaced by
the generic 1/m_out of a regression output; (vi) graph ratios are clipped to [1e-4, 1e4]
so a signal that an aggregation nearly cancels cannot produce a runaway variance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sim.plugins.registry import PluginError, register_plugin

Operator = Callable[[torch.Tensor], torch.Tensor]

_RELU_LIKE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.PReLU, nn.SELU)


@dataclass
class AggregationSite:
    """A linear layer that consumes aggregated messages.

    Attributes:
        linear: the layer.
        columns: its input columns that carry the aggregation (None: all of them).
        forward: the aggregation applied to a node signal, (N,) -> (N,).
        adjoint: its transpose, (N,) -> (N,).
        advances: whether the model's main signal passes through this aggregation (False
            for a side branch, e.g. a virtual node next to the mesh aggregation).
    """

    linear: nn.Linear
    columns: slice | None
    forward: Operator
    adjoint: Operator
    advances: bool = True


def sum_operator(edge_index: torch.Tensor, num_nodes: int, weights: torch.Tensor | None = None
                 ) -> tuple[Operator, Operator]:
    """:math:`(A p)_i = \\sum_{j \\to i} w_{ji} p_j` and its adjoint, on the edges (j -> i)."""
    s, r = edge_index

    def fwd(p: torch.Tensor) -> torch.Tensor:
        v = p[s] if weights is None else p[s] * weights.to(p.dtype)
        return p.new_zeros(num_nodes).index_add_(0, r, v)

    def adj(q: torch.Tensor) -> torch.Tensor:
        v = q[r] if weights is None else q[r] * weights.to(q.dtype)
        return q.new_zeros(num_nodes).index_add_(0, s, v)

    return fwd, adj


def mean_operator(edge_index: torch.Tensor, num_nodes: int) -> tuple[Operator, Operator]:
    """Neighbour mean over the senders of each receiver."""
    r = edge_index[1]
    deg = torch.zeros(num_nodes, device=r.device).index_add_(0, r, torch.ones(r.shape[0], device=r.device))
    return sum_operator(edge_index, num_nodes, 1.0 / deg.clamp(min=1)[r])


def graph_pool_operator(batch: torch.Tensor | None, num_nodes: int) -> tuple[Operator, Operator]:
    """Every node receives the mean of its graph (a global virtual node); symmetric."""
    b = torch.zeros(num_nodes, dtype=torch.long) if batch is None else batch
    g = int(b.max()) + 1 if num_nodes else 0

    def fwd(p: torch.Tensor) -> torch.Tensor:
        counts = p.new_zeros(g).index_add_(0, b.to(p.device), torch.ones_like(p))
        return (p.new_zeros(g).index_add_(0, b.to(p.device), p) / counts)[b.to(p.device)]

    return fwd, fwd


def _mean_sq(v: torch.Tensor) -> float:
    return float((v.double() ** 2).mean())


def _gain2(model: nn.Module) -> dict[nn.Linear, float]:
    """g² per linear layer from the activation that follows it in its nn.Sequential."""
    gains: dict[nn.Linear, float] = {}
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            mods = list(seq)
            for i, m in enumerate(mods):
                if isinstance(m, nn.Linear) and i + 1 < len(mods) and isinstance(mods[i + 1], _RELU_LIKE):
                    gains[m] = 2.0
    return gains


RATIO_LIMIT = 1e4


def _ratio(before: torch.Tensor, after: torch.Tensor) -> float:
    """mean(before²) / mean(after²), clipped to [1/RATIO_LIMIT, RATIO_LIMIT]: a signal that an
    aggregation nearly cancels (e.g. alternating signs) must not give a runaway variance."""
    r = _mean_sq(before) / max(_mean_sq(after), 1e-300)
    return min(max(r, 1.0 / RATIO_LIMIT), RATIO_LIMIT)


def _harmonic(a: float, b: float) -> float:
    return 2.0 / (1.0 / a + 1.0 / b)


@torch.no_grad()
def virgo_variances(model: nn.Module, edge_index: torch.Tensor, num_nodes: int, x: torch.Tensor | None = None,
                    batch: torch.Tensor | None = None) -> dict[str, Any]:
    """Per-site forward / backward graph ratios of ``model`` on a graph (no weights change).

    Returns ``{"forward": [...], "backward": [...], "sites": [AggregationSite, ...]}`` with
    the ratios :math:`\\lVert P p\\rVert^2 / \\lVert A P p\\rVert^2` of each site.
    """
    sites_fn = getattr(model, "aggregation_sites", None)
    if sites_fn is None:
        raise PluginError(f"Virgo needs to know where {type(model).__name__} aggregates messages: the model has no "
                          f"aggregation_sites(edge_index, num_nodes, batch) method")
    sites: list[AggregationSite] = list(sites_fn(edge_index, num_nodes, batch))
    p = torch.ones(num_nodes, dtype=torch.float64) if x is None else x.detach().double().reshape(num_nodes, -1).mean(1)
    fwd = []
    for site in sites:
        ap = site.forward(p)
        fwd.append(_ratio(p, ap))
        if site.advances:
            p = ap
    q = torch.ones(num_nodes, dtype=torch.float64)
    bwd = [0.0] * len(sites)
    for i in reversed(range(len(sites))):
        aq = sites[i].adjoint(q)
        bwd[i] = _ratio(q, aq)
        if sites[i].advances:
            q = aq
    return {"forward": fwd, "backward": bwd, "sites": sites}


@register_plugin("virgo", "init",
                 paper="Li, Song, Song, Wipf 2023, On the Initialization of Graph Neural Networks (ICML)",
                 summary="weight variances from activation, width, graph structure and message passing "
                         "(fwd/bwd harmonic mean)")
@torch.no_grad()
def virgo_init_(model: nn.Module, edge_index: torch.Tensor, num_nodes: int, x: torch.Tensor | None = None,
                batch: torch.Tensor | None = None, mean: str = "harmonic",
                generator: torch.Generator | None = None) -> dict[str, float]:
    """Re-initialise every ``nn.Linear`` of ``model`` in place; returns the variance of each
    (by module name; an aggregation site's entry is that of its aggregated columns).

    Args:
        edge_index, num_nodes, batch: a representative graph (the first training sample).
        x: its node input features (N, F) (None: ones, i.e. structure only).
        mean: ``"harmonic"`` (Virgo), ``"forward"`` or ``"backward"`` (the one-sided variants).
    """
    if mean not in ("harmonic", "forward", "backward"):
        raise PluginError(f"virgo: mean must be 'harmonic', 'forward' or 'backward', not {mean!r}")
    ratios = virgo_variances(model, edge_index, num_nodes, x, batch)
    gains = _gain2(model)

    def combine(vf: float, vb: float) -> float:
        return vf if mean == "forward" else vb if mean == "backward" else _harmonic(vf, vb)

    names = {m: n for n, m in model.named_modules()}
    report: dict[str, float] = {}
    col_var: dict[nn.Linear, torch.Tensor] = {}
    for lin in (m for m in model.modules() if isinstance(m, nn.Linear)):
        g2 = gains.get(lin, 1.0)
        fan_out, fan_in = lin.weight.shape
        var = combine(g2 / fan_in, g2 / fan_out)
        col_var[lin] = torch.full((fan_in,), var, dtype=torch.float64)
        report[names[lin]] = var
    for site, rf, rb in zip(ratios["sites"], ratios["forward"], ratios["backward"]):
        lin = site.linear
        g2 = gains.get(lin, 1.0)
        fan_out, fan_in = lin.weight.shape
        var = combine(g2 / fan_in * rf, g2 / fan_out * rb)
        cols = site.columns if site.columns is not None else slice(None)
        col_var[lin][cols] = var
        report[names[lin]] = var
    for lin, var in col_var.items():
        bound = torch.sqrt(3.0 * var).to(lin.weight.dtype).to(lin.weight.device)
        u = torch.rand(lin.weight.shape, generator=generator, dtype=lin.weight.dtype).to(lin.weight.device)
        lin.weight.copy_((2.0 * u - 1.0) * bound[None, :])
        if lin.bias is not None:
            lin.bias.zero_()
    return report
