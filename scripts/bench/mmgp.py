"""MMGP on the elasticity shape family: field and scalar accuracy, calibration, speed.

    python scripts/bench/mmgp.py [--quick] [--json PATH] [--size medium]

Fits MMGP (inputs E, nu, load and the shape; outputs the displacement `u`, the von Mises
field and the scalars max_abs_uy_top, max_von_mises) on the train split and evaluates the
test split and the out-of-distribution splits. RRMSE follows PLAID: per sample the RMS
error over nodes divided by the sample's max |value|, then the RMS over samples.

JSON keys: rrmse_<field>, rrmse_fields, rrmse_<scalar>, q2_<scalar>, coverage95, fit_s,
predict_s, ood_std_ratio, and graph_rrmse_fields with graph_rrmse_<field>: MeshGraphNet
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

    from sim.train import load_model
    from sim.families.steady import rrmse

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
    ap.add_argument("--size")
    ap.add_argument("--modes", type=int, default=16)
    ap.add_argument("--graph-seconds", type=float, help="CPU seconds to train the graph model (0: skip it)")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "mmgp"))
    args = ap.parse_args()

    from sim.models.mmgp import MMGP
    from solvers.recipes import generate, load_recipe

    size = args.size or ("small" if args.quick else "medium")
    paths = generate(load_recipe(ROOT / "datasets" / "elasticity_shapes.yaml"), size, workers=1)
    train, test = load(paths["train"]), load(paths["test"])
    ood = load(paths["test_ellipse"]) + load(paths["test_wedge"])
    scal = lambda ms, k: np.array([m.field_data[k][0] for m in ms])  # noqa: E731

    model = MMGP(shape_modes=args.modes, field_modes=args.modes, n_restarts=2, n_draws=200)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(train, {k: scal(train, k) for k in INPUTS}, {f: [m.point_data[f] for m in train] for f in FIELDS},
              {k: scal(train, k) for k in SCALARS})
    fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0

    def predict(ms):
        t = time.perf_counter()
        out = [model.predict(m, {k: m.field_data[k][0] for k in INPUTS}) for m in ms]
        return out, (time.perf_counter() - t) / len(ms)

    preds, predict_s = predict(test)
    res = {"size": size, "train_samples": len(train), "test_samples": len(test), "fit_s": fit_s,
           "predict_s": predict_s}
    field_scores = []
    inside, total = 0, 0
    for f in FIELDS:
        per = []
        for m, p in zip(test, preds):
            truth = m.point_data[f].reshape(m.num_points, -1)
            err = np.sqrt(((p["fields"][f] - truth) ** 2).mean())
            per.append(err / np.abs(truth).max())
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
    ood_preds, _ = predict(ood)
    std_in = np.mean([p["fields_std"]["u"].mean() for p in preds])
    std_ood = np.mean([p["fields_std"]["u"].mean() for p in ood_preds])
    res["ood_std_ratio"] = float(std_ood / std_in)
    graph_s = args.graph_seconds if args.graph_seconds is not None else (60.0 if args.quick else 1200.0)
    res["graph_rrmse_fields"] = None
    if graph_s > 0:
        res.update(graph_model(paths, test, graph_s, args.out))
    res["peak_mem_mb"] = peak_mem_mb()
    cpu = (res.get("graph_train_s") or 0.0) + fit_cpu_s  # the graph model trains on a CPU-time clock
    res["fit_cpu_s"] = fit_cpu_s
    report("mmgp", res, args.json, seeds=[0], train_cpu_hours=cpu / 3600)


if __name__ == "__main__":
    main()
