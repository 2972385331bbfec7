"""Graph-learning plugins on cylinder flow: accuracy and cost of each layer plugin and of Virgo
initialisation in MeshGraphNet, and how far MeshGraphNet and the dilated graph transformer reach.

    python scripts/bench/plugins.py [--quick] [--json PATH] [--data DIR] [--size medium]
                                    [--train-seconds S] [--out DIR] [--workers N]

Variants of MeshGraphNet (CPU preset: latent 64, 6 steps), each trained for the same budget of
CPU seconds on one thread (other jobs on the machine do not shorten a variant's run; the step
count comes from a probe so the learning-rate schedule spans the budget):

- ``baseline``; ``sheaf`` (+ sheaf diffusion, orthogonal maps, stalk 4, after every block);
  ``dagnn`` (+ DAGNN head, K = 10); ``virtual_nodes`` (+ 2 adaptive virtual nodes after every
  block); ``virgo`` (baseline architecture, Virgo initialisation);
- ``transformer``: the graph transformer (dim 64, 6 layers, 4 heads) with dilated sliding
  windows (hops 1, 2, 4), for the hop-influence comparison.

Measured: the all-rollout RMSE on the test split (rollout from the first stored step with
ground-truth boundaries, MeshGraphNet's definition), training steps reached, time per training
step in its run, and forward+backward time per step relative to the baseline measured in this
process on one batch, alternating variants after a warm-up (machine load cancels). Hop
influence (T_h / T_0 and R) of the trained baseline, virtual-node and transformer models on a
test state, with a PNG of the curves.

Set B (``--set b``; ``scripts/bench/_plugins_b.py``), each against the base model (the
``mgn_cylinder`` default: viscosity as a node input, noise 0.05, 2-step pushforward) at the same
CPU budget over ``--seeds`` seeds, rolled out with ``--correction`` (divergence_free):

- ``polynomials`` (+ equivariant polynomials of degree 3), ``graphlets`` (+ graphlet orbit
  counts), ``spen`` (+ subgraph layers, k = 1, after blocks 2 and 5), ``mip_hypernet`` and
  ``plain_hypernet`` (the viscosity through a hypernetwork on the decoder, with and without
  MIP): rollout RMSE and flow metrics, training loss at 25/50/100 % of the budget
  (convergence), time per training and rollout step;
- pruning of each seed's base model to 50 % of its hidden channels (metanetwork vs magnitude,
  ``--prune-finetune`` fine-tuning steps, default 2000): rollout RMSE relative to the unpruned
  model as trained (``*_ratio``) and to the unpruned model fine-tuned with the same steps and
  samples (``*_ratio_vs_finetuned``, the fair comparison: the fine-tuning is training the base
  did not get), and the CPU speedup of a step;
- harmful data: 4 time-reversed trajectories planted among 40 training ones (seed 0), the
  SGD-influence ranking's precision, and the validation rollout error after retraining
  without the top 4 vs without 4 random ones;
- random spatial networks in 3-D (mean degree 12) of 10^4-10^6 nodes: generation time, and
  the CPU time of a MeshGraphNet step on those of 10^4 and 10^5 nodes.

Tasks run ``--jobs`` at a time in worker processes (one torch thread each) and are resumable.

``--test-entries N`` rolls out only the first N test trajectories (every one by default).
The data directory holds ``train.h5``, ``valid.h5`` and ``test.h5``; by default the recipe's
``medium`` size (``small`` with ``--quick``) is generated under datasets/cylinder_flow/ when
missing. ``--quick`` trains each variant for 12 s.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
from _common import ROOT, peak_mem_mb, report

LAYER_VARIANTS = {
    "baseline": {},
    "sheaf": {"plugins": [{"name": "sheaf_diffusion", "stalk_dim": 4, "maps": "orthogonal", "at": "all"}]},
    "dagnn": {"plugins": [{"name": "dagnn", "hops": 10, "at": "head"}]},
    "virtual_nodes": {"plugins": [{"name": "virtual_nodes", "num_virtual": 2, "adaptive": True, "at": "all"}]},
    "virgo": {"init": "virgo"},
}
TRANSFORMER = {"dim": 64, "layers": 6, "heads": 4, "dilation": [1, 2, 4]}


def config(name: str, train_path: Path, out: Path, budget: float):
    from sim.train import Config

    if name == "transformer":
        model = {"network": "graph_transformer", "network_args": dict(TRANSFORMER)}
    else:
        model = {"network": "meshgraphnet", "preset": "cpu", "network_args": dict(LAYER_VARIANTS[name])}
    return Config.from_dict({
        "model": {**model, "fields": ["velocity"], "target": "delta", "noise_std": 0.02},
        "data": {"train": str(train_path), "batch_size": 1},
        "optim": {"name": "adam", "lr": 1e-3, "lr_final": 1e-5, "schedule": "exponential"},
        "train": {"steps": 1, "max_seconds": budget, "clock": "process", "out": str(out / name), "log_every": 100,
                  "checkpoint_every": 10**9, "normalizer_accumulation_steps": 500},
    })


def step_time_ratios(names: list[str], train_path: Path, rounds: int) -> dict[str, float]:
    """Forward + backward milliseconds per training step of freshly built variants on one batch,
    alternating variants for ``rounds`` rounds after a warm-up; median per variant."""
    import torch
    from torch_geometric.data import Batch

    from sim.data.windows import MeshStepDataset
    from sim.families import get_family

    mesh = get_family("mesh")
    ds = MeshStepDataset(train_path, ["velocity"])
    batch = Batch.from_data_list([ds[0]])
    models = {}
    for n in names:
        torch.manual_seed(0)
        models[n] = mesh.build_model(config(n, train_path, Path("/tmp"), 1.0), ds).train()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds + 1):
        for n in names:
            m = models[n]
            t0 = time.perf_counter()
            loss = m.loss(batch)
            loss.backward()
            m.zero_grad(set_to_none=True)
            if r:  # round 0 is the warm-up
                times[n].append(time.perf_counter() - t0)
    return {n: 1e3 * float(np.median(v)) for n, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--data", help="folder with train.h5 and test.h5 (default: the recipe's size, generated)")
    ap.add_argument("--size", help="recipe size when --data is not given (default medium, small with --quick)")
    ap.add_argument("--train-seconds", type=float, help="budget per variant (default 600, 12 with --quick)")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "plugins"))
    ap.add_argument("--workers", type=int, default=2, help="data generation processes")
    ap.add_argument("--test-entries", type=int, help="roll out only the first N test trajectories (default: all)")
    ap.add_argument("--set", choices=["a", "b", "all"], default="all", help="which plugin set to measure")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds of set B (default 3)")
    ap.add_argument("--jobs", type=int, default=2, help="set B tasks run at once (default 2)")
    ap.add_argument("--correction", default="divergence_free", help="rollout correction of set B")
    ap.add_argument("--prune-finetune", type=int,
                    help="fine-tuning steps after pruning, and of the unpruned control (default 2000, quick 20)")
    ap.add_argument("--prune-base", help="prune this mesh checkpoint (trained on --prune-data) instead of each seed's "
                                         "base model of set B; the seeds then vary the pruning")
    ap.add_argument("--prune-data", help="folder with train.h5 and test.h5 of --prune-base (default: --data)")
    args = ap.parse_args()

    import torch

    from sim.data.windows import MeshStepDataset
    from sim.families import steps_for_budget, train
    from sim.mesh import Store
    from sim.plugins.diagnostics.hop_influence import hop_influence, influence_png
    from sim.rollout.evaluate import evaluate_store, mesh_case
    from sim.train import load_model

    torch.set_num_threads(1)
    budget = args.train_seconds or (12.0 if args.quick else 600.0)
    if args.data:
        data = Path(args.data)
        paths = {s: data / f"{s}.h5" for s in ("train", "valid", "test")}
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise SystemExit(f"missing {', '.join(missing)}")
    else:
        from solvers.recipes import generate, load_recipe

        size = args.size or ("small" if args.quick else "medium")
        paths = generate(load_recipe(ROOT / "datasets" / "cylinder_flow.yaml"), size, workers=args.workers)
    out = Path(args.out)
    if args.test_entries:  # a store of the first N test trajectories, for every rollout below
        from sim.mesh import StoreWriter

        subset = out / f"test_first{args.test_entries}.h5"
        if not subset.exists():
            out.mkdir(parents=True, exist_ok=True)
            with Store(paths["test"]) as s, StoreWriter(subset) as w:
                for name in s.names()[: args.test_entries]:
                    w.append(s.read(name), name=name)
        paths["test"] = subset
    sets = {"a", "b"} if args.set == "all" else {args.set}
    results_b: dict[str, object] = {}
    cpu_hours = 0.0
    seeds = list(range(args.seeds))
    if "b" in sets:
        from _plugins_b import run_set_b

        prune_paths = None
        if args.prune_data:
            prune_paths = {s: Path(args.prune_data) / f"{s}.h5" for s in ("train", "test")}
            missing = [str(p) for p in prune_paths.values() if not p.exists()]
            if missing:
                raise SystemExit(f"missing {', '.join(missing)}")
        if args.prune_base and not Path(args.prune_base).exists():
            raise SystemExit(f"missing {args.prune_base}")
        results_b, cpu_hours = run_set_b(paths, out / "set_b", budget, seeds, args.jobs, args.correction, args.quick,
                                         args.prune_finetune, Path(args.prune_base) if args.prune_base else None,
                                         prune_paths)
    if "a" not in sets:
        report("plugins", {"data": str(paths["train"].parent), "train_budget_s": budget, "mgn_preset": "cpu",
                           **results_b, "peak_mem_mb": peak_mem_mb()}, args.json, seeds=seeds,
               train_cpu_hours=cpu_hours)
        return
    names = list(LAYER_VARIANTS) + ["transformer"]
    results: dict[str, object] = {"data": str(paths["train"].parent), "train_budget_s": budget,
                                  "mgn_preset": "cpu", "transformer": str(TRANSFORMER)}
    with Store(paths["train"]) as s:
        results["train_trajectories"] = len(s.names())
    with Store(paths["test"]) as s:
        test_entries = s.names()[: args.test_entries] if args.test_entries else s.names()
        results["test_trajectories"] = len(test_entries)
        results["test_nodes_mean"] = float(np.mean([s.read(n).mesh.num_points for n in test_entries]))

    ratio_ms = step_time_ratios(names, paths["train"], rounds=5 if args.quick else 10)
    for name in names:
        results[f"step_ms_{name}"] = ratio_ms[name]
        results[f"step_time_ratio_{name}"] = ratio_ms[name] / ratio_ms["baseline"]

    models = {}
    for name in names:
        run = out / name
        if run.exists():
            shutil.rmtree(run)
        cfg = config(name, paths["train"], out, budget)
        torch.manual_seed(0)
        cfg.train.steps = steps_for_budget(cfg, budget)
        summary = train(cfg, progress=False)
        model, _ = load_model(run / "checkpoint.pt")
        models[name] = model
        t0 = time.perf_counter()
        evals = evaluate_store(model, paths["test"], mesh_case, test_entries, None, None)
        roll_s = time.perf_counter() - t0
        results[f"train_steps_{name}"] = summary["steps"]
        results[f"train_step_ms_{name}"] = 1e3 * summary["seconds"] / max(1, summary["steps"])
        results[f"rmse_all_{name}"] = float(np.mean([r.rmse["all"] for r in evals]))
        results[f"rmse_1_{name}"] = float(np.mean([r.rmse["1"] for r in evals]))
        results[f"rollout_step_ms_{name}"] = 1e3 * roll_s / sum(r.steps for r in evals)
        results[f"params_{name}"] = sum(p.numel() for p in model.parameters())
        print(f"{name}: {summary['steps']} steps, all-rollout RMSE {results[f'rmse_all_{name}']:.4g}", flush=True)
    results["persistence_rmse_all"] = float(np.mean([r.persistence_rmse["all"] for r in evals]))

    max_hops = 12 if args.quick else 24
    seeds = 8 if args.quick else 24
    with Store(paths["test"]) as s:
        entry = s.names()[0]
    sample = MeshStepDataset(paths["test"], ["velocity"], entries=[entry])[0]
    curves = {}
    for name, label in (("baseline", "MeshGraphNet"), ("virtual_nodes", "MeshGraphNet + virtual nodes"),
                        ("transformer", "graph transformer, dilation 1-2-4")):
        t0 = time.perf_counter()  # auto: k-hop subgraphs for local models, the whole mesh for virtual nodes
        res = hop_influence(models[name], sample, max_hops=max_hops, num_seeds=seeds, seed=0, mode="auto")
        results[f"influence_mode_{name}"] = res.mode
        curves[label] = res
        results[f"range_R_{name}"] = res.range_score
        results[f"influence_seconds_{name}"] = time.perf_counter() - t0
        results[f"influence_curve_{name}"] = [round(float(v), 6) for v in res.curve]
        for h in (1, 6, 12):
            if h <= max_hops:
                results[f"influence_T{h}_{name}"] = float(res.curve[h])
    png = out / "hop_influence.png"
    influence_png(png, curves, title=f"hop influence on {entry} (test), T_h / T_0")
    results["influence_png"] = str(png)
    results["influence_max_hops"] = max_hops
    results["influence_seeds"] = seeds
    results["transformer_reaches_farther"] = results["range_R_transformer"] > results["range_R_baseline"]
    results["peak_mem_mb"] = peak_mem_mb()
    report("plugins", {**results, **results_b}, args.json, seeds=seeds if "b" in sets else [0],
           train_cpu_hours=cpu_hours + len(names) * budget / 3600.0)


if __name__ == "__main__":
    main()
