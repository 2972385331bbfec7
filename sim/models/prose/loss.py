r"""PROSE's training loss (Liu, Zhang, Schaeffer 2023, Sec. 3.4).

.. math::
    \mathcal{L} = w \cdot \frac{1}{B} \sum_b \frac{\lVert \hat u_b - u_b \rVert_2^2}{\lVert u_b \rVert_2^2}
                 + \mathrm{CE}(\text{symbols}), \qquad w = 6

The relative L2 is over all query times and the sample's own components (padded channels
are zero on both sides); the cross-entropy is the mean over the non-padding target tokens
(teacher forcing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sim.models.prose.data import PROSEBatch
from sim.models.prose.model import PROSE


def relative_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B,) ``||pred - target|| / ||target||`` per sample."""
    b = pred.shape[0]
    err = (pred - target).reshape(b, -1).norm(dim=1)
    return err / target.reshape(b, -1).norm(dim=1).clamp(min=torch.finfo(target.dtype).tiny)


def prose_loss(model: PROSE, batch: PROSEBatch, data_weight: float = 6.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one batch and its parts (``data_rel_l2_sq``, ``symbol_ce``) as floats."""
    pred, logits = model(batch.times_in, batch.values_in, batch.dims, batch.times_out, batch.symbols_in,
                         batch.symbols_out if model.symbol_output else None)
    data = (relative_l2(pred, batch.values_out) ** 2).mean()
    loss = data_weight * data
    parts = {"data_rel_l2_sq": float(data.detach())}
    if logits is not None:
        target = batch.symbols_out[:, 1:]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                             ignore_index=model.vocab.pad_id)
        loss = loss + ce
        parts["symbol_ce"] = float(ce.detach())
    return loss, parts
