"""Active learning with MMGP on elasticity_shapes: test field RRMSE against solver calls per strategy.

    python scripts/bench/active_learning.py [--quick] [--json PATH] [--seeds 5] [--resume]

For each seed and each strategy (`--strategies`, default kecor, kecor_pool, kecor_pool_err, random, variance;
alternating within a seed) one `sim.active.run_active` run: `--initial` uniform simulations,
then batches of `--batch` chosen from a pool of `--pool` drawn candidates until `--budget`
solver calls, MMGP refitted
every round and scored on the recipe's test split of `--size` (PLAID's field RRMSE of `u`
and `von_mises`, averaged). A seed fixes the pool and the initial simulations, shared by the
strategies (paired comparison); the test set is shared by every run. `kecor` is the paper's
objective (the coding rate of the batch), `kecor_pool` KECOR with `objective: pool` (the coding
rate the batch removes from the whole pool, to first order: the summed pool variance removed),
`kecor_pool_mean` the same at the pool's mean variance as distortion, `kecor_pool_err` the pool
objective on each field's kernel weighted into expected squared test error (`weighting: error`);
any other label is a
selection plugin's name.

JSON keys: `calls` (the solver-call grid), `<strategy>_rrmse_mean` / `_std` (over seeds, per
number of calls, population std), `<strategy>_curves` (per seed), `<strategy>_final_rrmse_mean`
/ `_std`, `kecor_calls_ratio`: the solver calls KECOR needs to reach random's final mean error,
linearly interpolated on KECOR's mean curve, divided by random's calls (the budget); null when
KECOR's mean curve never reaches it (likewise `<strategy>_calls_ratio` for the others).
`train_cpu_hours`: the CPU time of every MMGP fit; `solver_s`, `select_s`: wall time of the
solves and selections.
`--quick`: the small size, budget 10, 3 seeds (a smoke test of the same quantities).

`--cylinder`: the same comparison for a mesh time-stepping model (MeshGraphNet, CPU preset,
viscosity as input, `--cylinder-steps` training steps per fit, default 1000) on `cylinder_flow`
(size small: 50 stored steps per trajectory; each candidate a whole trajectory), at a small
budget (`--cylinder-budget` 8, batch 2, 4 initial, a pool of 20, `--cylinder-seeds` 3), scored
by the all-rollout RMSE on the size's test trajectory; keys `cylinder_calls`,
`cylinder_<strategy>_rmse_mean` / `_std` / `_curves`, `cylinder_<strategy>_final_rmse_mean` /
`_std`, `cylinder_<strategy>_calls_ratio`, `cylinder_seeds`, `cylinder_train_cpu_hours` (its
fits; included in `train_cpu_hours`). With `--quick`: a coarse variant of the recipe (a few
hundred nodes, 4 steps), budget 4, 20 training steps, one seed. `--cylinder-only` skips MMGP.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from _common import ROOT, report

STRATEGIES = ("kecor", "kecor_pool", "kecor_pool_err", "random", "variance")
# bench labels of selection plugins with parameters (a label not here is a plugin name)
VARIANTS = {"kecor_pool": {"name": "kecor", "objective": "pool"},
            "kecor_pool_mean": {"name": "kecor", "objective": "pool", "distortion": "mean"},
            "kecor_pool_err": {"name": "kecor", "objective": "pool", "weighting": "error"}}


def calls_to_reach(calls: list[int], curve: list[float], target: float) -> float | None:
    """The first number of calls at which the piecewise-linear ``curve`` reaches ``target`` (None: never)."""
    for i, (c, e) in enumerate(zip(calls, curve)):
        if e <= target:
            if i == 0:
                return float(c)
            c0, e0 = calls[i - 1], curve[i - 1]
            return float(c0 + (e0 - target) / (e0 - e) * (c - c0))
    return None


def campaign(recipe: Path, model: dict, size: str, strategies: list[str], seeds: list[int], out: Path,
             resume: bool, workers: int, **run: int
             ) -> tuple[list[int], dict[str, list[list[float]]], dict[str, float]]:
    """Every (seed, strategy) run of one task: the solver-call grid, the error curves per
    strategy (one per seed) and the summed fit CPU, solver and selection seconds."""
    from sim.active import run_active

    curves: dict[str, list[list[float]]] = {s: [] for s in strategies}
    grid: list[int] | None = None
    timing = {"fit_cpu_s": 0.0, "solver_s": 0.0, "select_s": 0.0}
    for seed in seeds:
        for s in strategies:
            path = out / f"{s}_s{seed}"
            again = resume and (path / "state.json").exists()
            if path.exists() and not again:
                shutil.rmtree(path)
            print(f"[{recipe.stem} {s}, seed {seed}]", flush=True)
            res = run_active(recipe, model, size=size, strategy=VARIANTS.get(s, s), seed=seed, out=path,
                             workers=workers, resume=again, test=out / "test.h5", pool_store=out / f"pool_s{seed}.h5",
                             **run)
            calls = [c for c, _ in res.curve]
            if grid is not None and calls != grid:
                raise SystemExit(f"{path}: solver-call grid {calls} differs from {grid}")
            grid = calls
            curves[s].append([e for _, e in res.curve])
            timing["fit_cpu_s"] += sum(r["fit_cpu_s"] for r in res.rounds)
            timing["solver_s"] += sum(r["solve_s"] for r in res.rounds)
            timing["select_s"] += sum(r["select_s"] for r in res.rounds)
    assert grid is not None
    return grid, curves, timing


def summarise(grid: list[int], curves: dict[str, list[list[float]]], metric: str, prefix: str = "") -> dict:
    """Per strategy the mean, spread and curves of the error per number of solver calls, the final
    error, and the calls each needs to reach random's final mean error over random's calls."""
    results: dict = {}
    means = {}
    for s, rows in curves.items():
        a = np.array(rows)  # (seeds, rounds)
        means[s] = a.mean(0)
        results[f"{prefix}{s}_{metric}_mean"] = means[s].tolist()
        results[f"{prefix}{s}_{metric}_std"] = a.std(0).tolist()
        results[f"{prefix}{s}_curves"] = a.tolist()
        results[f"{prefix}{s}_final_{metric}_mean"] = float(a[:, -1].mean())
        results[f"{prefix}{s}_final_{metric}_std"] = float(a[:, -1].std())
    if "random" in curves:
        target = float(means["random"][-1])
        for s in curves:
            if s != "random":
                reach = calls_to_reach(grid, means[s].tolist(), target)
                results[f"{prefix}{s}_calls_ratio"] = None if reach is None else reach / grid[-1]
    return results


def coarse_cylinder_recipe(path: Path) -> Path:
    """The cylinder recipe with coarse meshes and four stored steps (``--quick``)."""
    import yaml

    data = yaml.safe_load((ROOT / "datasets" / "cylinder_flow.yaml").read_text())
    data["name"] = "cylinder_flow_coarse"
    data["params"].update(mesh_size=0.08, mesh_size_min=0.03, warmup=0.05, ramp=0.02)
    data["sizes"] = {"small": {"params": {"num_steps": 4}, "splits": {"train": 2, "test": 1}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def seed_list(text: str) -> list[int]:
    """``--seeds``: "N" (seeds 0..N-1) or a comma-separated list of seeds."""
    try:
        if "," not in text:
            return list(range(int(text)))
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or a comma-separated list of seeds, got {text!r}") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--seeds", type=seed_list, help="N: seeds 0..N-1 (default 5; quick 3); or a list, 0,2,4 (to split "
                    "a campaign over processes sharing --out, then gather them with N and --resume)")
    ap.add_argument("--size", help="recipe size (default medium; quick small)")
    ap.add_argument("--budget", type=int, help="solver calls per run (default 60; quick 10)")
    ap.add_argument("--batch", type=int, help="solver calls per round (default 4; quick 2)")
    ap.add_argument("--initial", type=int, help="initial simulations (default 8; quick 4)")
    ap.add_argument("--pool", type=int, help="candidates per seed (default 1000; quick 24)")
    ap.add_argument("--modes", type=int, help="MMGP shape and field modes (default 16; quick 8)")
    ap.add_argument("--restarts", type=int, help="MMGP's GP optimiser restarts per fit (default 2; quick 0)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help="MMGP campaign: labels, comma-separated")
    ap.add_argument("--cylinder-strategies", default="kecor,kecor_pool,random,variance",
                    help="the cylinder campaign's")
    ap.add_argument("--workers", type=int, default=1, help="solver processes per run")
    ap.add_argument("--resume", action="store_true", help="continue the runs in --out instead of starting over")
    ap.add_argument("--cylinder", action="store_true", help="also a mesh model on cylinder_flow at a small budget")
    ap.add_argument("--cylinder-only", action="store_true", help="only the cylinder comparison")
    ap.add_argument("--cylinder-budget", type=int, help="trajectories simulated per run (default 8; quick 4)")
    ap.add_argument("--cylinder-steps", type=int, help="training steps per fit (default 1000; quick 20)")
    ap.add_argument("--cylinder-seeds", type=seed_list, help="seeds of the cylinder runs, as --seeds (default 3; "
                    "quick 1)")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "active_learning"))
    args = ap.parse_args()

    q = args.quick
    seeds = args.seeds or list(range(3 if q else 5))
    size = args.size or ("small" if q else "medium")
    budget, batch = args.budget or (10 if q else 60), args.batch or (2 if q else 4)
    initial, pool = args.initial or (4 if q else 8), args.pool or (24 if q else 1000)
    modes = args.modes or (8 if q else 16)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    restarts = args.restarts if args.restarts is not None else (0 if q else 2)
    results: dict = {}
    fit_cpu = 0.0
    if not args.cylinder_only:
        model = {"model": {"family": "mmgp", "fields": ["u", "von_mises"], "scalars": ["E", "nu", "load"],
                           "family_args": {"shape_modes": modes, "field_modes": modes, "n_restarts": restarts,
                                           "n_draws": 10}}}
        grid, curves, timing = campaign(ROOT / "datasets" / "elasticity_shapes.yaml", model, size, strategies, seeds,
                                        Path(args.out) / size, args.resume, args.workers, budget=budget, batch=batch,
                                        initial=initial, pool=pool)
        results.update({"size": size, "budget": budget, "batch": batch, "initial": initial, "pool": pool,
                        "modes": modes, "strategies": strategies, "calls": grid})
        results.update(summarise(grid, curves, "rrmse"))
        results.update(timing)
        fit_cpu += timing["fit_cpu_s"]
    if args.cylinder or args.cylinder_only:
        c_seeds = args.cylinder_seeds or list(range(1 if q else 3))
        c_budget, c_steps = args.cylinder_budget or (4 if q else 8), args.cylinder_steps or (20 if q else 1000)
        c_out = Path(args.out) / "cylinder"
        recipe = coarse_cylinder_recipe(c_out / "coarse.yaml") if q else ROOT / "datasets" / "cylinder_flow.yaml"
        net = {"network_args": {"latent": 16, "steps": 2}} if q else {"preset": "cpu"}
        model = {"model": {"family": "mesh", "network": "meshgraphnet", **net, "fields": ["velocity"],
                           "scalars": ["nu"], "noise_std": 0.05, "pushforward": 0 if q else 2},
                 "optim": {"name": "adam", "lr": 1e-3, "lr_final": 1e-5, "schedule": "exponential"},
                 "train": {"steps": c_steps, "seed": 0, "log_every": 50, "checkpoint_every": 10**6,
                           "normalizer_accumulation_steps": min(1000, c_steps)}}
        c_batch, c_initial = (1, 2) if q else (2, 4)
        c_strategies = [s.strip() for s in args.cylinder_strategies.split(",") if s.strip()]
        c_grid, c_curves, c_timing = campaign(recipe, model, "small", c_strategies, c_seeds, c_out, args.resume,
                                              args.workers, budget=c_budget, batch=c_batch, initial=c_initial,
                                              pool=6 if q else 20)
        results.update({"cylinder_strategies": c_strategies, "cylinder_budget": c_budget, "cylinder_batch": c_batch,
                        "cylinder_initial": c_initial,
                        "cylinder_train_steps": c_steps, "cylinder_calls": c_grid, "cylinder_seeds": c_seeds,
                        "cylinder_train_cpu_hours": c_timing["fit_cpu_s"] / 3600,
                        "cylinder_solver_s": c_timing["solver_s"]})
        results.update(summarise(c_grid, c_curves, "rmse", "cylinder_"))
        fit_cpu += c_timing["fit_cpu_s"]
        print(f"\ncylinder flow: all-rollout RMSE (mean +- std over {len(c_seeds)} seeds) against simulated "
              "trajectories")
        print(f"{'calls':>6}" + "".join(f"{s:>22}" for s in c_strategies))
        for i, c in enumerate(c_grid):
            print(f"{c:>6}" + "".join(f"{results[f'cylinder_{s}_rmse_mean'][i]:>13.4g} +- "
                                      f"{results[f'cylinder_{s}_rmse_std'][i]:<6.2g}" for s in c_strategies))
    if args.cylinder_only:
        report("active_learning", results, args.json, seeds=c_seeds, train_cpu_hours=fit_cpu / 3600)
        return
    grid = results["calls"]

    print(f"\nfield RRMSE (mean +- std over {len(seeds)} seeds) against solver calls")
    print(f"{'calls':>6}" + "".join(f"{s:>22}" for s in strategies))
    for i, c in enumerate(grid):
        print(f"{c:>6}" + "".join(f"{results[f'{s}_rrmse_mean'][i]:>13.4g} +- {results[f'{s}_rrmse_std'][i]:<6.2g}"
                                  for s in strategies))
    report("active_learning", results, args.json, seeds=seeds, train_cpu_hours=fit_cpu / 3600)


if __name__ == "__main__":
    main()
