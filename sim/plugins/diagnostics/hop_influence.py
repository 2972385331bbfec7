r"""Long-range hop influence of a graph model (Liang, Sáez de Ocáriz Borde, Sripathmanathan,
Bronstein, Dong 2025, "Towards Quantifying Long-Range Interactions in Graph Machine
Learning: a Large Graph Dataset and a Measurement").

For a seed node v and the nodes u at hop distance h from it, the total influence at hop h
is the L1 norm of the Jacobian of v's output with respect to their inputs,

.. math::
    I_h(v) = \sum_{u:\, d(u, v) = h} \Big\lVert \frac{\partial y_v}{\partial x_u} \Big\rVert_1,
    \qquad
    T_h = \frac{\operatorname{mean}_v I_h(v)}{\operatorname{mean}_v I_0(v)}, \qquad
    R = \frac{\sum_h h\, T_h}{\sum_h T_h},

averaged over sampled seeds; R is the influence-weighted mean hop distance (the range).
A k-layer message-passing model has :math:`T_h = 0` for h > k exactly.

Two ways to compute :math:`I_h(v)`:

- ``mode="subgraph"``: torch_geometric's :func:`~torch_geometric.utils.influence.jacobian_l1_agg_per_hop`
  (the kernel of ``utils.total_influence``), which evaluates the model on the
  ``max_hops``-hop subgraph around v. Mesh models need their edge features (relative
  positions) for that subgraph, so :class:`MeshInfluenceModel` carries positions and
  node types as extra (non-differentiated) input columns and rebuilds the edge
  features for whatever edges it is called with. Exact for models whose receptive field
  is within ``max_hops``.
- ``mode="full"``: Jacobian rows on the whole graph, binned by hop distance; exact for
  any model (global attention, virtual nodes), and the tail beyond ``max_hops`` is
  reported as ``beyond``.

Our deviation: seeds are sampled among the nodes the model predicts (``seed_types``),
since the rollout engine overwrites every other node; PyG samples all nodes. PyG's own R
is the mean over seeds of each seed's range; ours follows the definition above on the
averaged curve (both are returned).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Data

from sim.graph import adjacency
from sim.plugins.registry import PluginError, register_plugin


class MeshInfluenceModel(nn.Module):
    """``model(x, edge_index)`` view of a mesh simulator for torch_geometric's influence tools.

    ``x`` = ``[state (F) | the simulator's node-aligned inputs]``: positions, node types, the
    frames before the state and the conditioning scalars (``StepInputs.node_columns``). They
    are detached (the Jacobian is taken with respect to the state only), and the simulator's
    one-step map is called on the inputs rebuilt for whatever nodes and edges it is given
    (edge features from the positions), so the model sees the same inputs on a k-hop subgraph
    as on the whole mesh.

    Args:
        simulator: a mesh simulator (``step_inputs``, ``update``).
        inputs: its ``step_inputs`` on the whole graph.
        num_state: state features F.
    """

    def __init__(self, simulator: nn.Module, inputs: Any, num_state: int):
        super().__init__()
        self.simulator, self.inputs, self.num_state = simulator, inputs, num_state

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        f = self.num_state
        ctx = self.inputs.from_node_columns(x[:, f:].detach(), edge_index)
        return self.simulator.update(x[:, :f], ctx, normalised=True)

    def pack(self, state: torch.Tensor) -> torch.Tensor:
        return torch.cat([state, self.inputs.node_columns().to(state.dtype)], dim=-1)


@dataclass
class InfluenceResult:
    """``curve`` T_0..T_k (T_0 = 1), ``per_seed`` I_h(v) (S, k + 1), ``range_score`` R,
    ``range_score_pyg`` (mean of per-seed ranges), ``seeds``, ``beyond`` (full mode: the
    mean influence from beyond max_hops, relative to T_0)."""

    curve: np.ndarray
    per_seed: np.ndarray
    range_score: float
    range_score_pyg: float
    seeds: list[int]
    mode: str
    beyond: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"curve": [float(v) for v in self.curve], "range_score": self.range_score,
                "range_score_pyg": self.range_score_pyg, "seeds": self.seeds, "mode": self.mode,
                "max_hops": len(self.curve) - 1, "beyond": self.beyond,
                "per_seed": [[float(v) for v in row] for row in self.per_seed], **self.extra}


def hop_distances(edge_index: torch.Tensor, num_nodes: int, seeds: Sequence[int]) -> np.ndarray:
    """(S, N) hop distances from each seed (inf when unreachable)."""
    from scipy.sparse.csgraph import shortest_path

    adj = adjacency(edge_index.detach().cpu().numpy(), num_nodes)
    return shortest_path(adj, unweighted=True, directed=False, indices=list(seeds))


def _summarise(per_seed: np.ndarray) -> tuple[np.ndarray, float, float]:
    mean = per_seed.mean(0)
    curve = mean / mean[0] if mean[0] > 0 else mean
    hops = np.arange(len(curve))
    r = float((hops * curve).sum() / curve.sum()) if curve.sum() > 0 else 0.0
    rows = per_seed.sum(1, keepdims=True)
    r_pyg = float(((per_seed / np.where(rows > 0, rows, 1.0)) @ hops).mean())
    return curve, r, r_pyg


def _jacobian_rows_full(model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor, seed: int, num_state: int
                        ) -> torch.Tensor:
    """|d y_seed / d x_u| summed over output and state features: (N,)."""
    x = x.detach().clone().requires_grad_(True)
    y = model(x, edge_index)[seed]
    eye = torch.eye(y.shape[0], dtype=y.dtype, device=y.device)
    (jac,) = torch.autograd.grad(y, x, grad_outputs=eye, is_grads_batched=True)
    return jac[:, :, :num_state].abs().sum(dim=(0, 2))


@register_plugin("hop_influence", "diagnostic",
                 paper="Liang et al. 2025, Towards Quantifying Long-Range Interactions in Graph Machine Learning",
                 summary="hop-wise Jacobian influence curve T_h and range score R of a trained graph model")
def hop_influence(simulator: nn.Module, graph: Data, max_hops: int = 10, num_seeds: int = 32, seed: int = 0,
                  mode: str = "auto", seed_types: Sequence[int] | None = None, progress: bool = False
                  ) -> InfluenceResult:
    """Hop influence of ``simulator`` around sampled seeds of one graph.

    Args:
        simulator: a mesh simulator in eval mode (its one-step map: ``step_inputs`` and ``update``,
            e.g. :class:`~sim.models.mesh.simulator.MeshSimulator`).
        graph: a training sample: ``Data`` with ``state`` (N, F), ``node_type`` (N,), ``edge_index``,
            ``edge_attr``, ``mesh_pos`` (N, d), and the ``scalars`` / ``past`` the model reads.
        max_hops: largest hop distance k of the curve.
        num_seeds: seeds sampled (without replacement) among the nodes of ``seed_types``.
        seed: sampling seed.
        mode: ``"subgraph"`` (torch_geometric, k-hop subgraphs), ``"full"`` (whole graph) or
            ``"auto"``: subgraph when the model declares ``receptive_hops`` <= ``max_hops`` (then
            it is exact), the whole graph otherwise.
        seed_types: node types to sample seeds from (default: the simulator's predicted
            types when it has ``config['predicted_types']``, else all nodes).
    """
    if mode not in ("auto", "subgraph", "full"):
        raise PluginError(f"hop_influence: mode must be 'auto', 'subgraph' or 'full', not {mode!r}")
    if mode == "auto":
        reach = getattr(simulator, "receptive_hops", None)
        mode = "subgraph" if reach is not None and reach <= max_hops else "full"
    if max_hops < 0:
        raise PluginError(f"hop_influence: max_hops must be >= 0, got {max_hops}")
    n = int(graph.num_nodes)
    f = int(graph.state.shape[-1])
    pos, node_type = graph.mesh_pos, graph.node_type
    edge_in = getattr(simulator, "config", {}).get("edge_in")
    if edge_in is not None and edge_in != pos.shape[-1] + 1:
        raise PluginError(f"hop_influence rebuilds mesh-space edge features ({pos.shape[-1] + 1} wide); this model "
                          f"takes {edge_in} (world-space features of a moving mesh are not supported)")
    wrapped = MeshInfluenceModel(simulator, simulator.step_inputs(graph), f).eval()
    x = wrapped.pack(graph.state)
    if seed_types is None:
        seed_types = getattr(simulator, "config", {}).get("predicted_types")
    candidates = np.arange(n) if seed_types is None else np.flatnonzero(
        np.isin(node_type.cpu().numpy(), list(seed_types)))
    if len(candidates) == 0:
        raise PluginError(f"hop_influence: no node of types {list(seed_types or [])} to use as a seed")
    seeds = sorted(np.random.default_rng(seed).choice(candidates, size=min(num_seeds, len(candidates)),
                                                      replace=False).tolist())
    from tqdm import tqdm

    rows, beyond = [], []
    if mode == "subgraph":
        try:
            from torch_geometric.utils.influence import jacobian_l1_agg_per_hop
        except ImportError:  # torch_geometric < 2.7
            raise PluginError("hop_influence mode 'subgraph' needs torch_geometric >= 2.7; use mode 'full'") from None
        data = Data(x=x, edge_index=graph.edge_index, num_nodes=n)
        for v in tqdm(seeds, desc="influence", disable=not progress):
            agg = jacobian_l1_agg_per_hop(wrapped, data, max_hops, int(v), x.device)
            row = np.zeros(max_hops + 1)
            row[: len(agg)] = agg.detach().cpu().numpy()
            rows.append(row)
    else:
        dist = hop_distances(graph.edge_index, n, seeds)
        for i, v in enumerate(tqdm(seeds, desc="influence", disable=not progress)):
            infl = _jacobian_rows_full(wrapped, x, graph.edge_index, int(v), f).detach().cpu().numpy()
            row = np.array([infl[dist[i] == h].sum() for h in range(max_hops + 1)])
            rows.append(row)
            beyond.append(float(infl[dist[i] > max_hops].sum()))
    per_seed = np.stack(rows)
    curve, r, r_pyg = _summarise(per_seed)
    mean0 = per_seed[:, 0].mean()
    return InfluenceResult(curve, per_seed, r, r_pyg, [int(s) for s in seeds], mode,
                           beyond=(float(np.mean(beyond)) / mean0 if mean0 > 0 else float(np.mean(beyond)))
                           if beyond else None)


def influence_png(path: Any, curves: dict[str, InfluenceResult], title: str = "hop influence") -> None:
    """Curves T_h of one or more models (log scale), with each model's range R in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim.mesh.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, res in curves.items():
        hops = np.arange(len(res.curve))
        keep = res.curve > 0
        ax.semilogy(hops[keep], res.curve[keep], marker="o", ms=3, label=f"{label} (R = {res.range_score:.2f})")
    ax.set_xlabel("hop distance h")
    ax.set_ylabel("T_h / T_0")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
