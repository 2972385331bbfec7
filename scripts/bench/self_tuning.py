"""Self-tuned input noise on cylinder flow: MeshGraphNet with the noise scale tuned during the run
(`train.self_tuning`, sim.plugins.training.self_tuning) against the hand-tuned scale, at the same CPU budget.

    python scripts/bench/self_tuning.py [--quick] [--json PATH] [--size medium] [--train-seconds S]
                                        [--starts 0.01 0.2] [--hand-noise 0.05] [--range 0.002 0.5]
                                        [--every 20] [--lr 0.05] [--tune-rollout 24] [--warmup 1500]
                                        [--log-loss | --no-log-loss]
                                        [--seed S] [--seeds N]
                                        [--data DIR]
                                        [--resume] [--out DIR] [--only [VARIANT ...]]

Each seed trains, alternating within the seed so that the machine's load is shared:

- `hand`: input noise --hand-noise (0.05, the value found by hand for this data) on every sample;
- `stn<start>` for each --starts value: the noise scale starts there and is tuned in --range
  (log-uniform) by a hyperparameter step every --every (20) training steps (Adam, --lr 0.05) on
  the log of the error of the step after --tune-rollout (24) of the model's own steps from clean
  states of the valid split, from training step --warmup (1500) on (further than the training
  pushforward: the noise is there for long rollouts, and what a horizon's drift rewards is a
  noise of that drift's size: 8 steps kept the noise near 0.01);

all with the settings of `mgn_cylinder.py` (CPU preset, viscosity as input, pushforward 2,
Adam 1e-3 -> 1e-5) for --train-seconds of this process's CPU time each (default 1200; quick 60),
the step count planned from a probe of each run (a self-tuned step costs a little more: its
hyperparameter steps are in the budget). Each checkpoint is rolled out on the test split with
ground-truth boundary values and the divergence-free correction; the metrics are kept in the
run's folder (`rollout_metrics.json`), so that `--only` processes can train and roll out runs
beside the one that collects them into the JSON (`--resume`).

JSON keys, per variant `<v>` (hand, stn0.01, stn0.2, ...): `<v>_rmse_1`, `<v>_rmse_50`,
`<v>_rmse_all` and the flow metrics (means over seeds, `_std` their spread, `<v>_per_seed`),
`<v>_train_steps` and `<v>_train_s` (means), for tuned variants `<v>_final_noise_std` (mean and
`_std` over seeds) and `<v>_noise_trajectory` (per seed: [step, value] at every hyperparameter
step, thinned to at most 200 points); `stn_rmse_ratio_<start>` = that variant's mean all-rollout
RMSE / hand's, `stn_rmse_ratio` = the largest of them (the target: <= 1.1);
`persistence_rmse_50` / `_all`; seeds, train_cpu_hours, commit, machine.
`--quick`: the small size, 60 s per run, one seed (the same quantities, not a measurement).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from _common import ROOT, peak_mem_mb, report
from _mesh_models import (
    SEED_KEYS,
    add_only_option,
    cylinder_data,
    cylinder_parser,
    kept_rollout_metrics,
    only_variants,
    over_seeds,
    set_threads,
    train_for_budget,
)


def noise_trajectory(run: Path, points: int = 200) -> list[list[float]]:
    """[step, noise_std] of every hyperparameter step of a run (its self_tuning.csv), thinned."""
    with (run / "self_tuning.csv").open() as f:
        rows = [[float(r["step"]), float(r["noise_std"])] for r in csv.DictReader(f)]
    if len(rows) > points:
        rows = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, points)]
    return rows


def main() -> None:
    ap = cylinder_parser(__doc__)
    ap.add_argument("--train-seconds", type=float, help="CPU seconds of every run (default 1200; quick 60)")
    ap.add_argument("--starts", type=float, nargs="+", default=[0.01, 0.2], help="initial noise of tuned runs")
    ap.add_argument("--hand-noise", type=float, default=0.05, help="the hand-tuned noise scale")
    ap.add_argument("--range", type=float, nargs=2, default=[0.002, 0.5], metavar=("LO", "HI"),
                    help="range of the tuned noise scale")
    ap.add_argument("--every", type=int, default=20, help="training steps between hyperparameter steps")
    ap.add_argument("--lr", type=float, default=0.05, help="Adam learning rate of the hyperparameters")
    ap.add_argument("--tune-rollout", type=int, default=24,
                    help="model steps from a clean state before the step the tuning loss scores")
    ap.add_argument("--warmup", type=int, help="training steps before the first hyperparameter step "
                                                 "(default 1500; quick 0)")
    ap.add_argument("--log-loss", action=argparse.BooleanOptionalAction, default=True,
                    help="tune on the log of the tuning loss")
    ap.add_argument("--scalars", nargs="*", default=["nu"])
    ap.add_argument("--pushforward", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="first training seed")
    ap.add_argument("--seeds", type=int, help="seeds seed, seed + 1, ... (default 3; quick 1)")
    ap.add_argument("--resume", action="store_true", help="continue interrupted runs in --out (finished ones "
                                                           "are reused)")
    ap.add_argument("--workers", type=int, default=2, help="solver processes if the data must be generated")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "self_tuning"))
    add_only_option(ap, "hand, stn<start>")
    args = ap.parse_args()
    set_threads(args.threads)
    lo, hi = args.range
    if not 0 < lo < hi or any(not lo <= s <= hi for s in args.starts):
        raise SystemExit(f"--range must be 0 < LO < HI around every --starts value; got {args.range}, {args.starts}")

    size = args.size or ("small" if args.quick else "medium")
    seconds = args.train_seconds or (60.0 if args.quick else 1200.0)
    if args.warmup is None:
        args.warmup = 0 if args.quick else 1500
    seeds = [args.seed + i for i in range(args.seeds or (1 if args.quick else 3))]
    t0 = time.perf_counter()
    paths = cylinder_data(size, args.data, args.workers)
    gen_s = time.perf_counter() - t0
    out = Path(args.out)
    variants: dict[str, dict | None] = {"hand": None}
    variants.update({f"stn{s:g}": {"noise_std": {"init": s, "range": [lo, hi]}, "every": args.every, "lr": args.lr,
                                   "rollout_steps": args.tune_rollout, "warmup": args.warmup,
                                   "log_loss": args.log_loss} for s in args.starts})

    only = only_variants(args.only, list(variants))
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for seed in seeds:
        for name, tuning in variants.items():
            if only is not None and name not in only:
                continue
            run = out / f"run_{size}_{name}_t{seconds:g}_seed{seed}"
            summary = train_for_budget({
                "model": {"network": "meshgraphnet", "preset": "cpu", "fields": ["velocity"], "target": "delta",
                          "noise_std": args.hand_noise if tuning is None else tuning["noise_std"]["init"],
                          "scalars": args.scalars, "pushforward": args.pushforward},
                "data": {"train": str(paths["train"]), "valid": str(paths["valid"]), "batch_size": 1},
                "optim": {"name": "adam", "lr": 1e-3, "lr_final": 1e-5, "schedule": "exponential"},
                "train": {"steps": 1, "seed": seed, "log_every": 100, "checkpoint_every": 1000,
                          "normalizer_accumulation_steps": 1000, "tensorboard": False, "out": str(run),
                          **({"self_tuning": tuning} if tuning else {})},
            }, seconds, resume=args.resume)
            summary["run"] = run
            print(f"seed {seed} {name}: {summary['steps']} steps in {summary['seconds']:.0f} CPU-s"
                  + (f", noise_std {summary['self_tuned_noise_std']:.4g}" if tuning else ""), flush=True)
            if only is not None:
                m = kept_rollout_metrics(summary["checkpoint"], paths["test"], "divergence_free")
                print(f"seed {seed} {name}: all-rollout RMSE {m['rmse_all']:.4g}", flush=True)
            runs[name].append(summary)
    if only is not None:
        return

    results: dict = {"size": size, "train_seconds": seconds, "starts": args.starts, "hand_noise": args.hand_noise,
                     "range": [lo, hi], "every": args.every, "hyper_lr": args.lr,
                     "tune_rollout": args.tune_rollout, "warmup": args.warmup, "log_loss": args.log_loss,
                     "scalars": args.scalars,
                     "pushforward": args.pushforward, "correction": "divergence_free", "preset": "cpu",
                     "generation_s": gen_s}
    persistence = {}
    for name, summaries in runs.items():
        per_seed = [kept_rollout_metrics(s["checkpoint"], paths["test"], "divergence_free") for s in summaries]
        stats = over_seeds(per_seed, seeds, SEED_KEYS)
        persistence = {k: stats[k] for k in SEED_KEYS if k.startswith("persistence")}
        results.update({f"{name}_{k}": v for k, v in stats.items() if not k.startswith("persistence")})
        results[f"{name}_train_steps"] = float(np.mean([s["steps"] for s in summaries]))
        results[f"{name}_train_s"] = float(np.mean([s["seconds"] for s in summaries]))
        if variants[name] is not None:
            final = [s["self_tuned_noise_std"] for s in summaries]
            results[f"{name}_final_noise_std"] = float(np.mean(final))
            results[f"{name}_final_noise_std_std"] = float(np.std(final))
            results[f"{name}_noise_trajectory"] = {str(seed): noise_trajectory(Path(s["run"]))
                                                   for seed, s in zip(seeds, summaries)}
    results.update(persistence)
    ratios = {f"stn_rmse_ratio_{s:g}": results[f"stn{s:g}_rmse_all"] / results["hand_rmse_all"]
              for s in args.starts}
    results.update(ratios)
    results["stn_rmse_ratio"] = max(ratios.values())
    results["peak_mem_mb"] = peak_mem_mb()
    cpu_s = sum(s["seconds"] for summaries in runs.values() for s in summaries)
    report("self_tuning", results, args.json, seeds=seeds, train_cpu_hours=cpu_s / 3600)


if __name__ == "__main__":
    main()
