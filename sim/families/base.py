"""The model-family protocol and its registry.

A family is one registered object that supplies every part the shared machinery needs:

- its typed options (``model.family_args`` of a training config, a dataclass ``options``);
- for training (:mod:`sim.train.trainer`, the one trainer): ``build_dataset``,
  ``build_model``, ``collate``, ``loss`` and ``validate`` (a family that is fitted rather
  than trained, MMGP, implements ``fit`` instead);
- for use: ``surrogate`` (its :class:`Surrogate` class over a loaded model), ``case`` (an
  entry of a store prepared for the one rollout loop, time-stepping families), ``evaluate``
  (its metrics on a store), ``diagnose_sample`` (the graph the diagnostics run on);
- ``commands``: the ``sim`` commands it supports; the others refuse in one line.

The trainer, the CLI, the API and the benches look a family up (:func:`get_family`,
:func:`family_of`) and never branch on it. Other packages register their own through the
entry-point group ``sim.families`` (``name = "pkg.module:MyFamily"``).
"""

from __future__ import annotations

import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sim.errors import SimError

COMMANDS = ("train", "rollout", "eval", "predict", "diagnose")
HINTS = {"rollout": "they are not time-stepping models: use `sim predict`",
         "predict": "they predict from an observed trajectory or particle history: use `sim rollout` or the Python API",
         "diagnose": "the diagnostics apply to mesh time-stepping models"}


PRECISIONS = ("fp32", "bf16")


def set_precision(models: Any, name: str) -> None:
    """Run the networks of ``models`` (a simulator or a list: an ensemble's members) in ``name``
    precision at inference: ``fp32`` (default) or ``bf16`` (matrix products in bfloat16 under
    autocast: about 1.5-3x faster on CPUs with bfloat16 instructions and on GPUs, at a small
    error per step that a rollout accumulates; measure it on your data with ``sim eval
    --precision bf16``). Training is always float32."""
    if name not in PRECISIONS:
        raise SimError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    for member in models if isinstance(models, list) else [models]:
        member.inference_precision = name


class Surrogate:
    """A loaded model. ``family`` names the model family; ``describe()`` says what it expects.

    Surrogates are safe to query from several threads: each query builds its own graph and
    state, and the shared network runs under a per-surrogate lock."""

    family = "surrogate"

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "path": str(self.path)}

    def predict(self, query: Any, **scalars: Any) -> Any:
        raise SimError(f"{self.family} surrogates do not answer predict()", self.path)

    def set_precision(self, name: str) -> Surrogate:
        """Run the network in ``fp32`` (default) or ``bf16`` from now on (:func:`set_precision`;
        mesh and particle models); returns the surrogate, so
        ``sim.load(path).set_precision("bf16")`` reads as one step."""
        raise SimError(f"{self.family} models run in float32 only (set_precision applies to mesh and particle "
                       "models)", self.path)

    def set_compile(self, on: bool = True) -> Surrogate:
        """Run rollouts through ``torch.compile`` from now on (mesh models: the one-step map, compiled
        once per mesh and batch size; particle models: the network, the radius graphs staying
        eager). Same results; it pays on long rollouts of large meshes and costs a compile at the
        first step of each new shape. Returns the surrogate: ``sim.load(path).set_compile()``."""
        raise SimError(f"{self.family} models are not rolled out (set_compile applies to mesh and particle "
                       "models)", self.path)

    @staticmethod
    def mesh_query(query: Any, what: str = "the mesh") -> tuple[Any, str | None]:
        """The caller's mesh or series as ours, and the file it came from (None for an object).

        A :class:`~sim.mesh.Mesh` or :class:`~sim.mesh.Trajectory` is taken as it is; a pyvista
        or VTK dataset, a ``meshio.Mesh`` or a mesh file is converted
        (:func:`sim.mesh.adapters.as_sim`; at ``z`` exactly 0 it is 2D). Errors about the query
        name that file, not the model's."""
        from sim.mesh.adapters import as_sim

        return as_sim(query, what)

    def check_scalars(self, scalars: dict[str, Any], expected: list[str], required: bool = True) -> None:
        """Refuse input scalars the model does not take (a misspelt ``--param``), and with
        ``required`` those it takes but was not given."""
        unknown = sorted(set(scalars) - set(expected))
        if unknown:
            raise SimError(f"the model takes no input scalar(s) {unknown} (it takes {expected or 'none'})", self.path)
        missing = [k for k in expected if k not in scalars] if required else []
        if missing:
            raise SimError(f"missing input scalar(s) {missing} (the model takes {expected})", self.path)

    def rollout(self, initial: Any, steps: int, boundary: Any = None, **kwargs: Any) -> Any:
        raise SimError(f"{self.family} surrogates are not time-stepping models: use predict()", self.path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.family} from {self.path}>"


class Recorder:
    """A step writer that keeps the predicted states (and forwards each step to another writer)."""

    def __init__(self, forward: Any = None, keep: bool = True):
        self.forward, self.keep = forward, keep
        self.times: list[float] = []
        self.states: list[dict[str, np.ndarray]] = []

    def write(self, time: float, point_fields: dict[str, Any] | None = None, **kw: Any) -> None:
        if self.keep:
            self.times.append(float(time))
            self.states.append({k: np.array(v) for k, v in (point_fields or {}).items()})
        if self.forward is not None:
            self.forward.write(time, point_fields, **kw)

    def close(self) -> None:
        if self.forward is not None:
            self.forward.close()

    def abort(self) -> None:
        if self.forward is not None and hasattr(self.forward, "abort"):
            self.forward.abort()


def series_writer(out: Any, layout: Any) -> Any:
    """A ``.pvd`` or ``.xdmf`` writer for ``out`` (None: no writer)."""
    if out is None:
        return None
    from sim.mesh import PVDWriter, XDMFWriter

    out = Path(out)
    if out.suffix.lower() == ".pvd":
        return PVDWriter(out, layout)
    if out.suffix.lower() == ".xdmf":
        return XDMFWriter(out, layout)
    raise SimError("rollout series are written as .pvd or .xdmf", out)


class Family:
    """Base of the model families; subclasses set the class attributes and override the parts
    they support (a part left alone refuses with a message naming the family)."""

    name: ClassVar[str] = ""
    model_names: ClassVar[tuple[str, ...]] = ()  # registered models whose checkpoints it serves
    formats: ClassVar[tuple[str, ...]] = ()  # 'format' strings of the non-checkpoint files it reads
    commands: ClassVar[frozenset[str]] = frozenset()
    options: ClassVar[type | None] = None  # dataclass of model.family_args
    trainable: ClassVar[bool] = True  # False: fitted (``fit``) instead of trained step by step
    ensembles: ClassVar[bool] = False  # `sim train --ensemble N` trains N members served as one surrogate
    input_noise: ClassVar[bool] = False  # trains with input noise (model.noise_std): train.augment_coreset applies
    tunable: ClassVar[bool] = False  # defines tuning_loss: train.self_tuning applies

    @property
    def summary(self) -> str:
        """The first sentence of the family's docstring, on one line."""
        text = " ".join((type(self).__doc__ or "").split())
        return text.split(". ")[0].rstrip(".")

    def refuse(self, command: str, hint: str = "") -> SimError:
        supported = ", ".join(c for c in COMMANDS if c in self.commands) or "none"
        return SimError(f"`sim {command}` does not apply to {self.name} models (they support: {supported})"
                        + (f"; {hint}" if hint else ""))

    def require(self, command: str) -> None:
        if command not in self.commands:
            raise self.refuse(command, HINTS.get(command, ""))

    # ----- configuration
    def parse_options(self, cfg: Any, source: Any = None) -> Any:
        """The family's typed options from ``model.family_args`` (checked once per distinct value:
        the loss of every training step may ask for them; read them, do not change them)."""
        from sim.train.config import ConfigError
        from sim.train.typed import build_section

        if self.options is None:
            if cfg.model.family_args:
                raise ConfigError(f"model.family_args: the {self.name} family takes no options", source)
            return None
        parsed = self.__dict__.setdefault("_parsed", {})
        key = repr(cfg.model.family_args)
        if key not in parsed:
            parsed[key] = build_section(self.options, cfg.model.family_args, "model.family_args", source,
                                        error=ConfigError)
        return parsed[key]

    def check_config(self, cfg: Any, source: Any = None) -> None:
        """Family-specific checks of a whole configuration (before anything is built)."""
        from sim.train.config import ConfigError

        self.parse_options(cfg, source)
        if cfg.model.pushforward or cfg.model.history != 1:
            raise ConfigError(f"model.pushforward and model.history are options of mesh models, not of the "
                              f"{self.name} family", source)

    # ----- training
    def build_dataset(self, cfg: Any) -> Any:
        raise self.refuse("train")

    def build_model(self, cfg: Any, dataset: Any) -> Any:
        raise self.refuse("train")

    def collator(self, cfg: Any, dataset: Any, model: Any) -> Any:
        """``collate(samples, step) -> batch`` (default: one batched graph of the samples)."""
        from torch_geometric.data import Batch

        return lambda samples, step: Batch.from_data_list(samples)

    def loss(self, model: Any, batch: Any, generator: Any, cfg: Any) -> tuple[Any, dict[str, float]]:
        """The training loss of a batch, and named parts to log beside it."""
        return model.loss(batch, generator), {}

    def loss_residual(self, model: Any, batch: Any) -> Any:
        """(residual, mask) of the model's loss on ``batch`` (the coreset proxy, sim.plugins.training.coreset;
        families with ``input_noise``)."""
        return model.loss_residual(batch)

    def tuning_loss(self, model: Any, batch: Any, cfg: Any) -> Any:
        """The differentiable loss self-tuned hyperparameters are tuned on (``train.self_tuning``,
        :mod:`sim.plugins.training.self_tuning`), called in eval mode on a clean batch."""
        from sim.train.config import ConfigError

        raise ConfigError(f"train.self_tuning: the {self.name} family defines no tuning loss (self-tuning "
                          "applies to mesh models)")

    def tuning_dataset(self, cfg: Any, path: Any) -> Any:
        """The samples of the store ``path`` the tuning loss is computed on (default: the training
        samples' kind, read from that store)."""
        import dataclasses

        return self.build_dataset(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train=path)))

    def validate(self, model: Any, cfg: Any, device: Any) -> dict[str, float]:
        return {}

    def fit(self, cfg: Any, progress: bool | None = None) -> dict[str, Any]:
        raise self.refuse("train")

    # ----- use
    def surrogate(self, model: Any, payload: dict[str, Any], path: Path) -> Surrogate:
        raise NotImplementedError

    def load(self, path: Path) -> Any:
        """The model of a non-checkpoint file in one of ``formats``."""
        raise NotImplementedError

    def case(self, model: Any) -> Any:
        """The rollout-case builder of :func:`sim.rollout.evaluate.evaluate_store`."""
        raise self.refuse("rollout", HINTS["rollout"])

    def evaluate(self, model: Any, data: Path, entries: list[str] | None, steps: int | None = None,
                 out: Path | None = None, fmt: str = "pvd", plot: bool = False, device: str = "cpu",
                 compile: bool = False, blowup_factor: float | None = None) -> "Evaluation":
        """Metrics on the entries of a store (``out``: also write what was predicted there).

        ``blowup_factor``: a rollout that grows beyond this many times the data's largest
        magnitude stops as diverged (0: only NaN/inf; None: the engine's default,
        :data:`sim.rollout.engine.BLOWUP_FACTOR`)."""
        from contextlib import nullcontext

        from sim.rollout.engine import blowup_guard
        from sim.rollout.evaluate import evaluate_store

        # the store evaluator's rollouts take the factor of the enclosing guard
        with nullcontext() if blowup_factor is None else blowup_guard(blowup_factor):
            results = evaluate_store(model, data, self.case(model), entries, steps, out, fmt, plot, device, compile,
                                     progress=True)
        return rollout_evaluation(results)

    def diagnose_sample(self, model: Any, data: Path, entry: str, step: int) -> Any:
        raise self.refuse("diagnose", HINTS["diagnose"])


class Evaluation:
    """A family's metrics on a store: ``rows`` (per entry: name and metric -> value),
    ``summary`` (mean metric -> value), ``columns`` to print, ``outputs`` written."""

    def __init__(self, rows: list[dict[str, Any]], summary: dict[str, float], columns: list[str],
                 outputs: list[Path] | None = None):
        self.rows, self.summary, self.columns, self.outputs = rows, summary, columns, outputs or []

    def table(self) -> str:
        """Columns as wide as their names (at least 12), two spaces apart."""
        widths = [max(12, len(c)) + 2 for c in self.columns]
        first = max(14, *(len(str(r["entry"])) + 2 for r in self.rows)) if self.rows else 14
        head = f"{'entry':<{first}}" + "".join(f"{c:>{w}}" for c, w in zip(self.columns, widths))
        lines = [head]
        for r in self.rows:
            lines.append(f"{str(r['entry']):<{first}}" + "".join(_cell(r.get(c), w) for c, w in zip(self.columns,
                                                                                                  widths)))
        lines.append(f"{'mean':<{first}}" + "".join(_cell(self.summary.get(c), w) for c, w in zip(self.columns,
                                                                                                 widths)))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Summary and per-entry metrics for JSON (a metric that is not finite, e.g. the error of an
        equation that does not parse, is null)."""
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not np.isfinite(v) else v

        return {**{k: clean(v) for k, v in self.summary.items()},
                "entries": {str(r["entry"]): {k: clean(v) for k, v in r.items() if k != "entry"} for r in self.rows}}


def _cell(v: Any, width: int = 14) -> str:
    if v is None:
        return f"{'-':>{width}}"
    return f"{v:>{width}.4g}" if isinstance(v, float) else f"{v!s:>{width}}"


def rollout_evaluation(results: list[Any]) -> Evaluation:
    """The rollout RMSE table (MeshGraphNet's definitions) of :func:`evaluate_store` results,
    with the persistence baseline and, for flows past an obstacle, the physics-level metrics
    (:mod:`sim.rollout.flow`): per entry, and over entries the median shedding-frequency error
    and the mean of the others."""
    horizons = [h for h in ("1", "10", "20", "50", "100", "200", "all") if all(h in r.rmse for r in results)]
    physics = [k for k in PHYSICS if all(k in r.extra for r in results)]
    rows = []
    for r in results:
        row: dict[str, Any] = {"entry": r.name, "steps": r.steps}
        row.update({f"rmse_{h}": r.rmse[h] for h in horizons})
        row["persistence_rmse_all"] = r.persistence_rmse["all"]
        row.update(r.extra)
        rows.append(row)
    summary = {f"rmse_{h}": float(np.mean([r.rmse[h] for r in results])) for h in horizons}
    summary.update({f"persistence_rmse_{h}": float(np.mean([r.persistence_rmse[h] for r in results]))
                    for h in horizons})
    for k in physics:
        values = [r.extra[k] for r in results]
        if k == "shedding_freq_err":
            summary["shedding_freq_err_median"] = float(np.median(values))
        summary[k] = float(np.mean(values))
    return Evaluation(rows, summary, ["steps", *[f"rmse_{h}" for h in horizons], "persistence_rmse_all",
                                      *[k for k in physics if k in SHOWN]],
                      [r.output for r in results if r.output is not None])


PHYSICS = ("shedding_freq_err", "mean_field_rrmse", "fluct_rrmse", "spread_error_spearman", "strouhal_pred",
           "strouhal_true")
SHOWN = ("shedding_freq_err", "mean_field_rrmse", "fluct_rrmse", "spread_error_spearman")


# --------------------------------------------------------------------------- registry
_FAMILIES: dict[str, Family] = {}


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: register one instance of a family under ``cls.name``."""
    if not cls.name:
        raise SimError(f"family class {cls.__name__} has no name")
    if cls.name in _FAMILIES and type(_FAMILIES[cls.name]) is not cls:
        raise SimError(f"family {cls.name!r} is registered twice ({type(_FAMILIES[cls.name]).__module__} and "
                       f"{cls.__module__})")
    _FAMILIES[cls.name] = cls()
    return cls


def _load_builtin() -> None:
    import sim.families.mesh  # noqa: F401 - each module registers its family
    import sim.families.mmgp  # noqa: F401
    import sim.families.particle  # noqa: F401
    import sim.families.prose  # noqa: F401
    import sim.families.steady  # noqa: F401

    for ep in entry_points(group="sim.families"):
        if ep.name not in _FAMILIES:
            register_family(ep.load())


def available_families() -> list[Family]:
    _load_builtin()
    return [_FAMILIES[k] for k in sorted(_FAMILIES)]


def get_family(name: str) -> Family:
    """The family registered as ``name``; an unknown name lists the known ones."""
    _load_builtin()
    if name not in _FAMILIES:
        raise SimError(f"unknown model family {name!r} (families: {', '.join(sorted(_FAMILIES))})")
    return _FAMILIES[name]


def family_of(model: Any) -> Family:
    """The family serving a loaded model: by its registered model name, or by the ``format`` of
    the file it came from (models that are not checkpoints, e.g. MMGP)."""
    _load_builtin()
    name = getattr(model, "registered_name", None)
    fmt = getattr(model, "file_format", None)
    for fam in _FAMILIES.values():
        if (name is not None and name in fam.model_names) or (fmt is not None and fmt in fam.formats):
            return fam
    raise SimError(f"no model family serves {type(model).__name__} models (registered name {name!r})")


def family_for_format(fmt: str, path: Any = None) -> Family:
    _load_builtin()
    for fam in _FAMILIES.values():
        if fmt in fam.formats:
            return fam
    from sim.errors import FileFormatError

    raise FileFormatError(f"no model family reads files of format {fmt!r}", path)
