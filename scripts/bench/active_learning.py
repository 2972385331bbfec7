"""Active learning with MMGP on elasticity_shapes: test field RRMSE against solver calls per strategy.

    python scripts/bench/active_learning.py [--quick] [--json PATH] [--seeds 5] [--resume]

For each seed and each strategy (kecor, random, variance; alternating within a seed) one
`sim.active.run_active` run: `--initial` uniform simulations, then batches of `--batch`
chosen from a pool of `--pool` drawn candidates until `--budget` solver calls, MMGP refitted
every round and scored on the recipe's test split of `--size` (PLAID's field RRMSE of `u`
and `von_mises`, averaged). A seed fixes the pool and the initial simulations, shared by the
strategies (paired comparison); the test set is shared by every run.

JSON keys: `calls` (the solver-call grid), `<strategy>_rrmse_mean` / `_std` (over seeds, per
number of calls, population std), `<strategy>_curves` (per seed), `<strategy>_final_rrmse_mean`
/ `_std`, `kecor_calls_ratio`: the solver calls KECOR needs to reach random's final mean error,
linearly interpolated on KECOR's mean curve, divided by random's calls (the budget); null when
KECOR's mean curve never reaches it (likewise `variance_calls_ratio`). `train_cpu_hours`: the
CPU time of every MMGP fit; `solver_s`, `select_s`: wall time of the solves and selections.
`--quick`: the small size, budget 10, 3 seeds (a smoke test of the same quantities).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from _common import ROOT, report

STRATEGIES = ("kecor", "random", "variance")


def calls_to_reach(calls: list[int], curve: list[float], target: float) -> float | None:
    """The first number of calls at which the piecewise-linear ``curve`` reaches ``target`` (None: never)."""
    for i, (c, e) in enumerate(zip(calls, curve)):
        if e <= target:
            if i == 0:
                return float(c)
            c0, e0 = calls[i - 1], curve[i - 1]
            return float(c0 + (e0 - target) / (e0 - e) * (c - c0))
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--seeds", type=int, help="seeds 0..N-1 (default 5; quick 3)")
    ap.add_argument("--size", help="recipe size (default medium; quick small)")
    ap.add_argument("--budget", type=int, help="solver calls per run (default 60; quick 10)")
    ap.add_argument("--batch", type=int, help="solver calls per round (default 4; quick 2)")
    ap.add_argument("--initial", type=int, help="initial simulations (default 8; quick 4)")
    ap.add_argument("--pool", type=int, help="candidates per seed (default 300; quick 24)")
    ap.add_argument("--modes", type=int, help="MMGP shape and field modes (default 16; quick 8)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--workers", type=int, default=1, help="solver processes per run")
    ap.add_argument("--resume", action="store_true", help="continue the runs in --out instead of starting over")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "active_learning"))
    args = ap.parse_args()

    from sim.active import run_active

    q = args.quick
    seeds = list(range(args.seeds or (3 if q else 5)))
    size = args.size or ("small" if q else "medium")
    budget, batch = args.budget or (10 if q else 60), args.batch or (2 if q else 4)
    initial, pool = args.initial or (4 if q else 8), args.pool or (24 if q else 300)
    modes = args.modes or (8 if q else 16)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    model = {"model": {"family": "mmgp", "fields": ["u", "von_mises"], "scalars": ["E", "nu", "load"],
                       "family_args": {"shape_modes": modes, "field_modes": modes, "n_restarts": 0 if q else 2,
                                       "n_draws": 10}}}
    out = Path(args.out) / size
    recipe = ROOT / "datasets" / "elasticity_shapes.yaml"
    curves: dict[str, list[list[float]]] = {s: [] for s in strategies}
    grid: list[int] | None = None
    fit_cpu = solver_s = select_s = 0.0
    for seed in seeds:
        for s in strategies:
            run = out / f"{s}_s{seed}"
            resume = args.resume and (run / "state.json").exists()
            if run.exists() and not resume:
                shutil.rmtree(run)
            print(f"[{s}, seed {seed}]", flush=True)
            res = run_active(recipe, model, size=size, strategy=s, budget=budget, batch=batch, initial=initial,
                             pool=pool, seed=seed, out=run, workers=args.workers, resume=resume,
                             test=out / "test.h5", pool_store=out / f"pool_s{seed}.h5")
            calls = [c for c, _ in res.curve]
            if grid is not None and calls != grid:
                raise SystemExit(f"{run}: solver-call grid {calls} differs from {grid}")
            grid = calls
            curves[s].append([e for _, e in res.curve])
            fit_cpu += sum(r["fit_cpu_s"] for r in res.rounds)
            solver_s += sum(r["solve_s"] for r in res.rounds)
            select_s += sum(r["select_s"] for r in res.rounds)
    assert grid is not None
    results: dict = {"size": size, "budget": budget, "batch": batch, "initial": initial, "pool": pool,
                     "modes": modes, "strategies": strategies, "calls": grid}
    means = {}
    for s in strategies:
        a = np.array(curves[s])  # (seeds, rounds)
        means[s] = a.mean(0)
        results[f"{s}_rrmse_mean"] = means[s].tolist()
        results[f"{s}_rrmse_std"] = a.std(0).tolist()
        results[f"{s}_curves"] = a.tolist()
        results[f"{s}_final_rrmse_mean"] = float(a[:, -1].mean())
        results[f"{s}_final_rrmse_std"] = float(a[:, -1].std())
    if "random" in strategies:
        target = float(means["random"][-1])
        for s in strategies:
            if s != "random":
                reach = calls_to_reach(grid, means[s].tolist(), target)
                results[f"{s}_calls_ratio"] = None if reach is None else reach / grid[-1]
    results.update(solver_s=solver_s, select_s=select_s, fit_cpu_s=fit_cpu)

    print(f"\nfield RRMSE (mean +- std over {len(seeds)} seeds) against solver calls")
    print(f"{'calls':>6}" + "".join(f"{s:>22}" for s in strategies))
    for i, c in enumerate(grid):
        print(f"{c:>6}" + "".join(f"{results[f'{s}_rrmse_mean'][i]:>13.4g} +- {results[f'{s}_rrmse_std'][i]:<6.2g}"
                                  for s in strategies))
    report("active_learning", results, args.json, seeds=seeds, train_cpu_hours=fit_cpu / 3600)


if __name__ == "__main__":
    main()
