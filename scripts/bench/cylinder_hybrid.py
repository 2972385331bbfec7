"""Our cylinder-flow solver on a coarser mesh plus a learned correction, scored as the mesh models are.

    python scripts/bench/cylinder_hybrid.py [--quick] [--json PATH] [--size medium] [--data DIR] [--scale 0.7]
                                            [--train-seconds S] [--seed S] [--seeds N] [--resume]
                                            [--member-scales S ...] [--only train|seeds|coarse] [--out DIR]

The hybrid of :mod:`sim.rollout.hybrid` with the cylinder's coarse solver
(:mod:`solvers.cfd.corrected`): our solver on the case meshed ``--scale`` times as fine (0.7:
about half the stored nodes), started from the stored first frame, its velocity evaluated at
the stored nodes (its own P2 field) every stored step and corrected by a steady MeshGraphNet (CPU
preset: latent 64, 6 message-passing steps) that reads that coarse velocity and pressure,
the node types and the case's Reynolds number and inflow speed. The correction's training
samples come from the training split: the coarse solve started from stored frames 0, 100 and 200
and run 30 stored steps, a sample every second step (the true velocity minus the interpolated
coarse one); each seed trains a corrector on them for ``--train-seconds`` CPU seconds (resumable
with ``--resume``).

Measured on the test split with the rollout metrics of ``sim eval`` (the same as
``mgn_cylinder.py``: rollout RMSE at 1, 50 and all steps against persistence, median
shedding-frequency error, time-mean and fluctuation relative RMSE; the rollouts start from the
first stored frame, boundary values from the truth): the coarse solve alone (``coarse_*``), each
seed's hybrid (means over seeds, ``<key>_std`` the spread, ``per_seed``), and the seeds'
correctors as an ensemble (``spread_error_spearman`` and ``ensemble_*``): over the one coarse
solve, or with ``--member-scales`` each member on its own coarse mesh (a perturbed-model
ensemble whose members' shedding drifts apart as the truth's drifts from each). Also the CPU
seconds per stored frame of the hybrid (``frame_s``: coarse steps, interpolation and
correction) and of the coarse solve alone (``coarse_frame_s``), one thread.
``train_cpu_hours`` counts the correctors' training and the samples' coarse solves
(``samples_cpu_s``: two trajectories' samples made again, timed, times the trajectories).
``--quick``: the small set, one test trajectory, a 60-second budget.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, report
from _mesh_models import ENSEMBLE_KEYS, SEED_KEYS, cylinder_data, over_seeds, set_threads, train_for_budget

from solvers.cfd.corrected import CORRECTOR_INPUTS, CORRECTOR_SCALARS

CORRECTOR = {"family": "steady", "network": "meshgraphnet", "preset": "cpu", "fields": ["correction"],
             "scalars": list(CORRECTOR_SCALARS), "family_args": {"node_inputs": list(CORRECTOR_INPUTS)}}


def scored(correctors: list[Path], test: Path, scale: float, entries: list[str] | None,
           cache: Path | None = None, member_scales: list[float] | None = None) -> dict[str, object]:
    """The rollout metrics of the hybrid with the correctors of the checkpoints ``correctors``
    (none: the coarse solve alone) on the test store, and its CPU seconds per frame; kept in
    ``cache`` (a JSON file) with what they depend on (checkpoint bytes, test store, scale, entries)
    and reused while that matches."""
    import hashlib
    import json

    from sim.families.base import rollout_evaluation
    from sim.rollout.evaluate import evaluate_store
    from sim.rollout.hybrid import corrected_case
    from sim.train import load_model
    from solvers.cfd.corrected import coarse_flow

    stat = Path(test).stat()
    key = {"checkpoints": [hashlib.sha256(Path(c).read_bytes()).hexdigest() for c in correctors],
           "test": [str(Path(test).resolve()), stat.st_size, stat.st_mtime_ns], "scale": scale, "entries": entries,
           **({"member_scales": member_scales} if member_scales else {})}
    if cache is not None and cache.exists():
        kept = json.loads(cache.read_text())
        if kept.get("key") == key:
            return kept["metrics"]
    models = [load_model(c)[0] for c in correctors]
    t = time.process_time()
    results = evaluate_store(models or None, test, corrected_case(coarse_flow, scale, member_scales), entries, None,
                             progress=True)
    seconds = time.process_time() - t
    s = rollout_evaluation(results).summary
    keys = (*SEED_KEYS, "spread_error_spearman")
    metrics = {**{k: s.get(k) for k in keys}, "frame_s": seconds / sum(r.steps for r in results),
               "test_trajectories": len(results)}
    if cache is not None:
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "metrics": metrics}, indent=1))
        tmp.replace(cache)
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--size")
    ap.add_argument("--data", help="dataset folder (default datasets/cylinder_flow/<size>)")
    ap.add_argument("--scale", type=float, default=0.7, help="coarse mesh: the stored mesh sizes divided by this")
    ap.add_argument("--train-seconds", type=float, help="CPU seconds per corrector (default 2400, quick 60)")
    ap.add_argument("--seed", type=int, default=0, help="first training seed")
    ap.add_argument("--seeds", type=int, default=1, help="correctors to train (seeds seed, seed + 1, ...)")
    ap.add_argument("--resume", action="store_true", help="continue the seeds' runs in --out")
    ap.add_argument("--member-scales", type=float, nargs="+",
                    help="the ensemble's members each on its own coarse mesh at these scales (one per seed) "
                         "instead of sharing the one at --scale")
    ap.add_argument("--only", choices=["train", "seeds", "coarse"],
                    help="train the seeds' correctors, or measure only the seeds' hybrids or only the coarse solve "
                         "(each kept beside what it measured), then stop without the JSON: processes beside each "
                         "other; a last run with --resume collects what they kept and measures the ensemble")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "cylinder_hybrid"))
    ap.add_argument("--workers", type=int, default=2, help="processes generating a missing dataset")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    set_threads(args.threads)
    if args.member_scales and len(args.member_scales) != args.seeds:
        raise SystemExit(f"--member-scales: {len(args.member_scales)} scales for {args.seeds} seeds (one per seed)")

    from sim.mesh import Store
    from solvers.cfd.corrected import correction_samples

    size = args.size or ("small" if args.quick else "medium")
    budget = args.train_seconds or (60.0 if args.quick else 2400.0)
    paths = cylinder_data(size, args.data, args.workers)
    out = Path(args.out)
    with Store(paths["train"]) as s:
        train_names = s.names()[:4] if args.quick else None
    with Store(paths["test"]) as s:
        test_names = s.names()[:1] if args.quick else None
    samples = correction_samples(paths["train"], out / f"samples_{size}_s{args.scale:g}.h5", args.scale,
                                 entries=train_names)
    with Store(paths["train"]) as s:  # the samples' cost, timed again on two trajectories (the store resumes)
        names = train_names or s.names()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.process_time()
        correction_samples(paths["train"], Path(tmp) / "timed.h5", args.scale, entries=names[:2])
        samples_s = (time.process_time() - t) / 2 * len(names)
    seeds = [args.seed + i for i in range(args.seeds)]
    runs = []
    for seed in [] if args.only == "coarse" else seeds:
        summary = train_for_budget({
            "model": CORRECTOR, "data": {"train": str(samples), "batch_size": 4},
            "optim": {"lr": 1e-3, "lr_final": 1e-5},
            "train": {"steps": 1, "seed": seed, "out": str(out / f"corrector_{size}_s{args.scale:g}_seed{seed}"),
                      "checkpoint_every": 500, "log_every": 100, "normalizer_accumulation_steps": 500}},
            budget, resume=args.resume)
        runs.append(summary)
    ckpts = [Path(r["checkpoint"]) for r in runs]
    coarse_cache = out / f"coarse_metrics_{size}_s{args.scale:g}.json"
    if args.only == "coarse":
        scored([], paths["test"], args.scale, test_names, coarse_cache)
    if args.only == "seeds":
        for c in ckpts:
            scored([c], paths["test"], args.scale, test_names, c.parent / "hybrid_metrics.json")
    if args.only:
        return
    coarse = scored([], paths["test"], args.scale, test_names, coarse_cache)
    per_seed = [scored([c], paths["test"], args.scale, test_names, c.parent / "hybrid_metrics.json") for c in ckpts]
    results = over_seeds(per_seed, seeds)
    if len(ckpts) > 1:
        ens = scored(ckpts, paths["test"], args.scale, test_names, out / f"ensemble_metrics_{size}.json",
                     args.member_scales)
        results.update({"spread_error_spearman": ens["spread_error_spearman"],
                        **{f"ensemble_{k}": ens[k] for k in ENSEMBLE_KEYS}})
    report("cylinder_hybrid", {
        "size": size, "scale": args.scale, "member_scales": args.member_scales, "corrector": CORRECTOR,
        "train_budget_s": budget,
        "train_steps": float(np.mean([r["steps"] for r in runs])), "samples_cpu_s": samples_s,
        **results,
        "frame_s": float(np.mean([m["frame_s"] for m in per_seed])), "coarse_frame_s": coarse["frame_s"],
        **{f"coarse_{k}": coarse[k] for k in SEED_KEYS if not k.startswith("persistence")},
        "test_trajectories": coarse["test_trajectories"],
    }, args.json, seeds=seeds, train_cpu_hours=(samples_s + sum(r["seconds"] for r in runs)) / 3600)  # samples included


if __name__ == "__main__":
    main()
