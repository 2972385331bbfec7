"""Physics-level metrics of a flow rollout past an obstacle, next to the RMSE: does the
surrogate shed vortices at the right frequency, and does it get the mean flow and its
fluctuations right?

- Shedding frequency: the dominant frequency of the transverse velocity at probe nodes
  downstream of the obstacle (``2..6`` diameters behind its centre, on the axis and half a
  diameter off it). The probes' spectra (mean removed, Hann window, zero-padded FFT) are
  summed; the peak is refined by a parabola through the log-power around it. Reported for
  the prediction and the truth, their relative error, and the Strouhal number ``f D / U``
  each gives (``U``: the recipe's mean inflow speed, else the mean inflow-node speed).
- Time-mean velocity and fluctuation (per-node standard deviation over the rollout's
  steps): the relative RMSE of the prediction's against the truth's,
  ``sqrt(mean (a - b)^2) / sqrt(mean b^2)`` over nodes and components.
- For ensembles: the Spearman rank correlation, over nodes and steps, between the members'
  spread (norm of ``<field>_std``) and the error of their mean, i.e. how well the spread tells
  where the rollout is wrong.

Statistics accumulate step by step (:class:`FlowStatistics` is a step writer), so a long
rollout of a large mesh is never held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.mesh import Mesh, NodeType

PROBE_DIAMETERS = (2.0, 3.0, 4.0, 5.0, 6.0)
PROBE_OFFSETS = (0.0, 0.5)
MAX_RANK_SAMPLES = 200_000


@dataclass
class Obstacle:
    """Centre (2,), diameter and, when known, the reference (mean inflow) speed."""

    center: np.ndarray
    diameter: float
    speed: float | None = None


def find_obstacle(mesh: Mesh, params: dict[str, Any] | None = None) -> Obstacle | None:
    """The obstacle of a 2D channel flow: from the recipe's parameters (``cx``, ``cy``,
    ``radius``, ``u_mean``) when present, else the wall nodes away from the domain's bounding
    box (their centroid, and their extent across the flow as the diameter). None when there is
    no such wall (no obstacle to shed behind)."""
    params = params or {}
    if mesh.dim != 2:
        return None
    if all(k in params for k in ("cx", "cy", "radius")):
        speed = float(params["u_mean"]) if "u_mean" in params else None
        return Obstacle(np.array([float(params["cx"]), float(params["cy"])]), 2.0 * float(params["radius"]), speed)
    if mesh.node_type is None:
        return None
    pts = mesh.points[:, :2]
    lo, hi = pts.min(0), pts.max(0)
    tol = 1e-6 * float((hi - lo).max())
    walls = pts[mesh.node_type == NodeType.WALL]
    inner = walls[((walls - lo).min(1) > tol) & ((hi - walls).min(1) > tol)]
    if len(inner) < 3:
        return None
    return Obstacle(inner.mean(0), float(inner[:, 1].max() - inner[:, 1].min()))


def probe_nodes(mesh: Mesh, obstacle: Obstacle) -> np.ndarray:
    """The nodes nearest to the probe points behind the obstacle that lie inside the domain."""
    from scipy.spatial import cKDTree

    pts = mesh.points[:, :2]
    lo, hi = pts.min(0), pts.max(0)
    targets = np.array([obstacle.center + obstacle.diameter * np.array([k, s * off])
                        for k in PROBE_DIAMETERS for off in PROBE_OFFSETS for s in ((1,) if off == 0 else (1, -1))])
    targets = targets[((targets >= lo) & (targets <= hi)).all(1)]
    if not len(targets):
        return np.zeros(0, dtype=np.int64)
    _, idx = cKDTree(pts).query(targets)
    return np.unique(idx)


def spectrum(signal: np.ndarray, dt: float, pad: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, power summed over columns) of (T, P) signals: mean removed, Hann window,
    zero-padded ``pad`` times."""
    x = np.asarray(signal, dtype=np.float64).reshape(len(signal), -1)
    x = (x - x.mean(0)) * np.hanning(len(x))[:, None]
    n = pad * len(x)
    power = (np.abs(np.fft.rfft(x, n=n, axis=0)) ** 2).sum(1)
    return np.fft.rfftfreq(n, dt), power


def dominant_frequency(signal: np.ndarray, dt: float) -> float:
    """The frequency of the largest spectral peak of (T, P) signals (0 for a constant signal)."""
    freq, power = spectrum(signal, dt)
    if len(power) < 3 or power[1:].max() <= 0:
        return 0.0
    k = int(np.argmax(power[1:])) + 1
    if k + 1 >= len(power):
        return float(freq[k])
    a, b, c = np.log(np.maximum(power[k - 1:k + 2], 1e-300))
    denom = a - 2 * b + c
    shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
    return float(freq[k] + shift * (freq[1] - freq[0]))


def relative_rmse(a: np.ndarray, b: np.ndarray) -> float:
    """``sqrt(mean (a - b)^2) / sqrt(mean b^2)`` (0 when both are 0)."""
    num = float(np.sqrt(np.mean((a - b) ** 2)))
    den = float(np.sqrt(np.mean(b ** 2)))
    return num / den if den > 0 else (0.0 if num == 0 else float("inf"))


class FlowStatistics:
    """Accumulates a rollout's flow statistics step by step (a step writer: ``write(time,
    point_fields)`` with the predicted fields; ``truth(step)`` gives the true field).

    Args:
        mesh: the fixed mesh; ``params``: the trajectory's parameters (obstacle, inflow speed).
        field: the 2D velocity field's name; ``truth``: (T, N, 2) true velocity from step 0.
        t0, dt: time of step 0 and the step.
    """

    def __init__(self, mesh: Mesh, params: dict[str, Any] | None, field: str, truth: np.ndarray, t0: float,
                 dt: float):
        self.field, self.truth, self.t0, self.dt = field, truth, t0, dt
        self.obstacle = find_obstacle(mesh, params)
        self.probes = probe_nodes(mesh, self.obstacle) if self.obstacle is not None else np.zeros(0, np.int64)
        if self.obstacle is not None and self.obstacle.speed is None and mesh.node_type is not None:
            inflow = mesh.node_type == NodeType.INFLOW
            if inflow.any():
                self.obstacle.speed = float(np.linalg.norm(truth[:, inflow], axis=-1).mean())
        n = mesh.num_points
        self.sums = {k: np.zeros((n, 2)) for k in ("pred", "pred2", "true", "true2")}
        self.count = 0
        self.signal_pred: list[np.ndarray] = []
        self.signal_true: list[np.ndarray] = []
        self.spread: list[np.ndarray] = []
        self.error: list[np.ndarray] = []
        self.stride = max(1, int(np.ceil(n * len(truth) / MAX_RANK_SAMPLES)))

    def write(self, time: float, point_fields: dict[str, Any] | None = None, **_: Any) -> None:
        step = int(round((time - self.t0) / self.dt))
        if step == 0:  # the start is the truth: statistics over the predicted steps
            return
        pred = np.asarray(point_fields[self.field], dtype=np.float64).reshape(-1, 2)
        true = np.asarray(self.truth[step], dtype=np.float64).reshape(-1, 2)
        self.sums["pred"] += pred
        self.sums["pred2"] += pred ** 2
        self.sums["true"] += true
        self.sums["true2"] += true ** 2
        self.count += 1
        self.signal_pred.append(pred[self.probes, 1])
        self.signal_true.append(true[self.probes, 1])
        std = point_fields.get(f"{self.field}_std")
        if std is not None:
            pick = slice(step % self.stride, None, self.stride)
            self.spread.append(np.linalg.norm(np.asarray(std).reshape(-1, 2), axis=1)[pick])
            self.error.append(np.linalg.norm(pred - true, axis=1)[pick])

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def fields(self) -> dict[str, np.ndarray]:
        """Time-mean and fluctuation (std over time) of the prediction and the truth, (N, 2)."""
        m = max(self.count, 1)
        out = {}
        for k in ("pred", "true"):
            mean = self.sums[k] / m
            out[f"{k}_mean"] = mean
            out[f"{k}_fluct"] = np.sqrt(np.maximum(self.sums[f"{k}2"] / m - mean ** 2, 0.0))
        return out

    def metrics(self) -> dict[str, float]:
        f = self.fields()
        out = {"mean_field_rrmse": relative_rmse(f["pred_mean"], f["true_mean"]),
               "fluct_rrmse": relative_rmse(f["pred_fluct"], f["true_fluct"])}
        if len(self.probes) and self.count >= 8:
            fp = dominant_frequency(np.stack(self.signal_pred), self.dt)
            ft = dominant_frequency(np.stack(self.signal_true), self.dt)
            out.update(shedding_freq_pred=fp, shedding_freq_true=ft,
                       shedding_freq_err=abs(fp - ft) / ft if ft > 0 else float("inf"))
            if self.obstacle.speed:
                scale = self.obstacle.diameter / self.obstacle.speed
                out.update(strouhal_pred=fp * scale, strouhal_true=ft * scale)
        if self.spread:
            from scipy.stats import spearmanr

            spread, error = np.concatenate(self.spread), np.concatenate(self.error)
            rho = spearmanr(spread, error).statistic if spread.std() > 0 and error.std() > 0 else float("nan")
            out["spread_error_spearman"] = float(rho)
        return out

    def probe_png(self, path: Any, title: str) -> None:
        """The transverse velocity at the strongest probe (prediction vs truth) and the probes'
        summed spectra with the two shedding frequencies."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from sim.mesh.atomic import atomic_path

        if not len(self.probes) or not self.signal_true:
            return
        true, pred = np.stack(self.signal_true), np.stack(self.signal_pred)
        j = int(np.argmax(true.std(0)))
        t = self.t0 + self.dt * np.arange(1, len(true) + 1)
        fig, (a, b) = plt.subplots(2, 1, figsize=(7, 5.5), constrained_layout=True)
        a.plot(t, true[:, j], label="truth")
        a.plot(t, pred[:, j], "--", label="prediction")
        a.set_xlabel("t")
        a.set_ylabel("transverse velocity")
        a.set_title(f"{title}: probe node {int(self.probes[j])} behind the obstacle")
        a.legend(fontsize=8)
        for sig, name, style in ((true, "truth", "-"), (pred, "prediction", "--")):
            freq, power = spectrum(sig, self.dt)
            fpk = dominant_frequency(sig, self.dt)
            b.semilogy(freq[1:], power[1:], style, label=f"{name}: peak {fpk:.3g}")
        b.set_xlim(0, min(float(freq[-1]), 6 * max(dominant_frequency(true, self.dt), 1e-9)))
        b.set_xlabel("frequency")
        b.set_ylabel("power (probes summed)")
        b.legend(fontsize=8)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
