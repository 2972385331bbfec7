"""How much faster than our solvers the trained surrogates run, on the same case, and at what error.

    python scripts/bench/solver_speedup.py [--quick] [--json PATH]
        [--cfd-checkpoint CKPT --cfd-data TEST.h5] [--mpm-checkpoint CKPT --mpm-data TEST.h5] [--frames N]
        [--sweep K]

For the first trajectory of each test store:

- solver: the case is rebuilt from the parameters stored with the trajectory (cylinder flow: the
  same geometry re-meshed by gmsh, Reynolds number, inflow and solver step, timed past a short
  warm-up; MPM: the same particles, material and grid from the first frame), then ``--frames``
  stored frames are timed, each with all its solver substeps;
- surrogate: ``sim.load(checkpoint).rollout(...)`` over the whole trajectory, timed per frame;
- error at the end of the rollout: cylinder flow, ``|u_pred - u_true| / |u_true|`` (L2 over nodes
  and components) at the last frame; MPM, ``|x_pred - x_true| / |x_true - x_start|`` at the last
  frame, the position error relative to how far the particles moved during the rollout.

Levers, each measured alone: bfloat16 inference of both models (``--precision bf16``: time,
speedup and final error of the same rollout), on the cylinder model ``torch.compile``
(``Surrogate.set_compile``: the same, timed after a short rollout that compiles, whose CPU
seconds are reported apart) and a parameter sweep (``Surrogate.sweep``:
--sweep K viscosities, 0.8-1.2x the trajectory's, from its first state as one batched graph per
step, against the solver run once per query: CPU seconds per simulated frame of the sweep).

Times are CPU seconds of one thread (torch and BLAS set to one thread), so the ratio does not
depend on other jobs sharing the machine (memory traffic still does: measure on an idle one).
Without checkpoints the script trains small models itself (MeshGraphNet CPU preset, conditioned
on the viscosity, GIOROM CPU preset) for `--train-seconds` each on the small recipes; `--quick`
does that with tiny budgets.

JSON keys: cfd_solver_frame_s, cfd_surrogate_frame_s, cfd_speedup, mpm_solver_frame_s,
mpm_surrogate_frame_s, mpm_speedup, cfd_final_rel_err, mpm_final_rel_err (+ sizes, frames);
mpm_refine and mpm_refined_particles, _solver_frame_s, _surrogate_frame_s, _speedup, _final_rel_err (and the
mpm_refined_hybrid_* lists of --mpm-hybrid below): the MPM case's bodies sampled --mpm-refine times finer per
axis on a grid as much finer (the second particle count; its reference solve is kept in --out; the bench's
GIOROM keeps its sparse nodes as far apart as in training, ``sample_rule: spacing``);
cfd_ and mpm_surrogate_frame_s_bf16, _speedup_bf16, _final_rel_err_bf16; cfd_surrogate_frame_s_compiled,
cfd_speedup_compiled, cfd_final_rel_err_compiled, cfd_compile_s; sweep_queries,
sweep_frame_s, sweep_speedup (null for a model not conditioned on the viscosity);
cfd_scales and per scale (lists) cfd_scale_nodes, cfd_scale_solver_frame_s,
cfd_scale_surrogate_frame_s(_bf16), cfd_scale_speedup(_bf16): the cylinder case meshed --scales
times finer, the solver timed after a warm-up, the surrogate (as trained, applied to the finer
mesh: time only) from the solver's state; diffusion_steps, diffusion_coarse_mesh_size and per size
(--diffusion-sizes, lists) diffusion_nodes, diffusion_solver_setup_s, diffusion_solver_frame_s,
diffusion_coarse_nodes, diffusion_coarse_plan_s, diffusion_coarse_frame_s, diffusion_coarse_speedup,
diffusion_coarse_rel_err: one diffusion3d case meshed for each size, our solver timed per frame over
the whole run, and the baseline any surrogate of it must beat: the same case solved on one coarse
mesh and interpolated (P1) to the fine nodes every frame, with its relative L2 error at the last
frame; cfd_large_* (the finest --scales case solved over --large-frames stored frames as the reference:
cfd_large_nodes, _frames, _truth_solve_s, _frame_s, _solver_frame_s, _speedup and the flow metrics
_mean_field_rrmse, _fluct_rrmse, _shedding_freq_err of the surrogate rolled out on the recipe's mesh and
interpolated (P1) to the fine one; the same metrics as _coarse_solver_* for our solver at the recipe's
resolution interpolated, and _direct_* for the surrogate rolled out on the fine mesh itself),
and with --cfd-hybrid CKPT ... _hybrid_frame_s, _hybrid_speedup and the flow metrics as _hybrid_* for our solver on the
recipe's mesh coarsened --cfd-hybrid-scale times plus the learned correction (solvers.cfd.corrected), reported at
the fine nodes (the coarse solve's P2 velocity there plus the interpolated correction), and as _hybrid_coarse_*
the flow metrics of that coarse solve alone, reported at the fine nodes the same way;
cfd_speedup_large and cfd_mean_field_rrmse_large (the hybrid's when measured, else the interpolated surrogate's:
cfd_large_headline says which); and the learned surrogate
(--diffusion-checkpoint, or trained here on the recipe's coarse
size): diffusion_surrogate_frame_s, diffusion_speedup, diffusion_rel_err and
diffusion_surrogate_coarse_rel_err per size, diffusion_learned_speedup_large and
diffusion_learned_rel_err_large (the largest size): the learned model rolled out on the coarse mesh and
interpolated the same way;
diffusion_corrected_frame_s, _corrected_speedup, _corrected_rel_err, _correction_size per size and
diffusion_corrected_speedup_large, diffusion_corrected_rel_err_large: the coarse solve with a learned
correction added to every frame (a steady MeshGraphNet of the fine solution minus the coarse one at the
coarse nodes, reading the coarse temperature, source and advection: --diffusion-corrector, or trained here
on --diffusion-corrector-cases cases solved at --diffusion-corrector-nodes), interpolated the same way;
diffusion_speedup_large and diffusion_rel_err_large: the corrected solve's when measured, else the learned
model's (diffusion_large_headline says which);
mpm_learned_speedup and mpm_learned_final_rel_err: the learned surrogate's (above); with --mpm-hybrid
FACTOR ..., per factor (lists) mpm_hybrid_factor, _particles, _grid, _frame_s, _plan_s, _speedup,
_final_rel_err: our MPM solver on a grid FACTOR times coarser run on a sample of the particles (one per
coarse lattice cell, with its cell's volume), decoded to every particle by the checkpoint's learned dense
decoder every frame (GIOROM's reduced order, our solver as its dynamics); mpm_speedup and
mpm_final_rel_err: the first factor's hybrid on the largest particle count measured (the refined one
with --mpm-refine > 1), else the learned surrogate's (mpm_headline says which);
train_cpu_s: the training CPU seconds of each model measured (train_cpu_hours their sum);
a log-log PNG of time per frame against nodes, one panel per case (--png).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import ROOT, report
from _mesh_models import flow_interpolator, flow_scores, rescaled_case, set_threads, train_for_budget


def load(checkpoint: Path, correction: str | None = None):
    """``sim.load(checkpoint)``, a mesh model set to roll out with ``correction`` when given."""
    import sim

    surrogate = sim.load(checkpoint)
    if correction is not None:
        from sim.families.mesh import set_correction

        set_correction(getattr(surrogate, "members", None) or surrogate.simulator, correction)
    return surrogate


def cfd_solver_frame_s(traj, frames: int, warmup: float) -> float:
    """CPU seconds per stored frame of our Navier-Stokes solver on the trajectory's own case."""
    return cfd_scaled(traj, 1.0, frames, warmup)[0]


def cfd_scaled(traj, scale: float, frames: int, warmup: float, keep: int = 1) -> tuple[float, object]:
    """CPU seconds per stored frame of our solver on the trajectory's geometry and inflow meshed
    ``scale`` times finer (mesh sizes / scale; the solver step follows the recipe's CFL rule), and
    the flow of the last ``keep`` timed frames as a Trajectory (the surrogate's starting state:
    as many frames as it reads)."""
    from sim.mesh import Trajectory
    from solvers.cfd.cylinder import solver_substeps
    from solvers.cfd.geometry import Channel, channel_mesh
    from solvers.cfd.navier_stokes import CylinderFlow

    p = traj.params
    channel = Channel(p["length"], p["height"], p["cx"], p["cy"], p["radius"])
    mesh = channel_mesh(channel, size=p["mesh_size"] / scale, size_min=p["mesh_size_min"] / scale)
    dt_store = float(traj.dt)
    substeps = solver_substeps(mesh, p["u_mean"], dt_store, 2.0)
    flow = CylinderFlow(mesh, channel, nu=p["nu"], u_mean=p["u_mean"], dt=dt_store / substeps, ramp=0.5,
                        kick=0.5 * p["u_mean"], kick_time=0.6)
    state = flow.initial_state()
    for _ in range(int(round(warmup * substeps / dt_store))):
        state = flow.step(state)
    kept, spent = [], 0.0
    for k in range(frames):
        t = time.process_time()
        for _ in range(substeps):
            state = flow.step(state)
        spent += time.process_time() - t
        if k >= frames - keep:
            kept.append(flow.vertex_values(state)[0].astype(np.float32))
    start = Trajectory(mesh, np.arange(len(kept)) * dt_store, point_fields={"velocity": np.stack(kept)}, dt=dt_store,
                       params=dict(p))
    return spent / frames, start


def scale_sweep(checkpoint: Path, traj, scales: list[float], frames: int, warmup: float,
                correction: str | None = None) -> dict[str, list]:
    """Solver and surrogate CPU seconds per frame on the same case meshed at each scale (the
    surrogate as trained, applied to the finer meshes: its time, not its accuracy there)."""

    out: dict[str, list] = {k: [] for k in ("nodes", "solver_frame_s", "surrogate_frame_s", "surrogate_frame_s_bf16",
                                            "speedup", "speedup_bf16")}
    surrogate = load(checkpoint, correction)
    for scale in scales:
        solver_s, start = cfd_scaled(traj, scale, frames, warmup, keep=getattr(surrogate, "history", 1))
        times = {}
        for precision in ("fp32", "bf16"):
            surrogate.set_precision(precision)
            surrogate.rollout(start, 1)  # warm-up
            t = time.process_time()
            surrogate.rollout(start, frames)
            times[precision] = (time.process_time() - t) / frames
        out["nodes"].append(int(start.mesh.num_points))
        out["solver_frame_s"].append(solver_s)
        out["surrogate_frame_s"].append(times["fp32"])
        out["surrogate_frame_s_bf16"].append(times["bf16"])
        out["speedup"].append(solver_s / times["fp32"])
        out["speedup_bf16"].append(solver_s / times["bf16"])
        print(f"scale {scale:g}: {start.mesh.num_points} nodes, solver {solver_s * 1e3:.0f} ms/frame, surrogate "
              f"{times['fp32'] * 1e3:.0f} ms (bf16 {times['bf16'] * 1e3:.0f} ms)", flush=True)
    return out


def cfd_large(checkpoint: Path, traj, scale: float, frames: int, solver_frame_s: float | None = None,
              correction: str | None = None, cache: Path | None = None, hybrid: list[Path] | None = None,
              hybrid_scale: float = 0.7) -> dict[str, object]:
    """The cylinder case of ``traj`` (a stored trajectory at the recipe's resolution) solved
    ``scale`` times finer over its first ``frames`` stored steps (same geometry, inflow, warm-up
    and solver step rule), and three ways to predict that fine flow, each scored with the flow
    metrics (time-mean and fluctuation relative RMSE, shedding frequency) against it:

    - ``decode``: the surrogate rolled out on the recipe's mesh (from the trajectory's first
      frame, its boundary values) and interpolated (P1) to the fine nodes every frame, the
      prescribed fine nodes (inflow, walls, cylinder) set to their values: its CPU seconds per
      frame (rollout plus interpolation) and, given the fine solver's ``solver_frame_s``, the
      speedup;
    - ``coarse_solver``: the trajectory itself (our solver at the recipe's resolution)
      interpolated the same way: what the coarse resolution alone loses;
    - ``direct``: the surrogate rolled out on the fine mesh itself from the fine flow's first
      frame (resolution transfer: it was trained on the recipe's meshes);
    - ``hybrid`` (given the checkpoints of correctors, :mod:`solvers.cfd.corrected`): our solver
      on the recipe's mesh coarsened ``hybrid_scale`` times plus the learned correction to the
      recipe's mesh (an ensemble for several), reported at the fine nodes as the coarse solve's own
      (P2) velocity there plus the correction interpolated (P1) from the recipe's mesh: its CPU
      seconds per frame (coarse solve, correction, evaluation at the fine nodes) and speedup.

    ``correction``: the rollout correction to run the surrogate with (default: its own).
    ``cache``: a store holding the fine solve (written when missing, reused when it was solved
    for the same case, scale and frames): the reference solve takes over an hour at 25k nodes."""
    from sim.mesh import Mesh
    from solvers.cfd.cylinder import solve

    p = traj.params
    drawn, values = rescaled_case(traj, scale)
    n = min(frames, traj.num_steps - 1) + 1
    truth, truth_s = _cached_solve(cache, {"case": {k: float(v) for k, v in values.items()}, "scale": scale,
                                           "stored_frames": n}, lambda: solve(drawn, {
                                               "dt_store": float(traj.dt), "num_steps": n, "warmup": p["warmup"]}))
    fine = Mesh(truth.mesh.points, truth.mesh.cells, node_type=truth.mesh.node_type)
    true_v = truth.point_fields["velocity"]

    def scored(frames_fine) -> dict[str, float]:
        return flow_scores(fine, p, true_v, frames_fine, float(traj.dt))

    to_fine = flow_interpolator(traj.mesh, fine, true_v)
    res: dict[str, object] = {"nodes": int(fine.num_points), "frames": n - 1, "truth_solve_s": truth_s}
    surrogate = load(checkpoint, correction)
    surrogate.rollout(traj, 1)  # warm-up
    t = time.process_time()
    pred = surrogate.rollout(traj, n - 1)
    rollout_s = time.process_time() - t
    t = time.process_time()
    decoded = to_fine(pred.point_fields["velocity"])
    per = (rollout_s + time.process_time() - t) / (n - 1)
    res["frame_s"] = per
    if solver_frame_s is not None:
        res["solver_frame_s"], res["speedup"] = solver_frame_s, solver_frame_s / per
    res.update(scored(decoded))
    res.update({f"coarse_solver_{k}": v for k, v in scored(to_fine(traj.point_fields["velocity"][:n])).items()})
    if hybrid:
        from sim.rollout.hybrid import corrected_rollout
        from sim.train import load_model
        from solvers.cfd.corrected import coarse_flow, prescribed_nodes

        correctors = [load_model(c)[0] for c in hybrid]
        members = correctors if len(correctors) > 1 else correctors[0]
        coarse = coarse_flow(traj, hybrid_scale)  # meshed and factorised once, like the solver's timing

        def built(_traj, _scale):
            return coarse

        fixed = prescribed_nodes(fine)

        def at_fine(correctors) -> list[np.ndarray]:  # prescribed values set as for the interpolated predictions
            rolled = corrected_rollout(correctors, traj, built, hybrid_scale, n - 1, points=fine.points)
            return [np.where(fixed[:, None], true_v[k], v) for k, v in enumerate(rolled.point_fields["velocity"])]

        corrected_rollout(members, traj, built, hybrid_scale, 1, points=fine.points)  # warm-up
        t = time.process_time()
        decoded = at_fine(members)
        per = (time.process_time() - t) / (n - 1)
        res["hybrid_frame_s"] = per
        if solver_frame_s is not None:
            res["hybrid_speedup"] = solver_frame_s / per
        res.update({f"hybrid_{k}": v for k, v in scored(decoded).items()})
        res.update({f"hybrid_coarse_{k}": v for k, v in scored(at_fine(None)).items()})  # what the correction adds
        print(f"cylinder x{scale:g}: coarse solve x{hybrid_scale:g} + learned correction, interpolated "
              f"{per * 1e3:.1f} ms/frame, mean-flow {res['hybrid_mean_field_rrmse']:.3f}", flush=True)
    start = type(traj)(fine, truth.times, point_fields={"velocity": true_v}, dt=traj.dt, params=dict(p))
    direct = surrogate.rollout(start, n - 1)
    res.update({f"direct_{k}": v for k, v in scored(direct.point_fields["velocity"]).items()})
    print(f"cylinder x{scale:g} ({fine.num_points} nodes, {n - 1} frames): interpolated surrogate "
          f"{per * 1e3:.1f} ms/frame, mean-flow {res['mean_field_rrmse']:.3f}, fluctuation {res['fluct_rrmse']:.3f}; "
          f"coarse solver interpolated {res['coarse_solver_mean_field_rrmse']:.3f}; surrogate on the fine mesh "
          f"{res['direct_mean_field_rrmse']:.3f}", flush=True)
    return res


def _cached_solve(cache: Path | None, key: dict, run) -> tuple[object, float]:
    """``run()`` (a trajectory) and its CPU seconds, read from the store ``cache`` when it holds
    the solve of the same ``key`` (written there atomically otherwise)."""
    import json

    from sim.mesh import Store, StoreWriter

    if cache is not None and Path(cache).exists():
        with Store(cache) as s:
            meta = s.metadata
            if meta.get("key") == json.loads(json.dumps(key)):
                print(f"reference solve read from {cache}", flush=True)
                return s.read("truth"), float(meta["solve_s"])
    t = time.process_time()
    truth = run()
    solve_s = time.process_time() - t
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        with StoreWriter(cache, metadata={"key": key, "solve_s": solve_s}) as w:
            w.append(truth, "truth")
    return truth, solve_s


def sizes_png(panels: list[tuple[str, list[int], dict[str, list[float]]]], path: Path) -> None:
    """Log-log CPU seconds per frame against nodes, one panel per case: (title, nodes, {label: times})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim.mesh.atomic import atomic_path

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, nodes, series) in zip(axes[0], panels):
        for (label, times), style in zip(series.items(), ("o-", "s-", "^--", "d-.")):
            ax.loglog(nodes, times, style, label=label)
        ax.set_xlabel("mesh nodes")
        ax.set_ylabel("CPU seconds per stored frame (1 thread)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def diffusion_sizes(nodes: list[int], coarse_mesh_size: float, steps: int, seed: int = 7,
                    checkpoint: Path | None = None, corrector: Path | None = None) -> dict[str, list]:
    """The diffusion3d case of one seed meshed for each of ``nodes`` (about): our solver's CPU
    seconds per frame (after its setup: meshing, assembly and factorisation, reported apart) over
    ``steps`` frames, and the same case solved on one coarse mesh (``coarse_mesh_size``) and
    interpolated to the fine nodes every frame (P1, the Dirichlet values set exactly): its CPU
    seconds per frame (coarse step plus interpolation), speedup and relative L2 error at the last
    frame. The coarse solve is the baseline a learned surrogate of this case has to beat.

    With ``checkpoint`` (a mesh model of temperature trained on diffusion3d at
    ``coarse_mesh_size``, reading the source as a node input) the learned surrogate runs the
    same way: its rollout on the coarse mesh, each frame interpolated to the fine nodes; its CPU
    seconds per frame (rollout plus interpolation), speedup, relative L2 error at the last frame
    against the fine solver, and at the coarse level against the coarse solver (what it learned
    apart from what the coarse mesh loses).

    With ``corrector`` (a steady model of the coarse solution's correction, :func:`diffusion_corrector`)
    the coarse solve with the learned correction added to every frame runs the same way:
    ``corrected_frame_s`` (coarse step, correction and interpolation), ``corrected_speedup``,
    ``corrected_rel_err`` at the last frame."""
    from large_mesh import mesh_size_for

    from sim.mesh.interp import p1_matrix
    from solvers.diffusion3d import heat_case

    keys = ("nodes", "solver_setup_s", "solver_frame_s", "coarse_nodes", "coarse_plan_s", "coarse_frame_s",
            "coarse_speedup", "coarse_rel_err")
    out: dict[str, list] = {k: [] for k in keys}
    t = time.process_time()
    coarse = heat_case({"mesh_size": coarse_mesh_size}, seed)
    coarse_setup = time.process_time() - t
    learned = diffusion_surrogate(checkpoint, coarse, steps) if checkpoint is not None else None
    if learned is not None:
        keys += ("surrogate_frame_s", "speedup", "rel_err", "surrogate_coarse_rel_err")
        out.update({k: [] for k in keys[-4:]})
    fixed_up = corrected_coarse(corrector, coarse, steps) if corrector is not None else None
    if fixed_up is not None:
        keys += ("corrected_frame_s", "corrected_speedup", "corrected_rel_err", "correction_size")
        out.update({k: [] for k in keys[-4:]})
    for n in nodes:
        t = time.process_time()
        case = heat_case({"mesh_size": mesh_size_for(n)}, seed)
        setup = time.process_time() - t
        t = time.process_time()
        truth = case.run(steps)
        solver_s = (time.process_time() - t) / (steps - 1)
        t = time.process_time()
        decode = p1_matrix(coarse.mesh.points, coarse.mesh.cells, case.mesh.points)
        plan = time.process_time() - t
        fixed = case.solver.fixed
        T = coarse.initial.copy()
        t = time.process_time()
        for _ in range(steps - 1):
            T = coarse.solver.step(T, coarse.boundary)
            fine = decode @ T
            fine[fixed] = case.boundary
        coarse_s = (time.process_time() - t) / (steps - 1)
        err = float(np.linalg.norm(fine - truth[-1]) / np.linalg.norm(truth[-1]))
        row = [case.mesh.num_points, setup, solver_s, coarse.mesh.num_points, plan + coarse_setup, coarse_s,
               solver_s / coarse_s, err]
        for result, label in ((learned, "learned surrogate"), (fixed_up, "coarse solve + learned correction")):
            if result is None:
                continue
            frames, step_s, extra = result  # extra: the coarse-level error, or the correction's size
            t = time.process_time()
            for x in frames:
                fine = decode @ x
                fine[fixed] = case.boundary
            per = step_s + (time.process_time() - t) / len(frames)
            last_err = float(np.linalg.norm(fine - truth[-1]) / np.linalg.norm(truth[-1]))
            row += [per, solver_s / per, last_err, extra]
            print(f"diffusion3d {case.mesh.num_points} nodes: {label} {per * 1e3:.2f} ms/frame, "
                  f"{solver_s / per:.1f}x, error {last_err:.4f}", flush=True)
        for k, v in zip(keys, row):
            out[k].append(v)
        print(f"diffusion3d {case.mesh.num_points} nodes: solver {solver_s * 1e3:.1f} ms/frame (setup {setup:.1f} s); "
              f"coarse solve on {coarse.mesh.num_points} nodes + interpolation {coarse_s * 1e3:.2f} ms/frame, "
              f"error {err:.4f} at frame {steps - 1}", flush=True)
    return out


def diffusion_surrogate(checkpoint: Path, coarse, steps: int) -> tuple[list[np.ndarray], float, float]:
    """The learned model's rollout of the coarse case ``coarse`` (a ``HeatCase``) over ``steps``
    frames: its frames after the first (temperatures on the coarse nodes), its CPU seconds per
    frame (after a one-step warm-up) and its relative L2 error at the last frame against the
    coarse solver's."""
    import sim
    from sim.mesh import Mesh

    surrogate = sim.load(checkpoint)
    m = coarse.mesh
    start = Mesh(m.points, m.cells, point_data={**m.point_data, "temperature": coarse.initial.astype(np.float32)},
                 node_type=m.node_type)
    dt = float(coarse.params["dt"])
    params = {k: coarse.params[k] for k in surrogate.describe()["scalars"]}  # e.g. the conductivity kappa
    surrogate.rollout(start, 1, dt=dt, params=params)
    t = time.process_time()
    traj = surrogate.rollout(start, steps - 1, dt=dt, params=params)
    per = (time.process_time() - t) / (steps - 1)
    frames = [np.asarray(x, dtype=np.float64) for x in traj.point_fields["temperature"][1:]]
    truth = coarse.run(steps)[-1]
    return frames, per, float(np.linalg.norm(frames[-1] - truth) / np.linalg.norm(truth))


CORRECTION_FRAMES = (1, 2, 3, 5, 8, 12, 20, 30, 45, 60, 80, 99)


def correction_samples(path: Path, cases: int, fine_nodes: int, coarse_mesh_size: float, steps: int,
                       first_seed: int = 1000) -> Path:
    """The training samples of a learned correction of the coarse diffusion3d solve, as a store of
    steady samples (resumable: cases already in it are kept): for each of ``cases`` drawn cases
    (seeds ``first_seed``, ...; the bench's own case is seed 7, outside them), our solver on the
    coarse mesh and on a mesh of about ``fine_nodes`` nodes, and at each of the frames
    ``CORRECTION_FRAMES`` (below ``steps``) one sample on the coarse mesh: point data
    ``temperature`` (the coarse solution), ``source`` and ``advection`` (inputs) and
    ``correction`` (the fine solution evaluated at the coarse nodes minus the coarse one: the
    output), field data ``kappa``."""
    from large_mesh import mesh_size_for
    from tqdm import tqdm

    from sim.mesh import Mesh, Store, StoreWriter
    from sim.mesh.interp import p1_matrix
    from solvers.diffusion3d import heat_case

    frames = [k for k in CORRECTION_FRAMES if k < steps]
    done: set[str] = set()
    if path.exists():
        with Store(path) as s:
            done = set(s.names())
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        StoreWriter(path).close()  # an empty store, then appended to: every finished case survives a kill
    with StoreWriter(path, append=True) as w:
        for seed in tqdm(range(first_seed, first_seed + cases), desc="correction cases"):
            if f"case{seed}_f{frames[-1]:03d}" in done:
                continue
            coarse = heat_case({"mesh_size": coarse_mesh_size}, seed)
            fine = heat_case({"mesh_size": mesh_size_for(fine_nodes)}, seed)
            c, f = coarse.run(steps), fine.run(steps)
            sample = p1_matrix(fine.mesh.points, fine.mesh.cells, coarse.mesh.points)
            m = coarse.mesh
            for k in frames:
                name = f"case{seed}_f{k:03d}"
                if name in done:
                    continue
                pd = {**m.point_data, "temperature": c[k], "correction": (sample @ f[k] - c[k]).astype(np.float32)}
                w.append(Mesh(m.points, m.cells, point_data=pd, node_type=m.node_type,
                              field_data={"kappa": np.array([coarse.params["kappa"]])}), name)
    return path


DIFFUSION_CORRECTOR = {"family": "steady", "network": "meshgraphnet",
                       "network_args": {"latent": 16, "steps": 2, "hidden_layers": 1},
                       "fields": ["correction"], "scalars": ["kappa"],
                       "family_args": {"node_inputs": ["temperature", "source", "advection"]}}


def diffusion_corrector(quick: bool, seconds: float, out: Path, coarse_mesh_size: float, steps: int,
                        cases: int, fine_nodes: int, resume: bool = False) -> Path:
    """Train the learned correction of the coarse diffusion3d solve (``DIFFUSION_CORRECTOR``: a
    steady MeshGraphNet, latent 16, two message-passing steps, small enough to cost about as much
    per frame as a 30x speedup leaves at 200k nodes) on :func:`correction_samples`; ``seconds``
    of CPU, resumable."""
    data = correction_samples(out / "correction_samples.h5", 2 if quick else cases, 3000 if quick else fine_nodes,
                              coarse_mesh_size, steps)
    summary = train_for_budget({
        "model": DIFFUSION_CORRECTOR, "data": {"train": str(data), "batch_size": 4},
        "optim": {"lr": 1e-3, "lr_final": 1e-5},
        "train": {"steps": 1, "out": str(out / "diffusion_corrector"), "checkpoint_every": 500,
                  "normalizer_accumulation_steps": 200}},
        20.0 if quick else seconds, resume=resume)
    return Path(summary["checkpoint"])


def corrected_coarse(checkpoint: Path, coarse, steps: int) -> tuple[list[np.ndarray], float, float]:
    """The coarse solve of ``coarse`` (a ``HeatCase``) with the learned correction added to every
    frame (not fed back into the solver): its frames after the first, CPU seconds per frame
    (coarse step plus correction, after a warm-up) and the relative L2 size of the correction at
    the last frame."""
    import sim
    from sim.graph import mesh_graph
    from sim.mesh import Mesh

    model = sim.load(checkpoint).model
    m = coarse.mesh
    scalars = {k: coarse.params[k] for k in model.config["scalars"]}
    graph = mesh_graph(m)
    pd = dict(m.point_data)

    def corrected(T: np.ndarray) -> np.ndarray:
        pd["temperature"] = T.astype(np.float32)
        fix = model.predict(Mesh(m.points, m.cells, point_data=pd, node_type=m.node_type), scalars,
                            graph=graph)["correction"]
        return T + fix

    corrected(coarse.initial)  # warm-up
    T, frames = coarse.initial.copy(), []
    t = time.process_time()
    for _ in range(steps - 1):
        T = coarse.solver.step(T, coarse.boundary)
        frames.append(corrected(T))
    per = (time.process_time() - t) / (steps - 1)
    return frames, per, float(np.linalg.norm(frames[-1] - T) / np.linalg.norm(T))


def _mpm_case(traj, refine: int = 1):
    """Our MPM solver for a stored trajectory's case (its material and walls, the grid ``refine``
    times finer), the material and the particle spacing (the recipe's particles per cell)."""
    from solvers.mpm import Material, MPMSolver

    p = traj.params
    material = Material(p["material"], E=p["E"], nu=p["nu"], density=p["density"], yield_stress=p["yield_stress"],
                        friction_deg=p["friction_deg"], viscosity=p["viscosity"])
    solver = MPMSolver(int(p["dim"]), int(p["n_grid"]) * refine, [material], gravity=p["gravity"], wall=p["wall"])
    return solver, material, solver.dx / int(p["ppc"])


def mpm_solver_frame_s(traj, frames: int) -> float:
    """CPU seconds per frame of our MPM solver on the trajectory's own particles and material,
    started from its first frame (velocities from its first two frames)."""
    from solvers.mpm import simulate

    solver, material, spacing = _mpm_case(traj)
    pos = np.asarray(traj.positions, dtype=np.float64)
    v0 = (pos[1] - pos[0]) / float(traj.dt)
    t = time.process_time()
    simulate(solver, pos[0], v0, spacing, material.density, frames + 1, float(traj.dt))
    return (time.process_time() - t) / (frames + 1)


def mpm_hybrid(checkpoint: Path, traj, factor: int, solver_frame_s: float) -> dict[str, float]:
    """GIOROM's reduced-order scheme with our solver in place of its learned dynamics: our MPM
    solver on a grid ``factor`` times coarser, run on a sample of the particles one coarse
    lattice spacing apart (:func:`solvers.mpm.coarse_sample`: each carries its cell's volume, so
    the bodies keep their mass), and every frame the sample's displacements decoded to every
    particle by the checkpoint's learned dense decoder (:mod:`sim.nn.dense_decoder`), from the
    trajectory's first frame over all its frames. Returns the sample's size, CPU seconds per
    frame (coarse substeps and decode), the decode plan's one-off CPU seconds (built once per
    particle set, as the solver's grid is), the speedup over ``solver_frame_s`` and the final
    position error relative to how far the particles moved."""
    import torch

    from sim.train import load_model
    from solvers.mpm import coarse_sample, simulate

    solver, material, spacing = _mpm_case(traj)
    coarse = solver.coarsened(factor)
    pos = np.asarray(traj.positions, dtype=np.float64)
    v0 = (pos[1] - pos[0]) / float(traj.dt)
    index, volume = coarse_sample(pos[0], spacing, factor)
    model = load_model(checkpoint)[0]
    rest, sparse_rest = torch.as_tensor(pos[0], dtype=torch.float32), torch.as_tensor(pos[0][index],
                                                                                       dtype=torch.float32)
    t = time.process_time()
    with torch.inference_mode():
        plan = model.decode_plan(sparse_rest, rest)
    plan_s = time.process_time() - t
    n = traj.num_steps
    t = time.process_time()
    sparse, _ = simulate(coarse, pos[0][index], v0[index], factor * spacing, material.density, n, float(traj.dt),
                         volume=volume)
    with torch.inference_mode():  # every frame is decoded, as a rollout written to disk would be
        dense = [rest + plan.apply(torch.as_tensor(frame) - sparse_rest) for frame in sparse[1:]]
    last = dense[-1].numpy()
    per = (time.process_time() - t) / (n - 1)
    err = float(np.linalg.norm(last - pos[-1]) / max(np.linalg.norm(pos[-1] - pos[0]), 1e-12))
    print(f"MPM coarse solve x{factor} ({len(index)} of {len(pos[0])} particles, grid {coarse.n}) + learned decode: "
          f"{per * 1e3:.1f} ms/frame, {solver_frame_s / per:.1f}x, final error {err:.3f}", flush=True)
    return {"factor": factor, "particles": int(len(index)), "grid": coarse.n, "frame_s": per, "plan_s": plan_s,
            "speedup": solver_frame_s / per, "final_rel_err": err}


def mpm_refined(checkpoint: Path, traj, factor: int = 2, frames: int = 20, cache: Path | None = None,
                hybrid: list[int] | tuple[int, ...] = ()) -> dict[str, object]:
    """The trajectory's bodies sampled ``factor`` times finer per axis (each particle split into
    ``factor**d`` at the offsets of a finer lattice, with its velocity) and our solver on a grid
    ``factor`` times finer (the recipe's particles per cell) over all the trajectory's frames:
    the reference (kept in the store ``cache`` and reused for the same case), and our solver's
    CPU seconds per frame timed over its first ``frames`` frames; the surrogate rolled out on that
    finer set from the reference's first frames (CPU seconds per frame, speedup, final position
    error relative to how far the particles moved, as for the recipe's own count), and per factor
    of ``hybrid`` the coarse solve + learned decode of :func:`mpm_hybrid` on it (lists)."""
    from sim.mesh import Mesh, Trajectory
    from solvers.mpm import simulate

    p = traj.params
    d = int(p["dim"])
    solver, material, spacing = _mpm_case(traj, factor)
    grid = np.stack(np.meshgrid(*[np.arange(factor)] * d, indexing="ij"), -1).reshape(-1, d)
    offsets = (grid - (factor - 1) / 2) * spacing  # the finer lattice around each coarse particle
    pos = np.asarray(traj.positions, dtype=np.float64)
    x0 = (pos[0][:, None] + offsets[None]).reshape(-1, d)
    v0 = np.repeat((pos[1] - pos[0]) / float(traj.dt), len(offsets), axis=0)
    n = traj.num_steps
    params = {**p, "n_grid": int(p["n_grid"]) * factor, "num_particles": int(len(x0))}

    def solve() -> Trajectory:
        positions, _ = simulate(solver, x0, v0, spacing, material.density, n, float(traj.dt))
        return Trajectory(Mesh(x0.astype(np.float32), point_data={"particle_type": np.zeros(len(x0), dtype=np.int64)}),
                          np.arange(n) * float(traj.dt), positions=positions, dt=float(traj.dt), params=params)

    fine, _ = _cached_solve(cache, {"case": {k: v for k, v in p.items() if isinstance(v, (int, float, str))},
                                    "refine": factor, "frames": n}, solve)
    timed = min(frames + 1, n)
    t = time.process_time()
    simulate(solver, x0, v0, spacing, material.density, timed, float(traj.dt))
    solver_s = (time.process_time() - t) / timed
    truth = np.asarray(fine.positions)
    per, out, steps = rollout_frame_s(checkpoint, fine)
    start = truth[n - steps - 1]
    moved = np.linalg.norm(truth[-1] - start)
    err = float(np.linalg.norm(out.positions[-1] - truth[-1]) / max(moved, 1e-12))
    print(f"MPM x{factor} ({len(x0)} particles): solver {solver_s * 1e3:.0f} ms/frame, surrogate {per * 1e3:.1f} ms, "
          f"{solver_s / per:.1f}x, final error {err:.3f}", flush=True)
    res: dict[str, object] = {"particles": int(len(x0)), "solver_frame_s": solver_s, "surrogate_frame_s": per,
                              "speedup": solver_s / per, "final_rel_err": err}
    if hybrid:
        runs = [mpm_hybrid(checkpoint, fine, f, solver_s) for f in hybrid]
        res.update({f"hybrid_{k}": [h[k] for h in runs] for k in runs[0]})
    return res


def rollout_frame_s(checkpoint: Path, traj, frames: int | None = None, precision: str = "fp32",
                    correction: str | None = None
                    ) -> tuple[float, object, int]:
    """CPU seconds per frame of the surrogate's rollout of ``traj``, the rollout and its frames."""

    surrogate = load(checkpoint, correction)
    if precision != "fp32":
        surrogate.set_precision(precision)
    return _timed(surrogate, traj, frames)


def _timed(surrogate, traj, frames: int | None) -> tuple[float, object, int]:
    start = getattr(surrogate, "history", 1)
    n = traj.num_steps - start if frames is None else frames
    t = time.process_time()
    out = surrogate.rollout(traj, n)
    return (time.process_time() - t) / n, out, n


def compiled_frame_s(checkpoint: Path, traj, correction: str | None = None) -> tuple[float, object, float]:
    """CPU seconds per frame of the rollout through torch.compile, timed after a 3-frame rollout
    that compiles; the rollout, and the CPU seconds of that first rollout (the compile's cost)."""

    surrogate = load(checkpoint, correction).set_compile()
    t = time.process_time()
    surrogate.rollout(traj, 3)
    compile_s = time.process_time() - t
    per, out, _ = _timed(surrogate, traj, None)
    return per, out, compile_s


def sweep(checkpoint: Path, traj, queries: int, frames: int, solver_frame_s: float, correction: str | None = None
          ) -> dict[str, object]:
    """CPU seconds per simulated frame of a viscosity sweep run as one batch, and the speedup over
    the solver run once per query (its seconds per frame); null for a model without ``nu``."""

    surrogate = load(checkpoint, correction)
    if "nu" not in surrogate.describe().get("scalars", []):
        return {"sweep_queries": queries, "sweep_frame_s": None, "sweep_speedup": None}
    nu = float(traj.params["nu"])
    params = [{"nu": nu * f} for f in np.linspace(0.8, 1.2, queries)]
    t = time.process_time()
    surrogate.sweep(traj, frames, params)
    per = (time.process_time() - t) / (frames * queries)
    return {"sweep_queries": queries, "sweep_frames": frames, "sweep_frame_s": per,
            "sweep_speedup": solver_frame_s / per}


def small_models(quick: bool, seconds: float, out: Path, cfd: bool = True, mpm: bool = True) -> dict[str, Path]:
    """Train the surrogates on the small recipes that were not given as checkpoints (``cfd``,
    ``mpm``: which to train; resumable in ``out``), with the test stores of their recipes."""
    from solvers.recipes import generate, load_recipe

    steps_budget = 20.0 if quick else seconds
    paths: dict[str, Path] = {}
    if cfd:
        cf = generate(load_recipe(ROOT / "datasets" / "cylinder_flow.yaml"), "small")
        paths["cfd_data"] = cf["test"]
        paths["cfd"] = Path(train_for_budget({
            "model": {"network": "meshgraphnet", "preset": "cpu", "fields": ["velocity"], "noise_std": 0.02,
                      "scalars": ["nu"]},
            "data": {"train": str(cf["train"])}, "optim": {"lr": 1e-3, "lr_final": 1e-5},
            "train": {"steps": 1, "out": str(out / "cfd"), "checkpoint_every": 500}},
            steps_budget, resume=True)["checkpoint"])
    if mpm:
        jelly = generate(load_recipe(ROOT / "datasets" / "mpm_jelly_2d.yaml"), "small")
        paths["mpm_data"] = jelly["test"]
        paths["mpm"] = Path(train_for_budget({
            "model": {"family": "particle", "network": "giorom", "preset": "cpu", "noise_std": 3e-5,
                      "family_args": {"sample_ratio": 0.25, "sampling": "fps", "connectivity_radius": 2 / 64,
                                      "decoder": {"neighbors": 16}, "sample_rule": "spacing"}},
            "data": {"train": str(jelly["train"]), "dense_queries": 512}, "optim": {"lr": 1e-3, "lr_final": 1e-5},
            "train": {"steps": 1, "out": str(out / "mpm"), "checkpoint_every": 500}},
            steps_budget, resume=True)["checkpoint"])
    return paths


DIFFUSION_MODEL = {"network": "meshgraphnet", "network_args": {"latent": 32, "steps": 4, "hidden_layers": 2},
                   "fields": ["temperature"], "scalars": ["kappa"], "noise_std": 0.003,
                   "family_args": {"node_inputs": ["source", "advection"], "bundle": 8}}


def diffusion_model(quick: bool, seconds: float, out: Path, resume: bool = False) -> Path:
    """Train the diffusion3d surrogate the bench times when no checkpoint is given: a small
    MeshGraphNet (latent 32, 4 message-passing steps) of temperature on the recipe's ``coarse``
    size (~2.2k nodes, generated with our solver when missing), conditioned on the conductivity
    and reading the source density and the advection velocity at every node, eight frames per
    call (temporal bundling); ``seconds`` of CPU, resumable."""
    from solvers.recipes import generate, load_recipe

    data = generate(load_recipe(ROOT / "datasets" / "diffusion3d.yaml"), "coarse")
    summary = train_for_budget({
        "model": DIFFUSION_MODEL, "data": {"train": str(data["train"]), "batch_size": 2},
        "optim": {"lr": 1e-3, "lr_final": 1e-5},
        "train": {"steps": 1, "out": str(out / "diffusion"), "checkpoint_every": 500}},
        20.0 if quick else seconds, resume=resume)
    return Path(summary["checkpoint"])


def training_record(checkpoint: Path) -> tuple[float, int]:
    """(training CPU seconds, training seed) of a checkpoint written by our trainer."""
    from sim.train import read_checkpoint

    train = read_checkpoint(checkpoint)["train"]
    return float(train["seconds"]), int(train["config"]["train"].get("seed", 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--cfd-checkpoint")
    ap.add_argument("--cfd-data")
    ap.add_argument("--mpm-checkpoint")
    ap.add_argument("--mpm-data")
    ap.add_argument("--frames", type=int, help="solver frames timed (default 20, quick 5)")
    ap.add_argument("--train-seconds", type=float, default=300.0)
    ap.add_argument("--sweep", type=int, help="viscosities of the parameter sweep (default 8; quick 3)")
    ap.add_argument("--scales", type=float, nargs="*",
                    help="mesh refinements of the cylinder case timed (default 1 2 3.9: ~1.7k, 7k, 25k nodes; "
                         "quick 1 1.5; none: skip)")
    ap.add_argument("--large-frames", type=int,
                    help="stored frames of the finest cylinder case solved and predicted for the error there (default: "
                         "the test trajectory's; quick 10; 0: skip)")
    ap.add_argument("--correction", help="rollout correction of the cylinder surrogate (default: its own)")
    ap.add_argument("--cfd-hybrid", nargs="+", metavar="CKPT",
                    help="correctors of the coarse cylinder solve (scripts/bench/cylinder_hybrid.py; several: an "
                         "ensemble) measured on the largest case as well; the cfd_*_large headline is then theirs")
    ap.add_argument("--cfd-hybrid-scale", type=float, default=0.7,
                    help="the coarse mesh of --cfd-hybrid: the recipe's mesh sizes divided by this")
    ap.add_argument("--mpm-refine", type=int, default=2,
                    help="the MPM case also sampled this many times finer per axis, on a grid as much finer (the "
                         "second particle count; 1: skip)")
    ap.add_argument("--mpm-hybrid", type=int, nargs="*", default=[2], metavar="FACTOR",
                    help="the MPM case (and its refined one) also predicted by our solver on grids this many times "
                         "coarser with the checkpoint's learned dense decoder (default 2; none: skip); the "
                         "mpm_speedup / mpm_final_rel_err headline is the first factor's at the largest count")
    ap.add_argument("--diffusion-sizes", type=int, nargs="*",
                    help="nodes of the diffusion3d meshes timed (default 10000 50000 200000; quick 3000 8000; "
                         "none: skip)")
    ap.add_argument("--diffusion-steps", type=int, help="frames of each diffusion3d run (default 100; quick 10)")
    ap.add_argument("--diffusion-coarse", type=float, default=0.065,
                    help="mesh size of the coarse diffusion3d baseline (default 0.065: ~2.2k nodes)")
    ap.add_argument("--diffusion-checkpoint",
                    help="a mesh model of diffusion3d temperature trained at --diffusion-coarse (the recipe's coarse "
                         "size), reading the source as a node input: timed and scored as the coarse solve is "
                         "(default: one trained here for --diffusion-train-seconds)")
    ap.add_argument("--diffusion-train-seconds", type=float, default=7200.0,
                    help="CPU seconds of the diffusion3d surrogate's training when no checkpoint is given")
    ap.add_argument("--diffusion-corrector",
                    help="a steady model of the correction of the coarse diffusion3d solve (default: one trained here "
                         "for --diffusion-corrector-seconds on --diffusion-corrector-cases cases solved at "
                         "--diffusion-corrector-nodes; 'none': skip)")
    ap.add_argument("--diffusion-corrector-seconds", type=float, default=2400.0)
    ap.add_argument("--diffusion-corrector-cases", type=int, default=40)
    ap.add_argument("--diffusion-corrector-nodes", type=int, default=50_000)
    ap.add_argument("--png", help="the time-per-frame plot (default: --json's path with .png)")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "solver_speedup"))
    args = ap.parse_args()
    set_threads(1)
    from sim.mesh import Store

    frames = args.frames or (5 if args.quick else 20)
    for kind in ("cfd", "mpm"):
        if getattr(args, f"{kind}_checkpoint") and not getattr(args, f"{kind}_data"):
            raise SystemExit(f"--{kind}-checkpoint needs --{kind}-data (the test store of its recipe)")
    paths: dict[str, Path] = {}
    if not (args.cfd_checkpoint and args.mpm_checkpoint):
        paths = small_models(args.quick, args.train_seconds, Path(args.out), cfd=not args.cfd_checkpoint,
                             mpm=not args.mpm_checkpoint)
    cfd_ckpt = Path(args.cfd_checkpoint or paths["cfd"])
    mpm_ckpt = Path(args.mpm_checkpoint or paths["mpm"])
    res: dict[str, object] = {"frames_timed": frames, "cfd_checkpoint": str(cfd_ckpt), "mpm_checkpoint": str(mpm_ckpt)}

    with Store(args.cfd_data or paths["cfd_data"]) as s:
        traj = s.read(s.names()[0])
    res["cfd_nodes"] = traj.mesh.num_points
    res["cfd_solver_frame_s"] = cfd_solver_frame_s(traj, frames, warmup=0.2 if args.quick else 0.5)
    per, out, n = rollout_frame_s(cfd_ckpt, traj, correction=args.correction)
    res["cfd_surrogate_frame_s"], res["cfd_rollout_frames"] = per, n
    res["cfd_speedup"] = res["cfd_solver_frame_s"] / per
    truth = traj.point_fields["velocity"][n]

    def final_rel_err(rollout) -> float:
        return float(np.linalg.norm(rollout.point_fields["velocity"][-1] - truth) / np.linalg.norm(truth))

    res["cfd_final_rel_err"] = final_rel_err(out)
    per, out, _ = rollout_frame_s(cfd_ckpt, traj, precision="bf16", correction=args.correction)
    res["cfd_surrogate_frame_s_bf16"], res["cfd_speedup_bf16"] = per, res["cfd_solver_frame_s"] / per
    res["cfd_final_rel_err_bf16"] = final_rel_err(out)
    per, out, res["cfd_compile_s"] = compiled_frame_s(cfd_ckpt, traj, args.correction)
    res["cfd_surrogate_frame_s_compiled"], res["cfd_speedup_compiled"] = per, res["cfd_solver_frame_s"] / per
    res["cfd_final_rel_err_compiled"] = final_rel_err(out)
    res.update(sweep(cfd_ckpt, traj, args.sweep or (3 if args.quick else 8), min(n, 50),
                     res["cfd_solver_frame_s"], args.correction))
    panels: list = []
    scales = args.scales if args.scales is not None else ([1.0, 1.5] if args.quick else [1.0, 2.0, 3.9])
    if scales:
        res["cfd_scales"] = scales
        by_scale = scale_sweep(cfd_ckpt, traj, scales, frames, warmup=0.2 if args.quick else 0.5,
                               correction=args.correction)
        res.update({f"cfd_scale_{k}": v for k, v in by_scale.items()})
        large_frames = args.large_frames if args.large_frames is not None else (10 if args.quick else traj.num_steps)
        if large_frames:
            hybrid = [Path(c) for c in args.cfd_hybrid or []]
            large = cfd_large(cfd_ckpt, traj, max(scales), large_frames,
                              by_scale["solver_frame_s"][int(np.argmax(scales))], args.correction,
                              cache=Path(args.out) / f"cfd_large_x{max(scales):g}.h5", hybrid=hybrid,
                              hybrid_scale=args.cfd_hybrid_scale)
            res.update({f"cfd_large_{k}": v for k, v in large.items()})
            best = "hybrid_" if hybrid else ""  # the headline: the hybrid when measured
            res["cfd_large_headline"] = "hybrid" if hybrid else "surrogate"
            res["cfd_speedup_large"] = large[f"{best}speedup"]
            res["cfd_mean_field_rrmse_large"] = large[f"{best}mean_field_rrmse"]
        panels.append(("cylinder flow", by_scale["nodes"], {
            "solver (Navier-Stokes, P2-P1)": by_scale["solver_frame_s"], "MeshGraphNet": by_scale["surrogate_frame_s"],
            "MeshGraphNet, bf16": by_scale["surrogate_frame_s_bf16"]}))
    sizes = args.diffusion_sizes if args.diffusion_sizes is not None else (
        [3000, 8000] if args.quick else [10_000, 50_000, 200_000])
    if sizes:
        steps = args.diffusion_steps or (10 if args.quick else 100)
        res["diffusion_steps"], res["diffusion_coarse_mesh_size"] = steps, args.diffusion_coarse
        ckpt = Path(args.diffusion_checkpoint) if args.diffusion_checkpoint else \
            diffusion_model(args.quick, args.diffusion_train_seconds, Path(args.out), resume=True)
        corrector = None
        if args.diffusion_corrector != "none":
            corrector = Path(args.diffusion_corrector) if args.diffusion_corrector else diffusion_corrector(
                args.quick, args.diffusion_corrector_seconds, Path(args.out), args.diffusion_coarse, steps,
                args.diffusion_corrector_cases, args.diffusion_corrector_nodes, resume=True)
        by_size = diffusion_sizes(sizes, args.diffusion_coarse, steps, checkpoint=ckpt, corrector=corrector)
        res.update({f"diffusion_{k}": v for k, v in by_size.items()})
        res["diffusion_checkpoint"] = str(ckpt)
        res["diffusion_learned_speedup_large"] = by_size["speedup"][-1]
        res["diffusion_learned_rel_err_large"] = by_size["rel_err"][-1]
        series = {"solver (P1, implicit Euler)": by_size["solver_frame_s"],
                  f"solver on a {by_size['coarse_nodes'][0]}-node mesh, interpolated": by_size["coarse_frame_s"],
                  "MeshGraphNet on the coarse mesh, interpolated": by_size["surrogate_frame_s"]}
        if corrector is not None:
            res["diffusion_corrector"] = str(corrector)
            res["diffusion_corrector_cases"] = args.diffusion_corrector_cases
            res["diffusion_corrector_nodes"] = args.diffusion_corrector_nodes
            res["diffusion_corrected_speedup_large"] = by_size["corrected_speedup"][-1]
            res["diffusion_corrected_rel_err_large"] = by_size["corrected_rel_err"][-1]
            series["coarse solve + learned correction, interpolated"] = by_size["corrected_frame_s"]
        # the headline: the coarse solve + learned correction when measured (as for the cylinder's large case)
        best = "corrected_" if corrector is not None else ""
        res["diffusion_large_headline"] = "corrected" if corrector is not None else "learned"
        res["diffusion_speedup_large"] = by_size[f"{best}speedup"][-1]
        res["diffusion_rel_err_large"] = by_size[f"{best}rel_err"][-1]
        panels.append(("diffusion3d", by_size["nodes"], series))
    png = args.png or (str(Path(args.json).with_suffix(".png")) if args.json else None)
    if png and panels:
        sizes_png(panels, Path(png))
        print(f"wrote {png}")

    with Store(args.mpm_data or paths["mpm_data"]) as s:
        traj = s.read(s.names()[0])
    res["mpm_particles"] = traj.mesh.num_points
    res["mpm_solver_frame_s"] = mpm_solver_frame_s(traj, frames)
    per, out, n = rollout_frame_s(mpm_ckpt, traj)
    res["mpm_surrogate_frame_s"], res["mpm_rollout_frames"] = per, n
    res["mpm_learned_speedup"] = res["mpm_solver_frame_s"] / per
    start = traj.positions[traj.num_steps - n - 1]
    moved = np.linalg.norm(traj.positions[-1] - start)
    res["mpm_learned_final_rel_err"] = float(np.linalg.norm(out.positions[-1] - traj.positions[-1])
                                             / max(moved, 1e-12))
    res["mpm_headline"] = "learned"
    res["mpm_speedup"], res["mpm_final_rel_err"] = res["mpm_learned_speedup"], res["mpm_learned_final_rel_err"]
    if args.mpm_hybrid:
        hybrids = [mpm_hybrid(mpm_ckpt, traj, f, res["mpm_solver_frame_s"]) for f in args.mpm_hybrid]
        res.update({f"mpm_hybrid_{k}": [h[k] for h in hybrids] for k in hybrids[0]})
        res["mpm_headline"] = f"hybrid_x{args.mpm_hybrid[0]}"  # the headline: the first factor's hybrid
        res["mpm_speedup"], res["mpm_final_rel_err"] = hybrids[0]["speedup"], hybrids[0]["final_rel_err"]
    per, out, _ = rollout_frame_s(mpm_ckpt, traj, precision="bf16")
    res["mpm_surrogate_frame_s_bf16"], res["mpm_speedup_bf16"] = per, res["mpm_solver_frame_s"] / per
    res["mpm_final_rel_err_bf16"] = float(np.linalg.norm(out.positions[-1] - traj.positions[-1])
                                          / max(moved, 1e-12))
    if args.mpm_refine > 1:
        res["mpm_refine"] = args.mpm_refine
        refined = mpm_refined(mpm_ckpt, traj, args.mpm_refine, frames, Path(args.out) / f"mpm_x{args.mpm_refine}.h5",
                              args.mpm_hybrid)
        res.update({f"mpm_refined_{k}": v for k, v in refined.items()})
        if args.mpm_hybrid:  # the headline: the first factor's hybrid on the largest particle count
            res["mpm_headline"] = f"refined_hybrid_x{args.mpm_hybrid[0]}"
            res["mpm_speedup"] = refined["hybrid_speedup"][0]
            res["mpm_final_rel_err"] = refined["hybrid_final_rel_err"][0]
    models = {"cfd": cfd_ckpt, "mpm": mpm_ckpt, "diffusion": res.get("diffusion_checkpoint"),
              "diffusion_corrector": res.get("diffusion_corrector"),
              **{f"cfd_hybrid_{i}": c for i, c in enumerate(args.cfd_hybrid or [])}}
    trained = {k: training_record(Path(v)) for k, v in models.items() if v}
    res["train_cpu_s"] = {k: v[0] for k, v in trained.items()}
    report("solver_speedup", res, args.json, seeds=sorted({v[1] for v in trained.values()}),
           train_cpu_hours=sum(v[0] for v in trained.values()) / 3600)


if __name__ == "__main__":
    main()
