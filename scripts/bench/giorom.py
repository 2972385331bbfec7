"""GIOROM against the full-resolution GNS-style baseline on 2D MPM water, sand and jelly.

    python scripts/bench/giorom.py [--quick] [--json PATH] [--train-seconds S] [--data-root DIR]
                                   [--materials water,sand,jelly] [--ratio 0.05] [--n-grid 96] [--out DIR]
                                   [--giorom-only]

Per material: generates the data with our MLS-MPM solver if missing (the ``bench`` size
below, ~2-6k particles, 100 frames, 8 train / 2 test trajectories; ``--n-grid N`` the same
blocks on an N-cell grid, so about (N / 96)**2 times the particles, size ``bench_gN``;
``--quick``: the recipes' ``small`` size), trains both models through the shared trainer for the
same budget of CPU time (``--train-seconds``, default 300 CPU-seconds each, 15 with ``--quick``;
``--full-seconds``: another first budget for the baseline; CPU time rather than wall time so
that other jobs on a shared machine do not change what each model gets), then

- rollout MSE of positions (mean over steps, particles and components) on the test split,
  from the first 6 frames to the end, GIOROM decoded to every particle
  (``<m>_giorom_mse``) and the baseline on every particle (``<m>_full_mse``);
- wall time per rollout frame (``<m>_giorom_frame_s``: sparse step + graph rebuild + dense
  decoding of all particles; ``<m>_full_frame_s``: full graph rebuild + step), measured in
  this process, alternating 20-frame runs after a warm-up, median of 3 rounds;
  ``<m>_speedup`` is their ratio (``*_cpu_s`` / ``<m>_speedup_cpu``: the same in CPU time);
- with ``--full-to-accuracy F``: the baseline retrained from scratch with twice the budget
  until its MSE is within F times GIOROM's (or ``--full-max-seconds``): ``<m>_full_rounds``
  ([budget, steps, mse] per round), ``<m>_full_reached_accuracy``; the ``<m>_full_*`` keys and
  the speed ratio are then the last round's model (``train_cpu_hours`` counts every round);
- with the first material's GIOROM model: dense decode time per frame at 10k / 30k / 100k
  query points sampled inside the body (``decode_s_10k`` ...; neighbour lists and
  coefficients built once per query set, reported as ``decode_plan_s_*``) and the time of
  a whole dense frame (sparse step + decode, ``dense_frame_s_*``).

``--giorom-only`` trains and measures GIOROM alone (its MSE, sparse MSE, persistence, frame time
and the decode times; no baseline keys): the model another bench takes, e.g. the MPM case of
``solver_speedup.py`` (``--materials jelly --n-grid 192 --giorom-only``, then
``--mpm-checkpoint OUT/jelly_giorom/checkpoint.pt --mpm-data DATA_ROOT/mpm_jelly_2d/bench_g192/test.h5``).

Presets: GIOROM ``cpu`` (latent 64, 2 + 2 interaction layers, 32x32 grid per sample,
32 channels, FNO 4 layers x 12 modes), 5 % of the particles by farthest-point sampling,
radius ``r / sqrt(0.05)`` (same neighbour count as the full graph), dense decoder with 16
neighbours trained on 512 dense particles per sample; baseline MeshGraphNet ``cpu``
(latent 64, 6 steps) on all particles with radius ``r = 1 / n_grid`` (two particle
spacings, ~10 neighbours). Both: batch 1, Adam 1e-3 -> 1e-5 (exponential over the
steps that fit the budget), random-walk noise (water 3e-4, sand and jelly 3e-5 per frame).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import ROOT, peak_mem_mb, report

BENCH_SIZE = {"params": {"n_grid": 96, "ppc": 2, "frames": 100, "blocks": [2, 3], "block_size": [0.15, 0.3]},
              "splits": {"train": 8, "test": 2}}
NOISE = {"water": 3e-4, "sand": 3e-5, "jelly": 3e-5}
HISTORY = 6


def bench_size(n_grid: int) -> tuple[str, dict]:
    """The bench size's name and definition at grid resolution ``n_grid`` (the blocks keep their size
    in the unit box, so the particle count grows as ``n_grid**2``)."""
    name = "bench" if n_grid == BENCH_SIZE["params"]["n_grid"] else f"bench_g{n_grid}"
    return name, {**BENCH_SIZE, "params": {**BENCH_SIZE["params"], "n_grid": n_grid}}


def dataset(material: str, quick: bool, root: Path, n_grid: int = BENCH_SIZE["params"]["n_grid"]
            ) -> tuple[dict[str, Path], int]:
    from solvers.recipes import generate, load_recipe

    recipe = load_recipe(ROOT / "datasets" / f"mpm_{material}_2d.yaml")
    size = "small"
    if not quick:
        size, recipe.sizes[size] = bench_size(n_grid)
    n_grid = int({**recipe.params, **recipe.sizes[size]["params"]}.get("n_grid", 64))
    return generate(recipe, size, out=root / f"mpm_{material}_2d" / size), n_grid


def configure(kind: str, paths: dict[str, Path], material: str, n_grid: int, ratio: float, out: Path):
    from sim.train import Config

    r_full = 1.0 / n_grid
    giorom = kind == "giorom"
    return Config.from_dict({
        "model": {"family": "particle", "network": "giorom" if giorom else "meshgraphnet", "preset": "cpu",
                  "noise_std": NOISE[material],
                  "family_args": ({"sample_ratio": ratio, "sampling": "fps", "connectivity_radius":
                                   r_full * ratio ** -0.5, "decoder": {"neighbors": 16}} if giorom else
                                  {"connectivity_radius": r_full})},
        "data": {"train": str(paths["train"]), "batch_size": 1, "dense_queries": 512 if giorom else 0},
        "optim": {"name": "adam", "lr": 1e-3, "lr_final": 1e-5, "schedule": "exponential"},
        "train": {"steps": 1, "out": str(out / f"{material}_{kind}"), "log_every": 50,
                  "checkpoint_every": 10**9, "device": "cpu"}})


def cpu_seconds_per_step(cfg, probe_steps: int, warmup: int = 3) -> float:
    """CPU seconds of one training step (the trainer's loop body: batch, loss, backward, Adam),
    measured with ``time.process_time`` after a warm-up, so other jobs on the machine do not
    change the budget."""
    from sim.families import configure
    from sim.train.trainer import StepBatchSampler

    family = configure(cfg)
    dataset = family.build_dataset(cfg)
    simulator = family.build_model(cfg, dataset)
    collate = family.collator(cfg, dataset, simulator)
    simulator.train()
    opt = torch.optim.Adam(simulator.parameters(), lr=cfg.optim.lr)
    sampler = StepBatchSampler(len(dataset), cfg.data.batch_size, cfg.train.seed, 0, warmup + probe_steps)
    for i, idx in enumerate(sampler):
        if i == warmup:
            t = time.process_time()
        batch = collate([dataset[j] for _, j in idx], i)
        loss, _ = family.loss(simulator, batch, torch.Generator().manual_seed(i), cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.process_time() - t) / probe_steps


def train_model(cfg, budget: float, probe_steps: int) -> tuple[Path, dict]:
    """Train for ``budget`` CPU seconds (one thread): the steps a probe says fit, the learning-rate
    schedule spanning them. Wall time depends on what else runs on the machine; CPU time does not."""
    from sim.families import train

    ckpt = Path(cfg.train.out) / "checkpoint.pt"
    if ckpt.exists():
        ckpt.unlink()
    cfg.train.steps = max(1, int(budget / cpu_seconds_per_step(cfg, probe_steps)))
    cfg.train.max_seconds = None
    t = time.process_time()
    summary = train(cfg)
    summary["cpu_seconds"] = time.process_time() - t
    return ckpt, summary


def record(results: dict, prefix: str, summary: dict) -> None:
    """A training run's steps, CPU and wall seconds under ``<prefix>_train_*``."""
    results[f"{prefix}_train_steps"] = int(summary["steps"])
    results[f"{prefix}_train_cpu_s"] = float(summary["cpu_seconds"])
    results[f"{prefix}_train_wall_s"] = float(summary["seconds"])


def test_trajectories(path: Path) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    from sim.data.particles import PARTICLE_TYPE
    from sim.mesh import Store

    with Store(path) as s:
        out = []
        for name in s.names():
            traj = s.read(name)
            out.append((name, np.asarray(traj.positions, dtype=np.float32), traj.mesh.point_data.get(PARTICLE_TYPE)))
    return out


def rollout_mse(model, trajs) -> tuple[float, float, float]:
    """Mean position MSE over the test trajectories (dense, sparse particles, persistence)."""
    from sim.rollout.particles import particle_rollout

    dense, sparse, persist = [], [], []
    for name, pos, types in trajs:
        steps = len(pos) - HISTORY
        res = particle_rollout(model, [pos[:HISTORY]], steps, rest=[pos[0]], names=[name],
                               particle_types=None if types is None else [types], reference=[pos[HISTORY - 1:]])
        dense.append(res.mse[0].mean())
        sparse.append(res.sparse_mse[0].mean())
        persist.append(np.mean([((pos[s] - pos[HISTORY - 1]) ** 2).mean() for s in range(HISTORY, len(pos))]))
    return float(np.mean(dense)), float(np.mean(sparse)), float(np.mean(persist))


def frame_times(models: dict, traj, frames: int = 20, rounds: int = 3) -> dict[str, float]:
    """Wall and CPU seconds per rollout frame of each model: warm-up, then alternating runs, median."""
    from sim.rollout.particles import particle_rollout

    name, pos, types = traj
    kw = {"rest": [pos[0]], "names": [name], "particle_types": None if types is None else [types]}
    for m in models.values():
        particle_rollout(m, [pos[:HISTORY]], 2, **kw)
    wall: dict[str, list[float]] = {k: [] for k in models}
    cpu: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            t, c = time.perf_counter(), time.process_time()
            particle_rollout(m, [pos[:HISTORY]], frames, **kw)
            wall[k].append((time.perf_counter() - t) / frames)
            cpu[k].append((time.process_time() - c) / frames)
    return {**{k: float(np.median(v)) for k, v in wall.items()},
            **{f"{k}_cpu": float(np.median(v)) for k, v in cpu.items()}}


def decode_times(model, traj, counts=(10_000, 30_000, 100_000), repeats: int = 20) -> dict[str, float]:
    """Per-frame dense decoding at ``count`` query points inside the body (particles jittered by
    up to half a particle spacing), the plan's one-time cost, and a whole dense frame."""
    name, pos, types = traj
    rng = np.random.default_rng(0)
    rest = pos[0]
    idx = model.sparse_indices(rest, name)
    spacing = float(np.median(np.sort(np.linalg.norm(rest[:200, None] - rest[None], axis=-1), axis=1)[:, 1]))
    sparse_rest = torch.as_tensor(rest[idx])
    hist = torch.as_tensor(pos[:HISTORY][:, idx].transpose(1, 0, 2).copy())
    ptype = torch.zeros(len(idx), dtype=torch.long)
    out: dict[str, float] = {"decode_sparse_nodes": float(len(idx))}
    with torch.inference_mode():
        for _ in range(3):
            model.predict_acceleration(hist, ptype)
        t = time.perf_counter()
        for _ in range(5):
            model.predict_acceleration(hist, ptype)
        step_s = (time.perf_counter() - t) / 5
        for count in counts:
            pick = rng.integers(len(rest), size=count)
            queries = torch.as_tensor(rest[pick] + rng.uniform(-0.5, 0.5, (count, rest.shape[1])) * spacing,
                                      dtype=torch.float32)
            t = time.perf_counter()
            plan = model.decode_plan(sparse_rest, queries)
            plan_s = time.perf_counter() - t
            disp = hist[:, -1] - sparse_rest
            plan.apply(disp)
            ts = []
            for _ in range(repeats):
                t = time.perf_counter()
                queries + plan.apply(disp)
                ts.append(time.perf_counter() - t)
            key = f"{count // 1000}k"
            out[f"decode_s_{key}"] = float(np.median(ts))
            out[f"decode_plan_s_{key}"] = plan_s
            out[f"dense_frame_s_{key}"] = step_s + float(np.median(ts))
    out["sparse_step_s"] = step_s
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--train-seconds", type=float,
                    help="training budget per model in CPU seconds (default 300, quick 15)")
    ap.add_argument("--data-root", default=str(ROOT / "datasets"), help="where the MPM datasets live / are generated")
    ap.add_argument("--materials", default="water,sand,jelly")
    ap.add_argument("--n-grid", type=int, default=BENCH_SIZE["params"]["n_grid"],
                    help="MPM grid resolution of the bench size (default 96: 2-6k particles; the particle count "
                         "grows as its square, e.g. 192: 8-24k)")
    ap.add_argument("--ratio", type=float, default=0.05, help="GIOROM's sparse fraction of the particles")
    ap.add_argument("--full-to-accuracy", type=float, metavar="F",
                    help="retrain the full-resolution baseline with twice the budget (from scratch, its schedule "
                         "spanning the budget) until its rollout MSE is within F times GIOROM's, so the speed "
                         "ratio compares models that do the same job")
    ap.add_argument("--full-seconds", type=float,
                    help="the baseline's first training budget (CPU seconds; default --train-seconds): with "
                         "--full-to-accuracy on a large case, skip rounds that cannot reach the accuracy")
    ap.add_argument("--full-max-seconds", type=float, default=14400.0,
                    help="the largest budget --full-to-accuracy tries (CPU seconds, default 14400)")
    ap.add_argument("--giorom-only", action="store_true",
                    help="train and measure GIOROM alone (no full-resolution baseline, no speed ratio): a model for "
                         "another bench, e.g. solver_speedup.py --mpm-checkpoint OUT/jelly_giorom/checkpoint.pt")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "giorom"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: with torch's default of one per core, a parallel region on a "
                         "loaded machine waits for a busy core, which made the 100k-point decode 20-90 ms "
                         "instead of about 2 ms)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from sim.train import load_model

    budget = args.train_seconds or (15.0 if args.quick else 300.0)
    full_first = args.full_seconds or budget
    out = Path(args.out)
    results: dict[str, object] = {"size": "small" if args.quick else bench_size(args.n_grid)[0],
                                  "n_grid": None if args.quick else args.n_grid, "train_budget_cpu_s": budget,
                                  "full_first_budget_cpu_s": full_first,
                                  "sample_ratio": args.ratio, "preset_giorom": "cpu", "preset_full": "cpu"}
    decode_model = None
    for material in args.materials.split(","):
        t0 = time.perf_counter()
        paths, n_grid = dataset(material, args.quick, Path(args.data_root), args.n_grid)
        results[f"{material}_generation_s"] = time.perf_counter() - t0
        trajs = test_trajectories(paths["test"])
        models = {}
        for kind in ("giorom",) if args.giorom_only else ("giorom", "full"):
            cfg = configure(kind, paths, material, n_grid, args.ratio, out)
            ckpt, summary = train_model(cfg, budget if kind == "giorom" else full_first,
                                        probe_steps=20 if kind == "giorom" else 8)
            models[kind], _ = load_model(ckpt)
            record(results, f"{material}_{kind}", summary)
        g_mse, g_sparse, persist = rollout_mse(models["giorom"], trajs)
        if args.giorom_only:
            times = frame_times(models, trajs[0])
            results.update({f"{material}_giorom_mse": g_mse, f"{material}_giorom_sparse_mse": g_sparse,
                            f"{material}_persistence_mse": persist, f"{material}_giorom_frame_s": times["giorom"],
                            f"{material}_giorom_frame_cpu_s": times["giorom_cpu"],
                            f"{material}_particles": float(np.mean([len(t[1][0]) for t in trajs])),
                            f"{material}_rollout_frames": len(trajs[0][1]) - HISTORY})
            decode_model = decode_model or (models["giorom"], trajs[0])
            print(f"{material}: giorom mse {g_mse:.3g} (persistence {persist:.3g})", flush=True)
            continue
        f_mse, _, _ = rollout_mse(models["full"], trajs)
        if args.full_to_accuracy:  # train the baseline to GIOROM's accuracy, not to its budget
            rounds = [[full_first, results[f"{material}_full_train_steps"], f_mse]]
            earlier = 0.0  # CPU seconds of the rounds before the last
            full_budget = full_first
            while f_mse > args.full_to_accuracy * g_mse and 2 * full_budget <= args.full_max_seconds:
                full_budget *= 2
                cfg = configure("full", paths, material, n_grid, args.ratio, out)
                ckpt, summary = train_model(cfg, full_budget, probe_steps=8)
                models["full"], _ = load_model(ckpt)
                f_mse, _, _ = rollout_mse(models["full"], trajs)
                rounds.append([full_budget, int(summary["steps"]), f_mse])
                earlier += results[f"{material}_full_train_cpu_s"]
                record(results, f"{material}_full", summary)
                print(f"{material}: full model at {full_budget:g} CPU-s: mse {f_mse:.3g} (GIOROM {g_mse:.3g})",
                      flush=True)
            results[f"{material}_full_rounds"] = rounds
            results[f"{material}_full_reached_accuracy"] = bool(f_mse <= args.full_to_accuracy * g_mse)
            results[f"{material}_full_earlier_rounds_cpu_s"] = earlier
        times = frame_times(models, trajs[0])
        results.update({
            f"{material}_giorom_mse": g_mse, f"{material}_full_mse": f_mse,
            f"{material}_giorom_frame_s": times["giorom"], f"{material}_full_frame_s": times["full"],
            f"{material}_speedup": times["full"] / times["giorom"],
            f"{material}_giorom_frame_cpu_s": times["giorom_cpu"], f"{material}_full_frame_cpu_s": times["full_cpu"],
            f"{material}_speedup_cpu": times["full_cpu"] / times["giorom_cpu"],
            f"{material}_mse_ratio": g_mse / f_mse, f"{material}_giorom_sparse_mse": g_sparse,
            f"{material}_persistence_mse": persist,
            f"{material}_particles": float(np.mean([len(t[1][0]) for t in trajs])),
            f"{material}_rollout_frames": len(trajs[0][1]) - HISTORY,
        })
        if decode_model is None:
            decode_model = (models["giorom"], trajs[0])
        print(f"{material}: giorom mse {g_mse:.3g}, full mse {f_mse:.3g}, "
              f"speedup {results[f'{material}_speedup']:.1f}x", flush=True)
    results.update(decode_times(*decode_model))
    results["decode_growth_10k_to_100k"] = results["decode_s_100k"] / results["decode_s_10k"]
    results["dense_frame_growth_10k_to_100k"] = results["dense_frame_s_100k"] / results["dense_frame_s_10k"]
    results["peak_mem_mb"] = peak_mem_mb()
    cpu = sum(v for k, v in results.items() if k.endswith("_train_cpu_s") or k.endswith("_earlier_rounds_cpu_s"))
    report("giorom", results, args.json, seeds=[0], train_cpu_hours=cpu / 3600)


if __name__ == "__main__":
    main()
