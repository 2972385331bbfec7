r"""Virtual nodes: global nodes that exchange information with every node of a graph in one
message-passing layer (Cao, Zhuang, Zhao, Wang 2025, "Virtual Nodes Improve Long-term
Traffic Prediction"; the single global node of Gilmer et al. 2017 is ``adaptive=False``).

The layer runs on the augmented graph of the N mesh nodes and M virtual nodes, whose
*semi-adaptive* adjacency joins a distance-based block between mesh nodes and a learned
block between mesh and virtual nodes:

.. math::
    a_i = \sum_{j \in \mathcal{N}(i)} w_{ij} x_j, \qquad
    w_{ij} = \frac{\exp(-\lVert p_i - p_j \rVert^2 / \sigma^2)}
                  {\sum_{j'} \exp(-\lVert p_i - p_{j'} \rVert^2 / \sigma^2)},

.. math::
    g_k = \operatorname{ReLU}\Big(W_g \sum_i \alpha_{ik} W_m x_i\Big), \qquad
    \alpha_{\cdot k} = \operatorname{softmax}_i \operatorname{ReLU}(q_k \cdot W_q x_i),

.. math::
    c_i = \sum_k \beta_{ik} g_k, \qquad
    \beta_{i \cdot} = \operatorname{softmax}_k \operatorname{ReLU}(q_k \cdot W_q x_i), \qquad
    x_i \leftarrow x_i + W_u [x_i \,\|\, a_i \,\|\, c_i].

With ``adaptive=False`` there is one virtual node and :math:`\alpha_{i} = 1 / n`,
:math:`\beta = 1` (a mean-pooled global node). Either way every node's output depends
on every node's input after one layer, which a k-layer mesh GNN only achieves for
k >= the graph's diameter.

Our deviations: the paper learns one embedding per sensor; mesh nodes change between
trajectories, so the mesh side of the adaptive adjacency is computed from the node
latents (:math:`W_q x_i`) and only the virtual-node embeddings :math:`q_k` are free
parameters; the distance kernel width :math:`\sigma` is the mean mesh edge length
(neighbour mean when no positions are given); softmaxes run per graph of a batch, so
graphs of a batch never exchange information.

Shapes:
    x (N, C), edge_index (2, E), pos (N, d) optional, batch (N,) optional -> (N, C)
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import softmax as segment_softmax

from sim.plugins.registry import PluginError, register_plugin


def distance_weights(edge_index: torch.Tensor, num_nodes: int, pos: torch.Tensor | None, dtype: torch.dtype
                     ) -> torch.Tensor:
    """Row-normalised Gaussian weights (E,) of the mesh edges by length (uniform without ``pos``)."""
    s, r = edge_index
    if pos is None or edge_index.shape[1] == 0:
        logits = torch.zeros(edge_index.shape[1], dtype=dtype, device=edge_index.device)
    else:
        d2 = ((pos[s] - pos[r]).to(dtype) ** 2).sum(-1)
        logits = -d2 / d2.sqrt().mean().clamp(min=1e-12) ** 2
    return segment_softmax(logits, r, num_nodes=num_nodes)


def graph_mean_operator(batch: torch.Tensor, num_graphs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-node weight 1 / n_graph (N,) and the node counts (G,)."""
    counts = torch.zeros(num_graphs, dtype=torch.float32, device=batch.device).index_add_(
        0, batch, torch.ones(batch.shape[0], device=batch.device))
    return 1.0 / counts[batch], counts


@register_plugin("virtual_nodes", "layer",
                 paper="Cao, Zhuang, Zhao, Wang 2025, Virtual Nodes Improve Long-term Traffic Prediction",
                 summary="global virtual nodes on a semi-adaptive adjacency: every node sees every node in one layer",
                 at="all")
class VirtualNodes(nn.Module):
    """Args:
        channels: node latent width C.
        num_virtual: virtual nodes per graph (M; 1 unless ``adaptive``).
        adaptive: learn the mesh-virtual adjacency (otherwise one mean-pooled global node).
        embed_dim: width of the adjacency embeddings.
    """

    def __init__(self, channels: int, num_virtual: int = 1, adaptive: bool = True, embed_dim: int = 16):
        super().__init__()
        if num_virtual < 1:
            raise PluginError(f"virtual_nodes: num_virtual must be >= 1, got {num_virtual}")
        if not adaptive and num_virtual != 1:
            raise PluginError("virtual_nodes: several virtual nodes need adaptive=True (with a uniform adjacency "
                              "they would all be the same node)")
        self.channels, self.num_virtual, self.adaptive = channels, num_virtual, adaptive
        self.message = nn.Linear(channels, channels)
        self.virtual_update = nn.Linear(channels, channels)
        self.update = nn.Linear(3 * channels, channels)
        if adaptive:
            self.node_key = nn.Linear(channels, embed_dim)
            self.virtual_embed = nn.Parameter(torch.randn(num_virtual, embed_dim) * embed_dim**-0.5)

    receptive_hops = None  # global: every node of the graph

    def adjacency(self, x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mesh -> virtual weights alpha (N, M) (sum 1 over each graph's nodes) and virtual -> mesh
        weights beta (N, M) (sum 1 over the virtual nodes)."""
        if not self.adaptive:
            inv_n, _ = graph_mean_operator(batch, num_graphs)
            return inv_n[:, None].to(x.dtype), torch.ones_like(inv_n[:, None], dtype=x.dtype)
        scores = torch.relu(self.node_key(x) @ self.virtual_embed.T)  # (N, M)
        alpha = segment_softmax(scores, batch, num_nodes=num_graphs, dim=0)
        return alpha, torch.softmax(scores, dim=1)

    def aggregation_sites(self, edge_index: torch.Tensor, num_nodes: int, batch: torch.Tensor | None = None
                          ) -> list:
        """Virgo: the update reads the mesh aggregate (neighbour mean, as without positions) and,
        on a side branch, the graph-wide virtual-node aggregate."""
        from sim.plugins.init.virgo import AggregationSite, graph_pool_operator, mean_operator

        c = self.channels
        return [AggregationSite(self.update, slice(c, 2 * c), *mean_operator(edge_index, num_nodes)),
                AggregationSite(self.update, slice(2 * c, 3 * c), *graph_pool_operator(batch, num_nodes),
                                advances=False)]

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None,
                pos: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        if batch is None:
            batch = torch.zeros(n, dtype=torch.long, device=x.device)
        num_graphs = int(batch.max()) + 1 if n else 0
        s, r = edge_index
        w = distance_weights(edge_index, n, pos, x.dtype)
        a = x.new_zeros(x.shape).index_add_(0, r, w[:, None] * x[s])  # distance-based mesh block
        alpha, beta = self.adjacency(x, batch, num_graphs)
        m = self.message(x)
        g = x.new_zeros((num_graphs, self.num_virtual, self.channels)).index_add_(
            0, batch, alpha[:, :, None] * m[:, None, :])
        g = torch.relu(self.virtual_update(g))  # (G, M, C)
        c = (beta[:, :, None] * g[batch]).sum(1)  # virtual -> mesh
        return x + self.update(torch.cat([x, a, c], dim=-1))
