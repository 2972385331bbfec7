"""The second set of plugin measurements of ``plugins.py`` (``--set b``): structural features,
the subgraph layer, hypernetwork conditioning, pruning, harmful-data detection and the random
spatial network generator, each against the plain model at equal CPU budget over seeds.

Tasks run in worker processes (one torch thread each, ``--jobs`` at a time); each writes its
metrics to ``result.json`` in its run folder and is skipped when that file exists, so an
interrupted run continues where it stopped.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

# the mgn_cylinder default (viscosity as a node input, noise 0.05, 2-step pushforward) is the base
BASE_MODEL = {"network": "meshgraphnet", "preset": "cpu", "fields": ["velocity"], "target": "delta",
              "noise_std": 0.05, "pushforward": 2, "scalars": ["nu"]}
VARIANTS_B: dict[str, dict[str, Any]] = {
    "base": {},
    "polynomials": {"network_args": {"features": [{"name": "equivariant_polynomials", "degree": 3}]}},
    "graphlets": {"network_args": {"features": ["graphlet_orbits"]}},
    "spen": {"network_args": {"plugins": [{"name": "spen", "hops": 1, "at": [2, 5]}]}},
    "mip_hypernet": {"network_args": {"hypernet": {"name": "mip_hypernet", "hidden": 32}}},
    "plain_hypernet": {"network_args": {"hypernet": {"name": "mip_hypernet", "hidden": 32, "mip": False}}},
}
KEYS = ("rmse_1", "rmse_50", "rmse_all", "mean_field_rrmse", "fluct_rrmse", "shedding_freq_err_median")


def model_config(name: str, train: Path, valid: Path | None, out: Path, budget: float, seed: int) -> dict:
    model = {**BASE_MODEL, **{k: v for k, v in VARIANTS_B[name].items() if k != "network_args"},
             "network_args": dict(VARIANTS_B[name].get("network_args", {}))}
    return {"model": model,
            "data": {"train": str(train), "batch_size": 1, **({"valid": str(valid)} if valid else {})},
            "optim": {"name": "adam", "lr": 1e-3, "lr_final": 1e-5, "schedule": "exponential"},
            "train": {"steps": 1, "seed": seed, "max_seconds": budget, "clock": "process", "out": str(out),
                      "log_every": 50, "checkpoint_every": 10**9, "normalizer_accumulation_steps": 500,
                      "valid_every": 0}}


def _threads() -> None:
    import torch

    torch.set_num_threads(1)


def _loss_curve(run: Path) -> dict[str, float]:
    """Training loss (mean of the logged values) around 25, 50 and 100 % of the run."""
    rows = [r.split(",") for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    steps = np.array([float(r[0]) for r in rows])
    loss = np.array([float(r[1]) for r in rows])
    out = {}
    for q in (0.25, 0.5, 1.0):
        sel = (steps > (q - 0.1) * steps[-1]) & (steps <= q * steps[-1])
        out[f"loss_at_{int(q * 100)}"] = float(loss[sel].mean()) if sel.any() else float("nan")
    return out


def _fresh(run: Path) -> dict | None:
    """A finished task's metrics (its ``result.json``), or None after clearing an unfinished run."""
    if (run / "result.json").exists():
        return json.loads((run / "result.json").read_text())
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    return None


def train_task(name: str, seed: int, paths: dict[str, str], out: str, budget: float, correction: str) -> dict:
    _threads()
    from _mesh_models import rollout_metrics

    from sim.families import steps_for_budget, train
    from sim.train import Config

    run = Path(out) / f"{name}_seed{seed}"
    if (cached := _fresh(run)) is not None:
        return cached
    done = run / "result.json"
    cfg = Config.from_dict(model_config(name, Path(paths["train"]), None, run, budget, seed))
    # feature variants: an untimed warm-up that sees every training mesh first, so the step
    # planner does not take the one-time feature computation of each mesh for the cost of a step
    # (the features stay cached in the process for the run itself)
    warm = 0
    if cfg.model.network_args.get("features"):
        from sim.mesh import Store

        with Store(paths["train"]) as st:
            warm = 4 * len(st.names())
    cfg.train.steps = steps_for_budget(cfg, budget, warmup_steps=warm)
    summary = train(cfg, progress=False)
    m = rollout_metrics(run / "checkpoint.pt", paths["test"], correction=correction)
    res = {"name": name, "seed": seed, "train_steps": summary["steps"],
           "train_step_ms": 1e3 * summary["seconds"] / max(1, summary["steps"]),
           "rollout_step_ms": 1e3 * m["rollout_s"] / max(1, m["rollout_steps"]), **_loss_curve(run),
           **{k: m.get(k) for k in KEYS + ("persistence_rmse_50", "persistence_rmse_all")}}
    done.write_text(json.dumps(res))
    return res


def base_eval_task(base: str, paths: dict[str, str], out: str, correction: str) -> dict:
    """The rollout metrics of an external model pruned by the set (``--prune-base``)."""
    _threads()
    from _mesh_models import rollout_metrics

    run = Path(out) / "prune_base_eval"
    if (cached := _fresh(run)) is not None:
        return cached
    m = rollout_metrics(Path(base), paths["test"], correction=correction)
    res = {"checkpoint": base, **{k: m.get(k) for k in KEYS + ("persistence_rmse_50", "persistence_rmse_all")}}
    (run / "result.json").write_text(json.dumps(res))
    return res


def prune_task(method: str, seed: int, paths: dict[str, str], out: str, correction: str, finetune: int,
               meta_steps: int, base: str | None = None) -> dict:
    """Prune the seed's base model of the set (or ``base``, an external checkpoint, with the seed
    varying the metanetwork and the fine-tuning samples), fine-tune, roll out."""
    _threads()
    from _mesh_models import rollout_metrics

    from sim.plugins.pruning import prune_model, step_cpu_seconds
    from sim.train import load_model
    from sim.train.checkpoint import save_checkpoint

    tag = "ext_" if base else ""
    run = Path(out) / f"prune_{tag}{method}_ft{finetune}_m{meta_steps}_seed{seed}"
    if (cached := _fresh(run)) is not None:
        return cached
    done = run / "result.json"
    source = Path(base) if base else Path(out) / f"base_seed{seed}" / "checkpoint.pt"
    model, payload = load_model(source)
    ds = model.step_dataset(paths["train"])
    probe = model.step_dataset(paths["test"], training=False)[0]
    before_ms = 1e3 * step_cpu_seconds(model, probe)
    if method == "none":  # the control: the unpruned model fine-tuned with the same steps and samples
        import time

        import numpy as np
        import torch

        from sim.plugins.pruning import finetune as finetune_steps

        rng, t0 = np.random.default_rng(seed), time.process_time()
        finetune_steps(model, lambda: ds[int(rng.integers(len(ds)))], finetune,
                       generator=torch.Generator().manual_seed(seed))
        model.eval()
        pruned, seconds, params = model, time.process_time() - t0, sum(p.numel() for p in model.parameters())
        extra = {"params_before": params, "params_after": params}
    else:
        res = prune_model(model, ds, 0.5, method=method, meta_steps=meta_steps, finetune_steps=finetune, seed=seed)
        pruned, seconds = res.model, res.seconds
        extra = {"params_before": res.params_before, "params_after": res.params_after, "hidden_after": res.hidden_after}
    after_ms = 1e3 * step_cpu_seconds(pruned, probe)
    save_checkpoint(run / "checkpoint.pt", pruned, payload.get("train"))
    m = rollout_metrics(run / "checkpoint.pt", paths["test"], correction=correction)
    out_res = {"method": method, "seed": seed, "finetune_steps": finetune, "ms_per_step_before": before_ms,
               "ms_per_step_after": after_ms, "speedup": before_ms / after_ms, "prune_cpu_s": seconds, **extra,
               **{k: m.get(k) for k in KEYS}}
    done.write_text(json.dumps(out_res))
    return out_res


def _reversed_copy(src: Path, dst: Path, entries: int, reverse: list[int], drop: set[str] = frozenset()) -> list[str]:
    from sim.mesh import Store, StoreWriter, Trajectory

    names = []
    with Store(src) as s, StoreWriter(dst) as w:
        for i, name in enumerate(s.names()[:entries]):
            if name in drop:
                continue
            tr = s.read(name)
            fields = {k: (np.asarray(v)[::-1].copy() if i in reverse else np.asarray(v))
                      for k, v in tr.point_fields.items()}
            w.append(Trajectory(tr.mesh, tr.times, point_fields=fields, params=tr.params), name=name)
            names.append(name)
    return names


def harmful_task(paths: dict[str, str], out: str, budget: float, entries: int, planted: int, seed: int) -> dict:
    """Plant ``planted`` time-reversed trajectories among the first ``entries`` training ones,
    train, rank with the SGD-influence, and retrain without the top ``planted`` and without as
    many random ones."""
    _threads()
    import torch

    from sim.families import steps_for_budget, train
    from sim.plugins.diagnostics import harmful_samples, valid_rollout_error, validation_starts
    from sim.train import Config, load_model

    root = Path(out) / f"harmful_seed{seed}"
    if (cached := _fresh(root)) is not None:
        return cached
    done = root / "result.json"
    from sim.mesh import Store

    with Store(paths["train"]) as s:
        entries = min(entries, len(s.names()))
    rng = np.random.default_rng(seed)
    reverse = sorted(int(i) for i in rng.choice(entries, planted, replace=False))
    names = _reversed_copy(Path(paths["train"]), root / "train.h5", entries, reverse)
    planted_names = {names[i] for i in reverse}

    def fit(store: Path, tag: str) -> Any:
        cfg = Config.from_dict(model_config("base", store, None, root / tag, budget, seed))
        cfg.train.steps = steps_for_budget(cfg, budget)
        train(cfg, progress=False)
        return load_model(root / tag / "checkpoint.pt")[0]

    model = fit(root / "train.h5", "all")
    t = time.process_time()
    res = harmful_samples(model, root / "train.h5", paths["valid"], samples_per_entry=2, valid_entries=4,
                          valid_steps=10, lr=1e-3, seed=seed)
    influence_s = time.process_time() - t
    top = [n for n, _ in res.ranking()[:planted]]
    clean = [n for n in names if n not in planted_names]
    random_drop = set(rng.choice(names, planted, replace=False).tolist())
    vs = validation_starts(model, paths["valid"], 10, 4)

    def verr(m: Any) -> float:
        with torch.no_grad():
            return float(valid_rollout_error(m, vs, 10))

    errors = {"all": verr(model)}
    for tag, drop in (("without_top", set(top)), ("without_random", random_drop)):
        _reversed_copy(Path(paths["train"]), root / f"{tag}.h5", entries, reverse, drop)
        errors[tag] = verr(fit(root / f"{tag}.h5", tag))
    out_res = {"seed": seed, "entries": entries, "planted": planted, "precision_at_planted":
               len(set(top) & planted_names) / planted, "influence_cpu_s": influence_s,
               "valid_error_all": errors["all"], "valid_error_without_top": errors["without_top"],
               "valid_error_without_random": errors["without_random"], "clean_entries": len(clean),
               "random_dropped_planted": len(random_drop & planted_names)}
    done.write_text(json.dumps(out_res))
    return out_res


def rsn_scaling(sizes: tuple[int, ...], model_sizes: tuple[int, ...]) -> dict:
    """Random spatial networks in 3-D (mean degree 12, a tetrahedral mesh's is about 14): CPU
    seconds to generate, and for ``model_sizes`` the CPU time of one MeshGraphNet step (cpu
    preset, untrained) on them, per node: graphs of any size without a mesher."""
    import torch

    from sim.models.networks.meshgraphnet import MeshGraphNet
    from sim.plugins.generators import random_spatial_network

    _threads()
    out = {}
    for n in sizes:
        t = time.process_time()
        g = random_spatial_network(n, dim=3, mean_degree=12.0, seed=0, scale=1.1 * n ** (-1 / 3))
        out[f"rsn_seconds_{n}"] = time.process_time() - t
        out[f"rsn_mean_degree_{n}"] = float(g.degrees().mean())
        out[f"rsn_edges_{n}"] = int(g.edge_index.shape[1])
        if n in model_sizes:
            torch.manual_seed(0)
            net = MeshGraphNet(5, 4, 3, latent=64, steps=6).eval()
            ei = torch.from_numpy(g.edge_index)
            rel = torch.from_numpy((g.pos[g.edge_index[0]] - g.pos[g.edge_index[1]]).astype(np.float32))
            ea = torch.cat([rel, rel.norm(dim=1, keepdim=True)], dim=1)
            x = torch.randn(n, 5)
            times = []
            with torch.no_grad():
                for _ in range(3):
                    t = time.process_time()
                    net(x, ei, ea)
                    times.append(time.process_time() - t)
            out[f"rsn_mgn_step_s_{n}"] = float(np.median(times))
            out[f"rsn_mgn_us_per_node_{n}"] = 1e6 * float(np.median(times)) / n
    return out


def _agg(rows: list[dict], prefix: str) -> dict:
    out = {}
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float)) and k not in ("seed",)]
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None and np.isfinite(r[k])]
        if vals:
            out[f"{prefix}{k}"] = float(np.mean(vals))
            out[f"{prefix}{k}_std"] = float(np.std(vals))
    return out


def run_set_b(paths: dict[str, Path], out: Path, budget: float, seeds: list[int], jobs: int, correction: str,
              quick: bool, finetune: int | None = None, prune_base: Path | None = None,
              prune_paths: dict[str, Path] | None = None) -> tuple[dict, float]:
    """All set-B measurements; returns (results, training CPU-hours). ``prune_base``: prune that
    checkpoint (trained on ``prune_paths``' train split, rolled out on its test split) instead of
    each seed's base model of the set."""
    p = {k: str(v) for k, v in paths.items()}
    pp = {k: str(v) for k, v in (prune_paths or paths).items()}
    ext = str(prune_base) if prune_base else None
    results: dict[str, Any] = {"set_b_variants": {k: VARIANTS_B[k] for k in VARIANTS_B},
                               "set_b_base_model": BASE_MODEL, "set_b_correction": correction}
    finetune, meta_steps = (finetune or (20 if quick else 2000)), (10 if quick else 50)
    results["prune_finetune_steps"], results["prune_meta_steps"] = finetune, meta_steps
    results["prune_base"] = ext or "each seed's base model of the set"
    results["prune_data"] = str(Path(pp["train"]).parent)
    harm_entries, planted = (4, 1) if quick else (40, 4)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futs = {(n, s): pool.submit(train_task, n, s, p, str(out), budget, correction)
                for s in seeds for n in VARIANTS_B}
        harm = pool.submit(harmful_task, p, str(out), budget, harm_entries, planted, seeds[0])
        rows = {k: f.result() for k, f in futs.items()}
        for n in VARIANTS_B:
            per = [rows[(n, s)] for s in seeds]
            results.update(_agg(per, f"{n}_"))
            results[f"{n}_per_seed"] = {str(r["seed"]): {k: r.get(k) for k in KEYS} for r in per}
            print(f"{n}: rmse_50 {results.get(f'{n}_rmse_50', float('nan')):.4g}, "
                  f"rmse_all {results.get(f'{n}_rmse_all', float('nan')):.4g}", flush=True)
        pf = {(m, s): pool.submit(prune_task, m, s, pp, str(out), correction, finetune, meta_steps, ext)
              for s in seeds for m in ("meta", "magnitude", "none")}
        ext_base = pool.submit(base_eval_task, ext, pp, str(out), correction).result() if ext else None
        prunes = {k: f.result() for k, f in pf.items()}
        harm_res = harm.result()
    for m in ("meta", "magnitude", "none"):
        per = [prunes[(m, s)] for s in seeds]
        name = "finetuned_base" if m == "none" else m  # the control: unpruned, fine-tuned the same
        results.update(_agg(per, f"prune_{name}_"))
        for key in ("rmse_50", "rmse_all"):
            # against the base as trained, and against the base fine-tuned with the same steps (the fair
            # comparison: the pruned model's fine-tuning is extra training the base did not get)
            for ref, suffix in ((lambda s: ext_base if ext_base else rows[("base", s)], "ratio"),
                                (lambda s: prunes[("none", s)], "ratio_vs_finetuned")):
                if m == "none" and suffix == "ratio_vs_finetuned":
                    continue
                ratios = [prunes[(m, s)][key] / ref(s)[key] for s in seeds
                          if prunes[(m, s)].get(key) and ref(s).get(key)]
                results[f"prune_{name}_{key}_{suffix}"] = float(np.mean(ratios)) if ratios else None
                results[f"prune_{name}_{key}_{suffix}_std"] = float(np.std(ratios)) if ratios else None
    if ext_base:
        results.update({f"prune_base_{k}": v for k, v in ext_base.items() if k != "checkpoint"})
    results.update({f"harmful_{k}": v for k, v in harm_res.items()})
    results.update(rsn_scaling((10_000, 100_000) if quick else (10_000, 100_000, 1_000_000),
                               (10_000,) if quick else (10_000, 100_000)))
    results["persistence_rmse_50"] = rows[("base", seeds[0])].get("persistence_rmse_50")
    results["persistence_rmse_all"] = rows[("base", seeds[0])].get("persistence_rmse_all")
    n_train = len(VARIANTS_B) * len(seeds) + 3  # the harmful task trains three models
    prune_s = sum(r["prune_cpu_s"] for r in prunes.values())  # metanetworks and fine-tuning
    return results, (n_train * budget + prune_s) / 3600.0
