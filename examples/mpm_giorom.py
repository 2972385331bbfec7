"""Particles with GIOROM: a sparse neural simulator decoded to any resolution, via the Python API.

    python examples/mpm_giorom.py [--out examples_output/mpm_giorom] [--train-seconds 180] [--quick]

1. generate the small 2D jelly recipe with our MLS-MPM solver (blocks falling in a box);
2. train GIOROM (CPU preset) on a 25 % farthest-point subset of the particles, with its dense
   decoder (sparse displacements -> any query point of the reference configuration);
3. ``sim.load`` it and roll out an unseen trajectory twice: at the solver's particles, and at
   a query cloud 4x denser than the simulation (points the model never saw), each streamed as
   a ParaView point-cloud series (``particles.pvd``, ``dense_queries.pvd``); ``frames.png``
   shows prediction and truth side by side at a few frames.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import sim
from sim.mesh import Store
from sim.families import steps_for_budget, train
from sim.train import Config
from solvers.recipes import generate, load_recipe

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="examples_output/mpm_giorom")
    ap.add_argument("--train-seconds", type=float, default=180.0)
    ap.add_argument("--quick", action="store_true", help="a 32-cell grid, short trajectories, a few steps")
    args = ap.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()
    recipe = load_recipe(ROOT / "datasets" / "mpm_jelly_2d.yaml")
    if args.quick:
        recipe.sizes["small"] = {"params": {"n_grid": 32, "ppc": 2, "frames": 14}, "splits": {"train": 2, "test": 1}}
    n_grid = int({**recipe.params, **recipe.sizes["small"]["params"]}["n_grid"])
    data = generate(recipe, "small", out=out / "data", workers=1)

    ratio = 0.25
    cfg = Config.from_dict({
        "model": {"family": "particle", "network": "giorom", "preset": "cpu", "noise_std": 3e-5,
                  "family_args": {"sample_ratio": ratio, "sampling": "fps",
                                  "connectivity_radius": ratio ** -0.5 / n_grid, "decoder": {"neighbors": 16}}},
        "data": {"train": str(data["train"]), "batch_size": 1, "dense_queries": 512},
        "optim": {"name": "adam", "lr": 1e-3, "lr_final": 1e-5},
        "train": {"steps": 5 if args.quick else 1, "out": str(out / "run"), "log_every": 25,
                  "checkpoint_every": 10**9},
    })
    ckpt = out / "run" / "checkpoint.pt"
    if ckpt.exists():
        ckpt.unlink()
    if not args.quick:
        cfg.train.steps = steps_for_budget(cfg, args.train_seconds)
        cfg.train.max_seconds = args.train_seconds
    summary = train(cfg)
    print(f"GIOROM: {summary['steps']} training steps, loss {summary['final_loss']:.4g}")

    surrogate = sim.load(ckpt)
    with Store(data["test"]) as s:
        test = s.read(s.names()[0])
    h = surrogate.history
    frames = test.num_steps - h
    particles = surrogate.rollout(test, frames, out=out / "particles.pvd")
    rest = test.positions[0]
    rng = np.random.default_rng(0)  # 4x denser cloud inside the material: jittered copies of the particles
    queries = np.repeat(rest, 4, axis=0) + rng.uniform(-0.25, 0.25, (4 * len(rest), 2)) / (n_grid * 2)
    dense = surrogate.rollout(test, frames, queries=queries, out=out / "dense_queries.pvd")
    truth = test.positions[h - 1:]
    err = np.sqrt(((particles.positions - truth) ** 2).sum(-1).mean(-1))
    print(f"{len(rest)} particles ({int(ratio * 100)} % simulated), {len(queries)} query points; "
          f"position RMSE at the last frame {err[-1]:.4g} (box size 1)")
    _frames_png(out / "frames.png", particles.positions, dense.positions, truth)
    print(f"wrote {out / 'particles.pvd'}, {out / 'dense_queries.pvd'}, {out / 'frames.png'} "
          f"in {time.perf_counter() - t0:.0f} s")


def _frames_png(path: Path, pred: np.ndarray, dense: np.ndarray, truth: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = np.linspace(0, len(pred) - 1, 4).astype(int)
    fig, axes = plt.subplots(3, len(picks), figsize=(3 * len(picks), 9), constrained_layout=True)
    for j, f in enumerate(picks):
        for row, (name, pts, size) in enumerate((("truth (MPM)", truth[f], 2), ("GIOROM", pred[f], 2),
                                                 ("GIOROM, 4x denser queries", dense[f], 0.5))):
            ax = axes[row, j]
            ax.scatter(pts[:, 0], pts[:, 1], s=size)
            ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xticks=[], yticks=[])
            ax.set_title(f"{name}, frame {f}", fontsize=9)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
