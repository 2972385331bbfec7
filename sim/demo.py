"""``sim demo`` / ``make demo``: the whole loop on the CPU in a few minutes.

1. generate a few cylinder-flow trajectories with our Navier-Stokes solver
   (``datasets/cylinder_flow.yaml``, size ``demo``);
2. train a CPU-sized MeshGraphNet (latent 64, 6 message-passing steps) for a fixed time;
3. roll it out from the first step of an unseen trajectory with the boundary values of the
   ground truth, and write the rollout (prediction, truth, error per step) as a ParaView
   series with PNGs of the error curve and of the last step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

RECIPE = Path(__file__).resolve().parents[1] / "datasets" / "cylinder_flow.yaml"

QUICK_PARAMS = {"mesh_size": 0.06, "mesh_size_min": 0.02, "num_steps": 12, "warmup": 0.3, "max_cfl": 3.0}


def demo_config(data: Path, run: Path, train_seconds: float, quick: bool) -> dict[str, Any]:
    return {
        "model": {"network": "meshgraphnet", "preset": "cpu", "fields": ["velocity"], "target": "delta",
                  "noise_std": 0.05,  # 0.02 (MGN's) left medium-set rollouts unstable; see mgn_cylinder.py
                  # keeps rollouts from drifting into a cross-flow (sim.rollout.corrections): the demo's
                  # model measured rollout-all RMSE 0.43 without it, 0.32 with it
                  "family_args": {"correction": "divergence_free"}},
        "data": {"train": str(data / "train.h5"), "valid": str(data / "valid.h5"), "batch_size": 1,
                 "valid_entries": 1, "valid_rollout_steps": 20},
        "optim": {"name": "adam", "lr": 1e-3, "lr_final": 1e-4, "schedule": "exponential"},
        # the budget is CPU time: a loaded machine trains as many steps as an idle one
        "train": {"steps": 60 if quick else 100_000, "max_seconds": train_seconds, "clock": "process",
                  "out": str(run), "log_every": 50,
                  "checkpoint_every": 1000, "normalizer_accumulation_steps": 200, "valid_every": 0},
    }


def run_demo(out: Path, quick: bool = False, train_seconds: float = 180.0, workers: int = 2) -> dict[str, Path]:
    from sim.families import get_family, steps_for_budget, train
    from sim.mesh.atomic import atomic_path
    from sim.rollout.evaluate import evaluate_store
    from sim.train import Config, load_model
    from solvers.recipes import generate, load_recipe

    out = Path(out)
    t0 = time.perf_counter()
    recipe = load_recipe(RECIPE)
    if quick:  # size parameters override the common ones, so the quick ones go there
        recipe.sizes["demo"] = {**recipe.sizes["demo"], "params": {**recipe.sizes["demo"].get("params", {}),
                                                                   **QUICK_PARAMS}}
    data = out / "data"
    print(f"[1/3] generating cylinder-flow trajectories with the Navier-Stokes solver into {data}")
    generate(recipe, "demo", out=data, workers=1 if quick else workers)
    print(f"[2/3] training MeshGraphNet (CPU preset) for {train_seconds:.0f} CPU seconds")
    run = out / "run"
    ckpt = run / "checkpoint.pt"
    if ckpt.exists():
        ckpt.unlink()  # a demo always trains afresh
    cfg = Config.from_dict(demo_config(data, run, train_seconds, quick))
    if not quick:
        cfg.train.steps = steps_for_budget(cfg, train_seconds)  # the lr schedule spans the budget
    summary = train(cfg)
    print(f"      {summary['steps']} steps, loss {summary['final_loss']:.4g}")
    print("[3/3] rolling out on an unseen trajectory")
    model, _ = load_model(ckpt)
    rollout_dir = out / "rollout"
    results = evaluate_store(model, data / "valid.h5", get_family("mesh").case(model), None, None, rollout_dir, "pvd",
                             plot=True)
    r = results[0]
    summary_path = out / "summary.txt"
    text = (f"rollout of {r.steps} steps on {r.name}: all-rollout RMSE {r.rmse['all']:.4g} "
            f"(persistence baseline {r.persistence_rmse['all']:.4g})\n")
    if "shedding_freq_true" in r.extra:
        text += (f"vortex shedding frequency {r.extra['shedding_freq_pred']:.3g} predicted, "
                 f"{r.extra['shedding_freq_true']:.3g} true; time-mean velocity relative RMSE "
                 f"{r.extra['mean_field_rrmse']:.3g}\n")
    with atomic_path(summary_path) as tmp:
        Path(tmp).write_text(text)
    print("      " + "\n      ".join(text.strip().splitlines()))
    paths = {"pvd": r.output, "error_png": rollout_dir / f"{r.name}_error.png",
             "step_png": rollout_dir / f"{r.name}_step.png", "probe_png": rollout_dir / f"{r.name}_probe.png",
             "checkpoint": ckpt, "summary": summary_path}
    for kind, p in paths.items():
        print(f"wrote {p}" + ("   <- open this in ParaView (prediction, truth and error per step)"
                              if kind == "pvd" else ""))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return paths
