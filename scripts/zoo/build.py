"""Build one entry of the model zoo (``sim/zoo/models/<name>/``, :mod:`sim.zoo`) from our own solvers' data.

    python scripts/zoo/build.py NAME [--quick] [--train-seconds S] [--seed N] [--out DIR] [--workers N]
    python scripts/zoo/build.py cylinder_flow --checkpoint CKPT --metrics-json JSON [--out DIR]

Each entry is trained or fitted as its benchmark does it, on the data of a recipe
(``datasets/<recipe>.yaml``, generated with our solver when missing), measured on the recipe's
test split against a baseline, and written as a folder: the model file (torch checkpoints
keep only the format, the model, its weights and the training configuration: no optimiser
state), ``entry.yaml`` (what ``sim zoo list`` shows) and ``card.md`` (the model card). The
folder is built in a hidden staging folder beside ``--out`` and swapped in when complete.

Entries:

- ``elasticity_shapes``: MMGP fitted on the ``large`` train split (1000 samples) as
  scripts/bench/mmgp.py fits it (24 shape and 64 field modes, outputs scaled by a power law of
  the input scalars, 2 optimiser restarts, 200 posterior draws); PLAID's RRMSE of ``u`` and
  ``von_mises`` on the large test split against the mean-field baseline.
- ``mpm_water_2d``: GIOROM trained as scripts/bench/giorom.py trains its water model (its
  ``bench`` size, CPU preset, 5 % of the particles) for ``--train-seconds`` of CPU (3600;
  --quick 60); rollout position MSE and RMSE against persistence (particles held still).
- ``ode_systems``: PROSE trained as scripts/bench/prose.py trains its main model (Lorenz,
  Thomas, Rossler; size ``lts_medium``) for ``--train-seconds`` of CPU (3600; --quick 60); data
  relative L2 against holding the last observed value, and the symbolic metrics.
- ``cylinder_flow``: packages a MeshGraphNet trained by scripts/bench/mgn_cylinder.py
  (``--checkpoint``, with that run's ``--metrics-json``); the rollout correction the JSON was
  measured with is stored in the model, so ``sim eval zoo:cylinder_flow`` rolls out as measured.

``--quick``: a toy entry in seconds to a minute (a few samples, seconds of training) for tests;
it must go to an ``--out`` outside the package. Everything runs on one torch thread; training
budgets and ``train_cpu_hours`` are this process's CPU time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "scripts" / "bench"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sim.errors import SimError  # noqa: E402

ZOO = ROOT / "sim" / "zoo" / "models"  # the zoo of this source tree (sim.zoo.ZOO_DIR when sim runs from it)
QUICK_SIZE = "zoo_quick"  # a size added to the recipe at run time by --quick (not in the recipe file)


@dataclass
class Built:
    """What a builder made in the staging folder, and what the entry and its card say about it."""

    family: str
    model: str  # file name in the folder
    recipe: str
    size: str
    data_seed: int
    data_params: dict[str, Any]  # the generator parameters of the test split (a fresh case is drawn with them)
    splits: dict[str, int]
    train_cpu_hours: float
    metrics: dict[str, float]
    rows: list[tuple[str, str, str | None]]  # card table: (what, metric key, baseline metric key)
    title: str
    description: str
    baseline: str
    config: dict[str, Any]  # the training configuration shown in the card
    usage: str
    limits: list[str]
    notes: list[str] = field(default_factory=list)
    size_source: str = ""  # where a size that is not in the recipe file is defined
    extra: dict[str, Any] = field(default_factory=dict)  # more keys of entry.yaml


# --------------------------------------------------------------------------- shared pieces
def recipe_params(recipe: Any, size: str, split: str = "test") -> dict[str, Any]:
    """The merged generator parameters of one split of a size."""
    for sp in recipe.splits(size):
        if sp.name == split:
            return plain(sp.params)
    raise SimError(f"size {size!r} has no split {split!r}", recipe.path)


def split_counts(recipe: Any, size: str, names: tuple[str, ...] = ("train", "test")) -> dict[str, int]:
    return {sp.name: sp.count for sp in recipe.splits(size) if sp.name in names}


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, tuples and paths as YAML-safe Python values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def finite(value: Any) -> Any:
    """A metric as entry.yaml stores it: one that is not finite (e.g. the error of equations that do
    not parse) is null, as in ``sim eval --json``."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


HALF_ABOVE_MB = 4.0  # checkpoints larger than this in float32 ship their weights as float16


def package_checkpoint(src: str | Path, dst: Path, correction: str | None = None) -> dict[str, Any]:
    """Copy a checkpoint without its training state (optimiser, scheduler, RNG): the format,
    the model, its weights and normalisers, and the training configuration only. ``correction``:
    the rollout correction stored in a mesh model's config (:func:`sim.families.mesh.set_correction`).
    Weights of models above ``HALF_ABOVE_MB`` MB are stored as float16 (the metrics are measured
    on the file written, so they are the shipped model's), and the archive is deflated (lossless).
    Returns the source's payload."""
    from sim.train.checkpoint import load_model, save_checkpoint

    model, payload = load_model(src)
    if correction is not None:
        from sim.families.mesh import set_correction

        set_correction(model, correction)
    config = (payload.get("train") or {}).get("config")
    mb = sum(v.numel() * v.element_size() for v in model.state_dict().values()) / 1e6
    save_checkpoint(dst, model, None if config is None else {"config": config}, half=mb > HALF_ABOVE_MB,
                    compress=True)
    return payload


def mean_field(model: Any, mesh: Any, name: str) -> np.ndarray:
    """MMGP's mean-field baseline on ``mesh``, (N, c): the mean of the training fields on the
    common mesh (``field_means_``, unscaled), transferred to the mesh's nodes as MMGP transfers
    its predictions (through both meshes' morphing onto the disk)."""
    from sim.models.mmgp import floater_map, p1_transfer

    common = model.field_means_[name].reshape(len(model.common_points_), model.field_components_[name])
    if not model.morph:
        return common
    morphed = floater_map(mesh.points, mesh.cells["triangle"], model.pins)
    return np.asarray(p1_transfer(model.common_morphed_, model.common_triangles_, morphed) @ common)


def _bench() -> None:
    """Make the benchmark scripts importable (``import giorom``): the entries are trained as they
    train their models, by the same code."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))


def _recipe(name: str) -> Any:
    from solvers.recipes import load_recipe

    return load_recipe(ROOT / "datasets" / f"{name}.yaml")


def _generate(recipe: Any, size: str, out: Path | None, workers: int) -> dict[str, Path]:
    from solvers.recipes import generate

    return generate(recipe, size, out=out, workers=workers, progress=True)


# options an entry does not take, and why (refused before anything is generated or trained)
REFUSED = {
    "elasticity_shapes": (("train_seconds", "checkpoint", "metrics_json"), "MMGP is fitted, not trained for a budget"),
    "mpm_water_2d": (("checkpoint", "metrics_json"), "it trains its own model"),
    "ode_systems": (("checkpoint", "metrics_json"), "it trains its own model"),
    "cylinder_flow": (("quick", "train_seconds", "seed"),
                      "it packages a model trained by scripts/bench/mgn_cylinder.py: give --checkpoint and "
                      "--metrics-json"),
}


def check_options(args: argparse.Namespace) -> None:
    """Refuse options that do not apply to the entry, or values that cannot work, before any work."""
    flags, why = REFUSED[args.name]
    given = [f"--{f.replace('_', '-')}" for f in flags if getattr(args, f) not in (None, False)]
    if given:
        raise SimError(f"{args.name}: {', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply ({why})")
    if args.name == "cylinder_flow" and not (args.checkpoint and args.metrics_json):
        raise SimError("cylinder_flow packages a trained model: give --checkpoint (e.g. the checkpoint.pt of a "
                       "scripts/bench/mgn_cylinder.py run) and --metrics-json (that run's --json)")
    if args.quick and not args.out:
        raise SimError("--quick builds a toy entry: give --out (a folder outside the package's zoo)")
    if args.train_seconds is not None and args.train_seconds <= 0:
        raise SimError(f"--train-seconds must be > 0, got {args.train_seconds}")
    if args.workers < 1:
        raise SimError(f"--workers must be >= 1, got {args.workers}")


# --------------------------------------------------------------------------- elasticity_shapes: MMGP
def build_elasticity(args: argparse.Namespace, stage: Path, work: Path) -> Built:
    _bench()
    import mmgp as bench  # scripts/bench/mmgp.py: its fields, scalars and reader

    from sim.families import get_family
    from sim.families.steady import field_evaluation
    from sim.models.mmgp import MMGP

    recipe = _recipe("elasticity_shapes")
    size, out = "large", None  # 1000 training samples: MMGP's error still falls with more of them
    if args.quick:
        size, out = QUICK_SIZE, work / "data"
        recipe.sizes[size] = {"params": {"mesh_size": 0.06}, "splits": {"train": 8, "test": 4}}
    paths = _generate(recipe, size, out, args.workers)
    train, test = bench.load(paths["train"]), bench.load(paths["test"])
    scal = lambda ms, k: np.array([m.field_data[k][0] for m in ms])  # noqa: E731
    params = {"shape_modes": 24, "field_modes": 64, "n_restarts": 2, "n_draws": 200, "random_state": args.seed,
              "scaling": "power"}  # scripts/bench/mmgp.py's defaults
    print(f"fitting MMGP on {len(train)} samples ...", flush=True)
    c0 = time.process_time()
    model = MMGP(**params).fit(train, {k: scal(train, k) for k in bench.INPUTS},
                               {f: [m.point_data[f] for m in train] for f in bench.FIELDS},
                               {k: scal(train, k) for k in bench.SCALARS})
    cpu = time.process_time() - c0
    model.save(stage / "model.npz")

    shipped = MMGP.load(stage / "model.npz")  # measure what ships
    fitted = get_family("mmgp").evaluate(shipped, paths["test"], None).summary
    fields = list(bench.FIELDS)
    base = field_evaluation(lambda mesh, _s: {f: mean_field(shipped, mesh, f) for f in fields}, paths["test"], None,
                            fields, list(bench.INPUTS)).summary
    metrics = {k: fitted[k] for k in ("rrmse_fields", *[f"rrmse_{f}" for f in fields], "coverage95")}
    metrics.update({f"baseline_{k}": base[k] for k in ("rrmse_fields", *[f"rrmse_{f}" for f in fields])})
    return Built(
        family="mmgp", model="model.npz", recipe=recipe.name, size=size, data_seed=recipe.seed,
        data_params=recipe_params(recipe, size), splits=split_counts(recipe, size), train_cpu_hours=cpu / 3600,
        metrics=metrics,
        rows=[("RRMSE, mean of the fields", "rrmse_fields", "baseline_rrmse_fields"),
              *[(f"RRMSE of `{f}`", f"rrmse_{f}", f"baseline_rrmse_{f}") for f in fields],
              ("95 % interval coverage (nodes)", "coverage95", None)],
        title="MMGP for plane-stress plates with notches",
        description="MMGP (mesh morphing + POD + Gaussian processes): the displacement u and von Mises stress "
                    "of a notched plate under tension, on the plate's own triangle mesh, from its shape and E, nu, "
                    "load; with a predictive std per node and the output scalars max_abs_uy_top, max_von_mises.",
        baseline="mean field: the mean of the training fields on MMGP's common mesh, transferred to each test "
                 "mesh as MMGP transfers its predictions",
        config={"model": "sim.models.mmgp.MMGP", **params, "inputs": list(bench.INPUTS), "fields": fields,
                "output_scalars": list(bench.SCALARS), "train_samples": len(train)},
        usage='grid = sim.load("zoo:{name}").predict(mesh, E=100.0, nu=0.3, load=1.0)  # a 2D triangle mesh\n'
              "grid.point_data[\"u\"], grid.point_data[\"u_std\"], grid.point_data[\"von_mises\"]",
        limits=["2D plane-stress plates of the recipe's family (bottom clamped, uniform traction on top) with E, nu "
                "and load inside the training ranges; other shapes (test_ellipse, test_wedge) are out of "
                "distribution: the predictive std grows there (ood_std_ratio in docs/results/mmgp.json), the error "
                "too.",
                "The query must be one triangle mesh with a single boundary loop (it is morphed onto the disk).",
                "RRMSE is PLAID's: per sample the RMS error over nodes divided by the sample's largest |value|, "
                "then the RMS over samples."],
        extra={"seed": args.seed, "test_samples": len(test)},
        size_source="scripts/zoo/build.py --quick" if args.quick else "")


# --------------------------------------------------------------------------- mpm_water_2d: GIOROM
def build_water(args: argparse.Namespace, stage: Path, work: Path) -> Built:
    _bench()
    import giorom as bench  # scripts/bench/giorom.py: its data size, configuration, training and metrics
    import torch

    from sim.families import get_family
    from sim.train.checkpoint import load_model

    material, ratio = "water", 0.05
    budget = args.train_seconds or (60.0 if args.quick else 3600.0)
    recipe = _recipe("mpm_water_2d")
    recipe.sizes["bench"] = bench.BENCH_SIZE
    size = "small" if args.quick else "bench"
    root = work / "data" if args.quick else ROOT / "datasets"
    paths, n_grid = bench.dataset(material, args.quick, root)
    cfg = bench.configure("giorom", paths, material, n_grid, ratio, work / "runs")
    cfg.train.seed = args.seed
    torch.manual_seed(args.seed)
    c0 = time.process_time()
    ckpt, summary = bench.train_model(cfg, budget, probe_steps=20)  # the probe's steps count: they were spent
    cpu = time.process_time() - c0
    package_checkpoint(ckpt, stage / "model.pt")

    model, _ = load_model(stage / "model.pt")
    trajs = bench.test_trajectories(paths["test"])
    mse, sparse_mse, persistence_mse = bench.rollout_mse(model, trajs)
    ev = get_family("particle").evaluate(model, paths["test"], None).summary
    metrics = {"rollout_mse": mse, "rollout_mse_sparse": sparse_mse, "rmse_all": ev["rmse_all"],
               "persistence_mse": persistence_mse, "persistence_rmse_all": ev["persistence_rmse_all"]}
    frames = len(trajs[0][1]) - bench.HISTORY
    return Built(
        family="particle", model="model.pt", recipe=recipe.name, size=size, data_seed=recipe.seed,
        data_params=recipe_params(recipe, size), splits=split_counts(recipe, size), train_cpu_hours=cpu / 3600,
        metrics=metrics,
        rows=[(f"position MSE over the {frames}-frame rollout (the bench's)", "rollout_mse", "persistence_mse"),
              ("rollout RMSE, all steps (`sim eval`)", "rmse_all", "persistence_rmse_all"),
              ("position MSE of the sparse nodes alone", "rollout_mse_sparse", None)],
        title="GIOROM for 2D MPM water",
        description="GIOROM: Lagrangian dynamics of 2D water (MLS-MPM, free-slip box) stepped on 5 % of the "
                    "particles (farthest-point sampling) and decoded to every particle or any query point of "
                    f"the reference configuration; from the last {bench.HISTORY} frames.",
        baseline="persistence: every particle held at its last observed position",
        config={"network": "giorom", "preset": "cpu", "sample_ratio": ratio, "sampling": "fps",
                "connectivity_radius": round(1.0 / n_grid * ratio ** -0.5, 6), "decoder_neighbors": 16,
                "dense_queries": 512, "noise_std": bench.NOISE[material], "batch_size": 1,
                "optim": "adam 1e-3 -> 1e-5 (exponential)", "train_steps": int(summary["steps"]),
                "budget_cpu_s": budget, "seed": args.seed},
        usage=f'model = sim.load("zoo:{{name}}")\n'
              f"traj = model.rollout(initial, steps={frames})  # initial: a particle Trajectory, >= "
              f"{bench.HISTORY} frames",
        limits=[f"Water blocks in the unit box at this resolution only (n_grid {n_grid}, 2 particles per cell, "
                f"frame step {recipe_params(recipe, size)['frame_dt']}): the connectivity radius and the "
                "statistics are those of this particle spacing.",
                f"Measured on {len(trajs)} test trajector{'y' if len(trajs) == 1 else 'ies'}: a small sample; the "
                "error grows along the rollout."],
        extra={"seed": args.seed, "train_steps": int(summary["steps"]), "test_trajectories": len(trajs)},
        size_source="" if args.quick else "scripts/bench/giorom.py (BENCH_SIZE)")


# --------------------------------------------------------------------------- ode_systems: PROSE
def build_odes(args: argparse.Namespace, stage: Path, work: Path) -> Built:
    _bench()
    import prose as bench  # scripts/bench/prose.py: its systems

    from sim.families import train
    from sim.models.prose import PROSE, ODEWindows, PROSECollator
    from sim.models.prose.evaluate import evaluate
    from sim.train import Config
    from sim.train.checkpoint import load_model

    budget = args.train_seconds or (60.0 if args.quick else 3600.0)
    systems = list(bench.BENCH_SYSTEMS)
    recipe = _recipe("ode_systems")
    size, out = "lts_medium", None
    if args.quick:
        size, out = QUICK_SIZE, work / "data"
        recipe.sizes[size] = {"params": {"systems": systems}, "splits": {"train": 256, "test": 24}}
    paths = _generate(recipe, size, out, args.workers)
    probe = PROSE(max_dim=6)  # its vocabulary, to read the data
    train_set = ODEWindows(paths["train"], probe.vocab, systems=systems)
    test_set = ODEWindows(paths["test"], probe.vocab, systems=systems)
    max_dim = max(s.dim for s in list(train_set) + list(test_set))
    run = work / "runs" / "prose"
    if (run / "checkpoint.pt").exists():  # the trainer refuses to overwrite a run it is not asked to resume
        (run / "checkpoint.pt").unlink()
    # the main run of scripts/bench/prose.py (its train_cfg with the CPU preset)
    cfg_dict = {
        "model": {"family": "prose", "network": "prose", "preset": "cpu", "network_args": {"max_dim": max_dim},
                  "family_args": {"data_noise": 0.0, "p_drop": 0.1, "systems": systems}},
        "data": {"train": str(paths["train"]), "batch_size": 32},
        "optim": {"name": "adamw", "lr": 1e-3, "schedule": "inverse_sqrt", "warmup_steps": 300,
                  "weight_decay": 1e-4, "grad_clip": 1.0},
        "train": {"steps": 10**9, "max_seconds": budget, "clock": "process", "out": str(run), "log_every": 100,
                  "checkpoint_every": 1000, "seed": args.seed}}
    c0 = time.process_time()
    summary = train(Config.from_dict(cfg_dict), progress=True)
    cpu = time.process_time() - c0
    package_checkpoint(summary["checkpoint"], stage / "model.pt")

    model, _ = load_model(stage / "model.pt")
    collator = PROSECollator(model.vocab, model.max_dim, train_set.input_points, symbols="noisy",
                             pool=train_set.term_pool(), data_noise=0.0, seed=12345)
    ev = evaluate(model, test_set, collator, beam_size=1, integrate_equations=True, progress=True)
    keys = ("data_rel_l2_mean", "data_rel_l2_median", "baseline_rel_l2", "valid_fraction", "skeleton_match",
            "expr_rel_l2_median", "integrated_rel_l2_median")
    metrics = {k: ev[k] for k in keys}
    n_in = train_set.input_points
    return Built(
        family="prose", model="model.pt", recipe=recipe.name, size=size, data_seed=recipe.seed,
        data_params=recipe_params(recipe, size), splits=split_counts(recipe, size), train_cpu_hours=cpu / 3600,
        metrics=metrics,
        rows=[("data relative L2 of the predicted future, mean", "data_rel_l2_mean", "baseline_rel_l2"),
              ("data relative L2, median", "data_rel_l2_median", None),
              ("equations that parse and are finite (valid fraction)", "valid_fraction", None),
              ("skeleton match", "skeleton_match", None),
              ("vector-field relative L2 of the equations, median", "expr_rel_l2_median", None),
              ("the equations integrated from the first state, rel. L2, median", "integrated_rel_l2_median", None)],
        title="PROSE for Lorenz, Thomas and Rossler",
        description=f"PROSE (multimodal transformer): from the first {n_in} of 192 points of an ODE trajectory "
                    "(t in [0, 2]) and a guess of its equations, the future at any query time in (2, 6] and "
                    f"the equations as symbols; systems {', '.join(systems)} with parameters within +/-10 % of "
                    "nominal.",
        baseline="persistence: the last observed value held constant over the predicted window",
        config={"model": cfg_dict["model"], "data": {"batch_size": 32, "train_trajectories": len(train_set)},
                "optim": cfg_dict["optim"], "train": {k: v for k, v in cfg_dict["train"].items() if k != "out"},
                "train_steps": int(summary["steps"])},
        usage=f'future, equations = sim.load("zoo:{{name}}").predict((times, values))  # values (T, d), T = {n_in}',
        limits=["The numbers are measured with a noisy guess of the equations as input (a skeleton term deleted "
                "with probability 0.15 and one inserted with probability 0.15, as in training); without a guess or "
                "with the true equations they differ (scripts/bench/prose.py measures both).",
                f"Only the systems {', '.join(systems)}, their parameter ranges and initial conditions in "
                "[-2, 2]^d; the observed window must have the training spacing (t_end 6 over 192 points).",
                "Chaotic systems: the data error grows with the horizon; the mean is over the whole window."],
        extra={"seed": args.seed, "train_steps": int(summary["steps"]), "test_trajectories": len(test_set)},
        size_source="scripts/zoo/build.py --quick" if args.quick else "")


# --------------------------------------------------------------------------- cylinder_flow: MeshGraphNet
CONFIG_KEYS = ("preset", "noise_std", "scalars", "pushforward", "history")  # the bench JSON and the checkpoint agree
CYLINDER_KEYS = ("rmse_1", "rmse_50", "rmse_all", "persistence_rmse_50", "persistence_rmse_all",
                 "shedding_freq_err_median", "mean_field_rrmse", "fluct_rrmse")


def _shown(path: Path, out: Path) -> str:
    """``path`` as a card shows it: relative to the source tree inside it, else under ``OUT`` (the
    bench's output folder, ``out``) so no machine's folders appear in a shipped card."""
    path = path.resolve()
    for base, name in ((ROOT, None), (out.resolve(), "OUT")):
        if path.is_relative_to(base):
            rel = path.relative_to(base).as_posix()
            return rel if name is None else f"{name}/{rel}"
    return path.name


def _bundle(model: dict[str, Any]) -> int:
    """Frames a checkpoint's model configuration predicts per call (``family_args.bundle``, default 1)."""
    return int((model.get("family_args") or {}).get("bundle", 1))


def _train_command(meta: dict[str, Any], seed: int, out: str = "OUT", json_path: str | None = None,
                   n_seeds: int = 1) -> str:
    """The scripts/bench/mgn_cylinder.py command that trains a model (``n_seeds`` of them, seeds
    ``seed``, ``seed`` + 1, ...) as the JSON's run did, its runs under ``out`` and its JSON at
    ``json_path``."""
    cmd = ["python", "scripts/bench/mgn_cylinder.py", "--size", str(meta["size"]), "--preset", str(meta["preset"])]
    if meta.get("train_budget_s") is None and meta.get("train_steps"):
        cmd += ["--train-steps", str(int(round(meta["train_steps"])))]
    elif meta.get("train_budget_s"):
        cmd += ["--train-seconds", f"{meta['train_budget_s']:g}"]
    for key, flag in (("mp_steps", "--mp-steps"), ("latent", "--latent")):
        if meta.get(key):
            cmd += [flag, str(meta[key])]
    cmd += ["--batch-size", str(meta.get("batch_size", 1)), "--noise-std", f"{meta['noise_std']:g}",
            "--scalars", *[str(s) for s in meta.get("scalars") or []], "--pushforward", str(meta["pushforward"]),
            "--history", str(meta.get("history", 1)),
            *(["--bundle", str(meta["bundle"])] if int(meta.get("bundle") or 1) > 1 else []),
            "--correction", str(meta["correction"]), "--seed", str(seed),
            *(["--seeds", str(n_seeds)] if n_seeds > 1 else []), "--out", out]
    if json_path:
        cmd += ["--json", json_path]
    return shlex.join(cmd)


def _cylinder_run(cpath: Path, meta: dict[str, Any], jpath: Path) -> tuple[dict[str, Any], int, int, float, str]:
    """Check that the checkpoint was trained as the metrics JSON says; returns its training
    configuration, seed, steps, training CPU-hours and where the hours come from."""
    from sim.train.checkpoint import read_checkpoint

    payload = read_checkpoint(cpath)
    if payload["model"]["name"] != "mesh_simulator":
        raise SimError(f"a {payload['model']['name']!r} model, not a mesh simulator (MeshGraphNet)", cpath)
    train_state = payload.get("train") or {}
    cfg = train_state.get("config")
    if not cfg:
        raise SimError("the checkpoint has no training configuration (an export?): give the checkpoint.pt the "
                       "bench's run wrote", cpath)
    differ = [f"{k}: checkpoint {cfg['model'].get(k)!r}, JSON {meta[k]!r}" for k in CONFIG_KEYS
              if k in cfg["model"] and cfg["model"].get(k) != meta[k]]
    bundle = _bundle(cfg["model"])
    if bundle != int(meta.get("bundle") or 1):
        differ.append(f"bundle: checkpoint {bundle}, JSON {meta.get('bundle') or 1}")
    steps = int(train_state.get("step", 0))
    if meta.get("train_budget_s") is None and meta.get("train_steps") and steps != int(round(meta["train_steps"])):
        differ.append(f"train steps: checkpoint {steps}, JSON {meta['train_steps']:g}")
    if differ:
        raise SimError(f"the checkpoint was not trained as the metrics JSON {jpath} says ({'; '.join(differ)})", cpath)
    seed = int(cfg["train"].get("seed", 0))
    seeds = meta.get("seeds")
    if seeds and seed not in seeds:
        raise SimError(f"the checkpoint's training seed {seed} is not among the JSON's seeds {seeds}: is it the "
                       "JSON of this model's run?", jpath)
    if train_state.get("seconds") is not None and cfg["train"].get("clock") == "process":
        return cfg, seed, steps, float(train_state["seconds"]) / 3600, "the checkpoint's training CPU time"
    if meta.get("train_cpu_hours") and seeds:
        return cfg, seed, steps, float(meta["train_cpu_hours"]) / len(seeds), "the JSON's training CPU-hours per seed"
    raise SimError("neither the checkpoint (train.clock: process) nor the metrics JSON (train_cpu_hours, seeds) "
                   "says how much CPU time the training took", cpath)


def build_cylinder(args: argparse.Namespace, stage: Path, work: Path) -> Built:
    """One checkpoint, or several (the seeds of one bench run) packaged as a deep ensemble whose
    metrics are the run's ``ensemble_*`` figures and ``spread_error_spearman``."""
    _bench()
    from _mesh_models import ENSEMBLE_KEYS  # the ensemble figures scripts/bench/mgn_cylinder.py writes

    from sim.train.checkpoint import save_ensemble

    jpath, cpaths = Path(args.metrics_json), [Path(c) for c in args.checkpoint]
    try:
        meta = json.loads(jpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SimError(f"not a readable metrics JSON ({exc})", jpath) from None
    if not isinstance(meta, dict) or meta.get("benchmark") != "mgn_cylinder":
        raise SimError("not the JSON of scripts/bench/mgn_cylinder.py (no 'benchmark': 'mgn_cylinder')", jpath)
    ensemble = len(cpaths) > 1
    need = [f"ensemble_{k}" for k in ENSEMBLE_KEYS] + ["spread_error_spearman"] if ensemble else []
    missing = [k for k in ("size", "correction", *CONFIG_KEYS, *CYLINDER_KEYS, *need) if k not in meta]
    if missing:
        raise SimError(f"the metrics JSON lacks {', '.join(missing)}", jpath)
    runs = [_cylinder_run(c, meta, jpath) for c in cpaths]
    cfg, seed, steps, _, hours_note = runs[0]
    member_seeds = [r[1] for r in runs]
    seeds = meta.get("seeds")
    hours = sum(r[3] for r in runs)
    if ensemble:
        if sorted(member_seeds) != sorted(seeds or []):
            raise SimError(f"an ensemble packages every seed its metrics were measured with: the JSON's seeds are "
                           f"{seeds}, the checkpoints' {member_seeds}", jpath)
        metrics = {**{k: meta.get(f"ensemble_{k}") for k in ENSEMBLE_KEYS}, "rmse_1": None,
                   "persistence_rmse_50": meta["persistence_rmse_50"],
                   "persistence_rmse_all": meta["persistence_rmse_all"],
                   "spread_error_spearman": meta["spread_error_spearman"]}
        which = f"the deep ensemble of the bench run's seeds {seeds} (its ensemble_* figures)"
        members = []
        for c, s in zip(cpaths, member_seeds):
            package_checkpoint(c, stage / f"member_s{s}.pt", correction=str(meta["correction"]))
            members.append(stage / f"member_s{s}.pt")
        save_ensemble(stage / "model.json", members)
        model_file = "model.json"
    else:
        if seeds:  # the JSON's run trained these seeds: the metrics of the packaged one are its seed's
            measured = meta.get("per_seed", {}).get(str(seed)) or meta
            which = f"seed {seed} of the bench run's seeds {seeds}"
        else:  # the JSON evaluated a given checkpoint (--checkpoint): its numbers are that model's
            measured, which = meta, "the bench's evaluation of this checkpoint (--checkpoint)"
        metrics = {k: measured.get(k, meta.get(k)) for k in CYLINDER_KEYS}
        package_checkpoint(cpaths[0], stage / "model.pt", correction=str(meta["correction"]))
        model_file = "model.pt"
    # the bench writes its runs (checkpoints) under --out: the card names the files relative to it
    out = Path(os.path.commonpath([*(c.resolve() for c in cpaths), jpath.resolve().parent]))
    shown = {"checkpoints": [_shown(c, out) for c in cpaths], "json": _shown(jpath, out)}
    command = shlex.join(["python", "scripts/zoo/build.py", "cylinder_flow", "--checkpoint", *shown["checkpoints"],
                          "--metrics-json", shown["json"]])
    train_data = (cfg.get("data") or {}).get("train")
    train_data = None if train_data is None else _shown(Path(train_data), out)

    recipe = _recipe("cylinder_flow")
    size = str(meta["size"])
    m = cfg["model"]
    ratio = {h: metrics[f"rmse_{h}"] / metrics[f"persistence_rmse_{h}"] for h in ("50", "all")
             if metrics[f"rmse_{h}"] is not None and metrics[f"persistence_rmse_{h}"]}
    length = int(recipe_params(recipe, size).get("num_steps", 0)) - int(m.get("history") or 1)
    drift = ("Rollouts drift: " + ", ".join(f"{'over all ' + str(length) if h == 'all' else 'at ' + h} steps the "
                                            f"RMSE is {r:.2f} x persistence's" for h, r in ratio.items())
             + "; see the flow metrics for the shedding frequency and the mean flow.")
    bundle = _bundle(m)
    detail = ("(CPU preset, latent 64, 6 message-passing steps"
              + (f", {m.get('history')} frames in" if int(m.get("history") or 1) > 1 else "")
              + (f", {bundle} frames out per call" if bundle > 1 else "") + ")")
    what = (f"A deep ensemble of {len(cpaths)} MeshGraphNets {detail} trained from seeds "
            f"{', '.join(map(str, member_seeds))} on the same data (rollouts give the members' mean and, as "
            "`velocity_std`, their spread per node and step)" if ensemble else f"MeshGraphNet {detail}")
    rows = [("rollout RMSE of the velocity, step 1", "rmse_1", None),
            ("rollout RMSE, steps 1-50", "rmse_50", "persistence_rmse_50"),
            ("rollout RMSE, all steps", "rmse_all", "persistence_rmse_all"),
            ("shedding-frequency relative error, median", "shedding_freq_err_median", None),
            ("mean-flow relative RMSE", "mean_field_rrmse", None),
            ("fluctuation (r.m.s. field) relative RMSE", "fluct_rrmse", None)]
    if ensemble:
        rows = rows[1:] + [("Spearman correlation of the members' spread with the error", "spread_error_spearman",
                            None)]
    train_command = _train_command(meta, min(member_seeds), "OUT", shown["json"], len(member_seeds))
    return Built(
        family="mesh", model=model_file, recipe=recipe.name, size=size, data_seed=recipe.seed,
        data_params=recipe_params(recipe, size), splits=split_counts(recipe, size, ("train", "valid", "test")),
        train_cpu_hours=hours, metrics={k: (None if v is None else float(v)) for k, v in metrics.items()},
        rows=rows,
        title="MeshGraphNet " + ("ensemble " if ensemble else "") + "for flow past a cylinder",
        description=f"{what}: the velocity of 2D incompressible flow past a cylinder in a channel (Re 50-400, "
                    "varied cylinder and inflow, each trajectory meshed on its own), stepped by 0.01 s from the "
                    f"current velocity and the viscosity nu; rollouts apply the {meta['correction']} correction "
                    "after every step.",
        baseline="persistence: the velocity of the start held over the rollout",
        config={"network": m.get("network"), "preset": m.get("preset"), "network_args": m.get("network_args"),
                "fields": m.get("fields"), "target": m.get("target"), "noise_std": m.get("noise_std"),
                "scalars": m.get("scalars"), "pushforward": m.get("pushforward"), "history": m.get("history"),
                **({"bundle": bundle} if bundle > 1 else {}), "optim": cfg.get("optim"), "train_steps": steps,
                **({"seeds": member_seeds} if ensemble else {"seed": seed}),
                "rollout_correction": meta["correction"]},
        usage='traj = sim.load("zoo:{name}").rollout(initial, steps=100)  # initial: a Trajectory with '
              "velocity, node types and params nu",
        limits=["Channel flow past one cylinder at the recipe's mesh resolution (mesh_size 0.028, 0.009 at the "
                "cylinder), Re 50-400; boundary values (inflow, walls) come from the data or the caller.",
                drift,
                "Trained on a shared 2-core CPU machine: a small model and budget, not the paper's."],
        notes=[f"Metrics: {which}, from {jpath.name} (commit {meta.get('commit')}, {meta.get('date')}); test split "
               f"of {meta.get('test_trajectories')} trajectories, rolled out from their first stored step with "
               "true boundary values.",
               f"train_cpu_hours: {hours_note}" + (", summed over the members" if ensemble else "")
               + f". Training data: {train_data}."],
        extra={**({"seeds": member_seeds} if ensemble else {"seed": seed}), "train_steps": steps,
               "train_command": train_command, "command": command,
               "train_commit": meta.get("commit"), "bench_seeds": seeds, "correction": str(meta["correction"]),
               "train_data": train_data,
               "test_trajectories": meta.get("test_trajectories")})


BUILDERS: dict[str, Callable[[argparse.Namespace, Path, Path], Built]] = {
    "elasticity_shapes": build_elasticity,
    "mpm_water_2d": build_water,
    "ode_systems": build_odes,
    "cylinder_flow": build_cylinder,
}


# --------------------------------------------------------------------------- entry.yaml and the card
def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


CARD = """# {name}: {title}

{description}

| | |
|---|---|
| family | `{family}` |
| model file | `{model}` ({size_mb:.2f} MB in all) |
| data | recipe `{recipe}` (datasets/{recipe}.yaml), size `{size}` ({splits}{size_note}), recipe seed {data_seed} |
| {trained} | {train_cpu_hours:.3g} CPU-hours ({train_cpu_s:.0f} CPU-s of this process, one torch thread) |
| built | {date}, commit {commit} |

## Use

```python
import sim
{usage}
```

or `sim eval zoo:{name} DATA.h5` on a store of the recipe's kind.

## Training configuration

```yaml
{config}```

## Reproduce

```
{command}
```
{train_command}
## Metrics

On the recipe's test split ({n_test}), against the baseline: {baseline}.

| metric | model | baseline |
|---|---|---|
{table}
{notes}
## Limits

{limits}
"""


def write_entry(name: str, built: Built, stage: Path, command: str) -> None:
    """entry.yaml and card.md of ``built`` in the staging folder."""
    import yaml

    _bench()
    from _common import COMMIT

    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    size_mb = sum(p.stat().st_size for p in stage.iterdir() if p.is_file()) / 1e6  # an ensemble's members too
    entry = {"name": name, "family": built.family, "model": built.model, "recipe": built.recipe, "size": built.size,
             "data_seed": built.data_seed, "train_cpu_hours": round(built.train_cpu_hours, 4),
             "metrics": {k: finite(v) for k, v in plain(built.metrics).items()}, "command": command,
             "description": built.description, "baseline": built.baseline, "splits": built.splits,
             "data_params": plain(built.data_params), "commit": COMMIT, "date": date, **plain(built.extra)}
    (stage / "entry.yaml").write_text(yaml.safe_dump(entry, sort_keys=False, width=120))
    table = "\n".join(f"| {what} | {_fmt(built.metrics.get(key))} | "
                      f"{_fmt(built.metrics.get(base)) if base else ''} |" for what, key, base in built.rows)
    n_test = built.extra.get("test_samples") or built.extra.get("test_trajectories") or built.splits.get("test")
    units = ("sample", "samples") if built.family == "mmgp" else ("trajectory", "trajectories")
    train_command = built.extra.get("train_command")
    card = CARD.format(
        name=name, title=built.title, description=built.description, family=built.family, model=built.model,
        size_mb=size_mb, recipe=built.recipe, size=built.size,
        splits=", ".join(f"{k} {v}" for k, v in built.splits.items()), data_seed=built.data_seed,
        train_cpu_hours=built.train_cpu_hours, train_cpu_s=built.train_cpu_hours * 3600,
        trained="fitting" if built.family == "mmgp" else "training",
        size_note=f"; a size defined by {built.size_source}, not in the recipe file" if built.size_source else "",
        date=date, commit=COMMIT or "unknown",
        usage=built.usage.replace("{name}", name), config=yaml.safe_dump(plain(built.config), sort_keys=False),
        command=command,
        train_command=(f"\nwhere the checkpoint{'s were' if built.extra.get('seeds') else ' was'} trained by\n\n"
                       f"```\n{train_command}\n```\n" if train_command else ""),
        n_test=f"{n_test} {units[n_test != 1]}", baseline=built.baseline,
        table=table, notes="".join(f"\n{n}\n" for n in built.notes),
        limits="\n".join(f"- {x}" for x in built.limits))
    (stage / "card.md").write_text(card)


def check_entry(folder: Path) -> None:
    """The written folder reads back: entry.yaml has every key :mod:`sim.zoo` needs, the model loads."""
    import yaml

    import sim
    from sim.zoo import REQUIRED

    meta = yaml.safe_load((folder / "entry.yaml").read_text())
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise SimError(f"the entry written lacks {', '.join(missing)}", folder / "entry.yaml")
    sim.load(folder / meta["model"])


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(BUILDERS), help="the entry (named after its recipe)")
    ap.add_argument("--quick", action="store_true", help="a toy entry in seconds (tests); needs --out")
    ap.add_argument("--train-seconds", type=float, help="training budget in CPU seconds (default 3600, quick 60)")
    ap.add_argument("--seed", type=int, help="training seed (default 0)")
    ap.add_argument("--out", help="the entry's folder (default sim/zoo/models/NAME)")
    ap.add_argument("--workers", type=int, default=1, help="data generation processes (default 1)")
    ap.add_argument("--checkpoint", nargs="+",
                    help="cylinder_flow: the trained checkpoint to package; several (the seeds of the metrics "
                         "JSON's run) make a deep ensemble")
    ap.add_argument("--metrics-json", help="cylinder_flow: the JSON scripts/bench/mgn_cylinder.py wrote for it")
    return ap.parse_args(argv)


def build(argv: list[str] | None = None) -> Path:
    """Build the entry ``argv`` asks for; returns its folder."""
    from sim.threads import set_threads

    set_threads(1)  # before torch loads; budgets are CPU seconds of one core
    args = parse_args(argv)
    command = shlex.join(["python", "scripts/zoo/build.py", *(sys.argv[1:] if argv is None else argv)])
    from sim.mesh.atomic import clean_stale, staging_dir, swap_in

    check_options(args)
    out = Path(args.out) if args.out else ZOO / args.name
    if args.name != "cylinder_flow" and args.seed is None:
        args.seed = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out.parent)
    stage = staging_dir(out)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)  # mkdtemp's private folder becomes a package folder others read
    # quick builds keep their data and runs in a temporary folder; full ones their runs (logs) under
    # bench_results/zoo/NAME, made when a builder writes there
    work = Path(tempfile.mkdtemp(prefix=f"zoo-{args.name}-")) if args.quick else ROOT / "bench_results" / "zoo" / \
        args.name
    t0 = time.perf_counter()
    try:
        built = BUILDERS[args.name](args, stage, work)
        # a builder that packages files made elsewhere says how to name them portably
        write_entry(args.name, built, stage, built.extra.pop("command", command))
        check_entry(stage)
        swap_in([(stage, out)])
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if args.quick:
            shutil.rmtree(work, ignore_errors=True)
    model = out / built.model
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s: {built.model} {model.stat().st_size / 1e6:.2f} MB, "
          f"{sum(f.stat().st_size for f in out.iterdir()) / 1e6:.2f} MB in all; "
          f"training {built.train_cpu_hours * 3600:.0f} CPU-s")
    for k, v in built.metrics.items():
        print(f"  {k:<28} {_fmt(v)}")
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        build(argv)
    except SimError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
