"""ODE systems with PROSE: one network predicts a trajectory's future and writes its equations.

    python examples/ode_prose.py [--out examples_output/ode_prose] [--train-seconds 300] [--quick]

1. generate Lorenz, Thomas and Rossler trajectories with random parameters (+/-10 %) and
   initial conditions with our ODE solver, the equations stored as symbols;
2. train PROSE (CPU preset, ~0.8M parameters) on 64-point windows: the loss is the relative
   L2 of the next 128 points plus the cross-entropy of the equations, with noisy equation
   guesses as a second input;
3. ``sim.load`` it and query unseen trajectories: the window in, a guess of the equations
   with one term dropped, then the predicted future (``<system>.png`` against the truth) and
   the decoded equations next to the true ones (printed and in ``equations.txt``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import sim
from sim.families import get_family, train
from sim.mesh import Store
from sim.symbolic import from_prefix
from sim.train import Config
from solvers.recipes import generate, load_recipe

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ["lorenz", "thomas", "rossler"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="examples_output/ode_prose")
    ap.add_argument("--train-seconds", type=float, default=300.0)
    ap.add_argument("--quick", action="store_true", help="few trajectories and a few steps (a smoke test)")
    args = ap.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()
    recipe = load_recipe(ROOT / "datasets" / "ode_systems.yaml")
    recipe.sizes["example"] = {"params": {"systems": SYSTEMS},
                               "splits": {"train": 30 if args.quick else 1500, "test": 12}}
    data = generate(recipe, "example", out=out / "data", workers=1 if args.quick else 2)

    # PROSE trains through the shared trainer (`sim train` with the same configuration): AdamW,
    # warmup + inverse square root; the step count only bounds the time budget
    cfg = Config.from_dict({
        "model": {"family": "prose", "network": "prose", "preset": "cpu", "network_args": {"max_dim": 3},
                  "family_args": {"systems": SYSTEMS}},
        "data": {"train": str(data["train"]), "batch_size": 32},
        "optim": {"name": "adamw", "lr": 1e-3, "schedule": "inverse_sqrt", "warmup_steps": 300,
                  "weight_decay": 1e-4, "grad_clip": 1.0},
        "train": {"steps": 5 if args.quick else 10**9, "max_seconds": None if args.quick else args.train_seconds,
                  "out": str(out / "prose"), "log_every": 50, "checkpoint_every": 2000},
    })
    ckpt = out / "prose" / "checkpoint.pt"
    if ckpt.exists():
        ckpt.unlink()
    summary = train(cfg)
    print(f"PROSE: {summary['steps']} training steps on {len(get_family('prose').build_dataset(cfg))} trajectories")

    surrogate = sim.load(ckpt)
    lines, seen = [], set()
    with Store(data["test"]) as s:
        for name in s.names():
            traj = s.read(name)
            system = traj.params["system"]
            if system in seen:  # one unseen trajectory per system
                continue
            seen.add(system)
            true = from_prefix(traj.params["prefix"])
            guess = [str(e) for e in true]
            guess[0] = "0"  # a wrong guess: the first equation forgotten
            window = traj.times[:64], traj.point_fields["state"][:64, 0]
            future, exprs = surrogate.predict(window, query_times=traj.times[64:], symbols=guess)
            truth = traj.point_fields["state"][64:, 0]
            rel = float(np.linalg.norm(future.point_fields["state"][:, 0] - truth) / np.linalg.norm(truth))
            lines.append(f"{system} ({name}): relative L2 of the prediction {rel:.3f}")
            lines += [f"  true      dx{i}/dt = {t}" for i, t in enumerate(true)]
            lines += [f"  predicted dx{i}/dt = {e}" for i, e in enumerate(exprs or ["(no valid expression)"])]
            _plot(out / f"{system}_{name}.png", traj, future)
    text = "\n".join(lines)
    print(text)
    (out / "equations.txt").write_text(text + "\n")
    print(f"wrote {out / 'equations.txt'} and the PNGs in {time.perf_counter() - t0:.0f} s")


def _plot(path: Path, traj, future) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    state = traj.point_fields["state"][:, 0]
    fig, axes = plt.subplots(state.shape[1], 1, figsize=(6, 2 * state.shape[1]), sharex=True, constrained_layout=True)
    for i, ax in enumerate(np.atleast_1d(axes)):
        ax.plot(traj.times, state[:, i], "k-", lw=1, label="truth")
        ax.plot(future.times, future.point_fields["state"][:, 0, i], "r--", lw=1.2, label="PROSE")
        ax.axvline(traj.times[63], color="gray", lw=0.8)
        ax.set_ylabel(f"x{i}")
    np.atleast_1d(axes)[0].legend(loc="upper right", fontsize=8)
    np.atleast_1d(axes)[0].set_title(f"{traj.params['system']}: window (left of the line) and prediction")
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
