"""Coreset augmentation on cylinder flow: MeshGraphNet trained with input noise on every sample
against input noise on a weighted coreset of them (`train.augment_coreset`, sim.plugins.training.coreset).

    python scripts/bench/coreset_augment.py [--quick] [--json PATH] [--size medium] [--train-steps N]
                                            [--fractions 0.3 0.5] [--every N] [--seed S] [--seeds N]
                                            [--noise-std 0.05] [--pushforward 2] [--scalars [NAME ...]]
                                            [--correction divergence_free] [--data DIR] [--resume]
                                            [--out DIR] [--only [VARIANT ...]]

Each seed trains one run per variant, alternating within the seed: `full` (noise on every
sample, today's default) and `coreset<F>` for each `--fractions` F (noise on a fraction F of
the samples, chosen by facility location on the gradient proxy every `--every` steps, weighted
in the loss), all for the same `--train-steps` steps with the same seed (same initial weights,
batches and noise draws), otherwise the settings of `mgn_cylinder.py` (CPU preset, viscosity
as input, pushforward 2, noise 0.05, Adam 1e-3 -> 1e-5). Each checkpoint is rolled out on the
test split with ground-truth boundary values (`--correction`, default divergence_free); the
metrics are kept in the run's folder (`rollout_metrics.json`), so that `--only` processes can
train and roll out runs beside the one that collects them into the JSON (`--resume`).

JSON keys, per variant `<v>` (full, coreset0.3, ...): `<v>_rmse_1`, `<v>_rmse_50`, `<v>_rmse_all`
(means over the seeds, `_std` their spread, `<v>_per_seed`), `<v>_noised_fraction` (share of the
trained samples that got noise: the augmentation saved is 1 minus it), `<v>_selection_s` (CPU
seconds spent choosing coresets per run: proxies and facility location), `<v>_selection_share`
(that over the run's training CPU seconds, selection included), `<v>_train_s` (training CPU
seconds per run); `persistence_rmse_50` / `_all`; `augment_fraction_used`: the smallest noised
fraction among the coreset variants whose mean all-rollout RMSE is at most full augmentation's
plus the larger of their seed spreads (`equal_error_variants`; null when none is), the share of
full augmentation's noisy samples that reaches its error; seeds, train_cpu_hours, commit, machine.
`--quick`: the small size, 300 steps, one seed (the same quantities, not a measurement).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from _common import ROOT, peak_mem_mb, report
from _mesh_models import (
    add_only_option,
    cylinder_data,
    cylinder_parser,
    kept_rollout_metrics,
    only_variants,
    over_seeds,
    set_threads,
    train_for_budget,
)

KEYS = ("rmse_1", "rmse_50", "rmse_all", "persistence_rmse_50", "persistence_rmse_all")


def fraction_at_equal_error(results: dict, variants: list[str], metric: str = "rmse_all"
                            ) -> tuple[float | None, list[str]]:
    """The smallest noised fraction among the coreset variants whose mean ``metric`` equals full
    augmentation's within the seed spread (|mean - full's mean| <= the larger of the two spreads),
    and those variants; (None, []) when none does. A variant that errs less than full augmentation
    by more than the spread counts as equal or better (it is, at less augmentation)."""
    full, full_std = results[f"full_{metric}"], results.get(f"full_{metric}_std") or 0.0
    matching = []
    for v in variants:
        mean, std = results[f"{v}_{metric}"], results.get(f"{v}_{metric}_std") or 0.0
        if mean is not None and full is not None and mean - full <= max(std, full_std):
            matching.append(v)
    if not matching:
        return None, []
    return min(results[f"{v}_noised_fraction"] for v in matching), matching


def main() -> None:
    from sim.rollout.corrections import CORRECTIONS

    ap = cylinder_parser(__doc__, "torch threads")
    ap.add_argument("--train-steps", type=int, help="training steps of every run (default 15000; quick 300)")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.3, 0.5],
                    help="coreset fractions to compare with noise on every sample")
    ap.add_argument("--every", type=int, help="steps between coreset selections (default 100; quick 25)")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--noise-std", type=float, default=0.05)
    ap.add_argument("--scalars", nargs="*", default=["nu"])
    ap.add_argument("--pushforward", type=int, default=2)
    ap.add_argument("--correction", default="divergence_free", choices=CORRECTIONS)
    ap.add_argument("--seed", type=int, default=0, help="first training seed")
    ap.add_argument("--seeds", type=int, help="seeds seed, seed + 1, ... (default 3; quick 1)")
    ap.add_argument("--resume", action="store_true", help="continue interrupted runs in --out")
    ap.add_argument("--workers", type=int, default=2, help="solver processes if the data must be generated")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "coreset_augment"))
    add_only_option(ap, "full, coreset<F>")
    args = ap.parse_args()
    set_threads(args.threads)
    if any(not 0 < f <= 1 for f in args.fractions):
        raise SystemExit(f"--fractions must be in (0, 1], got {args.fractions}")

    size = args.size or ("small" if args.quick else "medium")
    steps = args.train_steps or (300 if args.quick else 15000)
    every = args.every or (25 if args.quick else 100)
    seeds = [args.seed + i for i in range(args.seeds or (1 if args.quick else 3))]
    t0 = time.perf_counter()
    paths = cylinder_data(size, args.data, args.workers)
    gen_s = time.perf_counter() - t0
    out = Path(args.out)
    variants: dict[str, dict | None] = {"full": None}
    variants.update({f"coreset{f:g}": {"fraction": f, "every": every} for f in args.fractions})

    only = only_variants(args.only, list(variants))
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for seed in seeds:
        for name, coreset in variants.items():  # alternating within a seed: the machine's load is shared
            if only is not None and name not in only:
                continue
            summary = train_for_budget({
                "model": {"network": "meshgraphnet", "preset": "cpu", "fields": ["velocity"], "target": "delta",
                          "noise_std": args.noise_std, "scalars": args.scalars, "pushforward": args.pushforward},
                "data": {"train": str(paths["train"]), "batch_size": args.batch_size},
                "optim": {"name": "adam", "lr": 1e-3, "lr_final": 1e-5, "schedule": "exponential"},
                "train": {"steps": 1, "seed": seed, "log_every": 100, "checkpoint_every": 2000,
                          "normalizer_accumulation_steps": 1000, "tensorboard": False,
                          "out": str(out / f"run_{size}_{name}_n{steps}_e{every}_seed{seed}"),
                          **({"augment_coreset": coreset} if coreset else {})},
            }, 0.0, resume=args.resume, steps=steps)
            if only is not None:
                m = kept_rollout_metrics(summary["checkpoint"], paths["test"], args.correction)
                print(f"seed {seed} {name}: all-rollout RMSE {m['rmse_all']:.4g}", flush=True)
            runs[name].append(summary)
    if only is not None:
        return

    results: dict = {"size": size, "train_steps": steps, "every": every, "fractions": args.fractions,
                     "batch_size": args.batch_size, "noise_std": args.noise_std, "scalars": args.scalars,
                     "pushforward": args.pushforward, "correction": args.correction, "generation_s": gen_s}
    persistence = {}
    for name, summaries in runs.items():
        per_seed = [kept_rollout_metrics(s["checkpoint"], paths["test"], args.correction) for s in summaries]
        stats = over_seeds(per_seed, seeds, KEYS)
        persistence = {k: stats[k] for k in KEYS if k.startswith("persistence")}
        results.update({f"{name}_{k}": v for k, v in stats.items() if not k.startswith("persistence")})
        train_s = [s["seconds"] for s in summaries]
        select_s = [s.get("coreset_seconds", 0.0) for s in summaries]
        results.update({
            f"{name}_noised_fraction": float(np.mean([s.get("noised_fraction", 1.0) for s in summaries])),
            f"{name}_selection_s": float(np.mean(select_s)),
            f"{name}_selection_share": float(np.mean([a / b for a, b in zip(select_s, train_s)])),
            f"{name}_train_s": float(np.mean(train_s)),
        })
    results.update(persistence)
    results["augment_fraction_used"], results["equal_error_variants"] = fraction_at_equal_error(
        results, [v for v in variants if v != "full"])
    results["peak_mem_mb"] = peak_mem_mb()
    cpu_s = sum(s["seconds"] for summaries in runs.values() for s in summaries)
    report("coreset_augment", results, args.json, seeds=seeds, train_cpu_hours=cpu_s / 3600)


if __name__ == "__main__":
    main()
