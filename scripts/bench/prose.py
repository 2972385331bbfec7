"""PROSE on Lorenz, Thomas and Rossler: does the symbolic modality improve the data prediction?

    python scripts/bench/prose.py [--quick | --full] [--json PATH] [--seeds N] [--train-seconds S]
                                  [--data-root DIR] [--checkpoint CKPT] [--data-only-checkpoint CKPT] [--beam N]
                                  [--jobs N] [--out DIR] [--resume]

Data: the ODE recipe (datasets/ode_systems.yaml) restricted to Lorenz, Thomas and Rossler
(sizes ``lts_medium``: 12000 train / 300 test / 400 ood_test trajectories; ``lts_small`` with
--quick: 2000 / 150 / 150), generated through the recipe engine when missing (into
--data-root/<size>, default datasets/ode_systems/<size>). Every trajectory has new parameters
(+/-10 % of nominal; +/-30 % in ``ood_test``) and initial conditions; the test splits have their
own seeds. The model observes t in [0, 2] (64 of 192 points) and predicts t in (2, 6] (128
points) and the equations.

Runs: for each of --seeds training seeds (--seed, --seed + 1, ...; the full measurement uses 3),
two models of the CPU preset (~0.78M parameters) trained for the same CPU budget,
--train-seconds (600; --quick 45; CPU seconds of this process, so other jobs on the machine do
not shrink them), with the same data, optimiser and seed:

1. multimodal: symbol input and output, trained on noisy skeletons (insert / delete a term with
   probability 0.15 each; no guess at all for --p-drop = 10 % of the samples);
2. data-only: the same network without symbol input or output.

Equal budgets, not equal steps: the data-only network is smaller (no symbol encoder and decoder)
and takes more steps in the same time (``train_steps``, ``data_only_train_steps``).

Both train on shortened windows too (so that the short_window condition is in their training
distribution; trained on 64 points only, the CPU model's error on the last 16 is ~6x its error on
64): with probability --p-truncate (0.5) a batch keeps only its last k observed points, k uniform
in [--min-input-points (16), 64] (``model.family_args``: ``min_input_points``, ``p_truncate``;
--p-truncate 0 turns it off).

The multimodal model is evaluated with noisy skeletons (the headline numbers, with equation
metrics), clean skeletons and no guess (``symbols_{noisy,clean,none}_*``). Then both models, as
trained (nothing is retrained per condition), predict the test trajectories under each condition;
the data relative L2 (mean over trajectories) of both gives the gain data-only / multimodal:

- standard: 64 observed points, noisy skeleton guess (p = 0.15; the guesses and noise of every
  evaluation come from one fixed seed, so all models see the same ones);
- short_window: only the last --short-window (16) observed points, those just before the
  predicted window (times (1.52, 2]);
- noisy_data: Gaussian noise of --test-noise (5 %) of the window's RMS added to the observed window
  (the collator draws it before the symbol noise, so the guesses are other draws than standard's);
- ood_params: the ``ood_test`` trajectories with at least one parameter at least --ood-factor (2)
  times as far from the centre of the training range as its edge (the range of the training
  split's values per system; ~ beyond +/-20 % of nominal);
- wrong_terms: skeleton guesses with a term deleted and a term inserted with probability
  --wrong-p (0.4) each instead of 0.15 (the data-only model is unaffected: its standard error);
- no_symbols: the multimodal model without any guess (data-only: its standard error).

Metrics (sim.models.prose.evaluate): data relative L2 over the predicted window (mean, median,
per system), the hold-last-value baseline, valid fraction (parses, finite at 50 points in
[-5, 5]^d), skeleton match, median relative L2 of the generated vector field at those points,
and the median relative L2 of the generated equations integrated from the first observed state.

The fused prediction uses both of the multimodal model's outputs, as its surrogate's ``predict``
does: the generated equations integrated from the last observed state where, integrated over the
observed window from its first state, they reproduce the window within --fuse-tol (5 %, relative
L2), the data decoder's prediction elsewhere (``fused_rel_l2_*``, and ``fused_fraction``: the
share of trajectories that used the equations). Every condition scores it too, with its own gain
table against the data-only model (which has no equations to integrate).
Spread over seeds (``_std``, ``std``) is the sample standard deviation (ddof 1; null for one seed).

--full: all 15 systems (size ``large``), the paper preset, 6 hours (wall clock) per model and seed,
for machines with a GPU.

JSON keys: the multimodal model's standard metrics as means over seeds with ``<key>_std`` (not for
the hold-last-value baseline, which does not depend on the model):
data_rel_l2_mean, data_rel_l2_median, baseline_rel_l2, valid_fraction, skeleton_match,
expr_rel_l2_median, integrated_rel_l2_median, <metric>_<system>; symbols_{noisy,clean,none}_{data_rel_l2_mean,
valid_fraction, skeleton_match, expr_rel_l2_median}; data_only_rel_l2_mean (+ _median, _<system>);
train_s, train_steps, data_only_train_s, data_only_train_steps (means); multimodal_gain: condition ->
{mean, std (of data-only / multimodal over seeds), multimodal_rel_l2, data_only_rel_l2 (means),
per_seed: [{seed, multimodal_rel_l2, data_only_rel_l2, gain}]}; gain_<condition> and
gain_<condition>_std (the same, flat); gain_exceeds_spread: the conditions where mean - 1 > std;
fused_rel_l2_mean, fused_rel_l2_median, fused_fraction, fused_rel_l2_<system>; multimodal_gain_fused,
gain_fused_<condition>(_std), gain_fused_exceeds_spread: the same tables for the fused prediction;
conditions (their settings), ood_test_trajectories, per_seed, params, peak_mem_mb, machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from _common import ROOT, peak_mem_mb, report

BENCH_SYSTEMS = ["lorenz", "thomas", "rossler"]
CONDITIONS = ("standard", "short_window", "noisy_data", "ood_params", "wrong_terms", "no_symbols")
SYMBOL_ONLY = ("wrong_terms", "no_symbols")  # change only the symbol input: nothing for a data-only model
EVAL_SEED = 12345  # the symbol and data noise of every evaluation (the same guesses for every model)
HEADLINE = ("data_rel_l2_mean", "valid_fraction", "skeleton_match", "expr_rel_l2_median")


def mean_and_spread(values: list[float]) -> tuple[float | None, float | None]:
    """(mean, sample standard deviation) of the values over seeds; the spread is None for one
    value or when a value is not finite (an infinite median error of a seed)."""
    import numpy as np

    if not values:
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    mean = float(arr.mean())
    spread = float(arr.std(ddof=1)) if len(arr) > 1 and np.isfinite(arr).all() else None
    return mean, spread


def gain_table(per_seed: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``multimodal_gain`` and ``gain_exceeds_spread`` from each seed's condition errors.

    Args:
        per_seed: one dict per seed: ``{"seed": s, "conditions": {condition: {"multimodal_rel_l2": e_m,
            "data_only_rel_l2": e_d}}}``.

    Returns: condition -> ``{mean, std, multimodal_rel_l2, data_only_rel_l2, per_seed}`` with the gain
    ``e_d / e_m`` per seed (> 1: the multimodal model predicts better), and the conditions whose
    mean gain exceeds 1 by more than its spread over seeds (none with a single seed).
    """
    table: dict[str, dict[str, Any]] = {}
    for cond in dict.fromkeys(c for row in per_seed for c in row["conditions"]):
        rows = []
        for row in per_seed:
            errs = row["conditions"].get(cond)
            if errs is None:
                raise ValueError(f"seed {row['seed']} has no result for condition {cond!r}")
            e_m, e_d = errs["multimodal_rel_l2"], errs["data_only_rel_l2"]
            rows.append({"seed": row["seed"], "multimodal_rel_l2": e_m, "data_only_rel_l2": e_d,
                         "gain": e_d / e_m if e_m > 0 else math.inf})
        mean, std = mean_and_spread([r["gain"] for r in rows])
        table[cond] = {"mean": mean, "std": std,
                       "multimodal_rel_l2": mean_and_spread([r["multimodal_rel_l2"] for r in rows])[0],
                       "data_only_rel_l2": mean_and_spread([r["data_only_rel_l2"] for r in rows])[0],
                       "per_seed": rows}
    exceeds = [c for c, g in table.items() if g["std"] is not None and g["mean"] - 1.0 > g["std"]]
    return table, exceeds


def one_thread() -> None:
    """Initializer of a --jobs worker: one torch thread (the runs share the machine's cores)."""
    import torch

    torch.set_num_threads(1)


def wait_for_other(lock: Path, name: str, poll_s: float = 20.0) -> None:
    """Return once no other live process holds ``lock`` (a run another bench process trains)."""
    announced = False
    while lock.exists():
        try:
            pid = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            return
        if pid == os.getpid() or pid <= 0:
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return  # a stale lock: its process is gone
        except PermissionError:
            pass  # alive, another user's
        if not announced:
            print(f"{name}: another process ({pid}) is training it; waiting", flush=True)
            announced = True
        time.sleep(poll_s)


def shorter_budget(previous: dict[str, Any] | None, current: dict[str, Any]) -> bool:
    """Whether a finished run's configuration ``previous`` is ``current`` with a smaller
    ``train.max_seconds``: such a run is continued to the new budget rather than trained afresh.
    Continuing is training longer, not an approximation of it: the trainer resumes exactly (data
    order, noise and dropout are seeded by step), the learning-rate schedule depends on the step
    only, and the budget counts the CPU seconds of the run before."""
    if not previous:
        return False
    old_budget = previous.get("train", {}).get("max_seconds")
    new_budget = current["train"].get("max_seconds")
    if old_budget is None or new_budget is None or old_budget >= new_budget:
        return False
    same = json.loads(json.dumps(previous))
    same["train"]["max_seconds"] = new_budget
    return same == current


def train_job(cfg_dict: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """One training run of the shared trainer from a configuration dict (in this process or in a
    worker of ``--jobs``: one torch thread; the budget is this process's CPU time, so runs side by
    side train as many steps as one alone on an idle machine). Returns the trainer's summary.

    A finished run leaves ``summary.json`` (its configuration and summary) beside its checkpoint;
    with ``resume`` a run whose ``summary.json`` holds the same configuration is not trained
    again (a bench interrupted between runs continues where it stopped). A run being trained
    holds ``training.lock`` (the process id): another bench process resuming in the same --out
    (e.g. ``--seed 2 --seeds 1`` beside ``--seeds 3``, to train seeds side by side) waits for it
    to finish and reuses it instead of training it again."""
    from sim.families import get_family
    from sim.mesh.atomic import atomic_path
    from sim.train import Config
    from sim.train.trainer import train

    plain = json.loads(json.dumps(cfg_dict))
    cfg = Config.from_dict(cfg_dict)
    family = get_family("prose")
    family.check_config(cfg)
    run = Path(cfg.train.out)
    ckpt, done, lock = run / "checkpoint.pt", run / "summary.json", run / "training.lock"
    if resume:
        wait_for_other(lock, run.name)
    extend = False
    if resume and ckpt.exists() and done.exists():
        previous = json.loads(done.read_text())
        if previous.get("config") == plain:
            print(f"{run.name}: finished before with this configuration, reused ({previous['summary']['steps']} "
                  "steps)", flush=True)
            return previous["summary"]
        extend = shorter_budget(previous.get("config"), plain)
        if extend:
            print(f"{run.name}: finished before with a budget of {previous['config']['train']['max_seconds']} s; "
                  f"continued to {plain['train']['max_seconds']} s", flush=True)
        else:
            print(f"{run.name}: a finished run with another configuration is there; training afresh", flush=True)
    if ckpt.exists() and not extend:  # the trainer refuses to overwrite a run it is not asked to resume
        ckpt.unlink()
    done.unlink(missing_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    lock.write_text(str(os.getpid()))
    t0 = time.perf_counter()
    try:
        summary = train(cfg, family, resume=extend, progress=False)
    finally:
        lock.unlink(missing_ok=True)
    summary["wall_s"] = time.perf_counter() - t0  # includes reading the data and building the model
    summary = {k: str(v) if isinstance(v, Path) else v for k, v in summary.items()}
    with atomic_path(done) as tmp:
        Path(tmp).write_text(json.dumps({"config": plain, "summary": summary}, indent=1,
                                        default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="lts_small, 45 CPU seconds per model and seed")
    mode.add_argument("--full", action="store_true", help="15 systems, size large, paper preset (GPU machines)")
    ap.add_argument("--json")
    ap.add_argument("--data-root", help="folder of the generated sizes (default: datasets/ode_systems)")
    ap.add_argument("--size", help="recipe size (default: lts_medium; lts_small with --quick; large with --full)")
    ap.add_argument("--seeds", type=int, default=1, help="training seeds (--seed, --seed + 1, ...); 3 for the "
                                                         "full measurement")
    ap.add_argument("--train-seconds", type=float, help="budget of each model and seed (default 600; --quick 45)")
    ap.add_argument("--preset", choices=["cpu", "paper"])
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--checkpoint", help="evaluate this multimodal checkpoint instead of training one (one seed)")
    ap.add_argument("--data-only-checkpoint", help="evaluate this data-only checkpoint instead of training one")
    ap.add_argument("--no-ablation", action="store_true", help="skip the data-only model (no gains)")
    ap.add_argument("--beam", type=int, default=1, help="beam size of the symbol decoder (1: greedy)")
    ap.add_argument("--p-drop", type=float, default=0.1,
                    help="fraction of training samples without any symbol guess (so that the model also "
                         "writes equations from data alone)")
    ap.add_argument("--data-noise", type=float, default=0.0,
                    help="additive noise on the observed window in training and test, fraction of its RMS "
                         "(PROSE: 0.02)")
    ap.add_argument("--min-input-points", type=int, default=16,
                    help="shortest observed window of training batches (with --p-truncate)")
    ap.add_argument("--p-truncate", type=float, default=0.5,
                    help="fraction of training batches with a shortened window (0: always 64 points)")
    ap.add_argument("--short-window", type=int, default=16, help="observed points of the short_window condition")
    ap.add_argument("--test-noise", type=float, default=0.05,
                    help="noise of the noisy_data condition, fraction of the window's RMS")
    ap.add_argument("--ood-factor", type=float, default=2.0,
                    help="ood_params keeps ood_test trajectories with a parameter this many half-widths of the "
                         "training range from its centre")
    ap.add_argument("--wrong-p", type=float, default=0.4,
                    help="term deletion and insertion probability of the wrong_terms condition")
    ap.add_argument("--fuse-tol", type=float, default=0.05,
                    help="the fused prediction uses the generated equations where, integrated over the observed "
                         "window, they reproduce it within this relative L2 (0: off)")
    ap.add_argument("--workers", type=int, default=1, help="data generation processes")
    ap.add_argument("--jobs", type=int, default=1,
                    help="training runs side by side (processes of one torch thread; budgets are CPU time)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "prose"))
    ap.add_argument("--resume", action="store_true",
                    help="reuse the runs under --out that finished with the same configuration (train the rest)")
    ap.add_argument("--train-only", action="store_true",
                    help="train the runs (in order) and stop: for a second process that trains seeds beside a "
                         "--resume run, which evaluates them")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    if args.checkpoint and args.seeds != 1:
        ap.error("--checkpoint evaluates one trained model: use it with --seeds 1")
    if args.data_only_checkpoint and (args.seeds != 1 or args.no_ablation):
        ap.error("--data-only-checkpoint needs --seeds 1 and the data-only model (no --no-ablation)")

    import torch

    from sim.models.prose import PROSE, ODEWindows, PROSECollator
    from sim.models.prose.data import parameter_box, parameter_excess
    from sim.models.prose.evaluate import evaluate
    from sim.train.checkpoint import load_model
    from solvers.recipes import generate, load_recipe

    if "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    size = args.size or ("lts_small" if args.quick else "large" if args.full else "lts_medium")
    systems = None if args.full else BENCH_SYSTEMS
    budget = args.train_seconds or (45.0 if args.quick else 6 * 3600.0 if args.full else 600.0)
    preset = args.preset or ("paper" if args.full else "cpu")
    batch_size = args.batch_size or (128 if args.full else 32)
    lr = args.lr or (2e-4 if preset == "paper" else 1e-3)
    clock = "wall" if args.full else "process"  # process: this process's CPU time
    seeds = [args.seed + i for i in range(args.seeds)]

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
    n_in = train_set.input_points
    ood_split = ODEWindows(paths["ood_test"], probe.vocab, systems=systems) if "ood_test" in paths else None
    load_s = time.perf_counter() - t0
    max_dim = max(s.dim for s in list(train_set) + list(test_set))
    names = sorted({s.system for s in train_set})
    print(f"{len(train_set)} train / {len(test_set)} test trajectories of {', '.join(names)} (max dim {max_dim}); "
          f"loaded in {load_s:.1f} s")
    for flag, value in (("--short-window", args.short_window), ("--min-input-points", args.min_input_points)):
        if not 1 <= value <= n_in:
            ap.error(f"{flag} must be in [1, {n_in}]")

    # the ood_params condition: ood_test trajectories outside the training parameter range
    ood: list[Any] = []
    skipped: dict[str, str] = {}
    if ood_split is None:
        skipped["ood_params"] = f"size {size!r} has no ood_test split"
    else:
        box = parameter_box(train_set)
        excess = [parameter_excess(s, box) for s in ood_split]
        ood = [s for s, e in zip(ood_split, excess) if e >= args.ood_factor]
        print(f"ood_params: {len(ood)} of {len(ood_split)} ood_test trajectories have a parameter >= "
              f"{args.ood_factor:g} half-widths of the training range from its centre")
        if not ood:
            skipped["ood_params"] = f"no ood_test trajectory reaches --ood-factor {args.ood_factor:g}"
    if args.p_truncate > 0 and args.short_window < args.min_input_points:
        print(f"note: --short-window {args.short_window} is shorter than any training window "
              f"(--min-input-points {args.min_input_points})")

    family_args: dict[str, Any] = {"data_noise": args.data_noise, "p_drop": args.p_drop, "systems": systems}
    if args.p_truncate > 0:
        family_args.update(min_input_points=args.min_input_points, p_truncate=args.p_truncate)

    def run_config(seed: int, run: Path, **network_args: object) -> dict[str, Any]:
        """PROSE through the shared trainer: AdamW, warmup + inverse square root, until ``budget``
        on ``clock`` (the step count is only a bound: the schedule does not depend on it)."""
        return {
            "model": {"family": "prose", "network": "prose", "preset": preset,
                      "network_args": {"max_dim": max_dim, **network_args}, "family_args": family_args},
            "data": {"train": str(paths["train"]), "batch_size": batch_size},
            "optim": {"name": "adamw", "lr": lr, "schedule": "inverse_sqrt",
                      "warmup_steps": 300 if preset == "cpu" else 4000, "weight_decay": 1e-4, "grad_clip": 1.0},
            "train": {"steps": 10**9, "max_seconds": budget, "clock": clock, "out": str(run), "log_every": 100,
                      "checkpoint_every": 10**9, "seed": seed}}

    runs = {}  # (seed, kind) -> configuration of every training run
    for seed in seeds:
        if not args.checkpoint:
            runs[seed, "multimodal"] = run_config(seed, out / f"prose_{size}_{preset}_s{seed}")
        if not args.no_ablation and not args.data_only_checkpoint:
            runs[seed, "data_only"] = run_config(seed, out / f"prose_{size}_{preset}_data_only_s{seed}",
                                                 symbol_input=False, symbol_output=False)
    summaries: dict[tuple[int, str], dict[str, Any]] = {}
    if args.jobs > 1 and len(runs) > 1:  # train them side by side, then evaluate in this process
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        print(f"training {len(runs)} runs in {min(args.jobs, len(runs))} processes")
        with ProcessPoolExecutor(min(args.jobs, len(runs)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=one_thread) as ex:
            futures = {key: ex.submit(train_job, cfg, args.resume) for key, cfg in runs.items()}
            summaries = {key: f.result() for key, f in futures.items()}

    if args.train_only:
        for key, cfg in runs.items():
            summary = summaries.get(key) or train_job(cfg, args.resume)
            print(f"{key}: {summary['steps']} steps in {summary['seconds']:.0f} s", flush=True)
        return

    def train_model(seed: int, kind: str) -> tuple[torch.nn.Module, dict[str, Any]]:
        """The run's model as its checkpoint holds it, and the trainer's summary (trained now unless
        the --jobs pool trained it)."""
        summary = summaries.get((seed, kind)) or train_job(runs[seed, kind], args.resume)
        model, _ = load_model(summary["checkpoint"])
        return model, summary

    device = torch.device("cuda" if args.full and torch.cuda.is_available() else "cpu")
    pool = train_set.term_pool()

    def collator(model: torch.nn.Module, **changes: Any) -> PROSECollator:
        """The evaluation collator of ``model``: the standard condition, with ``changes``."""
        kw: dict[str, Any] = {"symbols": "noisy" if model.symbol_input else "off", "pool": pool,
                              "data_noise": args.data_noise, "seed": EVAL_SEED}
        kw.update(changes)
        if not model.symbol_input:
            kw["symbols"] = "off"
        return PROSECollator(model.vocab, model.max_dim, n_in, **kw)

    settings: dict[str, tuple[list[Any], dict[str, Any]]] = {
        "standard": (list(test_set), {}),
        "short_window": (list(test_set), {"observed_points": args.short_window}),
        "noisy_data": (list(test_set), {"data_noise": args.test_noise}),
        "ood_params": (ood, {}),
        "wrong_terms": (list(test_set), {"p_delete": args.wrong_p, "p_insert": args.wrong_p}),
        "no_symbols": (list(test_set), {"symbols": "none"}),
    }
    conditions = [c for c in CONDITIONS if c not in skipped]

    fuse_tol = args.fuse_tol or None

    def data_error(model: torch.nn.Module, cond: str) -> tuple[float, float | None]:
        """(data decoder's relative L2, fused prediction's relative L2 or None) under ``cond``."""
        samples, changes = settings[cond]
        fused = fuse_tol is not None and model.symbol_output
        ev = evaluate(model, samples, collator(model, **changes), equations=fused, fuse_tol=fuse_tol)
        return ev["data_rel_l2_mean"], ev["fused_rel_l2_mean"] if fused else None

    results: dict[str, Any] = {
        "size": size, "systems": ",".join(names), "train_trajectories": len(train_set),
        "test_trajectories": len(test_set), "ood_test_trajectories": len(ood),
        "ood_split_trajectories": len(ood_split) if ood_split is not None else 0, "preset": preset,
        "batch_size": batch_size, "lr": lr, "budget_clock": clock, "train_budget_s": budget, "generate_s": gen_s,
        "data_noise": args.data_noise, "p_drop": args.p_drop, "fuse_tol": fuse_tol,
        "min_input_points": args.min_input_points if args.p_truncate > 0 else None, "p_truncate": args.p_truncate,
        "conditions": {"standard": f"{n_in} observed points, noisy skeleton (p_delete = p_insert = 0.15)",
                       "short_window": f"last {args.short_window} of {n_in} observed points",
                       "noisy_data": f"noise {args.test_noise:g} x RMS of the observed window",
                       "ood_params": f"ood_test (+/-30 % of nominal), parameter excess >= {args.ood_factor:g}",
                       "wrong_terms": f"p_delete = p_insert = {args.wrong_p:g}",
                       "no_symbols": "no symbol guess", **{c: f"skipped: {why}" for c, why in skipped.items()}}}

    per_seed: list[dict[str, Any]] = []
    evals_by_seed: list[dict[str, dict[str, Any]]] = []
    data_only_evals: list[dict[str, Any]] = []
    train_seconds = 0.0
    for seed in seeds:
        print(f"\n== seed {seed} ==")
        row: dict[str, Any] = {"seed": seed}
        if args.checkpoint:
            model, payload = load_model(args.checkpoint)
            row.update(train_s=None, train_steps=int(payload.get("train", {}).get("step", 0)),
                       checkpoint=str(args.checkpoint))
        else:
            model, summary = train_model(seed, "multimodal")
            train_seconds += summary["seconds"]
            row.update(train_s=summary["seconds"], train_wall_s=summary["wall_s"], train_steps=summary["steps"],
                       first_loss=summary["first_loss"], final_loss=summary["final_loss"],
                       checkpoint=summary["checkpoint"])
        if not (model.symbol_input and model.symbol_output):
            raise SystemExit("the multimodal model needs symbol input and output (this checkpoint has not)")
        model.to(device)
        data_only = None
        if not args.no_ablation:
            if args.data_only_checkpoint:
                data_only, payload = load_model(args.data_only_checkpoint)
                row.update(data_only_train_s=None,
                           data_only_train_steps=int(payload.get("train", {}).get("step", 0)))
            else:
                data_only, summary = train_model(seed, "data_only")
                train_seconds += summary["seconds"]
                row.update(data_only_train_s=summary["seconds"], data_only_train_steps=summary["steps"],
                           data_only_final_loss=summary["final_loss"])
            if data_only.symbol_input or data_only.symbol_output:
                raise SystemExit("the data-only model must have no symbol input or output")
            data_only.to(device)

        # the multimodal model with noisy (headline), clean and no skeletons, equations included
        evals: dict[str, dict[str, Any]] = {}
        for kind in ("noisy", "clean", "none"):
            t0 = time.perf_counter()
            evals[kind] = evaluate(model, test_set, collator(model, symbols=kind), beam_size=args.beam,
                                   integrate_equations=kind == "noisy", progress=True, fuse_tol=fuse_tol)
            evals[kind]["eval_s"] = time.perf_counter() - t0
        evals_by_seed.append(evals)
        row.update({k: evals["noisy"][k] for k in HEADLINE})
        row.update({f"symbols_{kind}_data_rel_l2_mean": evals[kind]["data_rel_l2_mean"] for kind in ("clean", "none")})
        if data_only is not None:
            ev = evaluate(data_only, test_set, collator(data_only))
            data_only_evals.append(ev)
            row["data_only_rel_l2_mean"] = ev["data_rel_l2_mean"]

        # the conditions, on the same two models
        row["conditions"] = {}
        for cond in conditions:
            e_m, e_f = data_error(model, cond)
            e_d = None
            if data_only is not None:
                e_d = row["conditions"]["standard"]["data_only_rel_l2"] if cond in SYMBOL_ONLY else \
                    data_error(data_only, cond)[0]
            row["conditions"][cond] = {"multimodal_rel_l2": e_m, "data_only_rel_l2": e_d,
                                       "gain": e_d / e_m if e_d is not None and e_m > 0 else None}
            if e_f is not None:
                row["conditions"][cond].update(fused_rel_l2=e_f,
                                               fused_gain=e_d / e_f if e_d is not None and e_f > 0 else None)
            shown = "" if e_d is None else f", data-only {e_d:.4f}, gain {e_d / e_m:.3f}"
            shown += "" if e_f is None else f"; fused {e_f:.4f}" + ("" if e_d is None else f", gain {e_d / e_f:.3f}")
            print(f"  {cond:>13}: multimodal {e_m:.4f}{shown}")
        per_seed.append(row)

    # means over seeds (and spread)
    def put(key: str, values: list[float]) -> None:
        results[key], results[f"{key}_std"] = mean_and_spread(values)

    main_keys = [k for k, v in evals_by_seed[0]["noisy"].items() if isinstance(v, float) and k != "eval_s"]
    for k in main_keys:
        if k.startswith("baseline_"):  # hold-last-value: the same for every model
            results[k] = evals_by_seed[0]["noisy"][k]
        else:
            put(k, [e["noisy"][k] for e in evals_by_seed])
    for kind in ("noisy", "clean", "none"):
        for k in HEADLINE:
            put(f"symbols_{kind}_{k}", [e[kind][k] for e in evals_by_seed])
    results["eval_s"] = sum(e[kind]["eval_s"] for e in evals_by_seed for kind in evals_by_seed[0])
    for key in ("train_s", "train_steps", "train_wall_s", "data_only_train_s", "data_only_train_steps"):
        values = [r[key] for r in per_seed if r.get(key) is not None]
        if values:
            put(key, values)
    results["params"] = model.num_parameters()
    if data_only_evals:
        put("data_only_rel_l2_mean", [e["data_rel_l2_mean"] for e in data_only_evals])
        put("data_only_rel_l2_median", [e["data_rel_l2_median"] for e in data_only_evals])
        for n in names:
            put(f"data_only_rel_l2_{n}", [e[f"data_rel_l2_{n}"] for e in data_only_evals])
        results["data_only_params"] = data_only.num_parameters()
        table, exceeds = gain_table(per_seed)
        results["multimodal_gain"] = table
        for cond, g in table.items():
            results[f"gain_{cond}"], results[f"gain_{cond}_std"] = g["mean"], g["std"]
        results["gain_exceeds_spread"] = exceeds
        if fuse_tol is not None:  # the same table for the prediction of both modalities
            fused_rows = [{"seed": r["seed"], "conditions": {
                c: {"multimodal_rel_l2": v["fused_rel_l2"], "data_only_rel_l2": v["data_only_rel_l2"]}
                for c, v in r["conditions"].items()}} for r in per_seed]
            table, exceeds = gain_table(fused_rows)
            results["multimodal_gain_fused"] = table
            for cond, g in table.items():
                results[f"gain_fused_{cond}"], results[f"gain_fused_{cond}_std"] = g["mean"], g["std"]
            results["gain_fused_exceeds_spread"] = exceeds
    else:
        results["multimodal_conditions_rel_l2"] = {
            c: mean_and_spread([r["conditions"][c]["multimodal_rel_l2"] for r in per_seed])[0] for c in conditions}
    results["per_seed"] = per_seed
    results["peak_mem_mb"] = peak_mem_mb()

    examples = evals_by_seed[-1]["noisy"]["per_sample"]
    for i in range(min(3, len(examples["generated"]))):
        print(f"  {examples['system'][i]:>8}: {examples['generated'][i]}  "
              f"(expr rel L2 {examples['expr_rel_l2'][i]:.3g})")
    if "multimodal_gain" in results:
        print(f"\ndata relative L2 over {len(seeds)} seed(s) (gain = data-only / multimodal, > 1: symbols help)")
        print(f"  {'condition':>13}  {'multimodal':>10}  {'data-only':>10}  {'gain':>7}  {'std':>7}")
        for cond, g in results["multimodal_gain"].items():
            std = "-" if g["std"] is None else f"{g['std']:.3f}"
            print(f"  {cond:>13}  {g['multimodal_rel_l2']:>10.4f}  {g['data_only_rel_l2']:>10.4f}  "
                  f"{g['mean']:>7.3f}  {std:>7}")
        if "multimodal_gain_fused" in results:
            print("\nthe same with the fused prediction (equations where they fit the window, else the decoder)")
            for cond, g in results["multimodal_gain_fused"].items():
                std = "-" if g["std"] is None else f"{g['std']:.3f}"
                print(f"  {cond:>13}  {g['multimodal_rel_l2']:>10.4f}  {g['data_only_rel_l2']:>10.4f}  "
                      f"{g['mean']:>7.3f}  {std:>7}")
    report("prose", results, args.json, seeds=seeds,
           train_cpu_hours=train_seconds / 3600.0 if train_seconds else None)


if __name__ == "__main__":
    main()
