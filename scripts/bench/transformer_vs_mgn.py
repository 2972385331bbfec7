"""Graph transformer vs MeshGraphNet on cylinder flow under the same training budget.

    python scripts/bench/transformer_vs_mgn.py [--quick] [--json PATH] [--data DIR] [--size medium]
        [--train-seconds S] [--mgn-preset paper|cpu] [--gt-preset tiny|small|base|large] [--gt-args JSON]
        [--seed S] [--seeds N]

Both models train on the same split, with the same input noise (0.02 on interior velocities),
target (normalised velocity delta), loss nodes and CPU-time budget, each with its paper's
optimiser (MeshGraphNet: Adam, exponential decay; transformer: AdamW (0.9, 0.95), warm-up
and cosine decay), learning rates raised for CPU-length runs. They are then rolled out on
the test split from the first stored step with ground-truth boundary values (MeshGraphNet's
RMSE definitions). Budgets are CPU seconds of one torch thread (`--threads`), so the
comparison stays fair when other jobs share the machine. The time of one model step is
measured on the same mesh as CPU seconds of one thread, alternating the two models in this
process after a warm-up; peak memory is that of a 50-step rollout
in a fresh process for each model (the resident high-water mark during the rollout, and its
increase over the memory held before the rollout).

Default comparison (the paper's headline): MeshGraphNet at its paper size (latent 128, 15
steps, 2.33M parameters) against the small transformer (width 64, 6 layers) with dilated
sliding windows (hops 1, 2, 4 cycled over layers), coordinates as inputs and rotary
encoding of Q/K by coordinates. `--quick`: small set, 90 s per model, MeshGraphNet CPU preset.

Each model trains `--seeds` seeds (seed, seed + 1, ...); its metrics are their mean, with
`<key>_std` the spread and `<model>_per_seed` each seed's, and with two or more seeds the
seeds rolled out as an ensemble give `<model>_spread_error_spearman` and `<model>_ensemble_*`.

JSON keys, per model (`mgn_`, `gt_`): rmse_1, rmse_50, rmse_all, the flow metrics of `sim eval`
(shedding_freq_err_median, mean_field_rrmse, fluct_rrmse) with their `_std`, per_seed,
spread_error_spearman; persistence_rmse_50 and persistence_rmse_all; mgn_params, gt_params,
mgn_step_s, gt_step_s, speedup (= mgn_step_s / gt_step_s), mgn_peak_mem_mb, gt_peak_mem_mb,
the training steps, throughput and FLOPs per step of each; seeds, train_cpu_hours, commit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import ROOT, report
from _mesh_models import (cylinder_data, ensemble_metrics, over_seeds, rollout_metrics,
                          rollout_peak_mem_mb, set_threads, step_times, train_for_budget)

GT_DEFAULT_ARGS = {"dilation": [1, 2, 4], "coord_dim": 2, "rope": True, "rope_scale": 50.0}


def configs(paths: dict[str, Path], out: Path, mgn_preset: str, gt_preset: str, gt_args: dict) -> dict[str, dict]:
    common_model = {"fields": ["velocity"], "target": "delta", "noise_std": 0.02}
    data = {"train": str(paths["train"]), "batch_size": 1}
    train = {"steps": 1, "log_every": 100, "checkpoint_every": 10**9, "normalizer_accumulation_steps": 1000}
    return {
        "mgn": {"model": {"network": "meshgraphnet", "preset": mgn_preset, **common_model}, "data": data,
                "optim": {"name": "adam", "lr": 1e-3, "lr_final": 1e-5, "schedule": "exponential"},
                "train": {**train, "out": str(out / f"mgn_{mgn_preset}")}},
        "gt": {"model": {"network": "graph_transformer", "preset": gt_preset, "network_args": gt_args,
                         **common_model}, "data": data,
               "optim": {"name": "adamw", "lr": 1e-3, "lr_final": 1e-5, "schedule": "cosine", "warmup_steps": 200,
                         "betas": [0.9, 0.95], "weight_decay": 1e-4},
               "train": {**train, "out": str(out / f"gt_{gt_preset}")}},
    }


def flops_per_step(checkpoint: Path, mesh, state) -> dict[str, int]:
    import torch

    from sim.graph import mesh_graph
    from sim.models.cost import model_cost
    from sim.train import load_model

    model, _ = load_model(checkpoint)
    g = mesh_graph(mesh)
    x = torch.as_tensor(state, dtype=torch.float32)
    cost = model_cost(model, (x, g.node_type, g.edge_index, g.edge_attr, g.mesh_pos, None))
    return {"params": cost.params, "forward_flops": cost.forward_flops}


def main() -> None:
    from sim.rollout.corrections import CORRECTIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--correction", default="divergence_free", choices=CORRECTIONS,
                    help="applied after every rollout step of both models (sim.rollout.corrections)")
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (budgets are CPU seconds)")
    ap.add_argument("--data", help="folder with train/valid/test.h5 of the cylinder recipe (default: generate)")
    ap.add_argument("--size", help="recipe size (default: medium, or small with --quick)")
    ap.add_argument("--train-seconds", type=float, help="CPU-second budget per model (default 1800, quick 90)")
    ap.add_argument("--mgn-preset", help="default: paper (quick: cpu)")
    ap.add_argument("--gt-preset", default="small")
    ap.add_argument("--gt-args", default=json.dumps(GT_DEFAULT_ARGS), help="JSON network_args of the transformer")
    ap.add_argument("--seed", type=int, default=0, help="first training seed")
    ap.add_argument("--seeds", type=int, default=1, help="train this many seeds of each model (mean and spread)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "transformer_vs_mgn"))
    args = ap.parse_args()
    set_threads(args.threads)

    from sim.mesh import Store
    from sim.rollout.evaluate import state_of

    size = args.size or ("small" if args.quick else "medium")
    budget = args.train_seconds or (90.0 if args.quick else 1800.0)
    mgn_preset = args.mgn_preset or ("cpu" if args.quick else "paper")
    paths = cylinder_data(size, args.data, args.workers)
    out = Path(args.out)
    cfgs = configs(paths, out, mgn_preset, args.gt_preset, json.loads(args.gt_args))
    results: dict[str, object] = {"size": size, "train_budget_s": budget, "mgn_preset": mgn_preset,
                                  "gt_preset": args.gt_preset, "gt_args": args.gt_args}
    seeds = [args.seed + i for i in range(args.seeds)]
    runs: dict[str, list[tuple[Path, dict]]] = {}
    for name, cfg in cfgs.items():
        for seed in seeds:
            print(f"training {name} (seed {seed}) for {budget:.0f} s")
            run_cfg = {**cfg, "train": {**cfg["train"], "seed": seed,
                                        "out": cfg["train"]["out"] + (f"_seed{seed}" if seed else "")}}
            summary = train_for_budget(run_cfg, budget)
            runs.setdefault(name, []).append((Path(summary["checkpoint"]), summary))
        trained = [t for _, t in runs[name]]
        results[f"{name}_train_steps"] = float(sum(t["steps"] for t in trained) / len(trained))
        results[f"{name}_train_steps_per_s"] = float(sum(t["steps_per_s"] for t in trained) / len(trained))
        results[f"{name}_final_loss"] = float(sum(t["final_loss"] for t in trained) / len(trained))
    for name, model_runs in runs.items():
        stats = over_seeds([rollout_metrics(c, paths["test"], correction=args.correction) for c, _ in model_runs],
                           seeds)
        for k in ("persistence_rmse_50", "persistence_rmse_all"):
            results[k] = stats.pop(k)
        results.update({f"{name}_{k}": v for k, v in stats.items()})
        if len(model_runs) > 1:
            ens = ensemble_metrics([c for c, _ in model_runs], paths["test"], correction=args.correction)
            results.update({f"{name}_{k}": v for k, v in ens.items()})
    results["correction"] = args.correction
    ckpts = {name: model_runs[0][0] for name, model_runs in runs.items()}  # cost, speed, memory: the first seed
    with Store(paths["test"]) as s:
        traj = s.read(s.names()[0])
    state = state_of(traj, ["velocity"])[0]
    for name, ckpt in ckpts.items():
        c = flops_per_step(ckpt, traj.mesh, state)
        results[f"{name}_params"], results[f"{name}_forward_flops"] = c["params"], c["forward_flops"]
    times = step_times(ckpts, traj.mesh, state)
    results["mesh_nodes"] = traj.mesh.num_points
    results["mgn_step_s"], results["gt_step_s"] = times["mgn"], times["gt"]
    results["speedup"] = times["mgn"] / times["gt"]
    for name, ckpt in ckpts.items():
        mem = rollout_peak_mem_mb(ckpt, paths["test"], 50)
        results[f"{name}_peak_mem_mb"] = mem["peak_mem_mb"]
        results[f"{name}_rollout_mem_mb"] = mem["peak_mem_mb"] - mem["base_mem_mb"]
    results["param_ratio"] = results["mgn_params"] / results["gt_params"]
    cpu_s = sum(t["seconds"] for model_runs in runs.values() for _, t in model_runs)
    report("transformer_vs_mgn", results, args.json, seeds=seeds, train_cpu_hours=cpu_s / 3600)


if __name__ == "__main__":
    main()
