r"""Hypernetwork conditioning with magnitude-invariant parametrisation (MIP).

Ortiz, Guttag, Dalca, *Magnitude Invariant Parametrizations Improve Hypernetwork Learning*,
ICLR 2024.

A hypernetwork H maps a trajectory's parameters gamma to the weights of part of the main
network. Plain hypernetworks make the predicted weights' scale follow the scale of gamma,
which destabilises training; MIP fixes both ends:

- input encoding: each parameter gamma_i in [0, 1] becomes (cos(pi gamma_i / 2),
  sin(pi gamma_i / 2)), so the encoding's norm is sqrt(k) for every input;
- output: the predicted weights are learned base weights plus the hypernetwork's output,
  theta(gamma) = theta_0 + H(enc(gamma)), so the main network's scale does not depend on H.

Here the hypernetwork predicts the weights and bias of a :class:`HyperLinear` layer (in
MeshGraphNet: the decoder's output layer). H's last layer starts at zero, so at
initialisation the predicted weights are the base weights and the model starts as the plain
network. ``mip: false`` gives the plain hypernetwork the paper compares with (raw inputs,
weights predicted outright, default initialisation).

Deviation: the paper maps parameters to [0, 1] with their known ranges; a trajectory's
parameters reach the model as z-scores of the training set (the node normaliser), mapped to
(0, 1) by a logistic function (±3 standard deviations -> 0.05..0.95).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sim.plugins.registry import PluginError, register_plugin


def mip_encode(gamma: torch.Tensor) -> torch.Tensor:
    """(..., k) values in [0, 1] -> (..., 2k) with norm sqrt(k) for every input."""
    a = gamma * (math.pi / 2)
    return torch.cat([torch.cos(a), torch.sin(a)], dim=-1)


@register_plugin("mip_hypernet", "conditioning",
                 paper="Ortiz, Guttag, Dalca 2024, Magnitude Invariant Parametrizations Improve Hypernetwork Learning "
                       "(ICLR)",
                 summary="a hypernetwork maps trajectory parameters to a layer's weights (magnitude-invariant "
                         "encoding, residual weights)")
class HyperLinear(nn.Module):
    """A linear layer whose weights are predicted per graph from conditioning values.

    Args:
        in_features, out_features: the layer's shape.
        cond_dim: k, the number of conditioning parameters.
        hidden: the hypernetwork's width.
        layers: the hypernetwork's hidden layers.
        mip: magnitude-invariant encoding and residual weights (the paper's method); false
            for the plain hypernetwork.

    Shapes:
        h (N, in), cond (N, k) z-scores (or (N, k) values already in [0, 1] with ``unit=True``)
        -> (N, out)
    """

    def __init__(self, in_features: int, out_features: int, cond_dim: int, hidden: int = 32, layers: int = 2,
                 mip: bool = True):
        super().__init__()
        if cond_dim < 1:
            raise PluginError("conditioning plugin 'mip_hypernet' needs conditioning parameters (model.scalars)")
        if not isinstance(mip, bool) or not isinstance(hidden, int) or hidden < 1 or not isinstance(layers, int) \
                or layers < 1:
            raise PluginError("conditioning plugin 'mip_hypernet': hidden and layers are positive integers, mip a "
                              "boolean")
        self.in_features, self.out_features, self.mip = in_features, out_features, mip
        self.base = nn.Linear(in_features, out_features)
        dims = [2 * cond_dim if mip else cond_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.head = nn.Linear(dims[-1], out_features * in_features + out_features)
        self.hyper = nn.Sequential(*blocks, self.head)
        if mip:  # residual form: the predicted weights start at the base weights
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        else:  # the plain hypernetwork owns the weights: scale its output like a linear layer's init
            with torch.no_grad():
                self.head.weight.mul_(1 / math.sqrt(in_features))
                self.head.bias.mul_(1 / math.sqrt(in_features))

    def unit(self, cond: torch.Tensor) -> torch.Tensor:
        """z-scores -> (0, 1)."""
        return torch.sigmoid(cond)

    def weights(self, cond: torch.Tensor, unit: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted (W (G, out, in), b (G, out)) for G rows of conditioning values."""
        gamma = cond if unit else self.unit(cond)
        p = self.hyper(mip_encode(gamma) if self.mip else gamma)
        o, i = self.out_features, self.in_features
        w, b = p[:, : o * i].reshape(-1, o, i), p[:, o * i:]
        if self.mip:
            w, b = w + self.base.weight, b + self.base.bias
        return w, b

    def forward(self, h: torch.Tensor, cond: torch.Tensor, unit: bool = False) -> torch.Tensor:
        # one weight set per distinct parameter row (a graph's nodes share theirs)
        rows, inverse = torch.unique(cond.detach(), dim=0, return_inverse=True)
        w, b = self.weights(rows, unit)
        return torch.einsum("noi,ni->no", w[inverse], h) + b[inverse]
