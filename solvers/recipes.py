"""Run dataset recipes: ``sim data generate RECIPE --size small|medium|large``.

``RECIPE`` is the name of a recipe that ships with sim (``cylinder_flow``, ...: package data in
``sim/recipes/``, found from any folder; :func:`recipe_names`) or the path of a recipe file.
Output goes to ``<out>/<split>.h5``; ``out`` defaults to ``./datasets/<name>/<size>/`` for a
recipe given by name and to ``<name>/<size>/`` beside a recipe file (so
``datasets/cylinder_flow.yaml``, a link to the packaged file in the source tree, still writes
``datasets/cylinder_flow/<size>/``). A path ``.../datasets/<name>.yaml`` that does not exist
(an installed package has no ``datasets/`` folder) means the packaged recipe ``<name>``, writing
beside that path as before.

A recipe (YAML, read with ``yaml.safe_load``)::

    name: cylinder_flow
    description: one line
    generator: solvers.cfd.cylinder:generate    # fn(params: dict, seed: int) -> Trajectory | Mesh
    statistics: null                            # optional fn(stores: dict[str, Path], params) -> dict
    seed: 20261124
    params: {...}                               # common generator parameters
    sizes:
      small:
        params: {...}                           # merged over the common params
        splits: {train: 4, valid: 1, test: 1}   # split -> count, or {count: N, params: {...}}

Guarantees:

- Deterministic: entry ``index`` of ``split`` gets the seed derived from (recipe seed,
  split name, index), whatever the number of workers or shards. A generator that raises
  :class:`solvers.Rejected` is called again with the next derived seed (attempt 1, 2, ...).
- Resumable: entries already in ``<out>/<split>.h5`` are skipped; an entry interrupted
  mid-write is removed and redone, never half-stored.
- Sharded: ``--shard i/n`` generates the indices ``index % n == i`` into
  ``<split>.shard-i-of-n.h5``; ``sim data merge DIR`` joins complete shard sets into
  ``<split>.h5`` (in index order) and then computes the statistics.
- Parallel: ``--workers N`` runs generators in N processes; the main process alone writes.
  The workers die with the process that started them: a ``sim data generate`` that is killed
  (even with SIGKILL) leaves no solver running on.

Recipes are data, not code: ``generator`` and ``statistics`` name a function from an
allow-list, checked before anything is imported, so a recipe file cannot run an arbitrary
callable (``generator: subprocess:call``). The list is

- the generators of our own solvers (:data:`GENERATORS`) and their statistics functions
  (:data:`STATISTICS`);
- functions an installed package registers on purpose in the entry-point group
  ``sim.generators`` (generators) or ``sim.dataset_statistics`` (statistics functions)::

      [project.entry-points."sim.generators"]
      my_solver = "my_pkg.solver:generate"

  A recipe names such a function by its reference (``my_pkg.solver:generate``) or by the
  entry point's name (``my_solver``).

Anything else is refused with a :class:`RecipeError` naming the recipe file.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import os
import re
import signal
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import sim.recipes as sim_recipes
from sim.errors import FileFormatError, SimError
from sim.mesh import Mesh, Store, StoreWriter, Trajectory
from solvers import Rejected

MAX_ATTEMPTS = 50

# What a recipe may name (``sim/recipes/*.yaml``); installed packages add theirs through ENTRY_POINT_GROUPS.
GENERATORS = frozenset({
    "solvers.cfd.cylinder:generate",
    "solvers.diffusion3d:generate",
    "solvers.elasticity:generate",
    "solvers.mpm:generate",
    "solvers.odes:generate",
})
STATISTICS = frozenset({"solvers.mpm:dataset_statistics"})
ENTRY_POINT_GROUPS = {"generator": "sim.generators", "statistics": "sim.dataset_statistics"}
_BUILTIN = {"generator": GENERATORS, "statistics": STATISTICS}


class RecipeError(SimError):
    """A recipe file is invalid, asks for something that does not exist or names a function off the allow-list."""


@dataclass
class Split:
    name: str
    count: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    name: str
    generator: str
    seed: int
    params: dict[str, Any]
    sizes: dict[str, dict[str, Any]]
    statistics: str | None = None
    description: str = ""
    path: Path | None = None
    home: Path | None = None  # where generate() writes <name>/<size>/ by default (None: beside `path`)

    def splits(self, size: str) -> list[Split]:
        """The splits of ``size`` with their fully merged generator parameters."""
        if size not in self.sizes:
            raise RecipeError(f"no size {size!r} (sizes: {', '.join(self.sizes)})", self.path)
        spec = self.sizes[size] or {}
        base = {**self.params, **(spec.get("params") or {})}
        out = []
        for name, s in (spec.get("splits") or {}).items():
            if isinstance(s, int):
                count, extra = s, {}
            elif isinstance(s, dict) and isinstance(s.get("count"), int):
                count, extra = s["count"], s.get("params") or {}
            else:
                raise RecipeError(f"size {size!r} split {name!r}: expected a count or {{count: N, params: ...}}",
                                  self.path)
            if not re.fullmatch(r"[A-Za-z0-9_\-]+", str(name)):
                raise RecipeError(f"size {size!r} split {name!r}: a split name is letters, digits, '_' and '-' "
                                  "(it names a file)", self.path)
            if count < 0:
                raise RecipeError(f"size {size!r} split {name!r}: negative count {count}", self.path)
            out.append(Split(str(name), count, {**base, **extra}))
        if not out:
            raise RecipeError(f"size {size!r} has no splits", self.path)
        return out


def packaged_recipes() -> dict[str, Path]:
    """Name -> file of every recipe that ships with sim (package data of :mod:`sim.recipes`, so an
    installed package has them too)."""
    from importlib.resources import files

    folder = files(sim_recipes)  # the module, not its name: looking the recipes up imports nothing
    return {item.name[: -len(".yaml")]: Path(str(item)) for item in sorted(folder.iterdir(), key=lambda i: i.name)
            if item.name.endswith(".yaml")}


def recipe_names() -> list[str]:
    """The names ``sim data generate NAME`` accepts."""
    return list(packaged_recipes())


def find_recipe(ref: str | Path) -> tuple[Path, Path | None]:
    """The recipe file ``ref`` means, and the folder its data goes to by default (None: beside
    the file). See the module docstring: an existing file, a packaged recipe's name, or a
    ``datasets/<name>.yaml`` path of the source tree."""
    path = Path(ref)
    packaged = packaged_recipes()
    if path.is_file():
        if path.stem in packaged and path.resolve() == packaged[path.stem].resolve() and \
                path.parent.resolve() == packaged[path.stem].parent.resolve():
            return path, Path("datasets")  # the installed file itself: write under the current folder
        return path, None
    if path.exists():
        raise RecipeError("is a folder, not a recipe file", path)
    name = path.name[: -len(path.suffix)] if path.suffix.lower() in (".yaml", ".yml") else path.name
    if name in packaged:
        if len(path.parts) == 1:  # a bare name
            return packaged[name], Path("datasets")
        if path.parent.name == "datasets":  # the old source-tree path, absent from an installed package
            return packaged[name], path.parent
    raise RecipeError(f"no such recipe file or name (recipes that ship with sim: {', '.join(packaged) or 'none'}; "
                      "or give the path of a recipe file)", ref)


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe, given by name (``cylinder_flow``) or file; errors name the file
    and the key."""
    path, home = find_recipe(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"not valid YAML ({exc})".replace("\n", " "), path) from None
    if not isinstance(data, dict):
        raise RecipeError("a recipe must be a YAML mapping", path)
    for key in ("name", "generator", "sizes"):
        if key not in data:
            raise RecipeError(f"missing key {key!r}", path)
    if not isinstance(data["sizes"], dict) or not data["sizes"]:
        raise RecipeError("'sizes' must map size names to {params, splits}", path)
    statistics = data.get("statistics")
    recipe = Recipe(
        name=str(data["name"]), generator=str(data["generator"]), seed=int(data.get("seed", 0)),
        params=dict(data.get("params") or {}), sizes=dict(data["sizes"]),
        statistics=None if statistics is None else str(statistics),
        description=str(data.get("description", "")), path=path, home=home,
    )
    resolve(recipe.generator, path)
    if recipe.statistics:
        resolve(recipe.statistics, path, "statistics")
    return recipe


def _allowed_target(ref: str, kind: str) -> str | None:
    """The ``module:function`` that ``ref`` may stand for as a recipe's ``kind``, or None.

    Reads only package metadata (entry points), never imports a module: a refused name must
    not get to run the import-time code of whatever it names."""
    if ref in _BUILTIN[kind]:
        return ref
    for ep in entry_points(group=ENTRY_POINT_GROUPS[kind]):
        target = f"{ep.module}:{ep.attr}"
        if ref in (ep.name, target):
            return target
    return None


def allowed(kind: str = "generator") -> list[str]:
    """Every function a recipe may name as its ``kind`` (``generator`` or ``statistics``): ours,
    then the entry points of installed packages as ``name (module:function)``."""
    registered = [f"{ep.name} ({ep.module}:{ep.attr})" for ep in entry_points(group=ENTRY_POINT_GROUPS[kind])]
    return sorted(_BUILTIN[kind]) + sorted(registered)


def resolve(ref: str, path: Path | None = None, kind: str = "generator") -> Callable[..., Any]:
    """The function a recipe names as its ``kind`` (``generator`` or ``statistics``), after
    checking it is on the allow-list (see the module docstring)."""
    target = _allowed_target(ref, kind)
    if target is None:
        raise RecipeError(f"{kind} {ref!r} is not allowed: a recipe names one of {', '.join(allowed(kind))}, or a "
                          f"function an installed package registers in the entry-point group "
                          f"{ENTRY_POINT_GROUPS[kind]!r}", path)
    module_name, _, attr = target.partition(":")
    try:
        fn = functools.reduce(getattr, attr.split("."), importlib.import_module(module_name))
    except Exception as exc:  # a broken installed package must be one readable error
        raise RecipeError(f"cannot load {kind} {ref!r} ({type(exc).__name__}: {exc})", path) from None
    if not callable(fn):
        raise RecipeError(f"{kind} {ref!r} is not callable", path)
    return fn


def entry_seed(recipe_seed: int, split: str, index: int, attempt: int = 0) -> int:
    """Seed of one entry: independent of workers, shards and the order of generation."""
    words = [recipe_seed & 0xFFFFFFFF, zlib.crc32(split.encode()), index, attempt]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint32)[0])


def entry_name(index: int) -> str:
    return f"{index:06d}"


def generate_entry(generator: str, params: dict[str, Any], recipe_seed: int, split: str,
                   index: int) -> Trajectory | Mesh:
    """Run the generator for one entry, redrawing on :class:`Rejected` (runs in a worker)."""
    fn = resolve(generator)
    reasons = []
    for attempt in range(MAX_ATTEMPTS):
        seed = entry_seed(recipe_seed, split, index, attempt)
        try:
            obj = fn({**params, "split": split, "index": index}, seed)
        except Rejected as exc:
            reasons.append(str(exc))
            continue
        if isinstance(obj, Trajectory):
            obj.params = {**obj.params, "seed": seed, "split": split, "index": index, "attempt": attempt}
        elif isinstance(obj, Mesh):
            obj.field_data["generator_seed"] = np.array([seed], dtype=np.int64)
        else:
            raise RecipeError(f"{generator} returned {type(obj).__name__}, expected a Trajectory or Mesh")
        return obj
    raise RecipeError(f"{generator}: split {split!r} entry {index} was rejected {MAX_ATTEMPTS} times "
                      f"(last reason: {reasons[-1] if reasons else '?'})")


def _shard_path(out: Path, split: str, shard: tuple[int, int] | None) -> Path:
    return out / (f"{split}.h5" if shard is None else f"{split}.shard-{shard[0]}-of-{shard[1]}.h5")


def _complete(path: Path, names: list[str]) -> bool:
    """Whether the store at ``path`` holds every entry of ``names`` (checked read-only, so that a
    finished dataset can be shared by processes that read it while another one starts)."""

    if not path.exists():
        return False
    try:
        with Store(path) as s:
            return s.complete(names)
    except SimError:
        return False


def _has_statistics(recipe: Recipe, paths: dict[str, Path]) -> bool:
    """Whether every store already records the recipe's statistics (or the recipe has none)."""

    if not recipe.statistics:
        return True
    try:
        for p in paths.values():
            with Store(p) as s:
                if "statistics" not in s.metadata:
                    return False
    except SimError:
        return False
    return True


def _open_for_append(path: Path, metadata: dict[str, Any]) -> StoreWriter:
    if not path.exists():
        StoreWriter(path, metadata=metadata).close()  # an empty store, created atomically
    return StoreWriter(path, append=True)


def default_out(recipe: Recipe, size: str) -> Path:
    """Where :func:`generate` writes ``size`` without ``out``: ``./datasets/<name>/<size>/`` for a
    recipe given by name, ``<name>/<size>/`` beside a recipe file."""
    home = recipe.home or (recipe.path.parent if recipe.path else Path("datasets"))
    return home / recipe.name / size


def generate(recipe: Recipe, size: str, out: Path | None = None, workers: int = 1,
             shard: tuple[int, int] | None = None, progress: bool | None = None) -> dict[str, Path]:
    """Generate every missing entry of ``size``; returns split -> store path."""
    from tqdm import tqdm

    # everything that can be refused is, before the output folder exists
    if workers < 1:
        raise RecipeError(f"--workers must be >= 1, got {workers}")
    if shard is not None and not (0 <= shard[0] < shard[1]):
        raise RecipeError(f"shard {shard[0]}/{shard[1]} is out of range (use i/n with 0 <= i < n)")
    splits = recipe.splits(size)
    out = default_out(recipe, size) if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metadata = {"recipe": recipe.name, "size": size, "seed": recipe.seed}
    todo: list[tuple[Split, int]] = []
    writers: dict[str, StoreWriter] = {}
    paths: dict[str, Path] = {}
    try:
        for sp in splits:
            paths[sp.name] = _shard_path(out, sp.name, shard)
            mine = [i for i in range(sp.count) if shard is None or i % shard[1] == shard[0]]
            if _complete(paths[sp.name], [entry_name(i) for i in mine]):
                continue  # read only: other processes may be reading it
            writers[sp.name] = _open_for_append(paths[sp.name], {**metadata, "split": sp.name})
            done = set(writers[sp.name].names())
            todo += [(sp, i) for i in mine if entry_name(i) not in done]
        bar = tqdm(total=len(todo), desc=f"{recipe.name}/{size}", unit="entry",
                   disable=(not progress) if progress is not None else None)
        t0 = time.perf_counter()
        for (sp, i), obj in _run(recipe, todo, workers):
            writers[sp.name].append(obj, name=entry_name(i))
            bar.update(1)
        bar.close()
        elapsed = time.perf_counter() - t0
    finally:
        for w in writers.values():
            w.close()
    if shard is None and (todo or not _has_statistics(recipe, paths)):
        write_statistics(recipe, paths, splits)
    if todo:
        print(f"{recipe.name}/{size}: generated {len(todo)} entries in {elapsed:.1f} s "
              f"({elapsed / len(todo):.2f} s per entry with {workers} worker(s)) into {out}")
    return paths


def _run(recipe: Recipe, todo: list[tuple[Split, int]], workers: int) -> Iterator[tuple[tuple[Split, int], Any]]:
    """Results in the order of ``todo``; at most ``2 * workers`` generated entries wait in memory."""
    if workers <= 1:
        for sp, i in todo:
            yield (sp, i), generate_entry(recipe.generator, sp.params, recipe.seed, sp.name, i)
        return
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        pending: deque[tuple[tuple[Split, int], Future]] = deque()
        items = iter(todo)
        for key in items:
            pending.append((key, pool.submit(generate_entry, recipe.generator, key[0].params, recipe.seed,
                                             key[0].name, key[1])))
            if len(pending) >= 2 * workers:
                break
        while pending:
            key, fut = pending.popleft()
            result = fut.result()
            nxt = next(items, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(generate_entry, recipe.generator, nxt[0].params, recipe.seed,
                                                 nxt[0].name, nxt[1])))
            yield key, result


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Initializer of a generation worker: end it when ``parent``, the process that started it,
    dies. A killed ``sim data generate`` (SIGKILL included, which runs no clean-up) would
    otherwise leave its workers computing entries nobody writes, for hours on large sizes.

    On Linux the kernel kills the worker (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, immediate even
    while a solver is deep in native code); elsewhere a daemon thread notices the parent has
    changed (:func:`watch_parent`)."""
    if not _kill_on_parent_death():
        threading.Thread(target=watch_parent, args=(parent,), name="watch-parent", daemon=True).start()
    if os.getppid() != parent:  # it died before the above was armed
        os._exit(1)


def _kill_on_parent_death() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch_parent(parent: int, interval: float = 0.5) -> None:
    """Exit this process as soon as its parent is no longer ``parent`` (the portable fallback of
    :func:`die_with_parent`: an orphan is adopted by another process, so its parent pid changes)."""
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def write_statistics(recipe: Recipe, paths: dict[str, Path], splits: list[Split]) -> None:
    """Run the recipe's statistics hook over the finished stores and record it in their metadata."""
    if not recipe.statistics:
        return
    fn = resolve(recipe.statistics, recipe.path, "statistics")
    stats = fn(dict(paths), splits[0].params)
    for p in paths.values():
        with StoreWriter(p, append=True, metadata={"statistics": stats}):
            pass


_SHARD = re.compile(r"^(?P<split>[A-Za-z0-9_\-]+)\.shard-(?P<i>\d+)-of-(?P<n>\d+)\.h5$")


def merge_shards(directory: str | Path, recipe: Recipe | None = None) -> dict[str, Path]:
    """Join ``<split>.shard-i-of-n.h5`` files into ``<split>.h5`` (entries in index order)."""
    directory = Path(directory)
    groups: dict[str, dict[int, Path]] = {}
    counts: dict[str, int] = {}
    for p in sorted(directory.glob("*.shard-*-of-*.h5")):
        m = _SHARD.match(p.name)
        if m:
            groups.setdefault(m["split"], {})[int(m["i"])] = p
            counts[m["split"]] = int(m["n"])
    if not groups:
        raise FileFormatError("no shard files (<split>.shard-i-of-n.h5) to merge", directory)
    merged = {}
    for split, shards in groups.items():
        n = counts[split]
        missing = sorted(set(range(n)) - set(shards))
        if missing:
            raise FileFormatError(f"split {split!r} is missing shards {missing} of {n}", directory)
        target = directory / f"{split}.h5"
        stores = [Store(shards[i]) for i in range(n)]
        try:
            owner = {name: s for s in stores for name in s.names()}
            with StoreWriter(target, metadata=stores[0].metadata) as w:
                for name in sorted(owner):
                    w.append(owner[name].read(name), name=name)
        finally:
            for s in stores:
                s.close()
        for p in shards.values():
            p.unlink()
        merged[split] = target
    if recipe is not None and recipe.statistics:
        write_statistics(recipe, merged, [Split(k, 0, recipe.params) for k in merged])
    return merged


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", text)
    if not m or int(m[2]) < 1:
        raise RecipeError(f"--shard {text!r}: expected i/n, e.g. 0/4")
    return int(m[1]), int(m[2])
