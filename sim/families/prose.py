"""The PROSE family (:class:`~sim.models.prose.PROSE`): from an observed window of an ODE
trajectory (and optionally a guess of its equations), the future at any query time and the
equations as symbols. Trained by the one trainer (``sim train``) like every family.

Configuration (``model.family: prose``)::

    model:
      family: prose
      network: prose
      preset: cpu                 # or network_args: {width: 64, ...}; max_dim from the data
      family_args: {data_weight: 6.0, p_delete: 0.15, p_insert: 0.15, input_points: 64}
    data:
      train: datasets/ode_systems/lts_small/train.h5
      valid: datasets/ode_systems/lts_small/test.h5
      batch_size: 32
    optim: {name: adamw, lr: 1.0e-3, schedule: inverse_sqrt, warmup_steps: 300, weight_decay: 1.0e-4}
    train: {steps: 10000, clock: process}

Metrics (``sim eval``): relative L2 of the predicted future (the data decoder's, the fused
prediction's: the generated equations integrated where they reproduce the observed window,
and holding the last observed state), the fraction of generated equations that parse, their
skeleton match and the relative L2 of their vector field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sim.errors import SimError
from sim.families.base import Evaluation, Family, Surrogate, register_family
from sim.mesh import Mesh, Trajectory

FUSE_TOL = 0.05  # window fit (relative L2) under which a prediction integrates the generated equations


@dataclass
class ProseOptions:
    """``model.family_args`` of PROSE: the loss weight, the symbol and data noise of training
    (PROSE: 15 % term deletion and insertion), the observed window and the data used."""

    data_weight: float = 6.0
    p_delete: float = 0.15
    p_insert: float = 0.15
    p_drop: float = 0.0
    data_noise: float = 0.0
    input_points: int = 64
    field: Literal["state", "state_noisy"] = "state"
    systems: list[str] | None = None
    eval_symbols: Literal["noisy", "clean", "none"] = "noisy"  # the symbol input of validation and `sim eval`
    # training on shortened windows: a fraction p_truncate of the batches keeps only the last k
    # observed points, k uniform in [min_input_points, input_points] (None: always the full window)
    min_input_points: int | None = None
    p_truncate: float = 0.0


def _options_of(model: Any) -> ProseOptions:
    """The options a model was trained with (its checkpoint's configuration), else the defaults."""
    args = ((getattr(model, "train_config", None) or {}).get("model") or {}).get("family_args") or {}
    known = set(ProseOptions.__dataclass_fields__)
    return ProseOptions(**{k: v for k, v in args.items() if k in known})


@register_family
class ProseFamily(Family):
    """PROSE: ODE trajectories and their governing equations as symbols (multimodal transformer)."""

    name = "prose"
    model_names = ("prose",)
    commands = frozenset({"train", "rollout", "eval"})
    options = ProseOptions

    def build_dataset(self, cfg: Any) -> Any:
        from sim.models.prose import ODEWindows
        from sim.models.prose.symbols import SymbolVocabulary

        opts = self.parse_options(cfg)
        vocab = SymbolVocabulary(max_dim=max(6, int(cfg.model.network_args.get("max_dim", 0))))
        return ODEWindows(cfg.data.train, vocab, systems=opts.systems, input_points=opts.input_points,
                          field=opts.field)

    def build_model(self, cfg: Any, dataset: Any) -> Any:
        from sim.models.registry import preset_args

        m = cfg.model
        args = {**(preset_args(m.network, m.preset) if m.preset else {}), **m.network_args}
        args.setdefault("max_dim", max(s.dim for s in dataset))
        args.setdefault("vocab", dataset.vocab.config)
        from sim.models.registry import build_model

        return build_model(m.network, **args)

    def collator(self, cfg: Any, dataset: Any, model: Any) -> Any:
        from sim.models.prose import PROSECollator

        o = self.parse_options(cfg)
        col = PROSECollator(model.vocab, model.max_dim, dataset.input_points,
                            symbols="noisy" if model.symbol_input else "off", p_delete=o.p_delete,
                            p_insert=o.p_insert, p_drop=o.p_drop, data_noise=o.data_noise, pool=dataset.term_pool(),
                            seed=cfg.train.seed, min_input_points=o.min_input_points, p_truncate=o.p_truncate)

        def collate(samples: list[Any], step: int) -> Any:
            col.calls = step  # the noise of step s depends on (seed, s) only
            return col(samples)

        return collate

    def loss(self, model: Any, batch: Any, generator: Any, cfg: Any) -> tuple[Any, dict[str, float]]:
        from sim.models.prose import prose_loss

        return prose_loss(model, batch, self.parse_options(cfg).data_weight)

    def validate(self, model: Any, cfg: Any, device: Any) -> dict[str, float]:
        ev = self._evaluate(model, Path(cfg.data.valid), self.parse_options(cfg), limit=cfg.data.valid_entries)
        return {f"valid_{k}": v for k, v in ev.summary.items()
                if k in ("data_rel_l2_mean", "valid_fraction", "expr_rel_l2_median")}

    def _evaluate(self, model: Any, data: Path, opts: ProseOptions, entries: list[str] | None = None,
                  limit: int | None = None, out: Path | None = None, plot: bool = False) -> Evaluation:
        from sim.models.prose import ODEWindows, PROSECollator
        from sim.models.prose.evaluate import evaluate

        ds = ODEWindows(data, model.vocab, systems=opts.systems, input_points=opts.input_points, field=opts.field,
                        limit=limit)
        samples = [s for s in ds if entries is None or s.name in entries]
        if not samples:
            raise SimError(f"no entry {entries} among the ODE trajectories", data)
        symbols = opts.eval_symbols if model.symbol_input else "off"
        collator = PROSECollator(model.vocab, model.max_dim, opts.input_points, symbols=symbols,
                                 pool=ds.term_pool(), data_noise=opts.data_noise, seed=12345)
        res = evaluate(model, samples, collator, progress=len(samples) > 64, fuse_tol=FUSE_TOL)
        per = res["per_sample"]
        keys = ["data_rel_l2", "baseline_rel_l2"] + (["fused_rel_l2", "valid", "expr_rel_l2", "skeleton_match"]
                                                     if model.symbol_output else [])
        rows = [{"entry": s.name, **{k: (float(per[k][i]) if k != "valid" and k != "skeleton_match"
                                         else bool(per[k][i])) for k in keys},
                 **({"equations": per["generated"][i]} if model.symbol_output else {})}
                for i, s in enumerate(samples)]
        summary = {k: v for k, v in res.items() if isinstance(v, float)}
        if out is not None:
            self._write(model, samples, rows, opts, out, plot)
        cols = ["data_rel_l2", "baseline_rel_l2"] + (["fused_rel_l2", "expr_rel_l2"] if model.symbol_output else [])
        summary.update({c: float(np.mean([r[c] for r in rows])) for c in cols if c not in summary})
        return Evaluation(rows, summary, cols, [out / f"{s.name}.csv" for s in samples] if out is not None else [])

    def _write(self, model: Any, samples: list[Any], rows: list[dict[str, Any]], opts: ProseOptions,
               out: Path, plot: bool = False) -> None:
        """Per entry ``<entry>.csv``: time, predicted (as the surrogate predicts it: fused, see
        :meth:`ProseSurrogate.predict`) and true state of the future (and with ``plot``
        ``<entry>.png``), and ``equations.json``: the generated equations next to the true ones."""
        from sim.mesh.atomic import atomic_path
        from sim.models.prose.evaluate import fuse

        out.mkdir(parents=True, exist_ok=True)
        n = opts.input_points
        eqs = {}
        for s, row in zip(samples, rows):
            pred, exprs = model.query(s.times[:n], s.state[:n], s.times[n:s.state.shape[0]])
            if exprs is not None:
                pred = fuse(exprs, s.times[:n], s.state[:n], s.times[n:s.state.shape[0]], pred, FUSE_TOL)[0]
            head = ["t", *[f"pred_x{i}" for i in range(s.dim)], *[f"true_x{i}" for i in range(s.dim)]]
            table = np.column_stack([s.times[n:s.state.shape[0]], pred, s.state[n:]])
            with atomic_path(out / f"{s.name}.csv") as tmp:
                np.savetxt(tmp, table, delimiter=",", header=",".join(head), comments="")
            eqs[s.name] = {"true": [str(e) for e in s.exprs],
                           "predicted": None if exprs is None else [str(e) for e in exprs]}
            if plot:
                from sim.rollout.plots import trajectory_png

                trajectory_png(out / f"{s.name}.png", s.times[:n], s.state[:n], s.times[n:s.state.shape[0]],
                               s.state[n:], pred, f"{s.system} {s.name}", eqs[s.name]["predicted"])
        with atomic_path(out / "equations.json") as tmp:
            Path(tmp).write_text(json.dumps(eqs, indent=2))

    def evaluate(self, model: Any, data: Path, entries: list[str] | None, steps: int | None = None,
                 out: Path | None = None, fmt: str = "pvd", plot: bool = False, device: str = "cpu",
                 compile: bool = False, blowup_factor: float | None = None) -> Evaluation:
        for flag, value in (("--steps", steps), ("--blowup-factor", blowup_factor)):
            if value is not None:
                raise SimError("PROSE predicts the whole future of each trajectory after its observed window at "
                               f"once, without stepping; {flag} does not apply")
        return self._evaluate(model.to(device), Path(data), _options_of(model), entries, out=out, plot=plot)

    def surrogate(self, model: Any, payload: dict[str, Any], path: Path) -> Surrogate:
        return ProseSurrogate(model, path)


class ProseSurrogate(Surrogate):
    """PROSE: from an observed window of an ODE trajectory (and optionally a guess of its
    equations), the future trajectory at any query times and the equations as sympy."""

    family = "prose"

    def __init__(self, model: Any, path: Path):
        super().__init__(path)
        self.model = model

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_dim": self.model.max_dim, "symbol_input": self.model.symbol_input}

    def predict(self, query: Trajectory | tuple[np.ndarray, np.ndarray], query_times: Any = None,
                symbols: Any = None, beam_size: int = 1, fuse_tol: float | None = FUSE_TOL,
                **scalars: Any) -> tuple[Trajectory, list | None]:
        """(future trajectory, equations). ``query``: a Trajectory whose ``state`` field (T, 1, d)
        is the observed window, or ``(times (T,), values (T, d))``. ``query_times`` default to
        twice the window's length beyond it at the same spacing. ``symbols``: a guess of the
        equations (prefix string, sympy expressions or infix strings, one per component).

        The future is the prediction of both outputs (:func:`sim.models.prose.evaluate.fuse`): the
        generated equations integrated from the last observed state where, integrated over the
        window, they reproduce it within ``fuse_tol`` (relative L2), else the data decoder's
        prediction; ``fuse_tol=None`` always returns the decoder's. The trajectory's
        ``params["prediction"]`` says which (``"equations"`` or ``"decoder"``)."""
        if scalars:
            raise SimError(f"PROSE takes no scalar inputs (got {sorted(scalars)})", self.path)
        if isinstance(query, Trajectory):
            if "state" not in query.point_fields:
                raise SimError(f"the trajectory has no 'state' field (has {sorted(query.point_fields)})", self.path)
            times = np.asarray(query.times)
            values = np.asarray(query.point_fields["state"]).reshape(query.num_steps, -1)
        else:
            times, values = (np.asarray(a) for a in query)
        if query_times is None:
            step = float(np.mean(np.diff(times))) if len(times) > 1 else 1.0
            query_times = times[-1] + step * np.arange(1, 2 * len(times) + 1)
        with self._lock:
            pred, exprs = self.model.query(times, values, query_times, symbols=symbols, beam_size=beam_size)
        used = False
        if fuse_tol is not None and exprs is not None:
            from sim.models.prose.evaluate import fuse

            pred, used, _ = fuse(exprs, times, values.reshape(len(times), -1), np.asarray(query_times), pred, fuse_tol)
        traj = Trajectory(Mesh(np.zeros((1, 1))), np.asarray(query_times, dtype=np.float64),
                          point_fields={"state": pred[:, None, :]},
                          params={"equations": None if exprs is None else [str(e) for e in exprs],
                                  "prediction": "equations" if used else "decoder"})
        return traj, exprs


