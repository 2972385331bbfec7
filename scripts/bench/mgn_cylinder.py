"""MeshGraphNet on cylinder flow: accuracy against the persistence baseline, and speed.

    python scripts/bench/mgn_cylinder.py [--quick] [--json PATH] [--size medium] [--train-seconds S]
                                         [--checkpoint CKPT] [--workers N]

Generates the dataset with our solver if it is missing (datasets/cylinder_flow/<size>),
trains the CPU preset of MeshGraphNet (latent 64, 6 steps; `--preset paper` for 128 x 15)
for a wall-time budget (or loads --checkpoint), and rolls it out on the test split from
the first stored step with ground-truth boundary values. RMSE follows MeshGraphNet: the
square root of the mean squared velocity error over nodes and components, averaged over
steps 1..h. `--quick` uses the small size and a 2-minute budget.

JSON keys: rmse_1, rmse_50, rmse_all, persistence_rmse_50, persistence_rmse_all,
train_steps_per_s, rollout_node_steps_per_s, peak_mem_mb (+ sizes, preset, machine).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import ROOT, peak_mem_mb, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--size", help="recipe size (default: medium, or small with --quick)")
    ap.add_argument("--train-seconds", type=float)
    ap.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    ap.add_argument("--checkpoint", help="evaluate this checkpoint instead of training")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "mgn_cylinder"))
    args = ap.parse_args()

    from sim.mesh import Store
    from sim.rollout.evaluate import evaluate_store
    from sim.train import Config, load_model, train
    from sim.train.trainer import steps_for_budget
    from solvers.recipes import generate, load_recipe

    size = args.size or ("small" if args.quick else "medium")
    budget = args.train_seconds or (120.0 if args.quick else 3600.0)
    recipe = load_recipe(ROOT / "datasets" / "cylinder_flow.yaml")
    t0 = time.perf_counter()
    paths = generate(recipe, size, workers=args.workers)
    gen_s = time.perf_counter() - t0
    out = Path(args.out)
    if args.checkpoint:
        ckpt, train_rate, steps = Path(args.checkpoint), float("nan"), 0
    else:
        run = out / f"run_{size}_{args.preset}"
        ckpt = run / "checkpoint.pt"
        if ckpt.exists():
            ckpt.unlink()
        cfg = Config.from_dict({
            "model": {"network": "meshgraphnet", "preset": args.preset, "fields": ["velocity"], "target": "delta",
                      "noise_std": 0.02},
            "data": {"train": str(paths["train"]), "batch_size": 1},
            "optim": {"name": "adam", "lr": 1e-3, "lr_final": 1e-5, "schedule": "exponential"},
            "train": {"steps": 1, "max_seconds": budget, "out": str(run),
                      "log_every": 100, "checkpoint_every": 5000, "normalizer_accumulation_steps": 1000},
        })
        cfg.train.steps = steps_for_budget(cfg, budget)
        summary = train(cfg)
        steps = summary["steps"]
        train_rate = steps / summary["seconds"]
    def mean_of(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None  # None: no test trajectory is that long

    model, _ = load_model(ckpt)
    with Store(paths["test"]) as s:
        n_nodes = sum(s.read(n).mesh.num_points for n in s.names())
    t1 = time.perf_counter()
    results = evaluate_store(model, paths["test"], None, None, None)
    roll_s = time.perf_counter() - t1
    total_node_steps = sum(r.steps for r in results) * (n_nodes / len(results))
    report("mgn_cylinder", {
        "size": size, "preset": args.preset, "train_steps": steps, "train_budget_s": budget,
        "generation_s": gen_s,
        "rmse_1": float(np.mean([r.rmse["1"] for r in results])),
        "rmse_50": mean_of([r.rmse["50"] for r in results if "50" in r.rmse]),
        "rmse_all": float(np.mean([r.rmse["all"] for r in results])),
        "persistence_rmse_50": mean_of([r.persistence_rmse["50"] for r in results if "50" in r.rmse]),
        "persistence_rmse_all": float(np.mean([r.persistence_rmse["all"] for r in results])),
        "train_steps_per_s": train_rate,
        "rollout_node_steps_per_s": total_node_steps / roll_s,
        "peak_mem_mb": peak_mem_mb(),
        "test_trajectories": len(results),
    }, args.json)


if __name__ == "__main__":
    main()
