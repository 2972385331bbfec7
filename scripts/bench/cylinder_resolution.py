"""Our cylinder-flow solver on coarser meshes, scored as a surrogate is: what the flow metrics ask for.

    python scripts/bench/cylinder_resolution.py [--quick] [--json PATH] [--size medium] [--data DIR]
                                                [--scales 1 0.7 0.5] [--trajectories N]

For every test trajectory of the cylinder_flow store (datasets/cylinder_flow/<size>, generated if
missing), the same case (geometry, inflow, viscosity, warm-up, stored step) is solved again with
the recipe's mesh sizes multiplied by 1 / scale (scale 0.5: about a quarter of the nodes; the
solver step follows the recipe's CFL rule), its velocity interpolated (P1) to the stored mesh every
frame, the prescribed nodes set to their values, and scored against the stored flow with the
metrics of ``sim eval`` and ``scripts/bench/mgn_cylinder.py``: rollout RMSE at 50 and all steps
(MeshGraphNet's definition: the square root of the mean squared velocity error over nodes,
components and steps 1..h), median shedding-frequency error, time-mean and fluctuation relative
RMSE. Scale 1 re-solves the stored case itself, so its errors check the rebuild (they are zero
when the solve is reproduced exactly) and its time is the reference solver's.

The coarser solves start from rest and run their own warm-up, as the stored solve did, so at
frame 0 their shedding phase is their own: their RMSE measures phase as much as shape, while the
flow metrics (time means, fluctuation amplitude, frequency) do not depend on the phase. They say
how much resolution a learned surrogate's flow metrics are worth: a surrogate whose time-mean
error is that of the solver at scale 0.5 is as good, on that metric, as our solver on a quarter of
the nodes.

JSON keys: scales, and per scale (lists in the order of scales) nodes (mean over trajectories),
frame_s (CPU seconds of the whole solve, its warm-up from rest included, per stored frame; one
thread), rmse_50, rmse_all,
shedding_freq_err_median, mean_field_rrmse, fluct_rrmse (means over trajectories, the shedding
error's median); per_trajectory: the same per trajectory and scale.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import report
from _mesh_models import cylinder_data, flow_interpolator, flow_scores, rescaled_case, set_threads
from tqdm import tqdm


def resolved(traj, scale: float) -> dict[str, float]:
    """Our solver on ``traj``'s case meshed ``scale`` times as fine, scored against ``traj``."""
    from solvers.cfd.cylinder import solve

    p = traj.params
    drawn, _ = rescaled_case(traj, scale)
    n = traj.num_steps
    t = time.process_time()
    sol = solve(drawn, {"dt_store": float(traj.dt), "num_steps": n, "warmup": p["warmup"]})
    cpu = time.process_time() - t
    truth = traj.point_fields["velocity"]
    frames = flow_interpolator(sol.mesh, traj.mesh, truth)(sol.point_fields["velocity"][:n])
    mse = np.array([((f - truth[k]) ** 2).mean() for k, f in enumerate(frames)])[1:]
    return {"nodes": int(sol.mesh.num_points), "frame_s": cpu / (n - 1), "rmse_50": float(np.sqrt(mse[:50].mean())),
            "rmse_all": float(np.sqrt(mse.mean())), **flow_scores(traj.mesh, p, truth, frames, float(traj.dt))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small size, scales 1 and 0.7, two trajectories")
    ap.add_argument("--json")
    ap.add_argument("--size", help="cylinder_flow size (default medium; quick small)")
    ap.add_argument("--data", help="the dataset directory (default datasets/cylinder_flow/<size>)")
    ap.add_argument("--scales", type=float, nargs="+", help="mesh refinement factors (default 1 0.7 0.5)")
    ap.add_argument("--trajectories", type=int, help="the first N test trajectories (default all; quick 2)")
    ap.add_argument("--workers", type=int, default=2, help="solver processes when the dataset is generated")
    args = ap.parse_args()
    set_threads(1)
    from sim.mesh import Store

    size = args.size or ("small" if args.quick else "medium")
    scales = args.scales or ([1.0, 0.7] if args.quick else [1.0, 0.7, 0.5])
    if any(not s > 0 for s in scales):
        raise SystemExit(f"--scales must be positive, got {scales}")
    paths = cylinder_data(size, args.data, args.workers)
    with Store(paths["test"]) as s:
        names = s.names()[:args.trajectories or (2 if args.quick else None)]
        trajs = [s.read(n) for n in names]
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for scale in scales:
        for name, traj in zip(names, tqdm(trajs, desc=f"scale {scale:g}")):
            rows.setdefault(name, {})[f"{scale:g}"] = resolved(traj, scale)
    res: dict[str, object] = {"size": size, "test_trajectories": len(names), "scales": scales}
    for key in ("nodes", "frame_s", "rmse_50", "rmse_all", "shedding_freq_err", "mean_field_rrmse", "fluct_rrmse"):
        per = [[rows[n][f"{s:g}"].get(key, np.nan) for n in names] for s in scales]
        if key == "shedding_freq_err":
            res["shedding_freq_err_median"] = [float(np.nanmedian(v)) for v in per]
        else:
            res[key] = [float(np.mean(v)) for v in per]
    res["per_trajectory"] = rows
    report("cylinder_resolution", res, args.json)


if __name__ == "__main__":
    main()
