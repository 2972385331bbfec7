"""The active-learning loop: the surrogate picks the simulations the solver runs next.

::

    result = run_active("elasticity_shapes", "mmgp.yaml", strategy="kecor", budget=40, batch=4,
                        initial=8, pool=200, seed=0, out="runs/active", workers=2)
    result.curve        # [(solver calls, test field RRMSE), ...], one point per round

One run (``out`` holds everything):

1. a pool of ``pool`` candidates is drawn from the recipe (geometry, mesh and input
   parameters; no solve) into ``pool.h5``, and a fixed test set (the recipe's ``test`` split
   of ``size``, solved) into ``test.h5``, each once;
2. ``initial`` candidates drawn uniformly (the same for every strategy at a given seed) are
   solved into ``train.h5``;
3. each round fits the surrogate on ``train.h5``, scores the test set, and, while fewer than
   ``budget`` solver calls are spent, asks the selection strategy (a ``selection`` plugin:
   ``kecor``, ``random``, ``variance``, ...) for the next ``batch`` candidates of those not yet
   chosen, and solves them (in ``workers`` processes);
4. per round, the solver calls and test errors go to ``log.csv`` and ``log.json``; the final
   model to ``model.npz``.

The test set and the pool are not solver calls of the budget (the pool is not solved; the test
set measures, it does not train).

Resuming: ``state.json`` records the run's configuration, every round's log and the batch
being solved (``pending``), written atomically *before* that batch is solved; each finished
simulation is appended to ``train.h5`` on its own. A run killed at any point and started again
with ``resume=True`` solves the pending candidates the store does not hold yet and continues:
no simulation is run twice or lost, and the selection is the one the killed run made (fits
are deterministic: samples are fitted in name order, strategies draw from a generator seeded
by (seed, round)). ``budget`` may grow on resume; everything else must be the same.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from sim.active.adapters import SurrogateAdapter, adapter_for
from sim.active.candidates import (
    Runner,
    draw_candidate,
    fill_store,
    open_store,
    read_samples,
    recipe_stages,
    simulate_entry,
    solve_candidate,
    split_params,
)
from sim.errors import SimError
from sim.mesh import Mesh
from sim.mesh.atomic import atomic_path

STATE_FORMAT = "sim.active"
STATE_VERSION = 1


class ActiveError(SimError):
    """An active-learning run cannot start or continue as asked."""


@dataclass
class ActiveResult:
    """A finished (or resumed-to-the-end) run: ``rounds`` as logged, the files it wrote."""

    out: Path
    rounds: list[dict[str, Any]]
    train: Path
    test: Path
    model: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def curve(self) -> list[tuple[int, float]]:
        """(solver calls, test error) per round; the error is ``rrmse_fields`` when the model has fields."""
        return [(r["solver_calls"], r["error"]) for r in self.rounds]


# ----------------------------------------------------------------------------- configuration
def load_model_config(model: str | Path | Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(``ModelConfig``, family options, source) of a model configuration: a YAML file or a
    mapping with a ``model`` section (as ``sim train`` reads it). The ``data``, ``optim`` and
    ``train`` sections may be present: the loop owns the data, and an adapter that trains its
    model (mesh models) reads the training settings from them (:func:`training_sections`)."""
    from sim.families import get_family
    from sim.train.config import ConfigError, ModelConfig
    from sim.train.typed import build_section

    data, source = _read_model_config(model)

    cfg = SimpleNamespace(model=build_section(ModelConfig, data["model"], "model", source, error=ConfigError))
    family = get_family(cfg.model.family)
    family.check_config(cfg, source)
    return cfg.model, family.parse_options(cfg, source), source


def training_sections(model: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The ``optim`` and ``train`` sections of a model configuration and its ``data.batch_size``
    (what a trained surrogate's adapter fits with); empty ones left out."""
    data, _ = _read_model_config(model)
    out = {k: dict(data[k]) for k in ("optim", "train") if isinstance(data.get(k), dict) and data[k]}
    if isinstance(data.get("data"), dict) and "batch_size" in data["data"]:
        out["data"] = {"batch_size": data["data"]["batch_size"]}
    return out


def _read_model_config(model: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """The configuration mapping (checked to have a ``model`` section and known sections) and its source."""
    import yaml

    from sim.train.config import SECTIONS, ConfigError

    source: Any = None
    if isinstance(model, Mapping):
        data = dict(model)
    else:
        source = Path(model)
        if not source.is_file():
            raise ConfigError("no such model configuration file" if not source.exists() else
                              "is not a file (give the model configuration YAML)", source)
        try:
            data = yaml.safe_load(source.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML ({' '.join(str(exc).split())})", source) from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ConfigError("a model configuration needs a 'model' section (model.family, model.fields, "
                          "model.scalars, ...)", source)
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown} ({', '.join(SECTIONS)})", source)
    return data, source


def _strategy(spec: str | Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    from sim.plugins import build_plugin, parse_spec

    name, params = parse_spec(spec, "selection")
    return {"name": name, **params}, build_plugin(spec, "selection")


# ----------------------------------------------------------------------------- state and logs
def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2))


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ActiveError(f"not a readable active-learning state ({exc})", path) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise ActiveError(f"not an active-learning state of version {STATE_VERSION}", path)
    return state


def _write_logs(out: Path, state: dict[str, Any]) -> None:
    """``log.csv`` (one row per round) and ``log.json`` (configuration and rounds), from the state."""
    rounds = state["rounds"]
    keys = ["round", "solver_calls", "error"]
    metrics = sorted({k for r in rounds for k in r["metrics"]}, key=lambda k: (k != "rrmse_fields", k))
    timing = ["fit_s", "fit_cpu_s", "score_s", "select_s", "solve_s"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys + metrics + timing + ["strategy"])
    for r in rounds:
        w.writerow([r[k] for k in keys] + [r["metrics"].get(k, "") for k in metrics] + [r[k] for k in timing]
                   + [state["config"]["strategy"]["name"]])
    with atomic_path(out / "log.csv") as tmp:
        tmp.write_text(buf.getvalue())
    _write_json(out / "log.json", {"config": state["config"], "budget": state["budget"], "rounds": rounds})


def _pool_name(i: int) -> str:
    return f"{i:06d}"


# ----------------------------------------------------------------------------- the loop
def run_active(recipe: str | Path, model: str | Path | Mapping[str, Any], *, size: str = "small",
               strategy: str | Mapping[str, Any] = "kecor", budget: int, batch: int, initial: int = 4,
               pool: int = 200, seed: int = 0, out: str | Path, workers: int = 1, resume: bool = False,
               test: str | Path | None = None, pool_store: str | Path | None = None, progress: bool | None = None,
               on_simulation: Callable[[str], None] | None = None) -> ActiveResult:
    """Run (or, with ``resume``, continue) an active-learning loop; see the module docstring.

    Args:
        recipe: a dataset recipe by name (``elasticity_shapes``) or file; its generator must
            have draw and solve stages (:mod:`sim.active.candidates`).
        model: the surrogate's configuration (YAML file or mapping with a ``model`` section,
            ``model.family: mmgp``).
        size: the recipe size whose parameters (mesh size, ...) and test split are used.
        strategy: a selection plugin by name or ``{"name": ..., **params}``.
        budget: total solver calls, the initial ones included.
        batch: solver calls per round.
        initial: solver calls before the first fit (uniform draws from the pool).
        pool: candidates drawn (and meshed) once; each is solved at most once.
        seed: the pool, the initial draws and the strategies' random numbers.
        out: the run's folder.
        workers: solver processes (1: in this process).
        resume: continue the run in ``out`` (it must exist).
        test: the test store (default ``out/test.h5``); generated there from the recipe's
            ``test`` split when missing, read as it is when present.
        pool_store: where the pool is kept (default ``out/pool.h5``): runs with the same recipe,
            size and seed may share one.
        progress: tqdm bars (None: when the output is a terminal).
        on_simulation: called with each simulation's entry name once it is stored.
    """
    for key, value, low in (("budget", budget, 1), ("batch", batch, 1), ("initial", initial, 1), ("pool", pool, 1),
                            ("workers", workers, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ActiveError(f"{key} must be an integer >= {low}, got {value!r}")
    if budget < initial:
        raise ActiveError(f"the budget ({budget} solver calls) is smaller than the initial simulations ({initial})")
    if pool < budget:
        raise ActiveError(f"the pool ({pool} candidates) is smaller than the budget ({budget}): each candidate is "
                          "solved at most once")
    strategy_spec, selector = _strategy(strategy)
    from solvers.recipes import load_recipe

    rec = load_recipe(recipe)
    stages = recipe_stages(rec)
    model_cfg, options, model_source = load_model_config(model)
    sections = training_sections(model)  # what an adapter that trains its model fits with
    adapter = adapter_for(model_cfg, options, model_source, sections)
    if initial < adapter.min_samples:
        raise ActiveError(f"the {model_cfg.family} surrogate needs at least {adapter.min_samples} initial simulations, "
                          f"got {initial}")
    train_params = split_params(rec, size, "train", fallback=True)
    out = Path(out)
    test_path = Path(test) if test is not None else out / "test.h5"
    test_meta = {"recipe": rec.name, "size": size, "split": "test", "seed": rec.seed, "role": "test_set"}
    # a test store this code generated (or began to) is completed; any other is the caller's, read as it is
    test_params = split_params(rec, size, "test") if _generated_here(test_path, test_meta) else None

    state_path = out / "state.json"
    config = {"recipe": rec.name, "generator": rec.generator, "recipe_seed": rec.seed, "size": size,
              "strategy": strategy_spec, "batch": batch, "initial": initial, "pool": pool, "seed": seed,
              "model": json.loads(json.dumps(_model_dict(model_cfg))),
              **({"training": json.loads(json.dumps(sections))} if sections else {}),
              "test": None if test is None else str(test_path.resolve())}
    if state_path.exists() and not resume:
        raise ActiveError("an active-learning run is here already; pass --resume to continue it or choose another "
                          "--out", state_path)
    if resume and not state_path.exists():
        raise ActiveError("no active-learning run to resume (no state.json); start it without --resume", out)
    if resume:
        state = _read_state(state_path)
        differs = [k for k in sorted(set(config) | set(state["config"])) if config.get(k) != state["config"].get(k)]
        if differs:
            shown = ", ".join(f"{k} {state['config'].get(k)!r} -> {config.get(k)!r}" for k in differs)
            raise ActiveError(f"the run differs from the one being resumed ({shown}); only the budget may change",
                              state_path)
        state["budget"] = budget
    else:
        rng = np.random.default_rng([seed, 0])
        first = sorted(_pool_name(int(i)) for i in rng.choice(pool, size=initial, replace=False))
        state = {"format": STATE_FORMAT, "version": STATE_VERSION, "config": config, "budget": budget,
                 "recipe_file": str(rec.path), "chosen": first, "pending": first, "rounds": []}
        out.mkdir(parents=True, exist_ok=True)
    _write_json(state_path, state)

    train_path = out / "train.h5"
    saved = sorted(out.glob("model.*"))
    if (resume and state.get("pending") is None and state["rounds"] and state["rounds"][-1]["solver_calls"] >= budget
            and saved):  # finished before with this budget: nothing to solve, fit or score again
        return ActiveResult(out, state["rounds"], train_path, test_path, saved[0], {"stages": stages.generator})
    pool_path = Path(pool_store) if pool_store is not None else out / "pool.h5"
    pool_split = f"active_pool_{seed}"
    pool_meta = {"recipe": rec.name, "size": size, "split": pool_split, "recipe_seed": rec.seed, "role": "pool"}
    train_meta = {"recipe": rec.name, "size": size, "role": "active_train", "strategy": strategy_spec["name"],
                  "seed": seed}
    names = [_pool_name(i) for i in range(pool)]
    with Runner(workers) as runner:
        fill_store(pool_path, pool_meta, ("recipe", "size", "split", "recipe_seed"), names, draw_candidate,
                   lambda n: (rec.generator, train_params, rec.seed, pool_split, int(n)), runner,
                   f"{rec.name}/{size} candidate pool", progress)
        if test_params is not None:
            count = next(s.count for s in rec.splits(size) if s.name == "test")
            fill_store(test_path, test_meta, tuple(test_meta), [_pool_name(i) for i in range(count)],
                       simulate_entry, lambda n: (rec.generator, test_params, rec.seed, "test", int(n)), runner,
                       f"{rec.name}/{size} test set", progress)
        test_samples = list(read_samples(test_path, kind=adapter.sample_kind).values())
        if not test_samples:
            raise ActiveError("the test store holds no samples", test_path)
        candidates = read_samples(pool_path, names, kind=Mesh)
        _loop(state, state_path, out, adapter, selector, stages, train_params, candidates, train_path, train_meta,
              test_samples, runner, seed, progress, on_simulation)
    model_path = adapter.save(out / "model.npz")
    return ActiveResult(out, state["rounds"], train_path, test_path, model_path, {"stages": stages.generator})


def _generated_here(path: Path, meta: dict[str, Any]) -> bool:
    """True when ``path`` is missing or a test store :func:`run_active` generates (``role: test_set``)."""
    from sim.mesh import Store

    if not path.exists():
        return True
    with Store(path) as s:
        return s.metadata.get("role") == meta["role"]


def _model_dict(model_cfg: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(model_cfg)


def _loop(state: dict[str, Any], state_path: Path, out: Path, adapter: SurrogateAdapter, selector: Any, stages: Any,
          params: dict[str, Any], candidates: dict[str, Any], train_path: Path, train_meta: dict[str, Any],
          test: list[Any], runner: Runner, seed: int, progress: bool | None,
          on_simulation: Callable[[str], None] | None) -> None:
    from tqdm import tqdm

    budget = state["budget"]
    from sim.mesh import StoreWriter

    # opening for append drops an entry a killed run left half-written; then read what is complete
    open_store(train_path, train_meta, ("recipe", "size", "role", "seed")).close()
    solved_samples = read_samples(train_path, kind=adapter.sample_kind)
    stored = set(solved_samples)
    writer = StoreWriter(train_path, append=True)
    try:
        stray = sorted(stored - set(state["chosen"]))
        if stray:
            raise ActiveError(f"the training store holds simulations this run did not choose ({', '.join(stray[:5])}"
                              f"{' ...' if len(stray) > 5 else ''}); it belongs to another run", train_path)
        if len(stored) > budget:
            raise ActiveError(f"the training store holds {len(stored)} simulations, more than the budget ({budget})",
                              train_path)
        bar = tqdm(total=budget, initial=len(stored), desc="solver calls", unit="sim",
                   disable=(not progress) if progress is not None else None)
        while True:
            t0 = time.perf_counter()
            todo = [n for n in state["pending"] or [] if n not in stored]
            for name, solved in runner.run(solve_candidate, [(n, (stages.generator, candidates[n], params))
                                                             for n in todo]):
                writer.append(solved, name=name)
                stored.add(name)
                solved_samples[name] = solved
                bar.update(1)
                if on_simulation is not None:
                    on_simulation(name)
            solve_s = time.perf_counter() - t0
            calls = len(stored)
            logged = state["rounds"] and state["rounds"][-1]["solver_calls"] == calls
            samples = [solved_samples[n] for n in sorted(stored)]  # name order: the fit does not depend on timing
            t0, c0 = time.perf_counter(), time.process_time()
            adapter.fit(samples, [candidates[n] for n in sorted(stored)])
            fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
            if not logged:
                t0 = time.perf_counter()
                metrics = adapter.score(test)
                score_s = time.perf_counter() - t0
                error = metrics.get("rrmse_fields", next(iter(metrics.values())))
                state["rounds"].append({"round": len(state["rounds"]), "solver_calls": calls, "error": error,
                                        "metrics": metrics, "simulated": list(state["pending"] or []),
                                        "selected": [], "fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "score_s": score_s,
                                        "select_s": 0.0, "solve_s": solve_s})
                bar.set_postfix(error=f"{error:.4g}")
            current = state["rounds"][-1]
            if calls >= budget:
                state["pending"] = None
                _write_json(state_path, state)
                _write_logs(out, state)
                break
            t0 = time.perf_counter()
            chosen = set(state["chosen"])
            left = [n for n in candidates if n not in chosen]
            k = min(state["config"]["batch"], budget - calls)
            rng = np.random.default_rng([seed, 1 + len(state["rounds"])])
            # a strategy that declares ``uses_features = False`` (random) gets (P, 0) instead of the embedded pool
            feats = (adapter.features([candidates[n] for n in left]) if getattr(selector, "uses_features", True)
                     else np.zeros((len(left), 0)))
            picks = np.asarray(selector(adapter, feats, k, rng))
            if picks.shape != (k,) or len(set(picks.tolist())) != k or picks.min() < 0 or picks.max() >= len(left):
                raise ActiveError(f"strategy {state['config']['strategy']['name']!r} returned {picks.tolist()} for a "
                                  f"batch of {k} distinct candidates out of {len(left)}")
            batch = [left[int(i)] for i in picks]
            current["selected"] = batch
            current["select_s"] = time.perf_counter() - t0
            state["chosen"] = state["chosen"] + batch
            state["pending"] = batch
            _write_json(state_path, state)  # the batch is recorded before any of it is solved
            _write_logs(out, state)
        bar.close()
    finally:
        writer.close()
