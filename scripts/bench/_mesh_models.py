"""Shared pieces of the mesh-model benchmarks: data, training for a CPU-time budget, rollout
metrics (one model, over seeds, as an ensemble), per-step timing and peak memory of a rollout
in a fresh process."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import ROOT, machine

CYLINDER_RECIPE = ROOT / "datasets" / "cylinder_flow.yaml"


def cylinder_parser(doc: str | None, threads_help: str = "torch threads (budgets are CPU seconds)"):
    """The options every cylinder-flow bench takes: --quick, --json, --threads, --size, --data."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=1, help=threads_help)
    ap.add_argument("--size", help="recipe size (default: medium, or small with --quick)")
    ap.add_argument("--data", help="folder with train/valid/test.h5 of the cylinder recipe (default: generate)")
    return ap


def set_threads(threads: int) -> None:
    """torch threads of this benchmark (1 by default: budgets are CPU seconds of one core)."""
    import torch

    torch.set_num_threads(threads)


def cylinder_data(size: str, data_dir: str | None = None, workers: int = 2) -> dict[str, Path]:
    """train/valid/test stores of the cylinder-flow recipe: ``data_dir`` when given (it must hold
    them), else generated (or completed) with our solver under datasets/cylinder_flow/<size>."""
    if data_dir:
        d = Path(data_dir)
        paths = {s: d / f"{s}.h5" for s in ("train", "valid", "test")}
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise SystemExit(f"--data {d}: missing {', '.join(missing)}")
        return paths
    from solvers.recipes import generate, load_recipe

    return generate(load_recipe(CYLINDER_RECIPE), size, workers=workers)


def train_for_budget(cfg_dict: dict[str, Any], seconds: float, clock: str = "process", resume: bool = False,
                     steps: int | None = None) -> dict[str, Any]:
    """Train a configuration for about ``seconds`` of this process's CPU time (``clock="process"``,
    a fair budget when other jobs share the machine; ``"wall"`` for wall time), the learning-rate
    schedule spanning the whole budget; returns the trainer's summary plus ``steps_per_s``
    (steps per budget second). ``resume``: continue the run in ``train.out`` with the steps it
    planned (its clock, and so the budget, runs on); otherwise a run there is replaced. ``steps``:
    train exactly this many steps instead (no time limit), so that runs on machines of different
    speed or load are comparable; with ``resume`` a run that planned fewer continues to ``steps``,
    its learning-rate schedule stretched over the longer run (a warm restart from where it stopped)."""
    from sim.families import steps_for_budget, train
    from sim.train import Config, read_checkpoint

    cfg = Config.from_dict(cfg_dict)
    cfg.train.clock = clock
    cfg.train.max_seconds = None if steps else seconds
    ckpt = Path(cfg.train.out) / "checkpoint.pt"
    if resume and ckpt.exists():
        cfg.train.steps = steps or int(read_checkpoint(ckpt)["train"]["config"]["train"]["steps"])
        summary = train(cfg, resume=True)
    else:
        if ckpt.exists():
            ckpt.unlink()
        cfg.train.steps = steps or steps_for_budget(cfg, seconds)
        summary = train(cfg)
    summary["steps_per_s"] = summary["steps"] / summary["seconds"]
    return summary


PHYSICS_KEYS = ("shedding_freq_err_median", "mean_field_rrmse", "fluct_rrmse", "spread_error_spearman")


def _metrics_key(ckpts: list[str | Path], test: str | Path, steps: int | None, correction: str | None) -> dict:
    """What a rollout's metrics depend on: the checkpoints' bytes, the test store, steps, correction."""
    import hashlib

    stat = Path(test).stat()
    return {"checkpoints": [hashlib.sha256(Path(c).read_bytes()).hexdigest() for c in ckpts],
            "test": [str(Path(test).resolve()), stat.st_size, stat.st_mtime_ns], "steps": steps,
            "correction": correction}


def rollout_metrics(checkpoint: str | Path | list[str | Path], test: str | Path, steps: int | None = None,
                    correction: str | None = None, cache: str | Path | None = None) -> dict[str, Any]:
    """Means over the test trajectories of the rollout RMSE at 1, 50 and all steps and
    persistence's, and the flow metrics of ``sim eval`` (median shedding-frequency error, mean-
    and fluctuation-field relative RMSE; with several checkpoints, rolled out as an ensemble, the
    spread-error rank correlation). Rollouts run to the end unless they reach NaN/inf: one that
    runs away is measured with its error, not dropped. ``correction``: the rollout correction
    (:mod:`sim.rollout.corrections`) instead of the checkpoint's own. ``cache``: a JSON file
    (in the run's folder) that keeps the metrics with what they were computed from (checkpoint
    bytes, test store, steps, correction) and the commit that computed them; they are reused while
    those inputs match (whatever the code's commit since), so that a bench invocation that only
    collects finished runs does not roll them out again."""
    ckpts = checkpoint if isinstance(checkpoint, list) else [checkpoint]
    key = _metrics_key(ckpts, test, steps, correction) if cache else None
    if cache and Path(cache).exists():
        kept = json.loads(Path(cache).read_text())
        if kept.get("key") == key:
            return kept["metrics"]
    metrics = _rollout_metrics(ckpts, test, steps, correction)
    if cache:
        tmp = Path(cache).with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "commit": machine()["git_commit"], "metrics": metrics}, indent=1))
        tmp.replace(cache)
    return metrics


def kept_rollout_metrics(checkpoint: str | Path, test: str | Path, correction: str | None = None) -> dict[str, Any]:
    """:func:`rollout_metrics` of a run's checkpoint, kept beside it (``rollout_metrics.json``)."""
    return rollout_metrics(checkpoint, test, correction=correction,
                           cache=Path(checkpoint).parent / "rollout_metrics.json")


def add_only_option(ap: Any, variants: str) -> None:
    """``--only [VARIANT ...]`` of a bench that trains variants (``variants``: how they are named)."""
    ap.add_argument("--only", nargs="*", metavar="VARIANT",
                    help=f"train and roll out only these variants ({variants}; all when none are named) for the "
                         "seeds, then stop without the JSON: a second process beside a --resume one, which collects "
                         "the kept metrics (never two processes on one run)")


def only_variants(only: list[str] | None, variants: list[str]) -> list[str] | None:
    """The variants ``--only`` names (all of them when it names none; None without the option);
    an unknown name stops the bench with one error."""
    if only is None:
        return None
    unknown = sorted(set(only) - set(variants))
    if unknown:
        raise SystemExit(f"--only: no variant {unknown} (variants: {', '.join(variants)})")
    return only or list(variants)


def _rollout_metrics(ckpts: list[str | Path], test: str | Path, steps: int | None, correction: str | None
                     ) -> dict[str, Any]:
    from sim.families import get_family
    from sim.families.mesh import set_correction
    from sim.rollout.engine import blowup_guard
    from sim.train import load_model

    models = [load_model(c)[0] for c in ckpts]
    if correction is not None:
        set_correction(models, correction)
    t = time.perf_counter()
    with blowup_guard(0):  # a runaway rollout is measured (its error counts), not stopped; NaN/inf still stop
        ev = get_family("mesh").evaluate(models if len(models) > 1 else models[0], Path(test), None, steps)
    seconds = time.perf_counter() - t
    s = ev.summary
    return {"rmse_1": s.get("rmse_1"), "rmse_50": s.get("rmse_50"), "rmse_all": s.get("rmse_all"),
            "persistence_rmse_50": s.get("persistence_rmse_50"), "persistence_rmse_all": s.get("persistence_rmse_all"),
            **{k: s.get(k) for k in PHYSICS_KEYS},
            "rollout_s": seconds, "rollout_steps": int(sum(r["steps"] for r in ev.rows)),
            "test_trajectories": len(ev.rows)}


SEED_KEYS = ("rmse_1", "rmse_50", "rmse_all", "persistence_rmse_50", "persistence_rmse_all",
             "shedding_freq_err_median", "mean_field_rrmse", "fluct_rrmse")


def over_seeds(per_seed: list[dict[str, Any]], seeds: list[int], keys: tuple[str, ...] = SEED_KEYS
               ) -> dict[str, Any]:
    """Each key's mean over the seeds' metrics, ``<key>_std`` their spread (not for persistence,
    which does not depend on the model), and ``per_seed`` (seed -> metrics); None where no seed
    has a value."""

    def stat(k: str, fn: Any) -> float | None:
        vals = [m[k] for m in per_seed if m.get(k) is not None]
        return float(fn(vals)) if vals else None

    out: dict[str, Any] = {k: stat(k, np.mean) for k in keys}
    out.update({f"{k}_std": stat(k, np.std) for k in keys if not k.startswith("persistence")})
    out["per_seed"] = {str(seed): {k: m.get(k) for k in keys} for seed, m in zip(seeds, per_seed)}
    return out


ENSEMBLE_KEYS = ("rmse_50", "rmse_all", "shedding_freq_err_median", "mean_field_rrmse", "fluct_rrmse")


def ensemble_metrics(checkpoints: list[Path], test: Path, correction: str | None = None) -> dict[str, Any]:
    """The seeds' models rolled out as one deep ensemble (mean and spread per node and step):
    ``spread_error_spearman`` and the ensemble mean's metrics (:data:`ENSEMBLE_KEYS`) as ``ensemble_<key>``."""
    ens = rollout_metrics(list(checkpoints), test, correction=correction)
    return {"spread_error_spearman": ens["spread_error_spearman"], **{f"ensemble_{k}": ens[k] for k in ENSEMBLE_KEYS}}


def step_times(checkpoints: dict[str, str | Path], mesh: Any, state: np.ndarray, repeats: int = 20,
               warmup: int = 3, clock: Any = time.process_time) -> dict[str, float]:
    """Median seconds of one model step (the one-step map on one mesh, inference mode) per
    checkpoint, measured alternately in this process after a warm-up. The default clock is this
    process's CPU time, which with one torch thread is the step's cost whatever else runs on
    the machine (pass ``time.perf_counter`` for wall time)."""
    import torch

    from sim.graph import mesh_graph
    from sim.train import load_model

    g = mesh_graph(mesh)
    x = torch.as_tensor(state, dtype=torch.float32)
    models = {k: load_model(p)[0] for k, p in checkpoints.items()}
    times: dict[str, list[float]] = {k: [] for k in models}

    def one(m: Any) -> float:
        t = clock()
        m.predict_update(x, g.node_type, g.edge_index, g.edge_attr, g.mesh_pos, None)
        return clock() - t

    with torch.inference_mode():
        for _ in range(warmup):
            for m in models.values():
                one(m)
        for _ in range(repeats):
            for k, m in models.items():
                times[k].append(one(m))
    return {k: statistics.median(v) for k, v in times.items()}


def rollout_peak_mem_mb(checkpoint: str | Path, data: str | Path, steps: int, out_dir: str | Path | None = None,
                        entry: str | None = None, threads: int = 1) -> dict[str, float]:
    """Roll ``checkpoint`` over the first (or named) entry of ``data`` for ``steps`` steps in a fresh
    Python process (streaming an XDMF series when ``out_dir`` is given) and return the peak
    resident memory *during the rollout* (``peak_mem_mb``: Linux's high-water mark, reset after
    the imports and the model load, so import-time spikes do not count), the resident memory
    before it (``base_mem_mb``) and the wall and CPU time per step (``seconds_per_step``,
    ``cpu_seconds_per_step``) including reading the data and writing the series."""
    code = f"""
import json, resource, time, sys
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from sim.mesh import Store
from sim.rollout.evaluate import evaluate_store, mesh_case
from sim.train import load_model
import torch
torch.set_num_threads({threads})

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return float(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

model, _ = load_model({str(checkpoint)!r})
with Store({str(data)!r}) as s:
    entry = {entry!r} or s.names()[0]
try:
    open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark (VmHWM)
except OSError:
    pass
base = status("VmRSS")
t, c = time.perf_counter(), time.process_time()
out = {str(out_dir)!r} if {out_dir is not None!r} else None
res = evaluate_store(model, {str(data)!r}, mesh_case, [entry], {steps}, Path(out) if out else None, "xdmf")
sec, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({{"peak_mem_mb": status("VmHWM"), "base_mem_mb": base, "seconds_per_step": sec / res[0].steps,
                  "cpu_seconds_per_step": cpu / res[0].steps}}))
"""
    import os

    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"the rollout process failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def flow_interpolator(coarse: Any, fine: Any, truth: np.ndarray) -> Any:
    """A function of velocity frames on mesh ``coarse`` that interpolates them (P1) to the nodes of
    mesh ``fine`` and sets each frame's prescribed fine nodes (inflow, walls, obstacle) to their
    values in ``truth`` (the fine flow, one frame per frame); the interpolation matrix is built
    here, once."""
    from sim.mesh import NodeType
    from sim.mesh.interp import p1_matrix

    prescribed = (fine.node_type != int(NodeType.INTERIOR)) & (fine.node_type != int(NodeType.OUTFLOW))
    decode = p1_matrix(coarse.points, coarse.cells, fine.points)

    def to_fine(frames: Any) -> list[np.ndarray]:
        out = []
        for k, v in enumerate(frames):
            f = decode @ np.asarray(v, dtype=np.float64)
            f[prescribed] = truth[k][prescribed]
            out.append(f)
        return out

    return to_fine


def flow_scores(mesh: Any, params: dict[str, Any], truth: np.ndarray, frames: Any, dt: float) -> dict[str, float]:
    """The flow metrics of ``sim eval`` (time-mean and fluctuation relative RMSE, shedding-frequency
    error) of velocity ``frames`` on ``mesh`` against ``truth``, frame 0 the shared start."""
    from sim.rollout.flow import FlowStatistics

    stats = FlowStatistics(mesh, params, "velocity", truth, 0.0, float(dt))
    for k, v in enumerate(frames):
        stats.write(k * float(dt), point_fields={"velocity": v})
    m = stats.metrics()
    return {k: float(m[k]) for k in ("mean_field_rrmse", "fluct_rrmse", "shedding_freq_err") if k in m}


def rescaled_case(traj: Any, scale: float) -> tuple[Any, dict[str, float]]:
    """The cylinder case of stored trajectory ``traj`` meshed ``scale`` times as fine (the recipe's
    mesh sizes divided by ``scale``): the mesh as the recipe's solver takes it (its geometry and
    mesh sizes in ``field_data``) and those values."""
    from sim.mesh import Mesh
    from solvers.cfd.cylinder import GEOMETRY
    from solvers.cfd.geometry import Channel, channel_mesh

    p = traj.params
    channel = Channel(p["length"], p["height"], p["cx"], p["cy"], p["radius"])
    mesh = channel_mesh(channel, size=p["mesh_size"] / scale, size_min=p["mesh_size_min"] / scale)
    values = {**{k: float(p[k]) for k in GEOMETRY if k in p}, "mesh_size": p["mesh_size"] / scale,
              "mesh_size_min": p["mesh_size_min"] / scale}
    drawn = Mesh(mesh.points, mesh.cells, node_type=mesh.node_type,
                 field_data={k: np.array([float(v)]) for k, v in values.items()})
    return drawn, values
