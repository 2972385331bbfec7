"""Evaluation of PROSE on a store split: data accuracy and the quality of the generated equations.

Per sample (Liu, Zhang, Schaeffer 2023, Sec. 4.2):

- ``data_rel_l2``: ``||u_pred - u|| / ||u||`` over the predicted window (all query times and components);
- ``baseline_rel_l2``: the same for "hold the last observed value";
- ``valid``: the generated tokens parse into ``d`` components whose values are finite (and real)
  at 50 points drawn uniformly in ``[-5, 5]^d``;
- ``expr_rel_l2``: ``||f_pred(x) - f(x)|| / ||f(x)||`` over those points (``inf`` when invalid);
- ``skeleton_match``: per component, the multiset of top-level terms of the skeletons is the same
  (sympy orders the terms of a sum by its own rules, so order is not compared);
- ``integrated_rel_l2`` (optional): integrate the generated equations from the first observed
  state and compare with the data on the predicted window, as the data metric;
- ``fused_rel_l2`` (optional, :func:`fuse`): the prediction that uses both outputs: the generated
  equations integrated from the last observed state where they reproduce the observed window,
  the data decoder's prediction elsewhere; ``fused`` says which one a sample got.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy as sp
import torch

from sim.models.prose.data import ODESample, ODEWindows, PROSECollator
from sim.models.prose.loss import relative_l2
from sim.models.prose.model import PROSE
from sim.models.prose.symbols import SymbolError, SymbolVocabulary
from sim.symbolic import rhs_function, split_components


def vector_field_error(pred: Sequence[sp.Expr] | None, true: Sequence[sp.Expr], dim: int,
                       rng: np.random.Generator, points: int = 50, box: float = 5.0) -> tuple[bool, float]:
    """(valid, relative L2 of the vector field at ``points`` uniform points in ``[-box, box]^dim``)."""
    if pred is None or len(pred) != dim:
        return False, math.inf
    x = rng.uniform(-box, box, size=(dim, points))
    with np.errstate(all="ignore"):
        try:
            fp = rhs_function(list(pred), dim)(x)
        except Exception:  # noqa: BLE001 - lambdify/numpy failures on a generated expression mean "invalid"
            return False, math.inf
        ft = rhs_function(list(true), dim)(x)
    if np.iscomplexobj(fp) or not np.isfinite(fp).all():
        return False, math.inf
    return True, float(np.linalg.norm(fp - ft) / max(np.linalg.norm(ft), 1e-300))


def skeleton_match(pred_tokens: Sequence[str], true_tokens: Sequence[str], vocab: SymbolVocabulary) -> bool:
    """Same number of components and, per component, the same multiset of top-level skeleton terms."""
    try:
        p = [Counter(map(tuple, vocab.terms(c))) for c in split_components(vocab.skeleton(pred_tokens))]
        t = [Counter(map(tuple, vocab.terms(c))) for c in split_components(vocab.skeleton(true_tokens))]
    except SymbolError:
        return False
    return p == t


def integrate(exprs: Sequence[sp.Expr], u0: np.ndarray, times: np.ndarray, blowup: float = 1e4) -> np.ndarray | None:
    """States (T, d) of ``du/dt = f(u)`` from ``u0`` at ``times``; None when the solve fails or blows up."""
    from scipy.integrate import solve_ivp

    f = rhs_function(list(exprs), len(u0))

    def escape(_t: float, u: np.ndarray) -> float:
        return blowup - np.abs(u).max()

    escape.terminal = True
    with np.errstate(all="ignore"):
        try:
            sol = solve_ivp(lambda _t, u: f(u).real, (times[0], times[-1]), u0, t_eval=times, rtol=1e-5, atol=1e-6,
                            events=escape)
        except Exception:  # noqa: BLE001 - a generated right-hand side may fail in many numeric ways
            return None
    if sol.status != 0 or sol.y.shape[1] != len(times) or not np.isfinite(sol.y).all():
        return None
    return sol.y.T


def fuse(exprs: Sequence[sp.Expr] | None, times_in: np.ndarray, values_in: np.ndarray, times_out: np.ndarray,
         decoded: np.ndarray, tol: float = 0.05) -> tuple[np.ndarray, bool, float]:
    """The prediction of both modalities: (prediction (Q, d), equations used, window fit).

    The generated equations are integrated from the first observed state over the observed
    window; where that reproduces the window (relative L2 ``fit <= tol``), the prediction is the
    equations integrated from the last observed state to ``times_out``; otherwise (no equations,
    a failed or diverging solve, a poor fit) it is the data decoder's ``decoded``. The choice uses
    only what the model observed, never the future.
    """
    values_in = np.asarray(values_in, dtype=np.float64)
    times_in = np.asarray(times_in, dtype=np.float64)
    times_out = np.asarray(times_out, dtype=np.float64)
    if exprs is None or len(exprs) != values_in.shape[1] or len(times_in) < 2:
        return decoded, False, math.inf
    window = integrate(exprs, values_in[0], times_in)
    if window is None:
        return decoded, False, math.inf
    fit = float(np.linalg.norm(window - values_in) / max(np.linalg.norm(values_in), 1e-300))
    if not fit <= tol:
        return decoded, False, fit
    future = integrate(exprs, values_in[-1], np.concatenate([times_in[-1:], times_out]))
    if future is None:
        return decoded, False, fit
    return future[1:], True, fit


@torch.no_grad()
def evaluate(model: PROSE, dataset: ODEWindows | Sequence[ODESample], collator: PROSECollator, batch_size: int = 64,
             beam_size: int = 1, points: int = 50, seed: int = 0, integrate_equations: bool = False,
             max_len: int | None = None, progress: bool = False, equations: bool = True,
             fuse_tol: float | None = None) -> dict[str, Any]:
    """Metrics of ``model`` on every sample; returns per-sample arrays and the aggregates
    ``data_rel_l2_mean/median``, ``baseline_rel_l2``, ``valid_fraction``, ``skeleton_match``,
    ``expr_rel_l2_median`` (and ``integrated_rel_l2_median``), plus ``<metric>_<system>`` means.
    ``equations=False`` skips generating equations (only the data metrics, as for a data-only model).
    ``fuse_tol`` adds the prediction of both modalities (:func:`fuse` with that window tolerance):
    ``fused_rel_l2_mean/median`` and ``fused_fraction`` (the share of samples that used the equations)."""
    from tqdm import tqdm

    samples = list(dataset)
    device = next(model.parameters()).device
    vocab = model.vocab
    was_training = model.training
    model.eval()
    rows: dict[str, list[Any]] = {k: [] for k in ("system", "data_rel_l2", "baseline_rel_l2", "valid", "expr_rel_l2",
                                                   "skeleton_match", "integrated_rel_l2", "generated",
                                                   "fused_rel_l2", "fused")}
    rng = np.random.default_rng(seed)
    n_in = collator.input_points
    decode = model.symbol_output and equations
    try:
        for start in tqdm(range(0, len(samples), batch_size), desc="evaluate", unit="batch", disable=not progress):
            chunk = samples[start:start + batch_size]
            batch = collator(chunk).to(device)
            memory = model.encode(batch.times_in, batch.values_in, batch.dims, batch.symbols_in)
            pred = model.decode_data(memory, batch.times_out)
            rows["data_rel_l2"] += relative_l2(pred, batch.values_out).tolist()
            last = batch.values_in[:, -1:].expand_as(batch.values_out)
            rows["baseline_rel_l2"] += relative_l2(last, batch.values_out).tolist()
            generated: list[list[int] | None] = [None] * len(chunk)
            if decode:
                longest = max(len(s.tokens) for s in chunk)
                limit = max_len or 2 * longest + 10
                if beam_size > 1:
                    generated = [[ids for _, ids in cands] for cands in model.beam_search(memory, beam_size, limit)]
                else:
                    generated = [[ids] for ids in model.greedy(memory, limit)]
            for i, (s, cands) in enumerate(zip(chunk, generated)):
                rows["system"].append(s.system)
                exprs, toks = None, []
                for ids in cands or []:  # the best candidate that parses into d components
                    toks = vocab.to_tokens(ids)
                    try:
                        e = vocab.decode(toks)
                    except SymbolError:
                        continue
                    if len(e) == s.dim:
                        exprs = e
                        break
                valid, err = vector_field_error(exprs, s.exprs, s.dim, rng, points)
                rows["valid"].append(valid)
                rows["expr_rel_l2"].append(err)
                rows["skeleton_match"].append(exprs is not None and skeleton_match(toks, s.tokens, vocab))
                rows["generated"].append(" ".join(toks))
                integ = math.inf
                if integrate_equations and valid:
                    traj = integrate(exprs, s.state[0], s.times[: s.state.shape[0]])
                    if traj is not None:
                        out = s.state[n_in:]
                        integ = float(np.linalg.norm(traj[n_in:] - out) / np.linalg.norm(out))
                rows["integrated_rel_l2"].append(integ)
                if decode and fuse_tol is not None:
                    truth = batch.values_out[i, :, : s.dim].double().cpu().numpy()
                    fused, used, _ = fuse(exprs if valid else None, batch.times_in[i].double().cpu().numpy(),
                                          batch.values_in[i, :, : s.dim].double().cpu().numpy(),
                                          batch.times_out[i].double().cpu().numpy(),
                                          pred[i, :, : s.dim].double().cpu().numpy(), fuse_tol)
                    rows["fused_rel_l2"].append(float(np.linalg.norm(fused - truth) / max(np.linalg.norm(truth),
                                                                                        1e-300)))
                    rows["fused"].append(used)
    finally:
        model.train(was_training)
    return summarize(rows, decode, integrate_equations, fused=decode and fuse_tol is not None)


def summarize(rows: dict[str, list[Any]], symbols: bool, integrated: bool, fused: bool = False) -> dict[str, Any]:
    arr = {k: np.asarray(v) for k, v in rows.items()}
    out: dict[str, Any] = {"samples": len(arr["system"]),
                           "data_rel_l2_mean": float(arr["data_rel_l2"].mean()),
                           "data_rel_l2_median": float(np.median(arr["data_rel_l2"])),
                           "baseline_rel_l2": float(arr["baseline_rel_l2"].mean())}
    if symbols:
        out.update(valid_fraction=float(arr["valid"].mean()), skeleton_match=float(arr["skeleton_match"].mean()),
                   expr_rel_l2_median=float(np.median(arr["expr_rel_l2"])))
        if integrated:
            out["integrated_rel_l2_median"] = float(np.median(arr["integrated_rel_l2"]))
        if fused:
            out.update(fused_rel_l2_mean=float(arr["fused_rel_l2"].mean()),
                       fused_rel_l2_median=float(np.median(arr["fused_rel_l2"])),
                       fused_fraction=float(arr["fused"].mean()))
    for name in sorted(set(rows["system"])):
        m = arr["system"] == name
        out[f"data_rel_l2_{name}"] = float(arr["data_rel_l2"][m].mean())
        out[f"baseline_rel_l2_{name}"] = float(arr["baseline_rel_l2"][m].mean())
        if symbols:
            out[f"valid_fraction_{name}"] = float(arr["valid"][m].mean())
            out[f"skeleton_match_{name}"] = float(arr["skeleton_match"][m].mean())
            out[f"expr_rel_l2_median_{name}"] = float(np.median(arr["expr_rel_l2"][m]))
        if fused:
            out[f"fused_rel_l2_{name}"] = float(arr["fused_rel_l2"][m].mean())
    out["per_sample"] = rows
    return out
