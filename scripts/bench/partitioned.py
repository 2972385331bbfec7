"""Partitioned rollouts of one large 3D mesh: peak memory per rank and time per step at 1, 2
and 4 ranks.

    python scripts/bench/partitioned.py [--quick] [--json PATH] [--nodes N] [--ranks 1,2,4] [--steps S]

The mesh is a structured box of tetrahedra (``--nodes`` points, default 1,000,000: a 100^3 grid,
each cube cut into six tetrahedra), with a smooth scalar field ``temperature`` over ``steps + 1``
frames and fixed values on the box's faces (node type WALL). The model is MeshGraphNet's CPU
preset (latent 64, 6 message-passing steps; halo 6 hops) with untrained weights and normalisers
fitted on the field: cost does not depend on the weights. The partitions are written first by
``sim partition`` (METIS) in its own process, then each rank count runs
:func:`sim.families.partitioned.partitioned_rollout` with that partition and one torch thread
per rank, so every rank's peak resident memory (the high-water mark of its own process,
including the interpreter, torch and its part of the mesh) is what a machine of a cluster would
need. The same number of ranks as cores would measure wall-time speedup; on a machine with fewer
cores than ranks the ranks share cores, so time is reported as CPU seconds per step summed over
the ranks (the work, with the halo's redundant computation) and the slowest rank's.

JSON keys: for each rank count r, `peak_mem_mb_<r>` (the largest of the ranks), `step_cpu_s_<r>`
(summed over ranks), `step_cpu_s_max_<r>` (the slowest rank), `step_wall_s_<r>`, `halo_fraction_<r>`
(halo nodes / owned nodes), `rmse_all_<r>` (against the 1-rank rollout's RMSE: equal to rounding);
`peak_mem_ratio_2` and `peak_mem_ratio_4` (peak memory per rank over one rank's), `nodes`, `edges`,
`partition_s_<r>` (METIS and halo construction, seconds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import ROOT, report


def box_mesh(n_side: int):
    """A unit cube of ``n_side^3`` points in ``(n_side - 1)^3`` cubes of six tetrahedra each (the
    Kuhn subdivision: every tetrahedron runs along the cube's main diagonal), positively oriented."""
    from sim.mesh import Mesh, NodeType

    g = np.linspace(0.0, 1.0, n_side)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    pts = np.c_[x.ravel(), y.ravel(), z.ravel()]
    idx = np.arange(n_side ** 3).reshape(n_side, n_side, n_side)
    c = idx[:-1, :-1, :-1].ravel()
    sx, sy, sz = n_side * n_side, n_side, 1
    corner = {(i, j, k): c + i * sx + j * sy + k * sz for i in (0, 1) for j in (0, 1) for k in (0, 1)}
    paths = [((1, 0, 0), (1, 1, 0)), ((1, 0, 0), (1, 0, 1)), ((0, 1, 0), (1, 1, 0)),
             ((0, 1, 0), (0, 1, 1)), ((0, 0, 1), (1, 0, 1)), ((0, 0, 1), (0, 1, 1))]
    tets = np.concatenate([np.stack([corner[(0, 0, 0)], corner[a], corner[b], corner[(1, 1, 1)]], 1)
                           for a, b in paths])
    v = pts[tets]
    vol = np.einsum("ij,ij->i", np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), v[:, 3] - v[:, 0])
    tets[vol < 0] = tets[vol < 0][:, [0, 2, 1, 3]]
    boundary = ((pts == 0.0) | (pts == 1.0)).any(1)
    node_type = np.where(boundary, int(NodeType.WALL), int(NodeType.INTERIOR))
    return Mesh(pts, {"tetra": tets.astype(np.int64)}, node_type=node_type)


def make_store(nodes: int, steps: int, folder: Path) -> Path:
    from sim.mesh import StoreWriter, Trajectory

    n_side = int(round(nodes ** (1 / 3)))
    path = folder / f"box_{n_side}_{steps}.h5"
    if path.exists():
        return path
    mesh = box_mesh(n_side)
    p = mesh.points
    t = np.arange(steps + 1) * 0.01
    temp = np.stack([np.sin(3 * p[:, 0] + 10 * s) * np.cos(2 * p[:, 1]) * p[:, 2] for s in t]).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    with StoreWriter(path) as w:
        w.append(Trajectory(mesh=mesh, times=t, point_fields={"temperature": temp}, dt=0.01), name="box")
    return path


def fitted_checkpoint(store: Path, out: Path) -> Path:
    """MeshGraphNet (CPU preset) with untrained weights and normalisers fitted on the field."""
    import torch

    from sim.graph import mesh_graph
    from sim.mesh import NUM_NODE_TYPES, Store
    from sim.models.mesh.simulator import MeshSimulator
    from sim.train.checkpoint import save_checkpoint

    path = out / "mgn_cpu.pt"
    if path.exists():
        return path
    with Store(store) as s:
        traj = s.read(s.names()[0])
    g = mesh_graph(traj.mesh)
    torch.manual_seed(0)
    model = MeshSimulator("meshgraphnet", {"latent": 64, "steps": 6}, ["temperature"], [1],
                          edge_in=int(g.edge_attr.shape[1]))
    u = torch.as_tensor(traj.point_fields["temperature"], dtype=torch.float32)[..., None]
    one_hot = torch.nn.functional.one_hot(g.node_type, NUM_NODE_TYPES).float()
    model.node_normalizer.accumulate(torch.cat([u[0], one_hot], -1))
    model.output_normalizer.accumulate(u[1] - u[0])
    model.edge_normalizer.accumulate(g.edge_attr)
    out.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~30k nodes, 2 steps")
    ap.add_argument("--json")
    ap.add_argument("--nodes", type=int, help="mesh points (default 1,000,000; quick 30,000)")
    ap.add_argument("--ranks", default="1,2,4")
    ap.add_argument("--steps", type=int, help="rollout steps per run (default 2)")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "partitioned"))
    args = ap.parse_args()

    from sim.families.partitioned import partitioned_rollout
    from sim.graph import cell_edges
    from sim.mesh import Store

    nodes = args.nodes or (30_000 if args.quick else 1_000_000)
    steps = args.steps or 2
    ranks = [int(r) for r in args.ranks.split(",")]
    out = Path(args.out)
    t = time.perf_counter()
    store = make_store(nodes, steps, out / "data")
    ckpt = fitted_checkpoint(store, out)
    with Store(store) as s:
        mesh = s.entry(s.names()[0]).mesh()
    edges = int(cell_edges(mesh.cells, mesh.num_points).shape[1])
    results: dict[str, object] = {"nodes": mesh.num_points, "edges": edges,
                                  "tets": int(len(mesh.cells["tetra"])), "steps": steps,
                                  "preset": "MeshGraphNet cpu (latent 64, 6 steps), halo 6 hops",
                                  "threads_per_rank": 1, "setup_s": time.perf_counter() - t}
    del mesh
    for r in ranks:
        part = None
        if r > 1:
            part = out / f"box_{r}.h5"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "sim.cli", "--threads", "1", "partition", str(store), "--parts",
                            str(r), "--model", str(ckpt), "--out", str(part)], check=True)
            results[f"partition_s_{r}"] = time.perf_counter() - t
        print(f"{r} rank(s): rolling out {steps} steps", flush=True)
        res = partitioned_rollout(ckpt, store, r, steps=steps, partition=part, threads=1)
        per = res["ranks"]
        results[f"peak_mem_mb_{r}"] = max(x["peak_mem_mb"] for x in per)
        results[f"step_cpu_s_{r}"] = sum(x["step_cpu_s"] for x in per)
        results[f"step_cpu_s_max_{r}"] = max(x["step_cpu_s"] for x in per)
        results[f"step_wall_s_{r}"] = max(x["step_wall_s"] for x in per)
        results[f"halo_fraction_{r}"] = sum(x["local"] for x in per) / sum(x["owned"] for x in per) - 1.0
        results[f"rmse_all_{r}"] = res["rmse"]["all"]
        results[f"ranks_{r}"] = per
        print(json.dumps({k: v for k, v in results.items() if k.endswith(f"_{r}") and k != f"ranks_{r}"}), flush=True)
    base = results.get("peak_mem_mb_1")
    for r in ranks:
        if base and r > 1:
            results[f"peak_mem_ratio_{r}"] = results[f"peak_mem_mb_{r}"] / base
    report("partitioned", results, args.json)


if __name__ == "__main__":
    main()
