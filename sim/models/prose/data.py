"""PROSE's data: windows of stored ODE trajectories with their equations, batched with noise.

An entry of the ODE store (``sim data generate datasets/ode_systems.yaml``) holds ``state``
(T, 1, d) on ``times`` (T,) and the equations (``params["prefix"]``, the store's prefix
notation). PROSE (Sec. 4) observes the first ``input_points`` steps (64 of 192 on [0, 6])
and predicts the rest; the symbol input is the skeleton of the equations, corrupted in
training by deleting or inserting a top-level term with probability 0.15 each.

Beyond the paper, for robustness studies (``scripts/bench/prose.py``): the collator can keep
only the last points of the observed window (a fixed number at test time, a random number in
training), and :func:`parameter_box` / :func:`parameter_excess` tell how far a trajectory's
parameters lie outside those of a training set.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
import torch

from sim.errors import SimError
from sim.mesh import Store, Trajectory
from sim.models.prose.symbols import SymbolError, SymbolVocabulary
from sim.symbolic import PrefixError, from_prefix, split_components


@dataclass
class ODESample:
    """One trajectory: ``times`` (T,), ``state`` (T, d), its equations as sympy, as full
    tokens, its skeleton split into top-level terms per component, and the values of the
    system's parameters it was generated with (empty when the store does not say)."""

    name: str
    system: str
    times: np.ndarray
    state: np.ndarray
    exprs: tuple[sp.Expr, ...]
    tokens: list[str]
    skeleton_terms: list[list[list[str]]]
    parameters: dict[str, float] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.state.shape[1]


def sample_from_trajectory(traj: Trajectory, vocab: SymbolVocabulary, name: str = "", field: str = "state"
                           ) -> ODESample:
    """Read one stored ODE trajectory (raises :class:`SimError` when it is not one)."""
    if field not in traj.point_fields or "prefix" not in traj.params:
        raise SimError(f"entry {name!r} is not an ODE trajectory (needs point field {field!r} and params['prefix'])")
    state = np.asarray(traj.point_fields[field])[:, 0, :].astype(np.float64)
    try:
        exprs = from_prefix(str(traj.params["prefix"]))
        tokens = vocab.encode(exprs)
    except (PrefixError, SymbolError) as exc:
        raise SimError(f"entry {name!r}: cannot encode its equations ({exc})") from None
    if len(exprs) != state.shape[1]:
        raise SimError(f"entry {name!r} has {state.shape[1]} state components but {len(exprs)} equations")
    skel = [vocab.terms(c) for c in split_components(vocab.skeleton(tokens))]
    raw = traj.params.get("parameters") or {}
    if not isinstance(raw, dict):
        raise SimError(f"entry {name!r}: params['parameters'] must map parameter names to values, got {raw!r}")
    try:
        parameters = {str(k): float(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise SimError(f"entry {name!r}: params['parameters'] has a non-numeric value ({raw!r})") from None
    return ODESample(name, str(traj.params.get("system", "")), np.asarray(traj.times, dtype=np.float64), state,
                     exprs, tokens, skel, parameters)


class ODEWindows(torch.utils.data.Dataset):
    """All entries of one store split (ODE trajectories are small: read at once).

    Args:
        path: store file (e.g. ``.../ode_systems/medium/train.h5``).
        vocab: the model's symbol vocabulary.
        systems: keep only these system names (None: all).
        input_points: observed steps; the remaining steps are the prediction targets.
        field: ``state`` or ``state_noisy`` (the recipe's noisy sizes) as the observed input.
        limit: read at most this many entries.
    """

    def __init__(self, path: str | os.PathLike, vocab: SymbolVocabulary, systems: Sequence[str] | None = None,
                 input_points: int = 64, field: str = "state", limit: int | None = None):
        self.vocab, self.input_points = vocab, input_points
        self.samples: list[ODESample] = []
        with Store(path) as store:
            for name in store.names():
                if limit is not None and len(self.samples) >= limit:
                    break
                traj = store.read(name)
                if systems is not None and traj.params.get("system") not in systems:
                    continue
                try:
                    sample = sample_from_trajectory(traj, vocab, name, field)
                except SimError as exc:
                    raise exc.with_path(path) from None
                if sample.state.shape[0] <= input_points:
                    raise SimError(f"entry {name!r} has {sample.state.shape[0]} steps; needs more than "
                                   f"input_points = {input_points}", path)
                self.samples.append(sample)
        if not self.samples:
            raise SimError(f"no entries{' of systems ' + ', '.join(systems) if systems else ''}", path)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> ODESample:
        return self.samples[i]

    def term_pool(self) -> list[list[str]]:
        """Every distinct top-level skeleton term (the insertions of the symbol noise come from here)."""
        seen: dict[tuple[str, ...], None] = {}
        for s in self.samples:
            for comp in s.skeleton_terms:
                for t in comp:
                    seen.setdefault(tuple(t), None)
        return [list(t) for t in seen]


def parameter_box(samples: Sequence[ODESample]) -> dict[str, dict[str, tuple[float, float]]]:
    """system -> parameter -> (lowest, highest) value among ``samples`` (e.g. a training set):
    the parameter range a model trained on them has seen."""
    box: dict[str, dict[str, tuple[float, float]]] = {}
    for s in samples:
        ranges = box.setdefault(s.system, {})
        for k, v in s.parameters.items():
            lo, hi = ranges.get(k, (v, v))
            ranges[k] = (min(lo, v), max(hi, v))
    return box


def parameter_excess(sample: ODESample, box: dict[str, dict[str, tuple[float, float]]]) -> float:
    """How far ``sample``'s parameters lie outside ``box`` (:func:`parameter_box`): the largest,
    over its parameters, of ``|p - centre| / half-width`` of that parameter's range. At most 1
    inside the box; 2 means twice as far from the centre as the box's edge (for a training draw
    of +/-10 % of nominal: about 20 % from nominal). A parameter whose range is one value counts
    as 0 at that value and infinitely far elsewhere."""
    if sample.system not in box:
        raise SimError(f"entry {sample.name!r}: no parameter range of system {sample.system!r} "
                       f"(ranges of: {', '.join(sorted(box)) or 'none'})")
    ranges = box[sample.system]
    if not sample.parameters or set(sample.parameters) != set(ranges):
        raise SimError(f"entry {sample.name!r} ({sample.system}) has parameters {sorted(sample.parameters)}; "
                       f"the ranges are of {sorted(ranges)}")
    worst = 0.0
    for k, v in sample.parameters.items():
        lo, hi = ranges[k]
        half, centre = (hi - lo) / 2.0, (hi + lo) / 2.0
        if half > 0:
            worst = max(worst, abs(v - centre) / half)
        elif v != lo:
            worst = math.inf
    return worst


def corrupt_terms(terms: list[list[list[str]]], pool: Sequence[Sequence[str]], dim: int, p_delete: float,
                  p_insert: float, rng: np.random.Generator) -> list[list[list[str]]]:
    """Symbol-input noise: with probability ``p_delete`` remove one top-level term (from a component
    that has two or more), with probability ``p_insert`` add a term from ``pool`` (that uses only
    variables below ``dim``) to a random component."""
    out = [list(c) for c in terms]
    if rng.random() < p_delete:
        multi = [i for i, c in enumerate(out) if len(c) > 1]
        if multi:
            i = multi[int(rng.integers(len(multi)))]
            del out[i][int(rng.integers(len(out[i])))]
    if rng.random() < p_insert:
        fits = [t for t in pool if all(not (s[:1] == "x" and s[1:].isdigit() and int(s[1:]) >= dim) for s in t)]
        if fits:
            term = fits[int(rng.integers(len(fits)))]
            i = int(rng.integers(len(out)))
            out[i].insert(int(rng.integers(len(out[i]) + 1)), list(term))
    return out


@dataclass
class PROSEBatch:
    """Tensors of a batch (see :class:`PROSECollator`)."""

    times_in: torch.Tensor  # (B, T)
    values_in: torch.Tensor  # (B, T, D)
    dims: torch.Tensor  # (B,)
    times_out: torch.Tensor  # (B, Q)
    values_out: torch.Tensor  # (B, Q, D)
    symbols_in: torch.Tensor | None  # (B, S) skeleton ids, padded
    symbols_out: torch.Tensor  # (B, L) full ids <bos> ... <eos>, padded
    samples: list[ODESample]

    def to(self, device: torch.device | str) -> "PROSEBatch":
        move = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in self.__dict__.items()}
        return PROSEBatch(**move)


def pad_ids(rows: Sequence[Sequence[int]], pad: int) -> torch.Tensor:
    n = max(len(r) for r in rows)
    out = torch.full((len(rows), n), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


class PROSECollator:
    """Samples -> :class:`PROSEBatch`.

    Args:
        vocab: the symbol vocabulary.
        max_dim: channels of the data tokens (zero-padded).
        input_points: observed steps.
        symbols: ``"noisy"`` (skeleton with term noise), ``"clean"`` (skeleton), ``"none"`` (no guess:
            ``<bos> <eos>``) or ``"off"`` (no symbol tensor: data-only models).
        p_delete, p_insert: symbol-input noise (PROSE: 0.15 each).
        p_drop: probability of giving no guess at all (teaches the model to work without one).
        data_noise: additive Gaussian noise on the observed window, as a fraction of its RMS.
        pool: term pool for insertions (:meth:`ODEWindows.term_pool`).
        seed: the noise of batch ``k`` depends only on (seed, k).
        observed_points: keep only the last ``observed_points`` of the ``input_points`` observed
            steps (those just before the predicted window), for every batch (a test condition).
        min_input_points, p_truncate: training with shorter windows: with probability
            ``p_truncate`` a batch keeps only its last ``k`` observed steps, ``k`` uniform in
            ``[min_input_points, input_points]`` (one ``k`` per batch, so no padding mask is needed).
            The predicted window is always the steps after ``input_points``.
    """

    def __init__(self, vocab: SymbolVocabulary, max_dim: int, input_points: int = 64, symbols: str = "noisy",
                 p_delete: float = 0.15, p_insert: float = 0.15, p_drop: float = 0.0, data_noise: float = 0.0,
                 pool: Sequence[Sequence[str]] = (), seed: int = 0, observed_points: int | None = None,
                 min_input_points: int | None = None, p_truncate: float = 0.0):
        if symbols not in ("noisy", "clean", "none", "off"):
            raise SimError(f"symbols must be noisy, clean, none or off; got {symbols!r}")
        if observed_points is not None and not 1 <= observed_points <= input_points:
            raise SimError(f"observed_points must be in [1, input_points = {input_points}]; got {observed_points}")
        if not 0.0 <= p_truncate <= 1.0:
            raise SimError(f"p_truncate is a probability; got {p_truncate}")
        if p_truncate > 0:
            if min_input_points is None or not 1 <= min_input_points <= input_points:
                raise SimError(f"p_truncate > 0 needs min_input_points in [1, input_points = {input_points}]; "
                               f"got {min_input_points}")
            if observed_points is not None:
                raise SimError("observed_points (a fixed window) and p_truncate (random windows) exclude each other")
        self.vocab, self.max_dim, self.input_points, self.symbols = vocab, max_dim, input_points, symbols
        self.p_delete, self.p_insert, self.p_drop, self.data_noise = p_delete, p_insert, p_drop, data_noise
        self.observed_points, self.min_input_points, self.p_truncate = observed_points, min_input_points, p_truncate
        self.pool, self.seed, self.calls = [list(t) for t in pool], seed, 0

    def window(self, rng: np.random.Generator) -> int:
        """Observed steps of the next batch (draws from ``rng`` only when ``p_truncate > 0``)."""
        if self.observed_points is not None:
            return self.observed_points
        if self.p_truncate and rng.random() < self.p_truncate:
            return int(rng.integers(self.min_input_points, self.input_points + 1))
        return self.input_points

    def skeleton_ids(self, sample: ODESample, rng: np.random.Generator) -> list[int]:
        if self.symbols == "none" or (self.p_drop and rng.random() < self.p_drop):
            return [self.vocab.bos_id, self.vocab.eos_id]
        terms = sample.skeleton_terms
        if self.symbols == "noisy":
            terms = corrupt_terms(terms, self.pool, sample.dim, self.p_delete, self.p_insert, rng)
        toks: list[str] = []
        for i, comp in enumerate(terms):
            if i:
                toks.append("|")
            toks += self.vocab.join_terms(comp)
        return self.vocab.ids(toks)

    def __call__(self, samples: Sequence[ODESample]) -> PROSEBatch:
        rng = np.random.default_rng([self.seed, self.calls])
        self.calls += 1
        n_in = self.input_points
        k = self.window(rng)
        for s in samples:
            if s.dim > self.max_dim:
                raise SimError(f"entry {s.name!r} ({s.system}) has {s.dim} components; the model takes "
                               f"max_dim = {self.max_dim}")
        t_total = min(s.state.shape[0] for s in samples)
        b = len(samples)
        vals = np.zeros((b, t_total, self.max_dim))
        times = np.zeros((b, t_total))
        for i, s in enumerate(samples):
            vals[i, :, : s.dim] = s.state[:t_total]
            times[i] = s.times[:t_total]
        obs = vals[:, n_in - k:n_in].copy()  # the last k observed steps
        if self.data_noise:
            dims = np.array([s.dim for s in samples], dtype=np.float64)[:, None, None]
            rms = np.sqrt((obs**2).sum((1, 2), keepdims=True) / (k * dims))
            noise = self.data_noise * rms * rng.standard_normal(obs.shape)
            for i, s in enumerate(samples):
                noise[i, :, s.dim:] = 0.0
            obs = obs + noise
        sym_in = None
        if self.symbols != "off":
            sym_in = pad_ids([self.skeleton_ids(s, rng) for s in samples], self.vocab.pad_id)
        f32 = torch.float32
        return PROSEBatch(
            times_in=torch.tensor(times[:, n_in - k:n_in], dtype=f32), values_in=torch.tensor(obs, dtype=f32),
            dims=torch.tensor([s.dim for s in samples]), times_out=torch.tensor(times[:, n_in:], dtype=f32),
            values_out=torch.tensor(vals[:, n_in:], dtype=f32), symbols_in=sym_in,
            symbols_out=pad_ids([self.vocab.ids(s.tokens) for s in samples], self.vocab.pad_id),
            samples=list(samples))
