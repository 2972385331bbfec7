"""Candidate simulations of a recipe: drawn without solving, solved when chosen, stored safely.

A recipe's generator ``fn(params, seed)`` draws a sample and solves it in one call. Active
learning needs the two apart: the surrogate scores a pool of *drawn* samples (their geometry,
mesh and input parameters) and the solver runs only on the chosen ones. A generator exposes
its stages as attributes::

    generate.draw(params, seed) -> Mesh        # mesh + input scalars, nothing solved
    generate.solve(drawn, params) -> Mesh | Trajectory   # its solution (a steady sample or a trajectory)

with ``generate(params, seed) == generate.solve(generate.draw(params, seed), params)``
(:mod:`solvers.elasticity` does: meshing costs about a third of a solve there; so does
:mod:`solvers.cfd.cylinder`, whose drawn candidates carry their geometry and inflow and whose
solve is a whole trajectory). The stages
are reached through the recipe's allow-listed generator, never named by a recipe.

Entry ``i`` of a pool gets the seed :func:`solvers.recipes.entry_seed` gives entry ``i`` of the
split ``active_pool_<seed>``, so a pool is the same whatever the number of workers, and the
test set is the recipe's own ``test`` split, entry for entry. Stores are appended one entry
at a time by this process only (workers return results), each entry flagged complete only
when written (:class:`~sim.mesh.StoreWriter`): a kill loses at most the entry being written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import FileFormatError, SimError
from sim.mesh import Mesh, Store, StoreWriter, Trajectory


@dataclass(frozen=True)
class Stages:
    """The two stages of a recipe's generator (see the module docstring)."""

    generator: str
    draw: Callable[[dict[str, Any], int], Mesh]
    solve: Callable[[Mesh, dict[str, Any]], Mesh]


def recipe_stages(recipe: Any) -> Stages:
    """The draw and solve stages of ``recipe``'s generator; a generator without them is one error
    naming the recipe file."""
    from solvers.recipes import resolve

    fn = resolve(recipe.generator, recipe.path)
    draw, solve = getattr(fn, "draw", None), getattr(fn, "solve", None)
    if not (callable(draw) and callable(solve)):
        raise SimError(f"generator {recipe.generator!r} cannot draw a sample without solving it (it has no "
                       "'draw' and 'solve' stages), so active learning cannot score candidates before running the "
                       "solver; generators with stages: solvers.elasticity:generate, solvers.cfd.cylinder:generate",
                       recipe.path)
    return Stages(recipe.generator, draw, solve)


def split_params(recipe: Any, size: str, split: str, fallback: bool = False) -> dict[str, Any]:
    """Generator parameters of ``split`` of ``size`` (``fallback``: the size's first split when
    there is no such split, e.g. a recipe whose training split has another name)."""
    splits = {s.name: s for s in recipe.splits(size)}
    if split in splits:
        return dict(splits[split].params)
    if fallback:
        return dict(next(iter(splits.values())).params)
    raise SimError(f"size {size!r} has no {split!r} split (splits: {', '.join(splits)}); give a test store",
                   recipe.path)


# ----------------------------------------------------------------------------- worker tasks
def draw_candidate(generator: str, params: dict[str, Any], recipe_seed: int, split: str, index: int) -> Mesh:
    """Draw pool entry ``index`` (no solve), redrawing with the next attempt's seed on
    :class:`solvers.Rejected` as recipes do; runs in a worker."""
    from solvers import Rejected
    from solvers.recipes import MAX_ATTEMPTS, entry_seed, resolve

    draw = resolve(generator).draw
    for attempt in range(MAX_ATTEMPTS):
        seed = entry_seed(recipe_seed, split, index, attempt)
        try:
            mesh = draw({**params, "split": split, "index": index}, seed)
        except Rejected:
            continue
        if not isinstance(mesh, Mesh):
            raise SimError(f"{generator}.draw returned {type(mesh).__name__}, expected a Mesh")
        mesh.field_data["generator_seed"] = np.array([seed], dtype=np.int64)
        return mesh
    raise SimError(f"{generator}: pool entry {index} was rejected {MAX_ATTEMPTS} times")


def solve_candidate(generator: str, drawn: Mesh, params: dict[str, Any]) -> Mesh | Trajectory:
    """Run the solver on one drawn candidate (one solver call); runs in a worker."""
    from solvers.recipes import resolve

    solved = resolve(generator).solve(drawn, params)
    seed = np.asarray(drawn.field_data["generator_seed"])
    if isinstance(solved, Mesh):
        solved.field_data["generator_seed"] = seed
    elif isinstance(solved, Trajectory):
        solved.params["generator_seed"] = int(seed.reshape(-1)[0])
    else:
        raise SimError(f"{generator}.solve returned {type(solved).__name__}, expected a Mesh or a Trajectory")
    return solved


def simulate_entry(generator: str, params: dict[str, Any], recipe_seed: int, split: str, index: int) -> Mesh:
    """Entry ``index`` of a recipe split, drawn and solved as ``sim data generate`` does it."""
    from solvers.recipes import generate_entry

    return generate_entry(generator, params, recipe_seed, split, index)


# ----------------------------------------------------------------------------- execution
class Runner:
    """Runs tasks inline (``workers == 1``) or in worker processes that die with this one
    (spawned lazily, shared by every call); results come back as each task finishes."""

    def __init__(self, workers: int = 1):
        self.workers = workers
        self._pool: Executor | None = None

    def _executor(self) -> Executor:
        if self._pool is None:
            import multiprocessing

            from solvers.recipes import die_with_parent

            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=die_with_parent, initargs=(os.getpid(),))
        return self._pool

    def run(self, fn: Callable[..., Any], tasks: list[tuple[Any, tuple]]) -> Iterator[tuple[Any, Any]]:
        """``(key, fn(*args))`` for every ``(key, args)`` of ``tasks``, in the order they finish
        (at most ``2 * workers`` submitted at a time)."""
        if self.workers <= 1:
            for key, args in tasks:
                yield key, fn(*args)
            return
        pool, todo = self._executor(), list(tasks)
        running: dict[Future, Any] = {}
        while todo or running:
            while todo and len(running) < 2 * self.workers:
                key, args = todo.pop(0)
                running[pool.submit(fn, *args)] = key
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                yield running.pop(fut), fut.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- stores
def open_store(path: Path, metadata: dict[str, Any], check: tuple[str, ...] = ()) -> StoreWriter:
    """An appending writer on ``path`` (an empty store is created first, atomically). An existing
    store whose metadata differs from ``metadata`` on the keys ``check`` belongs to another run:
    one error naming it."""
    path = Path(path)
    if path.exists():
        with Store(path) as s:
            old = dict(s.metadata)
        differs = [f"{k} {old.get(k)!r} (this run: {metadata.get(k)!r})" for k in check
                   if old.get(k) != metadata.get(k)]
        if differs:
            raise FileFormatError(f"this store belongs to another run: {', '.join(differs)}; use another --out "
                                  "(or delete the store)", path)
    else:
        StoreWriter(path, metadata=metadata).close()
    return StoreWriter(path, append=True)


def read_samples(path: Path, names: list[str] | None = None, kind: type | None = None) -> dict[str, Any]:
    """Entries ``names`` (default: all, sorted by name) of a store: static samples (Mesh) or
    trajectories; ``kind`` (Mesh or Trajectory): every entry must be one, else one error naming it."""
    with Store(path) as s:
        names = sorted(s.names()) if names is None else names
        out = {}
        for n in names:
            m = s.read(n)
            if kind is not None and not isinstance(m, kind):
                what = "trajectory" if isinstance(m, Trajectory) else "static sample"
                raise FileFormatError(f"entry {n!r} is a {what}; expected "
                                      f"{'trajectories' if kind is Trajectory else 'static samples'} here", path)
            out[n] = m
    return out


def fill_store(path: Path, metadata: dict[str, Any], check: tuple[str, ...], names: list[str],
               task: Callable[..., Any], args: Callable[[str], tuple], runner: Runner, desc: str,
               progress: bool | None) -> None:
    """Make ``path`` hold every entry of ``names``: run ``task(*args(name))`` for the missing ones
    (in ``runner``) and append each result as it arrives."""
    from tqdm import tqdm

    writer = open_store(path, metadata, check)
    try:
        missing = [n for n in names if n not in set(writer.names())]
        if not missing:
            return
        bar = tqdm(total=len(names), initial=len(names) - len(missing), desc=desc, unit="sample",
                   disable=(not progress) if progress is not None else None)
        for name, mesh in runner.run(task, [(n, args(n)) for n in missing]):
            writer.append(mesh, name=name)
            bar.update(1)
        bar.close()
    finally:
        writer.close()
