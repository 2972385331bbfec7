"""The steady-field family: a graph network (:class:`~sim.models.steady.SteadySimulator`) from a
mesh and input scalars to fields in one pass, the graph-model baseline of MMGP.

Configuration (``model.family: steady``)::

    model:
      family: steady
      network: meshgraphnet        # or graph_transformer
      preset: cpu
      fields: [u, von_mises]       # output point fields of each sample
      scalars: [E, nu, load]       # input scalars (field data of each sample)
      family_args:
        node_inputs: [pressure]    # optional: input point fields of each mesh, read at every node
    data:
      train: datasets/elasticity_shapes/medium/train.h5
      valid: datasets/elasticity_shapes/medium/test.h5

Metrics (``sim eval``): PLAID's per-sample relative RMSE of each field (RMS error over nodes
and components divided by the largest true magnitude), aggregated as an RMS over samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import SimError
from sim.families.base import Evaluation, Family, Surrogate, register_family
from sim.mesh import Mesh, NodeType


@dataclass
class SteadyOptions:
    """``model.family_args`` of steady graph models."""

    coords: bool = True  # append node coordinates to the node inputs
    node_inputs: list[str] = field(default_factory=list)  # point fields of each mesh read at every node


def rrmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """PLAID's per-sample relative RMSE: RMS error over nodes and components / max |truth|."""
    return float(np.sqrt(((pred - truth) ** 2).mean()) / max(float(np.abs(truth).max()), 1e-30))


def sample_scalars(mesh: Mesh, names: list[str], where: Any = None) -> dict[str, float]:
    """The input scalars of one steady sample (its field data), one error naming missing ones."""
    missing = [k for k in names if k not in mesh.field_data]
    if missing:
        raise SimError(f"the sample has no input scalar(s) {missing} in its field data (has "
                       f"{sorted(mesh.field_data)})", where)
    return {k: float(np.asarray(mesh.field_data[k]).reshape(-1)[0]) for k in names}


def field_evaluation(predict: Any, data: Path, entries: list[str] | None, fields: list[str], scalars: list[str],
                     stds: bool = False) -> Evaluation:
    """Per-sample RRMSE of each field of ``predict(mesh, scalars) -> {field: array}`` on a store of
    steady samples (and, with ``stds``, the 95 % interval coverage from ``<field>_std``)."""
    from tqdm import tqdm

    from sim.mesh import Store, check_entry_name

    rows = []
    inside = total = 0
    with Store(data) as store:
        names = [check_entry_name(n, data) for n in (entries or store.names())]
        for name in names:  # refused before any work: a store of trajectories is the usual mistake
            if store.entry(name).kind != "mesh":
                raise SimError(f"entry {name!r} is a trajectory; steady models evaluate on static samples", data)
        for name in tqdm(names, desc="samples", disable=len(names) < 2):
            mesh = store.read(name)
            missing = [f for f in fields if f not in mesh.point_data]
            if missing:
                raise SimError(f"entry {name!r} has no point field(s) {missing} to compare with", data)
            pred = predict(mesh, sample_scalars(mesh, scalars, data))
            row: dict[str, Any] = {"entry": name}
            for f in fields:
                truth = np.asarray(mesh.point_data[f], dtype=np.float64).reshape(np.shape(pred[f]))
                row[f"rrmse_{f}"] = rrmse(np.asarray(pred[f]), truth)
                if stds and f"{f}_std" in pred:
                    half = 1.96 * np.asarray(pred[f"{f}_std"]).reshape(truth.shape)
                    inside += int((np.abs(np.asarray(pred[f]) - truth) <= half).sum())
                    total += truth.size
            rows.append(row)
    cols = [f"rrmse_{f}" for f in fields]
    summary = {c: float(np.sqrt(np.mean([r[c] ** 2 for r in rows]))) for c in cols}
    summary["rrmse_fields"] = float(np.mean([summary[c] for c in cols]))
    if total:
        summary["coverage95"] = inside / total
    return Evaluation(rows, summary, cols)


@register_family
class SteadyFamily(Family):
    """Steady fields: a graph network from a mesh and input scalars to fields in one pass (the
    graph-network baseline of MMGP, as PLAID trains it), without uncertainty of its own. Its
    inputs are the node types, the scalars, optionally input point fields (``node_inputs``) and
    the coordinates."""

    name = "steady"
    model_names = ("steady_simulator",)
    commands = frozenset({"train", "eval", "predict"})
    options = SteadyOptions

    def build_dataset(self, cfg: Any) -> Any:
        from sim.data.samples import MeshSampleDataset

        return MeshSampleDataset(cfg.data.train, cfg.model.fields, cfg.model.scalars,
                                 node_inputs=self.parse_options(cfg).node_inputs)

    def build_model(self, cfg: Any, dataset: Any) -> Any:
        import dataclasses

        from sim.models.registry import preset_args
        from sim.models.steady import SteadySimulator

        m = cfg.model
        args = {**(preset_args(m.network, m.preset) if m.preset else {}), **m.network_args}
        edge_in = int(dataset[0].edge_attr.shape[-1])
        return SteadySimulator(m.network, args, m.fields, dataset.dims, m.scalars, edge_in,
                               **dataclasses.asdict(self.parse_options(cfg)), node_input_dims=dataset.node_input_dims)

    def validate(self, model: Any, cfg: Any, device: Any) -> dict[str, float]:
        """RRMSE per field (RMS over the first ``data.valid_entries`` samples)."""
        from sim.mesh import Store

        with Store(cfg.data.valid) as store:
            names = store.names()[:cfg.data.valid_entries]
        try:  # the trainer has put the model in eval mode; its predict builds graphs on the CPU
            ev = self.evaluate(model.to("cpu"), cfg.data.valid, names)
        finally:
            model.to(device)
        return {f"valid_{k}": v for k, v in ev.summary.items() if k != "rrmse_fields"}

    def evaluate(self, model: Any, data: Path, entries: list[str] | None, steps: int | None = None,
                 out: Path | None = None, fmt: str = "pvd", plot: bool = False, device: str = "cpu",
                 compile: bool = False) -> Evaluation:
        c = model.config
        return field_evaluation(model.predict, data, entries, c["fields"], c["scalars"])

    def surrogate(self, model: Any, payload: dict[str, Any], path: Path) -> Surrogate:
        return SteadySurrogate(model, path)


class SteadySurrogate(Surrogate):
    """A graph network that maps a mesh and input scalars to steady fields
    (:class:`~sim.models.steady.simulator.SteadySimulator`)."""

    family = "steady"

    def __init__(self, model: Any, path: Path):
        super().__init__(path)
        self.model = model

    def describe(self) -> dict[str, Any]:
        c = self.model.config
        return {**super().describe(), "network": c["network"], "scalars_in": list(c["scalars"]),
                "fields": dict(zip(c["fields"], c["field_dims"])), "mesh_dim": c["edge_in"] - 1,
                "node_inputs": dict(zip(c.get("node_inputs", []), c.get("node_input_dims", [])))}

    def predict(self, query: Any, **scalars: Any):
        """Fields on ``query``'s nodes as a pyvista grid. ``query``: a Mesh, a pyvista or meshio
        mesh, or a mesh file; errors about it name its file (not the model's)."""
        query, where = self.mesh_query(query, "query")
        if not isinstance(query, Mesh):
            raise SimError(f"steady models predict on a Mesh, got {type(query).__name__}", where)
        c = self.model.config
        if query.dim + 1 != c["edge_in"]:
            raise SimError(f"the model was trained on {c['edge_in'] - 1}D meshes; this mesh is {query.dim}D", where)
        self.check_scalars(scalars, list(c["scalars"]))
        if query.node_type is not None:
            bad = np.setdiff1d(np.unique(query.node_type), [int(t) for t in NodeType])
            if bad.size:
                raise SimError(f"unknown node type value(s) {bad.tolist()}", where)
        with self._lock:
            try:
                res = self.model.predict(query, scalars)
            except SimError as exc:  # a problem of the mesh found while building its graph
                raise exc.with_path(where) if where is not None else exc from None
        grid = Mesh(query.points, query.cells, node_type=query.node_type).to_pyvista()
        for k, v in res.items():
            grid.point_data[k] = v
        return grid


