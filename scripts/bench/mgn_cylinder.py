"""MeshGraphNet on cylinder flow: accuracy against the persistence baseline, and speed.

    python scripts/bench/mgn_cylinder.py [--quick] [--json PATH] [--size medium] [--train-seconds S] [--train-steps N]
                                         [--preset cpu|paper] [--mp-steps N] [--latent W]
                                         [--scalars [NAME ...]] [--pushforward K] [--unrolled] [--history H] [--seed S]
                                         [--seeds N] [--resume] [--warm-start DIR]
                                         [--checkpoint CKPT] [--workers N]

Generates the dataset with our solver if it is missing (datasets/cylinder_flow/<size>),
trains the CPU preset of MeshGraphNet (latent 64, 6 steps; `--preset paper` for 128 x 15;
`--mp-steps`/`--latent` override the preset) for a budget of CPU seconds (default 6000; or
loads --checkpoint), and rolls it out on the test split from the first stored step with
ground-truth boundary values. By default the model sees the viscosity (`--scalars nu`; pass
`--scalars` alone for none) and trains with a 2-step pushforward loss (`--pushforward 2`; 0
for the one-step loss). Input noise defaults to 0.05, not
the paper's 0.02: the recipe's peak inflow speeds span 0.75-3 (mean 0.5-2), and on the
medium set 0.02 gave rollout-50 / all RMSE 0.355 / 5.69 where 0.05 gave 0.261 / 0.887. RMSE follows MeshGraphNet: the
square root of the mean squared velocity error over nodes and components, averaged over
steps 1..h. Rollouts project each step's velocity update onto divergence-free fields
(`--correction divergence_free`, the default; `none` to measure the model alone): without it the
models drift into a mean cross-flow through the channel walls (sim.rollout.corrections).
`--quick` uses the small size and a 2-minute budget.

Measured (medium set, noise 0.05, one seed each, two or three runs sharing the 2 cores;
persistence: rollout-50 0.428, all 0.432; the planned step count is set from the rate at the
start, so the 6000 CPU-s runs stopped at their planned steps after about 4,500 CPU-s):

| inputs / loss | budget (CPU-s) | steps | rollout-1 | rollout-50 | all (299 steps) |
|---|---|---|---|---|---|
| velocity, one-step | 1500 | | | 0.293 | 0.603 |
| velocity, one-step | 3000 | 21,039 | 0.0244 | 0.261 | 0.887 |
| velocity, one-step | 6000 (4,445 used) | 36,552 | 0.0221 | 0.238 | 1.19 |
| + nu | 3000 | 16,977 | 0.0262 | 0.367 | 2.84 |
| + nu, pushforward 2 | 1500 | 9,117 | | 0.296 | 2.05 |
| + nu, pushforward 2 (default) | 6000 (4,525 used) | 28,906 | 0.0229 | 0.206 | 0.654 |

The spread between runs at one budget is about as large as the differences between options;
the default is the setting with the best measured rollout-50 (half the persistence error).

Three seeds of the default at a fixed 15,000 steps (`--train-steps 15000 --seeds 3`, 2.5 CPU-hours
in all), mean and spread over the seeds; the ensemble of the three in the last row
(docs/results/mgn_cylinder_history1.json, mgn_cylinder_no_correction.json):

| rollout correction | rollout-1 | rollout-50 | all | shedding freq. err. | mean flow | fluctuation |
|---|---|---|---|---|---|---|
| none | 0.0256 +- 0.0007 | 0.278 +- 0.025 | 1.16 +- 0.34 | 0.91 +- 0.02 | 0.76 +- 0.28 | 2.25 +- 0.95 |
| divergence_free | 0.0232 +- 0.0006 | 0.235 +- 0.031 | 0.508 +- 0.030 | 0.20 +- 0.09 | 0.24 +- 0.05 | 0.64 +- 0.12 |
| divergence_free, ensemble mean | | 0.204 | 0.408 | 0.175 | 0.182 | 0.491 |

One option changed, seed 0 only, 15,000 steps, divergence-free (seed 0 of the default above:
0.0226 / 0.213 / 0.544 / 0.067 / 0.31 / 0.80):

| change | rollout-1 | rollout-50 | all | shedding freq. err. | mean flow | fluctuation |
|---|---|---|---|---|---|---|
| `--noise-std 0.02` | 0.0213 | 0.255 | 0.672 | 0.39 | 0.37 | 1.07 |
| `--history 2` | 0.0227 | 0.214 | 0.408 | 0.31 | 0.18 | 0.42 |
| `--bundle 2` (two frames per call) | 0.0249 | 0.185 | 0.443 | 0.21 | 0.19 | 0.48 |

Two frames of history brought seed 0's all-rollout RMSE under persistence's (0.408 against
0.432) and halved its fluctuation error, but seeds 1 and 2 of it did not (`--history 2 --seed S`,
S = 1, 2: rollout-1 0.0219 / 0.0218, rollout-50 0.263 / 0.195, all 0.481 / 0.469, shedding 0.10 /
0.14, mean flow 0.19 / 0.21, fluctuation 0.36 / 0.46): over three seeds it lowers the all-rollout
RMSE (0.453 against the default's 0.508) and the fluctuation error (0.41 against 0.64) and leaves
it above persistence. Bundling two frames per call (it needs one frame of history) gave the
lowest rollout-50 of any single model and cut the all-rollout RMSE of seed 0 from 0.544 to 0.443;
one seed each, 0.88-0.92 training CPU-hours each.

Three seeds each of `--history 2` (`--history 2 --train-steps 15000 --seeds 3`, 2.7 CPU-hours in
all; docs/results/mgn_cylinder_history2.json) and of `--history 2 --bundle 2` (the same with two
frames per call, 2.3 CPU-hours; docs/results/mgn_cylinder_h2_b2.json), mean and spread, and the ensemble
of each three:

| model | rollout-1 | rollout-50 | all | shedding freq. err. | mean flow | fluctuation |
|---|---|---|---|---|---|---|
| history 2 | 0.0222 +- 0.0004 | 0.224 +- 0.029 | 0.453 +- 0.032 | 0.18 +- 0.09 | 0.196 +- 0.014 | 0.41 +- 0.04 |
| history 2, ensemble mean | | 0.193 | 0.370 | 0.133 | 0.148 | 0.431 |
| h. 2, bundle 2 | 0.0238 +- 0.0004 | 0.183 +- 0.008 | 0.406 +- 0.023 | 0.15 +- 0.02 | 0.150 +- 0.008 | 0.34 +- 0.02 |
| history 2, bundle 2, ensemble mean | | 0.169 | 0.337 | 0.116 | 0.118 | 0.341 |

The history-2 ensemble was the first model under persistence over whole rollouts (0.370 against
0.433); with bundling every single seed is under it (0.391, 0.438 and 0.387: the mean 0.406), and
the ensemble's spread ranks its error with Spearman 0.79. Bundling costs a little at one step
(two frames from one call) and gains at every longer horizon and on every flow metric.

One option changed from the bundled model, seed 0 only (its row above: 0.0242 / 0.187 / 0.391 /
0.18 / 0.143 / 0.355):

| change | rollout-1 | rollout-50 | all | shedding freq. err. | mean flow | fluctuation |
|---|---|---|---|---|---|---|
| continued to 30,000 steps (`--train-steps 30000 --warm-start DIR`) | 0.0224 | 0.178 | 0.431 | 0.16 | 0.131 | 0.345 |
| `--noise-std 0.1` | 0.0266 | 0.204 | 0.449 | 0.27 | 0.176 | 0.516 |
| `--bundle 4` (four frames per call) | 0.0310 | 0.182 | 0.399 | 0.12 | 0.116 | 0.257 |
| `--mp-steps 12` (twice the message passing; 1.48 CPU-hours) | 0.0235 | 0.175 | 0.411 | 0.11 | 0.154 | 0.365 |
| `--bundle 4 --unrolled` (against the row before the last) | 0.0273 | 0.200 | 0.424 | 0.24 | 0.167 | 0.361 |

The last three rows ran on another machine than the rest of the table (0.79, 1.48 and 1.19
training CPU-hours; docs/results/mgn_cylinder_h2_b4_seed0.json, mgn_cylinder_h2_b2_mp12_seed0.json,
mgn_cylinder_h2_b4_unrolled_seed0.json).
Four frames per call kept the RMSE of two and cut every flow metric by a fifth to a third
(shedding 0.18 -> 0.12, mean flow 0.143 -> 0.116, fluctuation 0.355 -> 0.257) for the same
training cost; twice the message passing, at twice the cost, helped the shedding frequency
(0.11) and rollout-50 a little and not the mean flow or the fluctuation. Per trajectory (`sim eval
CKPT TEST --correction divergence_free --plot DIR` of the four-frame model) the frequency errors
go both ways: the model sheds at a steady frequency of its own, 27 % too fast on a slow test
case (2.7 Hz) and 35 % too slow on the fastest (9.5 Hz, about ten stored steps per period, where
it also damps), so the learned dynamics compress the range of shedding frequencies. Training
through the pushforward steps (`--unrolled`, the gradient through the model's own steps and the
loss over all of them) lowered the four-frame model's one-call error (0.0310 -> 0.0273) and
raised every longer-horizon one (rollout-50 0.182 -> 0.200, shedding 0.12 -> 0.24, mean flow
0.116 -> 0.167, fluctuation 0.257 -> 0.361).

Twice the training (the schedule restarted at 1e-4 from the 15,000-step weights, 1.5 more CPU-hours)
helps a little at short horizons and on the flow metrics and not over whole rollouts. Twice the
noise, which the self-tuning runs preferred for the one-frame model (docs/models.md), hurts this
one on every metric.

None of these learned steppers reaches the flow metrics our solver reaches on half the nodes
(scripts/bench/cylinder_resolution.py); our solver on such a mesh plus a learned MeshGraphNet
correction (scripts/bench/cylinder_hybrid.py, solvers.cfd.corrected) does: rollout-50 0.094, all
0.201, shedding 0.012, mean flow 0.049, fluctuation 0.135 over three seeds, the run that
docs/results/mgn_cylinder.json holds (docs/models.md).

Why the flow metrics stay far from the truth (`sim eval --plot` of seed 0, bundled): the
predicted transverse velocity behind the cylinder follows the truth for about one shedding
period, then its oscillation slows and loses amplitude (on the first test trajectory the period
grows from 0.19 to about 0.3 and the amplitude falls by a third within the first simulated second), so
the shedding frequency comes out low on every fast-shedding trajectory (3.1 Hz against 9.5 Hz
on the fastest). The same model without the divergence-free correction slows the same way and
also drifts, so the correction is not what damps it.

JSON keys: rmse_1, rmse_50, rmse_all, persistence_rmse_50, persistence_rmse_all, the flow metrics of
`sim eval` (shedding_freq_err_median, mean_field_rrmse, fluct_rrmse), each the mean over `--seeds`
with `<key>_std` their spread and `per_seed`; with two or more seeds their ensemble's
spread_error_spearman and ensemble_*; train_steps_per_s, rollout_node_steps_per_s, peak_mem_mb,
seeds, train_cpu_hours, commit (+ sizes, preset, machine).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
from _common import ROOT, peak_mem_mb, report
from _mesh_models import (
    cylinder_data,
    cylinder_parser,
    ensemble_metrics,
    over_seeds,
    rollout_metrics,
    set_threads,
    train_for_budget,
)


def main() -> None:
    from sim.rollout.corrections import CORRECTIONS

    ap = cylinder_parser(__doc__)
    ap.add_argument("--train-seconds", type=float)
    ap.add_argument("--train-steps", type=int,
                    help="train exactly this many steps per seed instead of a CPU-time budget (comparable runs "
                         "on machines of different speed or load)")
    ap.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    ap.add_argument("--mp-steps", type=int, help="message-passing steps instead of the preset's")
    ap.add_argument("--latent", type=int, help="latent width instead of the preset's")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--noise-std", type=float, default=0.05,
                    help="training input noise on velocities (MGN's 0.02 gave rmse_all 5.69 on the medium set, "
                         "0.05 gave 0.89, same 3000 CPU-s budget)")
    ap.add_argument("--scalars", nargs="*", default=["nu"],
                    help="trajectory parameters the model is conditioned on (e.g. nu)")
    ap.add_argument("--seed", type=int, default=0, help="first training seed")
    ap.add_argument("--seeds", type=int, default=1,
                    help="train this many seeds (seed, seed + 1, ...): metrics are their mean with *_std the "
                         "spread, and with 2 or more their ensemble adds spread_error_spearman and ensemble_*")
    ap.add_argument("--pushforward", type=int, default=2,
                    help="most no-gradient model steps before the trained one (pushforward loss; 0: one-step)")
    ap.add_argument("--history", type=int, default=1, help="frames per input (the state and those before it)")
    ap.add_argument("--bundle", type=int, default=1,
                    help="temporal bundling: frames predicted per model call (a rollout makes steps / bundle calls)")
    ap.add_argument("--unrolled", action="store_true",
                    help="unrolled training: the gradient flows through the pushforward steps and the loss counts "
                         "every step of them (model.family_args.unrolled)")
    ap.add_argument("--correction", default="divergence_free", choices=CORRECTIONS,
                    help="applied after every rollout step (sim.rollout.corrections; default divergence_free: the "
                         "velocity update projected onto divergence-free fields); a rollout setting, so trained "
                         "runs can be measured with and without it")
    ap.add_argument("--checkpoint", help="evaluate this checkpoint instead of training")
    ap.add_argument("--resume", action="store_true",
                    help="continue interrupted training runs (same settings) instead of starting them again")
    ap.add_argument("--warm-start", metavar="DIR",
                    help="start each seed from its finished run of the same settings in DIR (another --out, any "
                         "--train-steps): copied into --out and continued to --train-steps, the learning-rate "
                         "schedule stretched over the longer run (a warm restart)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "mgn_cylinder"))
    args = ap.parse_args()
    set_threads(args.threads)

    from sim.mesh import Store

    size = args.size or ("small" if args.quick else "medium")
    budget = args.train_seconds or (120.0 if args.quick else 6000.0)
    t0 = time.perf_counter()
    paths = cylinder_data(size, args.data, args.workers)
    gen_s = time.perf_counter() - t0
    out = Path(args.out)
    seeds = [args.seed + i for i in range(args.seeds)]
    runs = []  # (checkpoint, training summary or None) per seed
    if args.checkpoint:
        runs.append((Path(args.checkpoint), None))
    for seed in ([] if args.checkpoint else seeds):
        overrides = {k: v for k, v in (("steps", args.mp_steps), ("latent", args.latent)) if v}
        tag = "".join(f"_{k}{v}" for k, v in overrides.items()) + "".join(f"_{k}" for k in args.scalars) + \
            (f"_seed{seed}" if seed else "") + (f"_pf{args.pushforward}" if args.pushforward else "") + \
            (f"_h{args.history}" if args.history > 1 else "") + (f"_b{args.bundle}" if args.bundle > 1 else "") + \
            ("_unrolled" if args.unrolled else "")
        stem, noise = f"run_{size}_{args.preset}{tag}", f"_noise{args.noise_std:g}"
        run_dir = out / f"{stem}{f'_n{args.train_steps}' if args.train_steps else ''}{noise}"
        if args.warm_start and not (run_dir / "checkpoint.pt").exists():
            if not args.train_steps:
                raise SystemExit("--warm-start continues runs to --train-steps: give it")
            same = re.compile(re.escape(stem) + r"(_n[0-9]+)?" + re.escape(noise))  # the same run, any length
            found = [d for d in sorted(Path(args.warm_start).iterdir())
                     if same.fullmatch(d.name) and (d / "checkpoint.pt").exists()]
            if len(found) != 1:
                raise SystemExit(f"--warm-start: {len(found)} finished runs of seed {seed} with these settings in "
                                 f"{args.warm_start} (need exactly one): {[d.name for d in found]}")
            shutil.copytree(found[0], run_dir)
        summary = train_for_budget({
            "model": {"network": "meshgraphnet", "preset": args.preset, "network_args": overrides,
                      "fields": ["velocity"], "target": "delta", "noise_std": args.noise_std,
                      "scalars": args.scalars, "pushforward": args.pushforward,
                      "history": args.history, "family_args": {**({"bundle": args.bundle} if args.bundle > 1 else {}),
                                                               **({"unrolled": True} if args.unrolled else {})}},
            "data": {"train": str(paths["train"]), "valid": str(paths["valid"]), "batch_size": args.batch_size,
                     "valid_entries": 2, "valid_rollout_steps": 50},
            "optim": {"name": "adam", "lr": 1e-3, "lr_final": 1e-5, "schedule": "exponential"},
            "train": {"steps": 1, "seed": seed, "out": str(run_dir),
                      "log_every": 100,
                      "checkpoint_every": 2000, "normalizer_accumulation_steps": 1000,
                      "valid_every": 0 if args.quick else 2000},
        }, budget, resume=args.resume or bool(args.warm_start), steps=args.train_steps)
        runs.append((Path(summary["checkpoint"]), summary))
    with Store(paths["test"]) as s:
        n_nodes = [int(s.entry(n).attrs["num_points"]) for n in s.names()]
    per_seed = [rollout_metrics(ckpt, paths["test"], correction=args.correction) for ckpt, _ in runs]
    results = over_seeds(per_seed, seeds)
    if len(runs) > 1:  # the seeds as a deep ensemble: mean and spread per node and step
        results.update(ensemble_metrics([c for c, _ in runs], paths["test"], correction=args.correction))
    trained = [t for _, t in runs if t is not None]
    steps = [t["steps"] for t in trained]
    m0 = per_seed[0]
    report("mgn_cylinder", {
        "size": size, "preset": args.preset, "mp_steps": args.mp_steps, "latent": args.latent,
        "batch_size": args.batch_size, "noise_std": args.noise_std, "scalars": args.scalars,
        "pushforward": args.pushforward, "history": args.history, "bundle": args.bundle, "unrolled": args.unrolled,
        "correction": args.correction,
        "train_steps": float(np.mean(steps)) if steps else None,
        "train_budget_s": None if args.train_steps else budget, "generation_s": gen_s,
        **results,
        "train_steps_per_s": float(np.mean([t["steps_per_s"] for t in trained])) if trained else None,
        "rollout_node_steps_per_s": m0["rollout_steps"] * (sum(n_nodes) / len(n_nodes)) / m0["rollout_s"],
        "peak_mem_mb": peak_mem_mb(),
        "test_trajectories": m0["test_trajectories"],
    }, args.json, seeds=seeds if trained else None,
        train_cpu_hours=sum(t["seconds"] for t in trained) / 3600 if trained else None)


if __name__ == "__main__":
    main()
