r"""Neural Sheaf Diffusion (Bodnar, Di Giovanni, Chamberlain, Liò, Bronstein, NeurIPS 2022).

A cellular sheaf on the graph gives every node v a stalk :math:`\mathbb{R}^d` and every
incidence :math:`v \trianglelefteq e` a restriction map :math:`F_{v \trianglelefteq e} \in
\mathbb{R}^{d \times d}`, learned from the features of both end points:

.. math::
    F_{v \trianglelefteq e} = \Phi(x_v, x_u) = \tanh(V [x_v \,\|\, x_u]),
    \qquad e = (v, u),

reshaped into a diagonal matrix (``maps="diagonal"``, d numbers), a rotation
(``"orthogonal"``: a product of Householder reflections from d(d-1)/2 numbers; a
discrete connection, natural for vector fields on surfaces) or a general matrix
(``"general"``, d² numbers). The sheaf Laplacian has blocks

.. math::
    L_{vv} = \sum_{e \ni v} F_{v \trianglelefteq e}^\top F_{v \trianglelefteq e}, \qquad
    L_{vu} = -F_{v \trianglelefteq e}^\top F_{u \trianglelefteq e},

so that :math:`x^\top L x = \sum_{e=(v,u)} \lVert F_{v \trianglelefteq e} x_v -
F_{u \trianglelefteq e} x_u \rVert^2`; it is normalised as :math:`\Delta = D^{-1/2} L
D^{-1/2}` with D its block diagonal. With the node features as a matrix
:math:`X \in \mathbb{R}^{nd \times f}` (C = d·f channels per node) one layer is

.. math::
    X \leftarrow (1 + \tanh \varepsilon) \odot X - \operatorname{ELU}\big(\Delta
    (I_n \otimes W_1) X W_2\big)

with :math:`\varepsilon \in \mathbb{R}^d` per stalk dimension.

Our deviations: the layer acts on a host model's node latents (C must be divisible by
``stalk_dim``) and keeps the host's edge latents untouched; restriction maps are learned
in every layer from the current latents; for general maps the normalisation uses the
inverse Cholesky factor of D instead of :math:`D^{-1/2}` (same spectrum, stable gradients;
identical for diagonal and orthogonal maps); a node whose maps vanish is left unchanged
instead of dividing by zero; no dropout.
Edges must come in both directions (mesh graphs do), since a map belongs to an
(end point, undirected edge) pair.

Shapes:
    x (N, C), edge_index (2, E) -> (N, C)
"""

from __future__ import annotations

import torch
from torch import nn

from sim.plugins.registry import PluginError, register_plugin

MAP_KINDS = ("diagonal", "orthogonal", "general")


def reverse_edges(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Index of the reverse (u -> v) of every edge (v -> u); an error if one is missing."""
    s, r = edge_index
    key = s * num_nodes + r
    order = torch.argsort(key)
    rev_key = r * num_nodes + s
    pos = torch.searchsorted(key[order], rev_key).clamp(max=max(key.numel() - 1, 0))
    rev = order[pos]
    if key.numel() and not torch.equal(key[rev], rev_key):
        raise PluginError("sheaf diffusion needs undirected edges (every edge in both directions)")
    return rev


def householder(params: torch.Tensor, d: int) -> torch.Tensor:
    """(E, d(d-1)/2) -> (E, d, d) orthogonal matrices, products of d - 1 Householder reflections
    :math:`H_k = I - 2 v_k v_k^\\top / \\lVert v_k \\rVert^2` with :math:`v_k = e_k + ` (free
    entries below k): the Q factor of a QR decomposition, as LAPACK's ``orgqr`` builds it, which
    covers every orthogonal matrix up to the signs of its columns."""
    e = params.shape[0]
    q = torch.eye(d, dtype=params.dtype, device=params.device).expand(e, d, d)
    start = 0
    for k in range(d - 1):
        free = d - 1 - k
        v = torch.cat([params.new_zeros((e, k)), params.new_ones((e, 1)), params[:, start:start + free]], dim=1)
        start += free
        qv = (q * v[:, None, :]).sum(-1)  # (E, d): Q v
        q = q - 2.0 * qv[:, :, None] * v[:, None, :] / (v * v).sum(-1)[:, None, None]
    return q


def restriction_maps(params: torch.Tensor, kind: str, d: int) -> torch.Tensor:
    """(E, p) map parameters (after tanh) -> (E, d, d) restriction maps of the given kind."""
    e = params.shape[0]
    if kind == "diagonal":
        return torch.diag_embed(params)
    if kind == "general":
        return params.reshape(e, d, d)
    if kind == "orthogonal":
        return householder(params, d)
    raise PluginError(f"restriction maps must be one of {MAP_KINDS}, not {kind!r}")


def num_map_params(kind: str, d: int) -> int:
    return {"diagonal": d, "orthogonal": d * (d - 1) // 2, "general": d * d}[kind]


def normalisation(maps: torch.Tensor, edge_index: torch.Tensor, num_nodes: int, kind: str = "general"
                  ) -> torch.Tensor:
    """(N, d, d) blocks M with :math:`\\Delta = M L M^\\top`: :math:`D^{-1/2}` for diagonal and
    orthogonal maps; for general maps the inverse Cholesky factor of D (:math:`D = C C^\\top`,
    :math:`M = C^{-1}`), which has the same spectrum and a stable gradient (an eigendecomposition's
    gradient is undefined at repeated eigenvalues). A node whose maps vanish gets M = 0 (it is
    left unchanged)."""
    r = edge_index[1]
    d = maps.shape[-1]
    if kind == "orthogonal":  # F^T F = I: D = deg I
        deg = maps.new_zeros(num_nodes).index_add_(0, r, maps.new_ones(r.shape[0]))
        inv = torch.where(deg > 0, deg.clamp(min=1).rsqrt(), torch.zeros_like(deg))
        return inv[:, None, None] * torch.eye(d, dtype=maps.dtype, device=maps.device)
    if kind == "diagonal":
        deg = maps.new_zeros((num_nodes, d)).index_add_(0, r, torch.diagonal(maps, dim1=1, dim2=2) ** 2)
        return torch.diag_embed(torch.where(deg > 1e-12, deg.clamp(min=1e-12).rsqrt(), torch.zeros_like(deg)))
    gram = maps.new_zeros((num_nodes, d, d)).index_add_(0, r, maps.transpose(1, 2) @ maps)
    eye = torch.eye(d, dtype=maps.dtype, device=maps.device)
    chol = torch.linalg.cholesky(gram + 1e-9 * eye)
    inv = torch.linalg.solve_triangular(chol, eye.expand_as(gram), upper=False)
    alive = (torch.diagonal(gram, dim1=1, dim2=2).sum(-1) > 1e-12).to(maps.dtype)
    return inv * alive[:, None, None]


def sheaf_laplacian(maps: torch.Tensor, edge_index: torch.Tensor, num_nodes: int, normalized: bool = False,
                    kind: str = "general") -> torch.Tensor:
    """The dense sheaf Laplacian (N d, N d) (for tests and small graphs).

    Args:
        maps: (E, d, d) map of each edge's *receiver* on that edge, ``maps[k] =
            F_{r \\trianglelefteq e}`` for edge k = (s -> r); the sender's map is the one
            of the reverse edge.
        normalized: return :math:`M L M^\\top` (see :func:`normalisation`) instead of L.
        kind: the kind of the maps (decides the normalisation).
    """
    d = maps.shape[-1]
    s, r = edge_index
    rev = reverse_edges(edge_index, num_nodes)
    lap = maps.new_zeros((num_nodes, d, num_nodes, d))
    for k in range(edge_index.shape[1]):
        fk, fs = maps[k], maps[rev[k]]
        lap[r[k], :, r[k], :] += fk.T @ fk
        lap[r[k], :, s[k], :] -= fk.T @ fs
    lap = lap.reshape(num_nodes * d, num_nodes * d)
    if normalized:
        block = torch.block_diag(*normalisation(maps, edge_index, num_nodes, kind))
        lap = block @ lap @ block.T
    return lap


def apply_sheaf_laplacian(maps: torch.Tensor, rev: torch.Tensor, edge_index: torch.Tensor, y: torch.Tensor,
                          normalized: bool = True, kind: str = "general") -> torch.Tensor:
    """:math:`\\Delta y` (or :math:`L y`) without forming the matrix.

    Shapes: maps (E, d, d), y (N, d, f) -> (N, d, f).
    """
    s, r = edge_index
    if kind == "diagonal":  # maps and normalisation are diagonal: elementwise products only
        f = torch.diagonal(maps, dim1=1, dim2=2)[..., None]  # (E, d, 1)
        m = torch.diagonal(normalisation(maps, edge_index, y.shape[0], kind), dim1=1, dim2=2)[..., None] \
            if normalized else None
        if m is not None:
            y = m * y
        diff = f * y[r] - f[rev] * y[s]
        out = torch.zeros_like(y).index_add_(0, r, f * diff)
        return m * out if m is not None else out
    if normalized:
        m = normalisation(maps, edge_index, y.shape[0], kind)
        y = m.transpose(1, 2) @ y
    diff = maps @ y[r] - maps[rev] @ y[s]  # F_r y_r - F_s y_s on each (directed) edge
    out = torch.zeros_like(y).index_add_(0, r, maps.transpose(1, 2) @ diff)
    return m @ out if normalized else out


@register_plugin("sheaf_diffusion", "layer",
                 paper="Bodnar et al. 2022, Neural Sheaf Diffusion (NeurIPS)",
                 summary="sheaf Laplacian diffusion step with learned diagonal/orthogonal/general restriction maps",
                 at="all")
class SheafDiffusion(nn.Module):
    """Args:
        channels: node latent width C (divisible by ``stalk_dim``).
        stalk_dim: stalk dimension d.
        maps: ``"diagonal"``, ``"orthogonal"`` or ``"general"``.
    """

    def __init__(self, channels: int, stalk_dim: int = 2, maps: str = "diagonal"):
        super().__init__()
        if maps not in MAP_KINDS:
            raise PluginError(f"sheaf_diffusion: maps must be one of {MAP_KINDS}, not {maps!r}")
        if stalk_dim < 1 or channels % stalk_dim:
            raise PluginError(f"sheaf_diffusion: the latent width {channels} is not divisible by stalk_dim {stalk_dim}")
        self.channels, self.d, self.kind = channels, stalk_dim, maps
        self.f = channels // stalk_dim
        p = num_map_params(maps, stalk_dim)
        self.map_net = nn.Linear(2 * channels, p) if p else None
        self.w1 = nn.Linear(stalk_dim, stalk_dim, bias=False)
        self.w2 = nn.Linear(self.f, self.f, bias=False)
        self.epsilon = nn.Parameter(torch.zeros(stalk_dim))
        self._rev_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def _reverse(self, edge_index: torch.Tensor, n: int) -> torch.Tensor:
        """Reverse-edge index, cached for the last graph (a mesh is reused for many steps)."""
        cached = self._rev_cache
        if (cached is not None and cached[0].device == edge_index.device and cached[0].shape == edge_index.shape
                and torch.equal(cached[0], edge_index)):
            return cached[1]
        rev = reverse_edges(edge_index, n)
        self._rev_cache = (edge_index.detach().clone(), rev)
        return rev

    # a node's update reads its neighbours' normalisation D_u, built from maps that read *their*
    # neighbours: inputs two hops away matter (see LayerSlots.receptive_hops)
    receptive_hops = 2

    def maps(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """(E, d, d) map of each edge's receiver, from [x_receiver, x_sender]."""
        s, r = edge_index
        if self.map_net is None:  # 1-d orthogonal maps: the identity
            return x.new_ones((edge_index.shape[1], 1, 1))
        params = torch.tanh(self.map_net(torch.cat([x[r], x[s]], dim=-1)))
        return restriction_maps(params, self.kind, self.d)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None,
                pos: torch.Tensor | None = None, batch: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        maps = self.maps(x, edge_index)
        rev = self._reverse(edge_index, n)
        xs = x.reshape(n, self.d, self.f)
        y = self.w2(self.w1(xs.transpose(1, 2)).transpose(1, 2))  # (I (x) W1) X W2, per node W1 X_v W2
        step = apply_sheaf_laplacian(maps, rev, edge_index, y, normalized=True, kind=self.kind)
        out = (1 + torch.tanh(self.epsilon))[None, :, None] * xs - nn.functional.elu(step)
        return out.reshape(n, self.channels)
