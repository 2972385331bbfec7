"""``sim demo`` / ``make demo``: the whole loop on the CPU in a few minutes.

1. generate a few cylinder-flow trajectories with our Navier-Stokes solver
   (``datasets/cylinder_flow.yaml``, size ``demo``);
2. train a CPU-sized MeshGraphNet (latent 64, 6 message-passing steps) for a fixed time;
3. roll it out from the first step of an unseen trajectory with the boundary values of the
   ground truth, and write the rollout (prediction, truth, error per step) as a ParaView
   series with PNGs of the error curve and of the last step;
4. roll out the zoo's pretrained cylinder model (``zoo:cylinder_flow``, trained on the
   recipe's medium set: its model card says how) on a trajectory generated fresh for the demo
   (from a seed no training set uses), written the same way.

Both models' RMSE is printed next to persistence's (the start held) at a few horizons.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

RECIPE = Path(__file__).resolve().parents[1] / "datasets" / "cylinder_flow.yaml"

QUICK_PARAMS = {"mesh_size": 0.06, "mesh_size_min": 0.02, "num_steps": 12, "warmup": 0.3, "max_cfl": 3.0}
ZOO_MODEL = "zoo:cylinder_flow"
ZOO_SPLIT = "demo_zoo"  # the fresh trajectory's seed derives from the recipe seed and this name (no split uses it)
ZOO_STEPS = 60  # stored steps of the fresh trajectory, as many as the demo's own (rollouts: fewer by the history)
ZOO_QUICK_STEPS = 12
DEMO_HORIZONS = ("1", "10", "50", "all")


def horizon_table(rows: dict[str, Any]) -> str:
    """RMSE against persistence at :data:`DEMO_HORIZONS` for each model (``rows``: label -> EntryResult)."""
    lines = [f"{'':<34}" + "".join(f"{'step ' + h if h != 'all' else 'all steps':>12}" for h in DEMO_HORIZONS)]
    for label, r in rows.items():
        hs = [h for h in DEMO_HORIZONS if h in r.rmse]
        lines.append(f"{label + ' RMSE':<34}" + "".join(f"{r.rmse[h]:>12.4f}" for h in hs))
        lines.append(f"{'  persistence RMSE':<34}" + "".join(f"{r.persistence_rmse[h]:>12.4f}" for h in hs))
        lines.append(f"{'  model / persistence':<34}" + "".join(
            f"{r.rmse[h] / r.persistence_rmse[h]:>12.2f}" for h in hs))
    return "\n".join(lines)


def fresh_zoo_trajectory(out: Path, quick: bool) -> Path:
    """A store holding one cylinder-flow trajectory at the zoo model's data parameters, generated
    by our solver from a seed of its own (no training, validation or test entry has it)."""
    from sim.mesh import StoreWriter
    from sim.mesh.atomic import atomic_path
    from sim.zoo import PREFIX
    from sim.zoo import entry as zoo_entry
    from solvers.recipes import generate_entry, load_recipe

    entry = zoo_entry(ZOO_MODEL[len(PREFIX):])
    recipe = load_recipe(RECIPE)
    # the entry's test-split parameters (the recipe's common ones with its size's on top)
    params = entry.extra.get("data_params") or next(s.params for s in recipe.splits(entry.size) if s.name == "test")
    params = {**params, "num_steps": ZOO_QUICK_STEPS if quick else ZOO_STEPS}
    traj = generate_entry(recipe.generator, params, recipe.seed, ZOO_SPLIT, 0)
    path = out / "zoo_data" / "fresh.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with StoreWriter(tmp) as w:
            w.append(traj, name="fresh")
    return path


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
    from sim.families.loading import load_model_file
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
    print(f"[1/4] generating cylinder-flow trajectories with the Navier-Stokes solver into {data}")
    generate(recipe, "demo", out=data, workers=1 if quick else workers)
    print(f"[2/4] training MeshGraphNet (CPU preset) for {train_seconds:.0f} CPU seconds")
    run = out / "run"
    ckpt = run / "checkpoint.pt"
    if ckpt.exists():
        ckpt.unlink()  # a demo always trains afresh
    cfg = Config.from_dict(demo_config(data, run, train_seconds, quick))
    if not quick:
        cfg.train.steps = steps_for_budget(cfg, train_seconds)  # the lr schedule spans the budget
    summary = train(cfg)
    print(f"      {summary['steps']} steps, loss {summary['final_loss']:.4g}")
    print("[3/4] rolling out on an unseen trajectory")
    model, _ = load_model(ckpt)
    rollout_dir = out / "rollout"
    results = evaluate_store(model, data / "valid.h5", get_family("mesh").case(model), None, None, rollout_dir, "pvd",
                             plot=True)
    r = results[0]
    print(f"[4/4] rolling out the zoo's pretrained model ({ZOO_MODEL}) on a freshly generated trajectory")
    zoo_family, zoo_model, _ = load_model_file(ZOO_MODEL)  # one checkpoint or an ensemble's members
    fresh = fresh_zoo_trajectory(out, quick)
    zoo_dir = out / "zoo_rollout"
    z = evaluate_store(zoo_model, fresh, zoo_family.case(zoo_model), None, None, zoo_dir, "pvd", plot=True)[0]
    summary_path = out / "summary.txt"
    text = ""
    for label, res in ((f"demo model ({summary['steps']} steps)", r), (ZOO_MODEL, z)):
        text += (f"{label}: rollout of {res.steps} steps on {res.name}: all-rollout RMSE {res.rmse['all']:.4g} "
                 f"(persistence baseline {res.persistence_rmse['all']:.4g})\n")
        if "shedding_freq_true" in res.extra:
            text += (f"  vortex shedding frequency {res.extra['shedding_freq_pred']:.3g} predicted, "
                     f"{res.extra['shedding_freq_true']:.3g} true; time-mean velocity relative RMSE "
                     f"{res.extra['mean_field_rrmse']:.3g}\n")
    text += horizon_table({f"demo model ({summary['steps']} steps)": r, ZOO_MODEL: z}) + "\n"
    with atomic_path(summary_path) as tmp:
        Path(tmp).write_text(text)
    print("      " + "\n      ".join(text.strip().splitlines()))
    paths = {"pvd": r.output, "error_png": rollout_dir / f"{r.name}_error.png",
             "step_png": rollout_dir / f"{r.name}_step.png", "probe_png": rollout_dir / f"{r.name}_probe.png",
             "checkpoint": ckpt, "zoo_pvd": z.output, "zoo_error_png": zoo_dir / f"{z.name}_error.png",
             "zoo_probe_png": zoo_dir / f"{z.name}_probe.png", "summary": summary_path}
    for kind, p in paths.items():
        print(f"wrote {p}" + ("   <- open this in ParaView (prediction, truth and error per step)"
                              if kind in ("pvd", "zoo_pvd") else ""))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return paths
