"""The MMGP family (mesh morphing + POD + Gaussian processes, :class:`~sim.models.mmgp.MMGP`):
steady fields and scalars under geometry change, with predictive uncertainty. It is fitted,
not trained step by step: ``sim train`` fits it on the store and writes ``train.out/model.npz``.

Configuration (``model.family: mmgp``)::

    model:
      family: mmgp
      fields: [u, von_mises]       # output point fields
      scalars: [E, nu, load]       # input scalars (field data of each sample)
      family_args: {shape_modes: 16, field_modes: 16, output_scalars: [max_von_mises]}
    data:
      train: datasets/elasticity_shapes/medium/train.h5
      valid: datasets/elasticity_shapes/medium/test.h5
    train:
      out: runs/mmgp
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import SimError
from sim.families.base import Evaluation, Family, Surrogate, register_family
from sim.families.steady import field_evaluation, sample_scalars
from sim.mesh import Mesh


@dataclass
class MMGPOptions:
    """``model.family_args`` of MMGP (its constructor arguments and the output scalars)."""

    shape_modes: int = 12
    field_modes: int = 12
    pins: int = 4
    morph: bool = True
    common_index: int | None = None
    n_restarts: int = 3
    n_draws: int = 100
    random_state: int = 0
    scaling: str = "power"  # outputs divided by a fitted power law of the positive input scalars ("none": raw)
    refine: int = 0  # uniform refinements of the common support
    output_scalars: list[str] = field(default_factory=list)


@register_family
class MMGPFamily(Family):
    """MMGP: steady fields under geometry change with uncertainty (mesh morphing + POD + Gaussian
    processes), fitted rather than trained."""

    name = "mmgp"
    formats = ("sim.mmgp",)
    commands = frozenset({"train", "eval", "predict"})
    options = MMGPOptions
    trainable = False

    def load(self, path: Path) -> Any:
        from sim.models.mmgp import MMGP

        return MMGP.load(path)

    def fit(self, cfg: Any, progress: bool | None = None) -> dict[str, Any]:
        """Fit on every sample of ``data.train``; write ``train.out/model.npz`` (and validate on
        ``data.valid`` when given)."""
        import dataclasses

        from sim.mesh import Store
        from sim.models.mmgp import MMGP

        opts = dataclasses.asdict(self.parse_options(cfg))
        outputs = opts.pop("output_scalars")
        out = Path(cfg.train.out) / "model.npz"
        meshes = []
        with Store(cfg.data.train) as store:
            for name in store.names():
                m = store.read(name)
                if not isinstance(m, Mesh):
                    raise SimError(f"entry {name!r} is a trajectory; MMGP fits static samples", cfg.data.train)
                meshes.append(m)
        inputs = [sample_scalars(m, cfg.model.scalars, cfg.data.train) for m in meshes]
        outs = [sample_scalars(m, outputs, cfg.data.train) for m in meshes]
        for f in cfg.model.fields:
            bad = [i for i, m in enumerate(meshes) if f not in m.point_data]
            if bad:
                raise SimError(f"sample {bad[0]} has no point field {f!r}", cfg.data.train)
        clock = time.process_time if cfg.train.clock == "process" else time.perf_counter
        t0 = clock()
        model = MMGP(**opts).fit(meshes, {k: np.array([s[k] for s in inputs]) for k in cfg.model.scalars},
                                 {f: [m.point_data[f] for m in meshes] for f in cfg.model.fields},
                                 {k: np.array([s[k] for s in outs]) for k in outputs})
        seconds = clock() - t0
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(out)
        summary: dict[str, Any] = {"steps": 1, "samples": len(meshes), "seconds": seconds, "clock": cfg.train.clock,
                                   "checkpoint": str(out), "final_loss": None}
        if cfg.data.valid:
            with Store(cfg.data.valid) as store:
                names = store.names()[:cfg.data.valid_entries]
            ev = self.evaluate(model, Path(cfg.data.valid), names)
            summary.update({f"valid_{k}": v for k, v in ev.summary.items()})
        return summary

    def evaluate(self, model: Any, data: Path, entries: list[str] | None, steps: int | None = None,
                 out: Path | None = None, fmt: str = "pvd", plot: bool = False, device: str = "cpu",
                 compile: bool = False) -> Evaluation:
        def predict(mesh: Mesh, scalars: dict[str, float]) -> dict[str, np.ndarray]:
            p = model.predict(mesh, scalars)
            return {**p["fields"], **{f"{k}_std": v for k, v in p["fields_std"].items()}}

        fields = list(model.field_components_)
        return field_evaluation(predict, data, entries, fields, list(model.scalar_names_), stds=True)

    def surrogate(self, model: Any, payload: dict[str, Any], path: Path) -> Surrogate:
        return MMGPSurrogate(model, path)


class MMGPSurrogate(Surrogate):
    """MMGP: steady fields and scalars on the caller's mesh, with predictive std."""

    family = "mmgp"

    def __init__(self, model: Any, path: Path):
        super().__init__(path)
        self.model = model

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {**super().describe(), "scalars_in": list(m.scalar_names_), "fields": dict(m.field_components_),
                "scalars_out": list(m.output_gps_)}

    def predict(self, query: Any, **scalars: Any):
        """Fields (``<field>``, ``<field>_std``) on ``query``'s nodes as a pyvista grid, output
        scalars (and ``<name>_std``) in its field data. ``query``: a Mesh, a pyvista or meshio
        mesh, or a mesh file (a 2D gmsh mesh at z = 0 is 2D); errors about it name its file."""
        query, where = self.mesh_query(query, "query")
        if not isinstance(query, Mesh):
            raise SimError(f"MMGP predicts on a Mesh (2D triangles), got {type(query).__name__}", where)
        if query.dim != 2 or "triangle" not in query.cells:
            raise SimError(f"MMGP was fitted on 2D triangle meshes; this mesh is {query.dim}D with cells "
                           f"{list(query.cells)}", where)
        self.check_scalars(scalars, list(self.model.scalar_names_))
        try:
            return self.model.predict_pyvista(query, scalars)  # no shared mutable state: safe without the lock
        except SimError as exc:  # the mesh cannot be morphed (no single boundary loop, ...)
            raise exc.with_path(where) if where is not None else exc from None


