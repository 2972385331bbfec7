"""Partitioned rollouts: one trajectory's mesh split over ranks, each rank stepping its part
plus a halo as deep as the model's receptive field and exchanging the new state of its halo
nodes with their owners once per step (:mod:`sim.distributed.partition`). The owned nodes'
states equal the single-process rollout's (to rounding: sums run in another order).

Each rank writes its piece of every step (the cells it owns, with the predicted fields, the
truth, their difference, the global node id and the rank as cell data); rank 0 writes a
``.pvtu`` per step naming the pieces and the ``.pvd`` over the steps, so ParaView opens the
series as one mesh. The series is staged and swapped in whole at the end (a failed or
interrupted run leaves a previous series untouched).

No rank reads more than its own rows of the trajectory's fields (one stored frame at a time);
the mesh is read whole once per rank to cut the part out of it, or only the part when the
partition comes from a file written by ``sim partition``.
"""

from __future__ import annotations

import resource
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sim.distributed.comm import HaloExchange, launch
from sim.distributed.partition import Part, build_partition, model_halo, partition_nodes, read_partition
from sim.errors import SimError
from sim.mesh import Mesh, Store

#: numpy dtype kind/size -> VTK XML type name, for the .pvtu declarations
_VTK_TYPES = {("f", 4): "Float32", ("f", 8): "Float64", ("i", 1): "Int8", ("i", 2): "Int16", ("i", 4): "Int32",
              ("i", 8): "Int64", ("u", 1): "UInt8", ("u", 2): "UInt16", ("u", 4): "UInt32", ("u", 8): "UInt64"}


def _check_model(model: Any, correction: str | None) -> None:
    from sim.models.mesh.simulator import MeshSimulator

    if isinstance(model, (list, tuple)) or not isinstance(model, MeshSimulator):
        raise SimError("partitioned rollouts run one mesh model (MeshGraphNet or the graph transformer), "
                       "not ensembles or other families")
    name = correction if correction is not None else model.config.get("correction", "none")
    if name not in (None, "none"):
        raise SimError(f"the {name} correction solves one linear system over the whole mesh; partitioned "
                       "rollouts run without it (--correction none)")


class _Piece:
    """What a rank writes of each step: its written cells and their vertices."""

    def __init__(self, part: Part, local: Mesh):
        cells = {k: v[part.written[k]] for k, v in part.cells.items() if part.written[k].any()}
        used = np.unique(np.concatenate([c.ravel() for c in cells.values()])) if cells else np.zeros(0, np.int64)
        remap = np.full(part.num_local, -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        self.rows = used
        ncell = sum(len(c) for c in cells.values())
        self.mesh = Mesh(points=local.points[used], cells={k: remap[v] for k, v in cells.items()},
                         cell_data={"rank": np.full(ncell, part.rank, dtype=np.int32)},
                         node_type=None if local.node_type is None else local.node_type[used],
                         point_data={"global_id": part.nodes[used].astype(np.int64)})

    def write(self, path: Path, point_fields: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        from sim.mesh.adapters import mesh_to_pyvista
        from sim.mesh.vtk import _save_grid

        m = self.mesh
        frame = Mesh(points=m.points, cells=m.cells, cell_data=m.cell_data, node_type=m.node_type,
                     point_data={**m.point_data, **{k: v[self.rows] for k, v in point_fields.items()}})
        grid = mesh_to_pyvista(frame, meta)
        grid.field_data["TimeValue"] = np.array([float(meta["time"])])
        _save_grid(grid, path, path)


def _declarations(piece: Path) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]], str]:
    """(point arrays, cell arrays, points type) of a written piece, as (name, VTK type, components)."""
    import pyvista as pv

    grid = pv.read(piece)

    def arrays(data: Any) -> list[tuple[str, str, int]]:
        out = []
        for name in data.keys():
            a = np.asarray(data[name])
            out.append((name, _VTK_TYPES[(a.dtype.kind, a.dtype.itemsize)], 1 if a.ndim == 1 else int(a.shape[1])))
        return out

    pts = np.asarray(grid.points)
    return arrays(grid.point_data), arrays(grid.cell_data), _VTK_TYPES[(pts.dtype.kind, pts.dtype.itemsize)]


def write_pvtu(path: Path, pieces: list[str], template: Path) -> None:
    """A ``.pvtu`` header naming ``pieces`` (file names beside it), arrays declared as in ``template``."""
    from sim.mesh.atomic import write_xml

    point_arrays, cell_arrays, points_type = _declarations(template)
    root = ET.Element("VTKFile", type="PUnstructuredGrid", version="1.0", byte_order="LittleEndian",
                      header_type="UInt64")
    grid = ET.SubElement(root, "PUnstructuredGrid", GhostLevel="0")
    for tag, arrays in (("PPointData", point_arrays), ("PCellData", cell_arrays)):
        node = ET.SubElement(grid, tag)
        for name, typ, comps in arrays:
            ET.SubElement(node, "PDataArray", type=typ, Name=name, NumberOfComponents=str(comps))
    ppoints = ET.SubElement(grid, "PPoints")
    ET.SubElement(ppoints, "PDataArray", type=points_type, Name="Points", NumberOfComponents="3")
    for name in pieces:
        ET.SubElement(grid, "Piece", Source=name)
    ET.indent(root)
    write_xml(root, path, path)


def _write_pvd(path: Path, steps: list[tuple[float, str]]) -> None:
    from sim.mesh.atomic import write_xml

    root = ET.Element("VTKFile", type="Collection", version="0.1", byte_order="LittleEndian")
    coll = ET.SubElement(root, "Collection")
    for t, name in steps:
        ET.SubElement(coll, "DataSet", timestep=repr(t), group="", part="0", file=name)
    ET.indent(root)
    write_xml(root, path, path)


def _local_mesh(entry: Any, part: Part) -> Mesh:
    """The part's mesh from a store entry without reading its cells: points, node types and
    point data of the part's nodes, the part's own (local) cells, cell data by global cell id."""
    g = entry.group
    try:
        rows = {k: np.asarray(g[k][()])[part.nodes] for k in ("points", "node_type") if k in g}
        point_data = {k: np.asarray(v[()])[part.nodes] for k, v in g["point_data"].items()} \
            if "point_data" in g else {}
        cell_data = {k: np.asarray(v[()])[part.cell_ids] for k, v in g["cell_data"].items()} \
            if "cell_data" in g else {}
    except (KeyError, OSError, ValueError) as exc:
        raise SimError(f"entry {entry.name!r} is damaged or incomplete ({exc})", entry.label) from None
    return Mesh(points=rows["points"], cells={k: v.copy() for k, v in part.cells.items()}, point_data=point_data,
                cell_data=cell_data, node_type=rows.get("node_type"))


def _frame_reader(entry: Any, fields: list[str], nodes: np.ndarray, label: str):
    """frame(t) -> (len(nodes), F) float32: the model's fields of stored step t at ``nodes``."""
    datasets = entry.point_fields
    missing = [f for f in fields if f not in datasets]
    if missing:
        raise SimError(f"entry {entry.name!r} has no point field(s) {missing} the model needs "
                       f"(has {sorted(datasets)})", label)

    def frame(t: int) -> np.ndarray:
        return np.concatenate([np.asarray(datasets[f][t]).reshape(len(datasets[f][t]), -1)[nodes] for f in fields],
                              axis=-1).astype(np.float32)
    return frame


def _rank_rollout(rank: int, world: int, checkpoint: str, data: str, entry: str | None, out: str | None,
                  steps: int | None, partition: str | None, method: str, correction: str | None,
                  device: str) -> dict[str, Any]:
    from sim.families import load_model_file
    from sim.rollout.steppers import MeshStepper

    t_start = time.process_time()
    _, model, _ = load_model_file(checkpoint)
    _check_model(model, correction)
    if correction is not None:
        model.config["correction"] = correction
    model.eval().to(device)
    halo = model_halo(model.network)
    with Store(data) as store:
        name = entry if entry is not None else (store.names() or [None])[0]
        if name is None:
            raise SimError("the store has no entries", data)
        e = store.entry(name)
        if e.kind != "trajectory":
            raise SimError(f"entry {name!r} is a static mesh; rollouts need trajectories", data)
        if partition is not None:
            p = read_partition(partition, [rank])
            n_points = int(e.attrs["num_points"])
            if len(p.owner) != n_points:
                raise SimError(f"the partition is of a mesh of {len(p.owner)} nodes; entry {name!r} has "
                               f"{n_points}", partition)
            if int(p.owner.max()) + 1 != world:
                raise SimError(f"the partition has {int(p.owner.max()) + 1} parts; the rollout runs {world} ranks",
                               partition)
            if p.halo < halo:
                raise SimError(f"the partition's halo is {p.halo} hops deep; the model needs {halo} "
                               f"(sim partition ... --halo {halo})", partition)
            part, owner = p.parts[0], p.owner
            local = _local_mesh(e, part)  # the part's rows only: no rank holds the whole connectivity
        else:
            mesh = e.mesh()
            box: list[Any] = [partition_nodes(mesh, world, method)[0] if rank == 0 else None]
            if world > 1:
                dist.broadcast_object_list(box, src=0)
            owner = np.asarray(box[0])
            part = build_partition(mesh, owner, halo, ranks=[rank]).parts[0]
            local = part.local_mesh(mesh)
            del mesh
        c = model.config
        fields, dims = list(c["fields"]), list(c["field_dims"])
        frame = _frame_reader(e, fields, part.nodes, str(data))
        h = int(c.get("history", 1))
        total = e.num_steps
        if total <= h:
            raise SimError(f"entry {name!r} has {total} step(s); the model starts from {h} and needs one more", data)
        n = total - h if steps is None else min(steps, total - h)
        times = e.times()
        dt = float(e.attrs.get("dt") or (times[1] - times[0]))
        params = e.attrs.get("params", {})
        initial = np.stack([frame(t) for t in range(h)])
        t0 = float(times[h - 1])
        stepper = MeshStepper(model, [local], [initial], [dt], [t0], boundary=[lambda s, t: frame(h - 1 + s)],
                              params=[params], device=device)
        exchange = HaloExchange(part.nodes, part.num_owned, owner)
        piece = _Piece(part, local)
        stage = None
        if out is not None:
            from sim.mesh.atomic import clean_stale, staging_dir

            box = [None]
            if rank == 0:
                Path(out).mkdir(parents=True, exist_ok=True)
                clean_stale(out)
                box = [str(staging_dir(Path(out) / f"{name}.pvd"))]
            if world > 1:
                dist.broadcast_object_list(box, src=0)
            stage = Path(box[0]) / name
            if rank == 0:
                stage.mkdir()
            if world > 1:
                dist.barrier()
        meta = {"params": params, "dt": dt, "partition": {"rank": rank, "parts": world}}
        split = np.cumsum([0, *dims])

        def fields_of(x: np.ndarray, suffix: str = "") -> dict[str, np.ndarray]:
            return {f + suffix: x[:, split[i]:split[i + 1]] for i, f in enumerate(fields)}

        def emit(s: int, state: np.ndarray, truth: np.ndarray) -> None:
            if stage is None:
                return
            arrays = {**fields_of(state), **fields_of(truth, "_truth"), **fields_of(state - truth, "_error")}
            piece.write(stage / f"{name}_{s:06d}_p{rank}.vtu", arrays, {**meta, "time": t0 + s * dt})

        owned = slice(0, part.num_owned)
        sq = torch.zeros((n, 2), dtype=torch.float64)
        emit(0, initial[-1], initial[-1])
        t_steps = time.process_time()
        wall = time.perf_counter()
        with torch.no_grad():
            for s in range(1, n + 1):
                stepper.advance(s)
                exchange(stepper.state)
                state = stepper.state.cpu().numpy()
                truth = frame(h - 1 + s)
                err = (state[owned] - truth[owned]).astype(np.float64)
                sq[s - 1, 0], sq[s - 1, 1] = float((err ** 2).sum()), float(err.size)
                emit(s, state, truth)
        step_cpu = (time.process_time() - t_steps) / max(1, n)
        step_wall = (time.perf_counter() - wall) / max(1, n)
    if world > 1:
        dist.all_reduce(sq)
    stats = {"rank": rank, "owned": part.num_owned, "local": part.num_local,
             "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
             "step_cpu_s": step_cpu, "step_wall_s": step_wall, "cpu_s": time.process_time() - t_start}
    gathered: list[Any] = [None] * world
    if world > 1:
        dist.all_gather_object(gathered, stats)
    else:
        gathered = [stats]
    rmse = np.sqrt(sq[:, 0].numpy() / np.maximum(sq[:, 1].numpy(), 1))
    result = {"entry": name, "rank": rank, "steps": n, "ranks": gathered, "halo": halo,
              "rmse": {**{str(k): float(rmse[:k].mean()) for k in (1, 10, 50, 100) if k <= n},
                       "all": float(rmse.mean())},
              "rmse_per_step": rmse.tolist()}
    if stage is not None:
        if world > 1:
            dist.barrier()
        if rank == 0:
            from sim.mesh.atomic import swap_in

            series = []
            try:
                for s in range(n + 1):
                    pieces = [f"{name}_{s:06d}_p{r}.vtu" for r in range(world)]
                    header = stage / f"{name}_{s:06d}.pvtu"
                    write_pvtu(header, pieces, stage / pieces[0])
                    series.append((t0 + s * dt, f"{name}/{header.name}"))
                _write_pvd(stage.parent / f"{name}.pvd", series)
                final = Path(out)
                swap_in([(stage, final / name), (stage.parent / f"{name}.pvd", final / f"{name}.pvd")])
            finally:
                shutil.rmtree(stage.parent, ignore_errors=True)
            result["series"] = str(Path(out) / f"{name}.pvd")
        if world > 1:
            dist.barrier()
    return result


def partitioned_rollout(checkpoint: str | Path, data: str | Path, ranks: int, out: str | Path | None = None,
                        entry: str | None = None, steps: int | None = None, partition: str | Path | None = None,
                        method: str = "auto", correction: str | None = None, device: str = "cpu",
                        threads: int | None = None) -> dict[str, Any]:
    """Roll a mesh model out over one store entry split over ``ranks`` ranks (started here, or
    the ranks of the torchrun job this runs in); returns rank 0's summary: RMSE by horizon over
    all nodes, per-rank node counts, peak memory and CPU seconds per step, and the series
    written (``out``: a folder; ``<entry>.pvd`` and ``<entry>/`` go there)."""
    from sim.families import load_model_file

    for p in (checkpoint, data, partition):
        if p is not None and not Path(p).exists():
            raise SimError("no such file", p)
    _, model, _ = load_model_file(checkpoint)  # the common refusals before any rank starts
    _check_model(model, correction)
    model_halo(model.network)
    del model
    args = (str(checkpoint), str(data), entry, None if out is None else str(out), steps,
            None if partition is None else str(partition), method, correction, device)
    return launch(_rank_rollout, ranks, *args, device=device, threads=threads)
