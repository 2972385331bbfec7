"""PROSE on Lorenz, Thomas and Rossler: future trajectory and equations from a 64-point window.

    python scripts/bench/prose.py [--quick | --full] [--json PATH] [--data-root DIR] [--train-seconds S]
                                  [--ablation-seconds S] [--checkpoint CKPT] [--beam N]

Data: the ODE recipe (datasets/ode_systems.yaml) restricted to Lorenz, Thomas and Rossler
(sizes ``lts_medium``: 12000 train / 300 test trajectories; ``lts_small`` with --quick),
generated through the recipe engine when missing (into --data-root/<size>, default
datasets/ode_systems/<size>). Every trajectory has new parameters (+/-10 % of nominal) and
initial conditions; the test split has its own seeds. The model observes t in [0, 2] (64 of
192 points) and predicts t in (2, 6] (128 points) and the equations.

Runs (budgets are CPU seconds of this process, so other jobs on the machine do not shrink them):

1. main: the CPU preset (~0.78M parameters), multimodal, trained on noisy skeletons
   (insert / delete a term with probability 0.15 each; no guess at all for --p-drop = 10 % of
   the samples) for --train-seconds (600; --quick 60);
2. data-only ablation: the same network without symbol input or output, for
   --ablation-seconds (300; --quick 30), compared with a snapshot of the main run taken at the
   same CPU time (``multimodal_same_budget_rel_l2_mean``);
3. symbol-input ablation: the main model evaluated with noisy skeletons (the headline numbers),
   clean skeletons and no guess at all.

Metrics (sim.models.prose.evaluate): data relative L2 over the predicted window (mean, median,
per system), the hold-last-value baseline, valid fraction (parses, finite at 50 points in
[-5, 5]^d), skeleton match, median relative L2 of the generated vector field at those points,
and the median relative L2 of the generated equations integrated from the first observed state.

--full: all 15 systems (size ``large``), the paper preset, a 6-hour budget (wall clock), for
machines with a GPU.

JSON keys: data_rel_l2_mean, data_rel_l2_median, baseline_rel_l2, valid_fraction, skeleton_match,
expr_rel_l2_median, integrated_rel_l2_median, train_s, data_only_rel_l2_mean,
multimodal_same_budget_rel_l2_mean (+ the steps of both), symbols_{noisy,clean,none}_{data_rel_l2_mean, valid_fraction,
skeleton_match, expr_rel_l2_median}, <metric>_<system>, params, train_steps, peak_mem_mb, machine.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

from _common import ROOT, peak_mem_mb, report

BENCH_SYSTEMS = ["lorenz", "thomas", "rossler"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="lts_small, 60 + 30 CPU seconds of training")
    mode.add_argument("--full", action="store_true", help="15 systems, size large, paper preset (GPU machines)")
    ap.add_argument("--json")
    ap.add_argument("--data-root", help="folder of the generated sizes (default: datasets/ode_systems)")
    ap.add_argument("--size", help="recipe size (default: lts_medium; lts_small with --quick; large with --full)")
    ap.add_argument("--train-seconds", type=float, help="budget of the main model")
    ap.add_argument("--ablation-seconds", type=float, help="budget of the data-only model")
    ap.add_argument("--preset", choices=["cpu", "paper"])
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--checkpoint", help="evaluate this checkpoint instead of training the main model")
    ap.add_argument("--no-ablation", action="store_true", help="skip the data-only run")
    ap.add_argument("--beam", type=int, default=1, help="beam size of the symbol decoder (1: greedy)")
    ap.add_argument("--p-drop", type=float, default=0.1,
                    help="fraction of training samples without any symbol guess (so that the model also "
                         "writes equations from data alone)")
    ap.add_argument("--data-noise", type=float, default=0.0,
                    help="additive noise on the observed window in training and test, fraction of its RMS "
                         "(PROSE: 0.02)")
    ap.add_argument("--workers", type=int, default=1, help="data generation processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "prose"))
    args = ap.parse_args()

    import torch

    from sim.families import train
    from sim.models.prose import PROSE, ODEWindows, PROSECollator
    from sim.models.prose.evaluate import evaluate
    from sim.train import Config
    from sim.train.checkpoint import load_model
    from solvers.recipes import generate, load_recipe

    if "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    size = args.size or ("lts_small" if args.quick else "large" if args.full else "lts_medium")
    systems = None if args.full else BENCH_SYSTEMS
    budget = args.train_seconds or (60.0 if args.quick else 6 * 3600.0 if args.full else 600.0)
    ablation = args.ablation_seconds or (30.0 if args.quick else budget / 2)
    preset = args.preset or ("paper" if args.full else "cpu")
    batch_size = args.batch_size or (128 if args.full else 32)
    lr = args.lr or (2e-4 if preset == "paper" else 1e-3)
    clock = "wall" if args.full else "process"  # process: this process's CPU time

    recipe = load_recipe(ROOT / "datasets" / "ode_systems.yaml")
    t0 = time.perf_counter()
    paths = generate(recipe, size, out=Path(args.data_root) / size if args.data_root else None, workers=args.workers)
    gen_s = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    probe = PROSE(max_dim=6)  # vocabulary only, to read the data
    train_set = ODEWindows(paths["train"], probe.vocab, systems=systems)
    test_set = ODEWindows(paths["test"], probe.vocab, systems=systems)
    load_s = time.perf_counter() - t0
    max_dim = max(s.dim for s in list(train_set) + list(test_set))
    names = sorted({s.system for s in train_set})
    print(f"{len(train_set)} train / {len(test_set)} test trajectories of {', '.join(names)} (max dim {max_dim}); "
          f"loaded in {load_s:.1f} s")

    def train_cfg(seconds: float, run: Path, checkpoint_every: int = 1000, **network_args: object) -> Config:
        """PROSE through the shared trainer: AdamW, warmup + inverse square root, until ``seconds``
        on ``clock`` (the step count is only a bound: the schedule does not depend on it)."""
        ckpt = run / "checkpoint.pt"
        if ckpt.exists():  # the trainer refuses to overwrite a run it is not asked to resume
            ckpt.unlink()
        return Config.from_dict({
            "model": {"family": "prose", "network": "prose", "preset": preset,
                      "network_args": {"max_dim": max_dim, **network_args},
                      "family_args": {"data_noise": args.data_noise, "p_drop": args.p_drop, "systems": systems}},
            "data": {"train": str(paths["train"]), "batch_size": batch_size},
            "optim": {"name": "adamw", "lr": lr, "schedule": "inverse_sqrt",
                      "warmup_steps": 300 if preset == "cpu" else 4000, "weight_decay": 1e-4, "grad_clip": 1.0},
            "train": {"steps": 10**9, "max_seconds": seconds, "clock": clock, "out": str(run), "log_every": 100,
                      "checkpoint_every": checkpoint_every, "seed": args.seed}})

    results: dict[str, object] = {"size": size, "systems": ",".join(names), "train_trajectories": len(train_set),
                                  "test_trajectories": len(test_set), "preset": preset, "batch_size": batch_size,
                                  "lr": lr, "budget_clock": clock, "train_budget_s": budget, "generate_s": gen_s,
                                  "data_noise": args.data_noise, "p_drop": args.p_drop}

    # 1. the main (multimodal) model, with a snapshot at the ablation's budget
    snapshot: dict[str, torch.Tensor] = {}
    if args.checkpoint:
        model, payload = load_model(args.checkpoint)
        results.update(train_s=float("nan"), train_steps=int(payload.get("train", {}).get("step", 0)))
    else:
        def keep(step: int, seconds: float, training: torch.nn.Module) -> None:
            if not snapshot and seconds >= ablation:
                snapshot.update({k: v.detach().clone() for k, v in training.state_dict().items()})
                results["multimodal_same_budget_steps"] = step

        t0 = time.perf_counter()
        summary = train(train_cfg(budget, out / f"prose_{size}_{preset}"), on_step=keep)
        wall = time.perf_counter() - t0  # includes reading the data and building the model
        ckpt = Path(summary["checkpoint"])
        results.update(train_s=summary["seconds"], train_wall_s=wall, train_steps=summary["steps"],
                       first_loss=summary["first_loss"], final_loss=summary["final_loss"], checkpoint=str(ckpt))
        model, _ = load_model(ckpt)  # evaluate what the checkpoint holds
    results["params"] = model.num_parameters()
    device = torch.device("cuda" if args.full and torch.cuda.is_available() else "cpu")
    model.to(device)

    # 3. the symbol-input ablation (noisy = the headline numbers)
    evals = {}
    for kind in ("noisy", "clean", "none"):
        collator = PROSECollator(model.vocab, model.max_dim, train_set.input_points, symbols=kind,
                                 pool=train_set.term_pool(), data_noise=args.data_noise, seed=12345)
        t0 = time.perf_counter()
        evals[kind] = evaluate(model, test_set, collator, beam_size=args.beam, integrate_equations=kind == "noisy",
                               progress=True)
        evals[kind]["eval_s"] = time.perf_counter() - t0
    main_eval = evals["noisy"]
    for k, v in main_eval.items():
        if k not in ("per_sample", "samples"):
            results[k] = v
    for kind, ev in evals.items():
        for k in ("data_rel_l2_mean", "valid_fraction", "skeleton_match", "expr_rel_l2_median"):
            results[f"symbols_{kind}_{k}"] = ev[k]

    # 2. the data-only ablation at a shorter budget, against the main run's snapshot at that budget
    if not args.no_ablation and not args.checkpoint:
        summary = train(train_cfg(ablation, out / f"prose_{size}_{preset}_data_only", checkpoint_every=10**9,
                                  symbol_input=False, symbol_output=False))
        data_only, _ = load_model(summary["checkpoint"])
        collator = PROSECollator(data_only.vocab, max_dim, train_set.input_points, symbols="off",
                                 data_noise=args.data_noise, seed=12345)
        ev = evaluate(data_only.to(device), test_set, collator)
        results.update(data_only_rel_l2_mean=ev["data_rel_l2_mean"], data_only_rel_l2_median=ev["data_rel_l2_median"],
                       data_only_train_s=summary["seconds"], data_only_train_steps=summary["steps"],
                       data_only_params=data_only.num_parameters(),
                       **{f"data_only_rel_l2_{n}": ev[f"data_rel_l2_{n}"] for n in names})
        if snapshot:
            same = copy.deepcopy(model)
            same.load_state_dict(snapshot)
            collator = PROSECollator(model.vocab, max_dim, train_set.input_points, symbols="noisy",
                                     pool=train_set.term_pool(), data_noise=args.data_noise, seed=12345)
            ev = evaluate(same, test_set, collator)
            results["multimodal_same_budget_rel_l2_mean"] = ev["data_rel_l2_mean"]

    results["peak_mem_mb"] = peak_mem_mb()
    examples = main_eval["per_sample"]
    for i in range(min(3, len(examples["generated"]))):
        print(f"  {examples['system'][i]:>8}: {examples['generated'][i]}  "
              f"(expr rel L2 {examples['expr_rel_l2'][i]:.3g})")
    report("prose", results, args.json)


if __name__ == "__main__":
    main()
