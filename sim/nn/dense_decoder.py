"""Discretisation-agnostic dense decoder: the motion at any query point from the sparse nodes.

For a query point X of the body in the reference configuration and its k nearest sparse
nodes j (reference positions :math:`x_j`, displacements :math:`u_j = x_j(t) - x_j`), with
:math:`s_j = (x_j - X) / h_X` (:math:`h_X`: distance to the k-th neighbour):

.. math::
    w_j = \\operatorname{softplus}\\,\\phi_\\theta(s_j, |s_j|), \\qquad
    (a, B) = \\arg\\min \\sum_j w_j \\lVert u_j - a - B s_j \\rVert^2, \\qquad
    u(X) = a + \\sum_j \\psi_\\theta(s_j, |s_j|)\\, \\big(u_j - a - B s_j\\big)

a moving-least-squares fit with learned weights plus a learned kernel acting on the fit's
residuals. Both kernels depend on the geometry :math:`x_j - X` only and act linearly on the
displacements, so

- any affine motion (rigid rotation, uniform stretch, translation) is reproduced exactly,
  whatever the weights and whatever the query points (the residuals vanish);
- the whole map is :math:`u(X) = \\sum_j c_j(X)\\, u_j`: a :class:`DecodePlan` computes the
  neighbour lists and coefficients once per query set (in chunks) and each frame is a
  gather and a weighted sum, so 100k query points cost little more than the sparse step.

Trained on (sparse, dense) frame pairs of the simulations (MSE of the displacements of
the dense particles, :class:`~sim.models.particle.simulator.ParticleSimulator`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from sim.graph import knn_bipartite
from sim.nn.layers import mlp


@dataclass
class DecodePlan:
    """Neighbours ``index`` (Q, k) into the ``num_sources`` sparse nodes and coefficients
    ``coeff`` (Q, k), held as a (Q, S) CSR matrix so that a frame is one sparse product."""

    index: torch.Tensor
    coeff: torch.Tensor
    num_sources: int

    def __post_init__(self) -> None:
        q, k = self.index.shape
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the product below is stable
            warnings.simplefilter("ignore", UserWarning)
            self.matrix = torch.sparse_csr_tensor(
                torch.arange(0, q * k + 1, k, device=self.index.device), self.index.reshape(-1),
                self.coeff.reshape(-1), size=(q, self.num_sources))

    @property
    def num_queries(self) -> int:
        return int(self.index.shape[0])

    def apply(self, displacement: torch.Tensor) -> torch.Tensor:
        """Query displacements (Q, d) from sparse displacements (S, d)."""
        if displacement.shape[0] != self.num_sources:
            raise ValueError(f"the plan was built for {self.num_sources} sparse nodes, got {displacement.shape[0]}")
        return self.matrix.to(displacement.dtype) @ displacement


class DenseDecoder(nn.Module):
    """Args:
        dim: space dimension.
        neighbors: sparse nodes per query (k; at least dim + 1 for the affine fit).
        hidden: kernel MLP width.
        hidden_layers: kernel MLP hidden layers.
        ridge: relative Tikhonov term on B (keeps the fit defined for degenerate neighbours).
    """

    def __init__(self, dim: int, neighbors: int = 16, hidden: int = 32, hidden_layers: int = 2, ridge: float = 1e-9):
        super().__init__()
        if neighbors < dim + 1:
            raise ValueError(f"the affine fit needs at least {dim + 1} neighbours, got {neighbors}")
        self.config = {"dim": dim, "neighbors": neighbors, "hidden": hidden, "hidden_layers": hidden_layers,
                       "ridge": ridge}
        self.weight_net = mlp(dim + 1, hidden, 1, hidden_layers, layer_norm=False, activation=nn.GELU)
        self.residual_net = mlp(dim + 1, hidden, 1, hidden_layers, layer_norm=False, activation=nn.GELU)
        nn.init.zeros_(self.residual_net[-1].weight)  # start as plain learned-weight MLS
        nn.init.zeros_(self.residual_net[-1].bias)

    def coefficients(self, rel: torch.Tensor) -> torch.Tensor:
        """(Q, k, d) offsets x_j - X -> (Q, k) coefficients c_j of u(X) = sum_j c_j u_j."""
        dist = torch.linalg.vector_norm(rel, dim=-1)
        h = dist.max(dim=1, keepdim=True).values.clamp(min=torch.finfo(rel.dtype).tiny)
        s = rel / h[..., None]
        feats = torch.cat([s, (dist / h)[..., None]], dim=-1)
        w = nn.functional.softplus(self.weight_net(feats)[..., 0]).double() + 1e-12  # (Q, k)
        psi = self.residual_net(feats)[..., 0].double()
        p = torch.cat([torch.ones_like(s[..., :1]), s], dim=-1).double()  # (Q, k, d + 1)
        a = torch.einsum("qk,qki,qkj->qij", w, p, p)
        reg = torch.ones(p.shape[-1], dtype=a.dtype, device=a.device)
        reg[0] = 0.0
        a = a + self.config["ridge"] * w.sum(1)[:, None, None] * torch.diag(reg)
        # hat[q] = A^-1 P^T W: row 0 gives a, P @ hat the fitted values at the neighbours, so
        # sum_j psi_j (u_j - fit_j) has coefficients psi - (psi^T P) hat
        hat = torch.linalg.solve(a, (p * w[..., None]).transpose(1, 2))  # (Q, d + 1, k)
        coeff = hat[:, 0] + psi - torch.einsum("qi,qik->qk", torch.einsum("qk,qki->qi", psi, p), hat)
        return coeff.to(rel.dtype)

    def plan(self, sparse_reference: torch.Tensor, query: torch.Tensor, chunk: int = 32_768) -> DecodePlan:
        """Neighbour lists (KD-tree) and coefficients of a query set, built once; evaluated in chunks."""
        k = min(self.config["neighbors"], sparse_reference.shape[0])
        idx, _ = knn_bipartite(query.detach().cpu().numpy(), sparse_reference.detach().cpu().numpy(), k)
        index = torch.from_numpy(idx).to(query.device)
        coeff = query.new_empty(index.shape)
        for lo in range(0, len(idx), chunk):
            hi = min(lo + chunk, len(idx))
            coeff[lo:hi] = self.coefficients(sparse_reference[index[lo:hi]] - query[lo:hi, None])
        return DecodePlan(index, coeff, int(sparse_reference.shape[0]))

    def forward(self, sparse_reference: torch.Tensor, sparse_displacement: torch.Tensor, query: torch.Tensor,
                index: torch.Tensor) -> torch.Tensor:
        """Differentiable decoding with given neighbours ``index`` (Q, k) -> (Q, d) displacements."""
        coeff = self.coefficients(sparse_reference[index] - query[:, None])
        return torch.einsum("qk,qkd->qd", coeff, sparse_displacement[index])
