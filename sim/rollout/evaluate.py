"""Roll a model over the trajectories of a store: series for ParaView, metrics, pictures (one
evaluator for every time-stepping family; each family prepares an entry as a :class:`Case`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import SimError
from sim.mesh import PVDWriter, SeriesLayout, Store, Trajectory, XDMFWriter, check_entry_name
from sim.mesh.atomic import staged_dir
from sim.rollout.engine import RolloutResult, split_fields


def state_of(traj: Trajectory, fields: list[str], path: Any = None) -> np.ndarray:
    """(T, N, F) state of ``traj`` with ``fields`` concatenated; a clear error when one is missing."""
    missing = [f for f in fields if f not in traj.point_fields]
    if missing:
        raise SimError(f"the trajectory has no point field(s) {missing} the model needs "
                       f"(has {sorted(traj.point_fields)})", path)
    return np.concatenate([traj.point_fields[f].reshape(traj.num_steps, traj.mesh.num_points, -1) for f in fields],
                          axis=-1).astype(np.float32)


def rollout_window(simulator: Any, truth: np.ndarray, steps: int | None = None, path: Any = None,
                   what: str = "the trajectory") -> tuple[np.ndarray, np.ndarray, int]:
    """Split a true (T, N, F) series for a rollout: the initial frames the model needs (its
    ``history`` h, oldest first), the reference from the last of them on (frame 0 = the
    rollout's start, step h - 1 of the series), and the number of steps (all, or ``steps``)."""
    h = int(simulator.config.get("history", 1))
    if len(truth) <= h:
        raise SimError(f"{what} has {len(truth)} step(s); the model starts from {h} and needs one more to roll "
                       "out", path)
    n = len(truth) - h if steps is None else min(steps, len(truth) - h)
    return truth[:h], truth[h - 1:h + n], n


class ComparisonWriter:
    """Wraps a series writer: each step carries the prediction, the truth and their difference
    (``<field>``, ``<field>_truth``, ``<field>_error``) so ParaView shows all three."""

    def __init__(self, writer: PVDWriter | XDMFWriter, reference: np.ndarray, fields: list[str], dims: list[int],
                 t0: float, dt: float):
        self.writer, self.reference, self.fields, self.dims = writer, reference, fields, dims
        self.t0, self.dt = t0, dt

    def write(self, time: float, point_fields: dict[str, Any] | None = None, positions: Any = None,
              **_: Any) -> None:
        step = int(round((time - self.t0) / self.dt))
        truth = split_fields(self.reference[step], self.fields, self.dims)
        out = dict(point_fields or {})
        for f in self.fields:
            out[f"{f}_truth"] = truth[f]
            out[f"{f}_error"] = out[f] - truth[f]
        self.writer.write(time, out, positions=positions)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


@dataclass
class EntryResult:
    name: str
    steps: int
    rmse: dict[str, float]
    mse: np.ndarray
    persistence_rmse: dict[str, float]
    output: Path | None
    extra: dict[str, float] = field(default_factory=dict)  # physics-level metrics (sim.rollout.flow)


@dataclass
class Case:
    """One store entry prepared for a rollout by a family: its stepper, the true values of the
    steps it will predict (``reference`` (n + 1, N, F), step 0 the start), the same in the
    written fields' units (``field_reference``), the time axis and the series layout."""

    stepper: Any
    reference: np.ndarray
    field_reference: np.ndarray
    steps: int
    t0: float
    dt: float
    layout: SeriesLayout
    mesh_snapshot: Trajectory | None = None  # a fixed-mesh trajectory: --plot adds the step picture
    flow: Any = None  # FlowStatistics of a flow past an obstacle, fed every step


class Tee:
    """A step writer that writes each step to several (None entries are skipped)."""

    def __init__(self, *writers: Any):
        self.writers = [w for w in writers if w is not None]

    def write(self, time: float, point_fields: dict[str, Any] | None = None, positions: Any = None, **kw: Any
              ) -> None:
        for w in self.writers:
            w.write(time, point_fields, positions=positions, **kw)

    def close(self) -> None:
        for w in self.writers:
            w.close()

    def abort(self) -> None:
        for w in self.writers:
            w.abort()


def flow_statistics(traj: Trajectory, fields: list[str], dims: list[int], ref: np.ndarray, t0: float, dt: float
                    ) -> Any:
    """Flow statistics of a rollout when the state has a 2D ``velocity`` on a 2D mesh with an
    obstacle to shed behind (None otherwise)."""
    from sim.rollout.flow import FlowStatistics

    if "velocity" not in fields or traj.mesh.dim != 2:
        return None
    i = fields.index("velocity")
    if dims[i] != 2:
        return None
    start = int(sum(dims[:i]))
    stats = FlowStatistics(traj.mesh, traj.params, "velocity", ref[..., start:start + 2], t0, dt)
    return stats if stats.obstacle is not None else None


CaseBuilder = Callable[..., Case]


def mesh_case(model: Any, traj: Trajectory, name: str, steps: int | None, data: Any, device: Any = "cpu",
              compile: bool = False) -> Case:
    """A mesh simulator (or a list of them: an ensemble) from the entry's first step (its first
    h steps for a model that sees h frames), with ground-truth boundary values."""
    from sim.rollout.steppers import EnsembleStepper, MeshStepper

    members = list(model) if isinstance(model, (list, tuple)) else [model]
    first = members[0]
    if not isinstance(traj, Trajectory):
        raise SimError(f"entry {name!r} is a static mesh; rollouts need trajectories", data)
    fields, dims = first.config["fields"], first.config["field_dims"]
    if traj.mesh.dim + 1 != int(first.config["edge_in"]):
        raise SimError(f"entry {name!r} is on a {traj.mesh.dim}D mesh; the model was trained on "
                       f"{int(first.config['edge_in']) - 1}D meshes", data)
    initial, ref, n = rollout_window(first, state_of(traj, fields, data), steps, data, f"entry {name!r}")
    t0 = float(traj.times[len(initial) - 1])
    dt = traj.dt or float(np.diff(traj.times[:2])[0])
    steppers = [MeshStepper(m, [traj.mesh], [initial], [dt], [t0], boundary=[lambda s, t: ref[s]],
                            params=[traj.params], device=device, compile=compile) for m in members]
    stepper = steppers[0] if len(steppers) == 1 else EnsembleStepper(steppers)
    series = [*fields, *[f"{f}_truth" for f in fields], *[f"{f}_error" for f in fields]]
    if len(steppers) > 1:
        series += [f"{f}_std" for f in fields]
    layout = SeriesLayout(traj.mesh, point_fields=series, dt=dt, params=traj.params)
    return Case(stepper, ref, ref, n, t0, dt, layout, mesh_snapshot=traj,
                flow=flow_statistics(traj, fields, dims, ref, t0, dt))


def evaluate_store(model: Any, data: str | Path, case: CaseBuilder, entries: list[str] | None = None,
                   steps: int | None = None, out: Path | None = None, fmt: str = "pvd", plot: bool | Path = False,
                   device: str = "cpu", compile: bool = False, progress: bool = False) -> list[EntryResult]:
    """Roll ``model`` over each entry of a store (the one store evaluator of every
    time-stepping family; ``case`` prepares an entry for the family's stepper) and compare
    with the truth; persistence (the start held) is the baseline.

    Writes ``out/<entry>.pvd`` (or ``.xdmf``) with prediction, truth and error per step when
    ``out`` is given, and PNGs (error vs step; for flows past an obstacle the probe signal and
    its spectrum; for meshes one step's prediction/truth/error) with ``plot``: True puts them
    beside the series in ``out``, a folder puts them there (the metrics and the pictures
    without the series). Everything is written to a staging folder and swapped in only when
    every entry is done (:func:`sim.mesh.atomic.staged_dir`): a rollout that fails or is
    killed leaves a previous rollout in ``out`` as it was, and files there that this rollout
    does not write are never touched.
    """
    from tqdm import tqdm

    from sim.rollout.engine import run

    results = []
    pictures = out if plot is True else (Path(plot) if plot else None)
    with contextlib.ExitStack() as stack:
        stage = stack.enter_context(staged_dir(out)) if out is not None else None
        if pictures is None:
            plot_stage = None
        elif pictures == out:
            plot_stage = stage
        else:
            plot_stage = stack.enter_context(staged_dir(pictures))
        store = stack.enter_context(Store(data))
        names = [check_entry_name(n, data) for n in (entries or store.names())]
        bar = None  # shown once the first entry is accepted: a refused model/data pair is one error line
        for name in names:
            c = case(model, store.read(name), name, steps, data, device=device, compile=compile)
            if bar is None:
                bar = tqdm(total=len(names), desc="entries", unit="entry", disable=not progress or len(names) < 2)
            writer, path = None, None
            if stage is not None:
                path = out / f"{name}.{fmt}"  # where it will be; written in the staging folder
                staged = stage / path.name
                base = PVDWriter(staged, c.layout) if fmt == "pvd" else XDMFWriter(staged, c.layout)
                writer = ComparisonWriter(base, c.field_reference, c.stepper.fields, c.stepper.dims, c.t0, c.dt)
            res = run(c.stepper, c.steps, c.stepper.times, [Tee(writer, c.flow)], [c.reference])
            ref = c.reference
            persistence = np.array([((ref[s] - ref[0]) ** 2).mean() for s in range(1, c.steps + 1)])
            pres = RolloutResult(final=[], mse=[persistence])
            extra = c.flow.metrics() if c.flow is not None else {}
            results.append(EntryResult(name, c.steps, res.rmse(0), res.mse[0], pres.rmse(0), path, extra))
            if plot_stage is not None:
                from sim.rollout.plots import error_curve_png, snapshot_png

                error_curve_png(plot_stage / f"{name}_error.png", res.mse[0], persistence, c.dt, name)
                if c.flow is not None:
                    c.flow.probe_png(plot_stage / f"{name}_probe.png", name)
                if c.mesh_snapshot is not None:
                    snapshot_png(plot_stage / f"{name}_step.png", c.mesh_snapshot, ref, res, c.stepper.fields,
                                 c.stepper.dims, None, c.steps)
            bar.update(1)
        if bar is not None:
            bar.close()
    return results
