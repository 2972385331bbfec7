"""Error against training compute for model sizes of both mesh families (a scaling curve).

    python scripts/bench/scaling.py [--quick] [--json PATH] [--data DIR] [--size medium]
        [--models gt:tiny,gt:small,gt:base,mgn:cpu,mgn:paper] [--budgets 600,1800,3600]

Each (model, budget) pair trains from scratch on the cylinder-flow train split for that
wall-time budget (the learning-rate schedule spans the budget), then is rolled out on the
test split. Compute is counted, not timed: training FLOPs per step (forward + backward of
the loss on the first training graph, `sim.models.cost`) times the number of steps, so
curves from different machines line up. Writes one JSON row per run and a log-log PNG of
all-rollout RMSE against training FLOPs.

The default grid is hours of CPU: meant for bigger machines. `--quick`: the small set,
GT tiny and MeshGraphNet cpu, budgets of 20 and 60 s.

JSON keys: for each run `<model>_<preset>_<budget>s_{steps,train_flops,rmse_all,rmse_1,params}`,
plus `flops_per_step_<model>_<preset>`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import ROOT, report
from _mesh_models import cylinder_data, rollout_metrics, set_threads, train_for_budget

NETWORKS = {"gt": "graph_transformer", "mgn": "meshgraphnet"}


def train_flops_per_step(cfg_dict: dict) -> tuple[int, int]:
    """(training FLOPs of one step on the first training sample, parameters)."""
    from torch_geometric.data import Batch

    from sim.data.windows import MeshStepDataset
    from sim.models.cost import model_cost
    from sim.families import get_family
    from sim.train import Config

    cfg = Config.from_dict(cfg_dict)
    ds = MeshStepDataset(cfg.data.train, cfg.model.fields)
    simulator = get_family("mesh").build_model(cfg, ds)
    batch = Batch.from_data_list([ds[0]])
    simulator.train()
    cost = model_cost(simulator, (batch.state, batch.node_type, batch.edge_index, batch.edge_attr, batch.mesh_pos,
                                  batch.batch), loss=lambda: simulator.loss(batch))
    return int(cost.train_flops), cost.params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (budgets are CPU seconds)")
    ap.add_argument("--data", help="folder with train/valid/test.h5 of the cylinder recipe (default: generate)")
    ap.add_argument("--size")
    ap.add_argument("--models", help="comma-separated family:preset (gt or mgn)")
    ap.add_argument("--budgets", help="comma-separated seconds per run")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "scaling"))
    args = ap.parse_args()
    set_threads(args.threads)

    size = args.size or ("small" if args.quick else "medium")
    models = (args.models or ("gt:tiny,mgn:cpu" if args.quick else "gt:tiny,gt:small,gt:base,mgn:cpu,mgn:paper")
              ).split(",")
    budgets = [float(b) for b in (args.budgets or ("20,60" if args.quick else "600,1800,3600")).split(",")]
    paths = cylinder_data(size, args.data)
    out = Path(args.out)
    results: dict[str, object] = {"size": size, "models": ",".join(models), "budgets_s": ",".join(map(str, budgets))}
    curves: dict[str, list[tuple[float, float]]] = {}
    for spec in models:
        family, preset = spec.split(":")
        base = {"model": {"network": NETWORKS[family], "preset": preset, "fields": ["velocity"], "target": "delta",
                          "noise_std": 0.02},
                "data": {"train": str(paths["train"]), "batch_size": 1},
                "optim": {"name": "adam", "lr": 1e-3, "lr_final": 1e-5},
                "train": {"steps": 1, "log_every": 100, "checkpoint_every": 10**9, "out": ""}}
        flops, params = train_flops_per_step(base)
        results[f"flops_per_step_{family}_{preset}"] = flops
        for budget in budgets:
            key = f"{family}_{preset}_{int(budget)}s"
            base["train"]["out"] = str(out / key)
            summary = train_for_budget(base, budget)
            m = rollout_metrics(summary["checkpoint"], paths["test"])
            results.update({f"{key}_steps": summary["steps"], f"{key}_train_flops": flops * summary["steps"],
                            f"{key}_rmse_all": m["rmse_all"], f"{key}_rmse_1": m["rmse_1"], f"{key}_params": params})
            curves.setdefault(f"{family}:{preset}", []).append((flops * summary["steps"], m["rmse_all"]))
    results["persistence_rmse_all"] = m["persistence_rmse_all"]
    _plot(out / "scaling.png", curves, m["persistence_rmse_all"])
    results["plot"] = str(out / "scaling.png")
    report("scaling", results, args.json)


def _plot(path: Path, curves: dict[str, list[tuple[float, float]]], persistence: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for name, pts in curves.items():
        pts = sorted(pts)
        ax.loglog([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
    ax.axhline(persistence, ls="--", c="gray", label="persistence")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("all-rollout RMSE (test)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
