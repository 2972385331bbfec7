"""MMGP on the elasticity shape family: field and scalar accuracy, calibration, speed.

    python scripts/bench/mmgp.py [--quick] [--json PATH] [--size medium]

Fits MMGP (inputs E, nu, load and the shape; outputs the displacement `u`, the von Mises
field and the scalars max_abs_uy_top, max_von_mises) on the train split and evaluates the
test split and the out-of-distribution splits. RRMSE follows PLAID: per sample the RMS
error over nodes divided by the sample's max |value|, then the RMS over samples.

JSON keys: rrmse_<field>, rrmse_fields, rrmse_<scalar>, q2_<scalar>, coverage95, fit_s,
predict_s, ood_std_ratio, graph_rrmse_fields (null: the steady graph-model comparison is
not implemented yet).
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--size")
    ap.add_argument("--modes", type=int, default=16)
    args = ap.parse_args()

    from sim.models.mmgp import MMGP
    from solvers.recipes import generate, load_recipe

    size = args.size or ("small" if args.quick else "medium")
    paths = generate(load_recipe(ROOT / "datasets" / "elasticity_shapes.yaml"), size, workers=1)
    train, test = load(paths["train"]), load(paths["test"])
    ood = load(paths["test_ellipse"]) + load(paths["test_wedge"])
    scal = lambda ms, k: np.array([m.field_data[k][0] for m in ms])  # noqa: E731

    model = MMGP(shape_modes=args.modes, field_modes=args.modes, n_restarts=2, n_draws=200)
    t0 = time.perf_counter()
    model.fit(train, {k: scal(train, k) for k in INPUTS}, {f: [m.point_data[f] for m in train] for f in FIELDS},
              {k: scal(train, k) for k in SCALARS})
    fit_s = time.perf_counter() - t0

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
    res["graph_rrmse_fields"] = None
    res["peak_mem_mb"] = peak_mem_mb()
    report("mmgp", res, args.json)


if __name__ == "__main__":
    main()
