"""The rule for ``F.layer_norm`` (and so ``nn.LayerNorm``) over the last dimension."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from sim.verify.interval import BoundError, Interval, Pair, rule
from sim.verify.pairs import imul, imul_const


@rule(F.layer_norm)
def layer_norm(x: Interval, normalized_shape: Sequence[int], weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, eps: float = 1e-5) -> Interval:
    """y = gamma * (x - mu) / sqrt(var + eps) + beta over the last dimension.

    Forward: c = x - mean(x) exactly in centre/radius form; var within the means of the
    smallest / largest squares of c; xhat = c / sigma by interval division, clipped to
    |xhat| <= sqrt(n - 1). Backward (per row g): with a = g * gamma and s = 1/sigma,
    g_in = s * (a - mean(a) - xhat * (a . xhat) / n).
    """
    if len(normalized_shape) != 1:
        raise BoundError("layer_norm bounds are implemented over the last dimension only")
    n = x.shape[-1]
    c_mid = x.mid - x.mid.mean(-1, keepdim=True)
    c_rad = x.rad * (1 - 2.0 / n) + x.rad.sum(-1, keepdim=True) / n
    c_lo, c_hi = c_mid - c_rad, c_mid + c_rad
    sq_max = torch.maximum(c_lo**2, c_hi**2)
    sq_min = torch.where((c_lo <= 0) & (c_hi >= 0), torch.zeros_like(c_lo), torch.minimum(c_lo**2, c_hi**2))
    sig_lo = torch.sqrt(sq_min.mean(-1, keepdim=True) + eps)
    sig_hi = torch.sqrt(sq_max.mean(-1, keepdim=True) + eps)
    cand = torch.stack([c_lo / sig_lo, c_lo / sig_hi, c_hi / sig_lo, c_hi / sig_hi])
    cap = math.sqrt(max(n - 1, 1))
    xh_lo, xh_hi = cand.amin(0).clamp(min=-cap, max=cap), cand.amax(0).clamp(min=-cap, max=cap)
    gamma = weight if weight is not None else torch.ones(n, dtype=x.dtype, device=x.device)
    lo, hi = imul_const(xh_lo, xh_hi, gamma)
    if bias is not None:
        lo, hi = lo + bias, hi + bias
    s_lo, s_hi = 1.0 / sig_hi, 1.0 / sig_lo

    def back(g: Pair) -> Sequence[Pair]:
        a_lo, a_hi = imul_const(g[0], g[1], gamma)
        a_mid, a_rad = (a_lo + a_hi) / 2, (a_hi - a_lo) / 2
        t_mid = a_mid - a_mid.mean(-1, keepdim=True)
        t_rad = a_rad * (1 - 2.0 / n) + a_rad.sum(-1, keepdim=True) / n
        p_lo, p_hi = imul(a_lo, a_hi, xh_lo, xh_hi)
        dot_lo, dot_hi = p_lo.sum(-1, keepdim=True), p_hi.sum(-1, keepdim=True)
        q_lo, q_hi = imul(xh_lo, xh_hi, dot_lo / n, dot_hi / n)
        u_lo, u_hi = t_mid - t_rad - q_hi, t_mid + t_rad - q_lo
        return (imul(u_lo, u_hi, s_lo, s_hi),)

    cen = None
    if x.cen is not None:
        c0, jm, jr = x.cen
        c_out = F.layer_norm(c0, normalized_shape, weight, bias, eps)
        if jm is not None:  # J' = gamma * s * (J - mean(J) - xhat (xhat . J) / n), per symbol column
            xm, xr = ((xh_lo + xh_hi) / 2)[..., None], ((xh_hi - xh_lo) / 2)[..., None]
            tm = jm - jm.mean(-2, keepdim=True)
            tr = jr * (1 - 2.0 / n) + jr.sum(-2, keepdim=True) / n
            pm, pr = xm * jm, xm.abs() * jr + xr * (jm.abs() + jr)
            dm, dr = pm.sum(-2, keepdim=True) / n, pr.sum(-2, keepdim=True) / n
            qm, qr = xm * dm, xm.abs() * dr + xr * (dm.abs() + dr)
            um, ur = tm - qm, tr + qr
            sm, sr = ((s_lo + s_hi) / 2)[..., None], ((s_hi - s_lo) / 2)[..., None]
            g = gamma[:, None]
            jm, jr = g * sm * um, g.abs() * (sm * ur + sr * (um.abs() + ur))
        cen = (c_out, jm, jr)
    return Interval(lo, hi, x.tape, (x,), back, "layer_norm", cen=cen)
