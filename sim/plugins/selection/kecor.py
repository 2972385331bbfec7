r"""KECOR: the batch of simulations with the largest kernel coding rate.

Luo, Chen, Fang, Zhang, Huang, Baktashmotlagh, *Kernel Coding Rate Maximization for Active 3D
Object Detection*, ICCV 2023.

Given a positive semi-definite kernel K of the current surrogate on the P candidates and a
noise (distortion) variance :math:`\sigma^2`, the batch S of size b maximises the coding rate

.. math:: f(S) = \log\det\left(I + \frac{K_{SS}}{\sigma^2}\right)

(the number of nats needed to encode the surrogate's outputs at S up to distortion
:math:`\sigma`; for a Gaussian process with noise variance :math:`\sigma^2` it is twice the
mutual information between the batch's observations and the unknown function). f is
monotone submodular with :math:`f(\emptyset) = 0`, so the greedy batch is within a factor
:math:`1 - 1/e` of the best one (Nemhauser, Wolsey, Fisher 1978).

Greedy step. With :math:`A_S = I + K_{SS}/\sigma^2 = (\sigma^2 I + K_{SS})/\sigma^2`, adding
candidate j borders :math:`A_S` with the column :math:`k_{Sj}/\sigma^2` and the corner
:math:`1 + K_{jj}/\sigma^2`; the Schur complement gives

.. math:: f(S \cup \{j\}) - f(S)
          = \log\left(1 + \frac{K_{jj}}{\sigma^2} - \frac{k_{jS} A_S^{-1} k_{Sj}}{\sigma^4}\right)
          = \log\left(1 + \frac{s_j^2(S)}{\sigma^2}\right),\qquad
          s_j^2(S) = K_{jj} - k_{jS}\,(K_{SS} + \sigma^2 I)^{-1}\,k_{Sj}

(:math:`A_S^{-1} = \sigma^2 (K_{SS} + \sigma^2 I)^{-1}`): the gain is the log of one plus the
candidate's variance after noisy observations at S, over :math:`\sigma^2`. The residual
variances are kept up to date with the rows of the Cholesky factor
:math:`L L^T = K_{SS} + \sigma^2 I`: with :math:`v_j = L^{-1} k_{Sj}`,
:math:`s_j^2 = K_{jj} - \lVert v_j\rVert^2`, and picking p appends to every :math:`v_j` the
entry :math:`c_j = (K_{jp} - v_j \cdot v_p) / \sqrt{\sigma^2 + s_p^2}`, so
:math:`s_j^2 \leftarrow s_j^2 - c_j^2`. A batch of b costs O(P b^2) and never forms a
determinant; the sum of the gains is f(S) exactly.

Deviations from the paper: the paper's kernel is the empirical neural tangent kernel of a
detector head's proxy network (it also adds a classification-entropy term for two-stage
detectors). Here K is whatever the surrogate's scorer gives; for MMGP
(:class:`sim.active.adapters.MMGPAdapter`) it is the covariance of its Gaussian processes on
the candidates' GP inputs, by default the *posterior* covariance given the training set
(``kernel="posterior"``): for one GP whose noise is :math:`\sigma^2`, the chain rule of the
log-determinant makes f(S) with the posterior kernel equal to the coding rate of the
training set and the batch together minus that of the training set alone, so the batch
adds what the training set does not already encode. ``kernel="prior"`` uses the fitted
kernel alone (diverse batches that ignore what has been simulated). :math:`\sigma^2` is the
surrogate's fitted noise variance unless given.

Pool objective (``objective="pool"``, an option beyond the paper). f(S) values the batch for
what it encodes about itself: its first pick is the candidate of largest variance, wherever it
lies, and with a small noise variance the batches go to the edges of the input space. When the
error that matters is the average over inputs distributed like the pool (a test set drawn from
the same recipe), the batch should rather remove coding rate from the whole pool: with
:math:`\tau` a distortion level,

.. math:: g(S) = \log\det\left(I + \frac{K}{\tau}\right)
               - \log\det\left(I + \frac{K_{\cdot|S}}{\tau}\right),\qquad
          K_{\cdot|S} = K - K_{\cdot S}\,(K_{SS} + \sigma^2 I)^{-1} K_{S\cdot}

(the nats saved in encoding every candidate's output to distortion :math:`\tau` once S has
been observed with noise :math:`\sigma^2`; the coding-rate reduction of Yu, Chan, You, Song, Ma
2020, *Learning Diverse and Discriminative Representations via the Principle of Maximal Coding
Rate Reduction*). Observing candidate p lowers :math:`K_{\cdot|S}` by :math:`c\,c^T`,
:math:`c = k_p / \sqrt{K_{pp} + \sigma^2}` (with :math:`K` the current conditioned kernel), so
by the matrix determinant lemma its gain is
:math:`-\log(1 - k_p^T (\tau I + K)^{-1} k_p / (K_{pp} + \sigma^2))`; the greedy evaluates it for
every candidate with one linear solve per pick (O(b P^3)). As :math:`\tau \to \infty`,
:math:`\tau\, g(S)` tends to the summed variance the batch removes from the pool, Cohn's
criterion (*Neural network exploration using optimal experiment design*, 1994), which
``distortion: inf``, the default, uses; ``"mean"`` takes the pool's mean variance as
:math:`\tau` (on elasticity_shapes with MMGP the sum saved more solver calls, see
docs/active_learning.md). g is monotone; unlike f it is not submodular in general (variance
reduction is submodular only under conditions, Das & Kempe 2008), so the 1 - 1/e guarantee is
not claimed for it.

Error weighting (``weighting="error"``, with the pool objective at ``distortion: inf``). One
averaged kernel in the GPs' own units values a nat of every output and every candidate alike,
while the test error is a sum over outputs of errors relative to each sample's own magnitude.
A scorer with ``error_terms(features)`` gives, per output f, its kernel :math:`K_f`, its noise
variance :math:`\sigma_f^2` and per-candidate weights :math:`w_f` that turn a unit of
:math:`K_f`'s diagonal into that candidate's expected squared error in the metric's units; the
batch then removes the most expected squared error from the pool,

.. math:: h(S) = \sum_f \sum_j w_{fj}\,\left(K_{f,jj} - K_{f,jj|S}\right),

each pick adding :math:`\sum_f w_f^T (k_{f,p} \odot k_{f,p}) / (K_{f,pp} + \sigma_f^2)` and
conditioning every :math:`K_f` on it. With one output and unit weights it is the pool objective
at ``distortion: inf``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.plugins.registry import PluginError, register_plugin
from sim.plugins.selection.base import check_batch

MIN_SIGMA2 = 1e-6  # floor of the noise variance taken from a scorer (its kernel's units: data spread 1)


def _check_kernel(kernel: np.ndarray, what: str = "kernel") -> np.ndarray:
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise PluginError(f"kecor: the {what} must be a square (P, P) matrix, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise PluginError(f"kecor: the {what} has non-finite entries")
    return 0.5 * (k + k.T)


def logdet_coding_rate(kernel: np.ndarray, subset: Any, sigma2: float) -> float:
    """f(S) = logdet(I + K_SS / sigma2) from scratch (a Cholesky factor), the reference the greedy
    gains add up to. ``kernel``: (P, P); ``subset``: indices S."""
    k = _check_kernel(kernel)
    s = np.asarray(list(subset), dtype=np.int64)
    if s.size == 0:
        return 0.0
    a = np.eye(len(s)) + k[np.ix_(s, s)] / sigma2
    return float(2.0 * np.log(np.diag(np.linalg.cholesky(a))).sum())


def greedy_logdet(kernel: np.ndarray, batch: int, sigma2: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximiser of logdet(I + K_SS / sigma2) over batches of ``batch`` rows of ``kernel``.

    Args:
        kernel: (P, P) positive semi-definite matrix.
        batch: b, the batch size (1 <= b <= P).
        sigma2: the noise variance (> 0).

    Returns:
        (indices (b,) in the order picked, gains (b,)): gain t is
        f(S_t) - f(S_{t-1}) = log(1 + s^2 / sigma2), so ``gains.sum()`` is f(S).
    """
    k = _check_kernel(kernel)
    pool = len(k)
    check_batch("kecor", batch, pool)
    if not sigma2 > 0:
        raise PluginError(f"kecor: sigma2 must be > 0, got {sigma2}")
    residual = np.clip(np.diag(k).copy(), 0.0, None)  # s_j^2(S), S empty
    factor = np.zeros((pool, batch))  # row j: v_j = L^{-1} k_Sj
    taken = np.zeros(pool, dtype=bool)
    picks, gains = np.zeros(batch, dtype=np.int64), np.zeros(batch)
    for t in range(batch):
        gain = np.log1p(residual / sigma2)
        gain[taken] = -np.inf  # a noisy re-observation would still gain: exclude explicitly
        p = int(np.argmax(gain))
        picks[t], gains[t], taken[p] = p, gain[p], True
        col = (k[:, p] - factor[:, :t] @ factor[p, :t]) / np.sqrt(sigma2 + residual[p])
        factor[:, t] = col
        residual = np.clip(residual - col**2, 0.0, None)  # round-off must not make a variance negative
    return picks, gains


def _conditioned(kernel: np.ndarray, subset: np.ndarray, sigma2: float) -> np.ndarray:
    """K - K_{.S} (K_SS + sigma2 I)^-1 K_{S.}: the kernel after noisy observations at ``subset``."""
    if subset.size == 0:
        return kernel
    c = np.linalg.cholesky(kernel[np.ix_(subset, subset)] + sigma2 * np.eye(len(subset)))
    v = np.linalg.solve(c, kernel[subset])
    return kernel - v.T @ v


def pool_coding_rate(kernel: np.ndarray, subset: Any, sigma2: float, distortion: float) -> float:
    """g(S) = logdet(I + K / tau) - logdet(I + K_{.|S} / tau) from scratch (``distortion`` tau; for
    tau = inf the summed variance removed, trace(K) - trace(K_{.|S})): the reference the greedy
    pool gains add up to. ``kernel``: (P, P); ``subset``: indices S."""
    k = _check_kernel(kernel)
    s = np.asarray(list(subset), dtype=np.int64)
    after = _conditioned(k, s, sigma2)
    if np.isinf(distortion):
        return float(np.trace(k) - np.trace(after))
    eye = np.eye(len(k))
    return float(np.linalg.slogdet(eye + k / distortion)[1] - np.linalg.slogdet(eye + after / distortion)[1])


def greedy_pool_rate(kernel: np.ndarray, batch: int, sigma2: float, distortion: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximiser of the pool coding-rate reduction g(S) (see the module docstring).

    Args:
        kernel: (P, P) positive semi-definite matrix over the whole pool.
        batch: b (1 <= b <= P).
        sigma2: observation noise variance (> 0).
        distortion: tau (> 0; ``inf``: the summed variance removed from the pool).

    Returns:
        (indices (b,) in the order picked, gains (b,)): ``gains[:t].sum()`` is g of the first t picks.
    """
    k = _check_kernel(kernel)  # a new symmetric array: updated in place below
    pool = len(k)
    check_batch("kecor", batch, pool)
    if not sigma2 > 0:
        raise PluginError(f"kecor: sigma2 must be > 0, got {sigma2}")
    if not distortion > 0:
        raise PluginError(f"kecor: the distortion must be > 0, got {distortion}")
    if np.isinf(distortion):  # the summed variance removed: the error-weighted greedy with unit weights
        return greedy_weighted_variance([(k, np.ones(pool), sigma2)], batch)
    taken = np.zeros(pool, dtype=bool)
    picks, gains = np.zeros(batch, dtype=np.int64), np.zeros(batch)
    for t in range(batch):
        var = np.clip(np.diag(k), 0.0, None)
        q = np.einsum("ij,ij->j", k, np.linalg.solve(distortion * np.eye(pool) + k, k))  # k_j^T (tau I + K)^-1 k_j
        gain = -np.log1p(-np.clip(q / (var + sigma2), 0.0, 1.0 - 1e-15))
        gain[taken] = -np.inf
        p = int(np.argmax(gain))
        picks[t], gains[t], taken[p] = p, gain[p], True
        col = k[:, p] / np.sqrt(k[p, p] + sigma2)
        k -= np.outer(col, col)  # a symmetric update keeps k symmetric
    return picks, gains


def _check_terms(terms: Any) -> list[tuple[np.ndarray, np.ndarray, float]]:
    out = []
    for i, term in enumerate(terms):
        try:
            kernel, weights, sigma2 = term
        except (TypeError, ValueError):
            raise PluginError(f"kecor: error term {i} must be (kernel, weights, sigma2)") from None
        k = _check_kernel(kernel, f"kernel of error term {i}")
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != (len(k),) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise PluginError(f"kecor: error term {i} has weights of shape {w.shape} for {len(k)} candidates "
                              "(they must be finite and >= 0)")
        if not float(sigma2) > 0:
            raise PluginError(f"kecor: error term {i} has sigma2 {sigma2} (must be > 0)")
        out.append((k, w, float(sigma2)))
    if not out or len({len(k) for k, _, _ in out}) != 1:
        raise PluginError("kecor: the error terms must be one or more kernels over the same candidates")
    return out


def weighted_variance_reduction(terms: Any, subset: Any) -> float:
    """h(S) = sum_f w_f . (diag K_f - diag K_f|S) from scratch: the reference the greedy error-weighted
    gains add up to. ``terms``: (kernel (P, P), weights (P,), sigma2) per output; ``subset``: indices S."""
    s = np.asarray(list(subset), dtype=np.int64)
    return float(sum(w @ (np.diag(k) - np.diag(_conditioned(k, s, s2))) for k, w, s2 in _check_terms(terms)))


def greedy_weighted_variance(terms: Any, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximiser of the error-weighted variance reduction h(S) (see the module docstring).

    Args:
        terms: per output (kernel (P, P) over the pool, weights (P,) >= 0, noise variance sigma2 > 0).
        batch: b (1 <= b <= P).

    Returns:
        (indices (b,) in the order picked, gains (b,)): ``gains[:t].sum()`` is h of the first t picks.
    """
    terms = _check_terms(terms)  # fresh symmetric kernels: conditioned in place below
    pool = len(terms[0][0])
    check_batch("kecor", batch, pool)
    taken = np.zeros(pool, dtype=bool)
    picks, gains = np.zeros(batch, dtype=np.int64), np.zeros(batch)
    for t in range(batch):
        gain = np.zeros(pool)
        for k, w, s2 in terms:
            gain += (w @ k**2) / (np.clip(np.diag(k), 0.0, None) + s2)
        gain[taken] = -np.inf
        p = int(np.argmax(gain))
        picks[t], gains[t], taken[p] = p, gain[p], True
        for k, _, s2 in terms:
            col = k[:, p] / np.sqrt(max(k[p, p], 0.0) + s2)
            k -= np.outer(col, col)
    return picks, gains


@register_plugin("kecor", "selection",
                 paper="Luo, Chen, Fang, Zhang, Huang, Baktashmotlagh 2023, Kernel Coding Rate Maximization for "
                       "Active 3D Object Detection (ICCV)",
                 summary="the batch maximising the coding rate logdet(I + K_SS / sigma^2) of the surrogate's kernel, "
                         "greedily (monotone submodular: within 1 - 1/e of the best batch)")
class KECOR:
    """Args:
        sigma2: noise variance sigma^2 in the kernel's units (None: the scorer's ``noise()``,
            at least :data:`MIN_SIGMA2`).
        kernel: "posterior" (the surrogate's covariance given its training set) or "prior"
            (its fitted kernel alone).
        objective: "batch" (the paper's coding rate of the batch, f) or "pool" (the coding rate
            the batch removes from the whole pool, g; see the module docstring).
        distortion: tau of the pool objective: "inf" (the default: the summed variance
            removed), "mean" (the pool's mean variance under the kernel) or a number > 0.
        weighting: "none" (one kernel, every candidate alike) or "error" (the pool objective
            over the scorer's ``error_terms``: each output's kernel weighted per candidate into
            expected squared test error; needs ``objective="pool"`` and ``distortion="inf"``).

    Shapes: ``features`` (P, d) -> indices (batch,) in the order picked; the last selection's
    gains are kept in ``gains_``, its sigma^2 in ``sigma2_`` and its tau in ``distortion_``.
    """

    def __init__(self, sigma2: float | None = None, kernel: str = "posterior", objective: str = "batch",
                 distortion: float | str = "inf", weighting: str = "none"):
        if sigma2 is not None and not sigma2 > 0:
            raise PluginError(f"kecor: sigma2 must be > 0, got {sigma2}")
        if kernel not in ("posterior", "prior"):
            raise PluginError(f"kecor: kernel must be 'posterior' or 'prior', not {kernel!r}")
        if objective not in ("batch", "pool"):
            raise PluginError(f"kecor: objective must be 'batch' or 'pool', not {objective!r}")
        if distortion not in ("mean", "inf") and not (isinstance(distortion, (int, float)) and distortion > 0):
            raise PluginError(f"kecor: distortion must be 'mean', 'inf' or a number > 0, not {distortion!r}")
        if weighting not in ("none", "error"):
            raise PluginError(f"kecor: weighting must be 'none' or 'error', not {weighting!r}")
        if weighting == "error" and (objective != "pool" or distortion != "inf" or sigma2 is not None):
            raise PluginError("kecor: weighting 'error' is an option of objective 'pool' at distortion 'inf', with "
                              "the scorer's own noise variances (no sigma2)")
        self.sigma2, self.kernel, self.objective, self.distortion = sigma2, kernel, objective, distortion
        self.weighting = weighting

    def __call__(self, scorer: Any, features: np.ndarray, batch: int, rng: np.random.Generator) -> np.ndarray:
        if self.weighting == "error":
            if not hasattr(scorer, "error_terms"):
                raise PluginError(f"kecor: weighting 'error' needs a scorer with error_terms(features); "
                                  f"{type(scorer).__name__} has none")
            terms = [(k, w, max(float(s2), MIN_SIGMA2))
                     for k, w, s2 in scorer.error_terms(features, prior=self.kernel == "prior")]
            picks, self.gains_ = greedy_weighted_variance(terms, batch)
            self.sigma2_ = [s2 for _, _, s2 in terms]
            return picks
        k = scorer.kernel(features, prior=self.kernel == "prior")
        sigma2 = self.sigma2 if self.sigma2 is not None else max(float(scorer.noise()), MIN_SIGMA2)
        self.sigma2_ = sigma2
        if self.objective == "batch":
            picks, self.gains_ = greedy_logdet(k, batch, sigma2)
            return picks
        if self.distortion == "mean":
            tau = max(float(np.mean(np.clip(np.diag(k), 0.0, None))), MIN_SIGMA2)
        else:
            tau = float(self.distortion)  # "inf" -> inf
        picks, self.gains_ = greedy_pool_rate(k, batch, sigma2, tau)
        self.distortion_ = tau
        return picks
