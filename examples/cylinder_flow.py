"""Cylinder flow with MeshGraphNet and the graph transformer, end to end through the Python API.

    python examples/cylinder_flow.py [--out examples_output/cylinder_flow] [--train-seconds 120] [--quick]

1. generate the small cylinder-flow recipe with our Navier-Stokes solver (4 train, 1 valid,
   1 test trajectories of 50 steps; `--quick`: a coarse mesh and 12 steps);
2. train MeshGraphNet (CPU preset: latent 64, 6 message-passing steps) and the small graph
   transformer (width 64, 6 layers, dilated hop windows 1-2-4, rotary coordinates) for the
   same wall-time budget each;
3. load each with ``sim.load`` and roll it out on the unseen test trajectory, streaming a
   ParaView series (``<model>.pvd``); plot the error of both against persistence
   (``error.png``) and the last step of each next to the truth (``<model>_step.png``).

A few CPU minutes give models that beat persistence early in the rollout and then drift;
the benchmarks (scripts/bench/mgn_cylinder.py, transformer_vs_mgn.py) train on the medium set
for longer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import sim
from sim.mesh import Store
from sim.rollout.plots import fields_png
from sim.families import steps_for_budget, train
from sim.train import Config
from solvers.recipes import generate, load_recipe

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"mesh_size": 0.06, "mesh_size_min": 0.02, "num_steps": 12, "warmup": 0.3, "max_cfl": 3.0}
MODELS = {
    "meshgraphnet": {"network": "meshgraphnet", "preset": "cpu"},
    "graph_transformer": {"network": "graph_transformer", "preset": "small",
                          "network_args": {"dilation": [1, 2, 4], "coord_dim": 2, "rope": True, "rope_scale": 50.0}},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="examples_output/cylinder_flow")
    ap.add_argument("--train-seconds", type=float, default=120.0, help="training budget per model")
    ap.add_argument("--quick", action="store_true", help="tiny data and budget (a smoke test)")
    args = ap.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()

    recipe = load_recipe(ROOT / "datasets" / "cylinder_flow.yaml")
    if args.quick:
        recipe.sizes["small"] = {"splits": {"train": 2, "test": 1}, "params": QUICK}
    data = generate(recipe, "small", out=out / "data", workers=1 if args.quick else 2)
    with Store(data["test"]) as s:
        test = s.read(s.names()[0])
    print(f"data: {data['train']} (test trajectory {test.num_steps} steps on {test.mesh.num_points} nodes)")

    rollouts = {}
    for name, model in MODELS.items():
        cfg = Config.from_dict({
            "model": {**model, "fields": ["velocity"], "target": "delta", "noise_std": 0.05},
            "data": {"train": str(data["train"]), "batch_size": 1},
            "optim": {"name": "adamw" if name == "graph_transformer" else "adam", "lr": 1e-3, "lr_final": 1e-5},
            "train": {"steps": 5 if args.quick else 1, "out": str(out / name), "log_every": 25,
                      "normalizer_accumulation_steps": 200, "checkpoint_every": 10**9},
        })
        ckpt = out / name / "checkpoint.pt"
        if ckpt.exists():
            ckpt.unlink()
        if not args.quick:
            cfg.train.steps = steps_for_budget(cfg, args.train_seconds)
            cfg.train.max_seconds = args.train_seconds
        summary = train(cfg)
        print(f"{name}: {summary['steps']} training steps, loss {summary['final_loss']:.4g}")

        surrogate = sim.load(ckpt)  # the checkpoint alone rebuilds the model
        steps = test.num_steps - 1
        rollouts[name] = surrogate.rollout(test, steps, out=out / f"{name}.pvd")  # boundary values from `test`
        print(f"wrote {out / f'{name}.pvd'} (open it in ParaView)")

    truth = test.point_fields["velocity"]
    persistence = np.sqrt(((truth[1:] - truth[0]) ** 2).mean(axis=(1, 2)))
    errors = {k: np.sqrt(((r.point_fields["velocity"][1:] - truth[1:]) ** 2).mean(axis=(1, 2)))
              for k, r in rollouts.items()}
    _error_png(out / "error.png", errors, persistence, test.dt)
    speed = np.linalg.norm(truth[-1], axis=1)
    for name, r in rollouts.items():
        pred = np.linalg.norm(r.point_fields["velocity"][-1], axis=1)
        err = np.linalg.norm(r.point_fields["velocity"][-1] - truth[-1], axis=1)
        lim = (float(speed.min()), float(speed.max()))
        fields_png(out / f"{name}_step.png", test.mesh, [
            (f"{name}: speed at step {test.num_steps - 1}", pred, "viridis", lim),
            ("truth: speed", speed, "viridis", lim),
            ("error: |velocity error|", err, "magma", (0.0, float(err.max()) or 1.0))])
    for k, e in errors.items():
        print(f"{k}: all-rollout RMSE {np.sqrt(np.mean(e ** 2)):.4g} (persistence {np.sqrt(np.mean(persistence ** 2)):.4g})")
    print(f"wrote {out / 'error.png'} and the *_step.png pictures in {time.perf_counter() - t0:.0f} s")


def _error_png(path: Path, errors: dict[str, np.ndarray], persistence: np.ndarray, dt: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    steps = np.arange(1, len(persistence) + 1)
    for k, e in errors.items():
        ax.semilogy(steps, e, label=k)
    ax.semilogy(steps, persistence, "--", label="persistence")
    ax.set_xlabel(f"step (dt = {dt:g})")
    ax.set_ylabel("velocity RMSE")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
