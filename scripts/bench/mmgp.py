"""MMGP on the elasticity shape family: field and scalar accuracy, calibration, speed.

    python scripts/bench/mmgp.py [--quick] [--json PATH] [--size medium] [--train-size large]
                                 [--train-samples N] [--modes K] [--shape-modes K] [--refine R]
                                 [--scaling power|none] [--seeds N] [--graph-seconds S]

Fits MMGP (inputs E, nu, load and the shape; outputs the displacement `u`, the von Mises
field and the scalars max_abs_uy_top, max_von_mises) on the first --train-samples samples of
the train split of --train-size (default: the large size, whose train split starts with the
medium one's samples: entries are seeded by split and index) and evaluates the test split of
--size and its out-of-distribution splits. RRMSE follows PLAID: per sample the RMS error over
nodes divided by the sample's max |value|, then the RMS over samples. --seeds fits that many
times with different GP random states (optimiser restarts, posterior draws); the figures are
their mean with ``<key>_std`` the spread.

Error budget (``MMGP.stage_errors``): each test sample's true fields through the model's
stages and back: the transfers to the common support and back alone, plus the POD truncation
(the true coefficients), and the prediction (the GPs' coefficients); RRMSE of each.

JSON keys: rrmse_<field>, rrmse_fields, rrmse_<scalar>, q2_<scalar>, coverage95, fit_s,
predict_s, ood_std_ratio, error_budget (field -> transfer / projection / prediction RRMSE),
per_seed, and graph_rrmse_fields with graph_rrmse_<field>: MeshGraphNet
(CPU preset, `model.family: steady`: node type, E, nu, load and coordinates in, the fields
out in one pass, as PLAID trains it on Tensile2d) trained on the same split through the shared
trainer for a CPU-time budget (`--graph-seconds`, default 1200, quick 60) and scored the same way.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import ROOT, peak_mem_mb, report

FIELDS = ("u", "von_mises")
SCALARS = ("max_abs_uy_top", "max_von_mises")
INPUTS = ("E", "nu", "load")


def load(path):
    from sim.mesh import Store

    with Store(path) as s:
        return [s.read(n) for n in s.names()]


def graph_model(paths: dict, test: list, seconds: float, out: str) -> dict:
    """MeshGraphNet (CPU preset) on the steady task, trained for ``seconds`` of CPU time; its RRMSE."""
    import torch
    from _mesh_models import train_for_budget

    from sim.families.steady import rrmse
    from sim.train import load_model

    torch.set_num_threads(1)
    summary = train_for_budget({
        "model": {"family": "steady", "network": "meshgraphnet", "preset": "cpu", "fields": list(FIELDS),
                  "scalars": list(INPUTS)},
        "data": {"train": str(paths["train"]), "batch_size": 2},
        "optim": {"name": "adam", "lr": 1e-3, "lr_final": 1e-5},
        "train": {"steps": 1, "out": f"{out}/graph_meshgraphnet", "log_every": 100, "checkpoint_every": 10**9,
                  "normalizer_accumulation_steps": 200},
    }, seconds)
    model, _ = load_model(summary["checkpoint"])
    res = {"graph_train_steps": summary["steps"], "graph_train_s": summary["seconds"]}
    scores = []
    for f in FIELDS:
        per = []
        for m in test:
            pred = model.predict(m, {k: m.field_data[k][0] for k in INPUTS})[f]
            per.append(rrmse(np.asarray(pred), m.point_data[f].reshape(np.shape(pred))))
        res[f"graph_rrmse_{f}"] = float(np.sqrt(np.mean(np.square(per))))
        scores.append(res[f"graph_rrmse_{f}"])
    res["graph_rrmse_fields"] = float(np.mean(scores))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--size", help="size of the test splits (default medium; small with --quick)")
    ap.add_argument("--train-size", help="size whose train split is fitted (default large; small with --quick)")
    ap.add_argument("--train-samples", type=int, help="fit the first N samples of that split (default: all)")
    ap.add_argument("--modes", type=int, default=64, help="POD modes per field")
    ap.add_argument("--shape-modes", type=int, default=24, help="POD modes of the shape embedding")
    ap.add_argument("--refine", type=int, default=0, help="uniform refinements of the common support")
    ap.add_argument("--scaling", default="power", choices=["power", "none"], help="output scaling (MMGP scaling)")
    ap.add_argument("--restarts", type=int, default=2, help="GP optimiser restarts")
    ap.add_argument("--seeds", type=int, default=1, help="fits with GP random states 0..N-1")
    ap.add_argument("--workers", type=int, default=1, help="data generation processes")
    ap.add_argument("--graph-seconds", type=float, help="CPU seconds to train the graph model (0: skip it)")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "mmgp"))
    args = ap.parse_args()

    from sim.models.mmgp import MMGP
    from solvers.recipes import generate, load_recipe

    size = args.size or ("small" if args.quick else "medium")
    train_size = args.train_size or ("small" if args.quick else "large")
    recipe = load_recipe(ROOT / "datasets" / "elasticity_shapes.yaml")
    paths = generate(recipe, size, workers=args.workers)
    train_paths = paths if train_size == size else generate(recipe, train_size, workers=args.workers)
    train, test = load(train_paths["train"])[:args.train_samples], load(paths["test"])
    ood = load(paths["test_ellipse"]) + load(paths["test_wedge"])
    scal = lambda ms, k: np.array([m.field_data[k][0] for m in ms])  # noqa: E731
    inputs = lambda m: {k: m.field_data[k][0] for k in INPUTS}  # noqa: E731

    def one_seed(seed: int) -> dict:
        model = MMGP(shape_modes=args.shape_modes, field_modes=args.modes, n_restarts=args.restarts, n_draws=200,
                     random_state=seed, scaling=args.scaling, refine=args.refine)
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(train, {k: scal(train, k) for k in INPUTS}, {f: [m.point_data[f] for m in train] for f in FIELDS},
                  {k: scal(train, k) for k in SCALARS})
        res = {"fit_s": time.perf_counter() - t0, "fit_cpu_s": time.process_time() - c0}
        t0 = time.perf_counter()
        preds = [model.predict(m, inputs(m)) for m in test]
        res["predict_s"] = (time.perf_counter() - t0) / len(test)
        field_scores, inside, total = [], 0, 0
        for f in FIELDS:
            per = []
            for m, p in zip(test, preds):
                truth = m.point_data[f].reshape(m.num_points, -1)
                per.append(np.sqrt(((p["fields"][f] - truth) ** 2).mean()) / np.abs(truth).max())
                lo, hi = p["fields_quantiles"][f]
                inside += int(((truth >= lo) & (truth <= hi)).sum())
                total += truth.size
            res[f"rrmse_{f}"] = float(np.sqrt(np.mean(np.square(per))))
            field_scores.append(res[f"rrmse_{f}"])
        res["rrmse_fields"] = float(np.mean(field_scores))
        res["coverage95"] = inside / total
        for k in SCALARS:
            truth = scal(test, k)
            pred = np.array([p["scalars"][k] for p in preds])
            res[f"rrmse_{k}"] = float(np.sqrt(np.mean(((pred - truth) / np.abs(truth)) ** 2)))
            res[f"q2_{k}"] = float(1 - ((pred - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())
        stages = [model.stage_errors(m, inputs(m), {f: m.point_data[f] for f in FIELDS}) for m in test]
        res["error_budget"] = {f: {st: float(np.sqrt(np.mean([s[f][st] ** 2 for s in stages])))
                                   for st in ("transfer", "projection", "prediction")} for f in FIELDS}
        std_in = np.mean([p["fields_std"]["u"].mean() for p in preds])
        std_ood = np.mean([model.predict(m, inputs(m))["fields_std"]["u"].mean() for m in ood])
        res["ood_std_ratio"] = float(std_ood / std_in)
        print(f"seed {seed}: rrmse_fields {res['rrmse_fields']:.4f} (u {res['rrmse_u']:.4f}, von Mises "
              f"{res['rrmse_von_mises']:.4f}), coverage {res['coverage95']:.3f}, fit {res['fit_s']:.0f} s", flush=True)
        return res

    per_seed = [one_seed(seed) for seed in range(args.seeds)]
    res = {"size": size, "train_size": train_size, "train_samples": len(train), "test_samples": len(test),
           "modes": args.modes, "shape_modes": args.shape_modes, "refine": args.refine, "scaling": args.scaling,
           "restarts": args.restarts}
    for k, v in per_seed[0].items():
        if k == "error_budget":
            res[k] = {f: {st: float(np.mean([r[k][f][st] for r in per_seed])) for st in v[f]} for f in v}
        else:
            res[k] = float(np.mean([r[k] for r in per_seed]))
            res[f"{k}_std"] = float(np.std([r[k] for r in per_seed]))
    res["per_seed"] = per_seed
    fit_cpu_s = sum(r["fit_cpu_s"] for r in per_seed)
    graph_s = args.graph_seconds if args.graph_seconds is not None else (60.0 if args.quick else 1200.0)
    res["graph_rrmse_fields"] = None
    if graph_s > 0:
        res.update(graph_model(train_paths, test, graph_s, args.out))
    res["peak_mem_mb"] = peak_mem_mb()
    cpu = (res.get("graph_train_s") or 0.0) + fit_cpu_s  # the graph model trains on a CPU-time clock
    report("mmgp", res, args.json, seeds=list(range(args.seeds)), train_cpu_hours=cpu / 3600)


if __name__ == "__main__":
    main()
