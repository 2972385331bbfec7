"""Large 3D meshes: time per rollout step and peak memory of MeshGraphNet and the graph
transformer at ~30k, ~100k and ~300k nodes (3D diffusion recipe, tetrahedra).

    python scripts/bench/large_mesh.py [--quick] [--json PATH] [--nodes 30000,100000,300000] [--steps N]

For each size, one trajectory of the `diffusion3d` recipe is generated with our solver at the
mesh size that gives about that many nodes (cached under bench_results/large_mesh/). Both
models are CPU presets (MeshGraphNet `cpu`: latent 64, 6 steps; transformer `small`: width
64, 6 layers, 1-hop masks: dilated hop rings of a 3D tetrahedral mesh hold hundreds of
nodes each, so they are not what one runs at 300k nodes on a CPU) with their normalisers
fitted on the trajectory; the weights are untrained, as cost does not depend on them. Each
rollout runs through the rollout engine in a fresh process, streaming every step to an
XDMF series (as `sim rollout --format xdmf` does), and reports the time per step (model
step, boundary values, writing) as CPU seconds of one thread (`*_step_s_<n>`, robust to other
jobs on the machine; wall time in `*_step_wall_s_<n>`) and the resident-memory high-water
mark during the rollout. Linear scaling in nodes is expected for both time and memory.

JSON keys per size n (nodes rounded to thousands, e.g. 300k): `mgn_step_s_<n>`, `gt_step_s_<n>`,
`mgn_peak_mem_mb_<n>`, `gt_peak_mem_mb_<n>`, `nodes_<n>`, `edges_<n>`; and the time per
node-step of each model at each size (`*_us_per_node_<n>`).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from _common import ROOT, report
from _mesh_models import rollout_peak_mem_mb

REFERENCE = (0.025, 26_000)  # measured: mesh_size 0.025 gives ~26k nodes; nodes scale as h^-3


def mesh_size_for(nodes: int) -> float:
    h0, n0 = REFERENCE
    return h0 * (n0 / nodes) ** (1 / 3)


def trajectory_store(nodes: int, steps: int, folder: Path) -> Path:
    from sim.mesh import StoreWriter
    from solvers.diffusion3d import generate

    path = folder / f"diffusion3d_{nodes // 1000}k_{steps}.h5"
    if path.exists():
        return path
    t = time.perf_counter()
    traj = generate({"mesh_size": mesh_size_for(nodes), "num_steps": steps + 1}, seed=7)
    print(f"generated {traj.mesh.num_points} nodes, {steps + 1} steps in {time.perf_counter() - t:.0f} s")
    folder.mkdir(parents=True, exist_ok=True)
    with StoreWriter(path) as w:
        w.append(traj, name="large")
    return path


def fitted_checkpoint(network: str, args: dict, store: Path, out: Path) -> Path:
    """A simulator with untrained weights and normalisers fitted on the trajectory, saved as a
    checkpoint for the rollout process."""
    import torch

    from sim.graph import mesh_graph
    from sim.mesh import NUM_NODE_TYPES, Store
    from sim.models.mesh.simulator import MeshSimulator
    from sim.train.checkpoint import save_checkpoint

    with Store(store) as s:
        traj = s.read(s.names()[0])
    g = mesh_graph(traj.mesh)
    torch.manual_seed(0)
    sim_ = MeshSimulator(network, args, ["temperature"], [1], edge_in=int(g.edge_attr.shape[1]))
    u = torch.as_tensor(traj.point_fields["temperature"], dtype=torch.float32)[..., None]
    one_hot = torch.nn.functional.one_hot(g.node_type, NUM_NODE_TYPES).float()
    for t in range(u.shape[0] - 1):
        sim_.node_normalizer.accumulate(torch.cat([u[t], one_hot], -1))
        sim_.output_normalizer.accumulate(u[t + 1] - u[t])
    sim_.edge_normalizer.accumulate(g.edge_attr)
    path = out / f"{network}.pt"
    save_checkpoint(path, sim_)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~5k and ~15k nodes, 3 steps")
    ap.add_argument("--json")
    ap.add_argument("--nodes", help="comma-separated target node counts (default 30000,100000,300000)")
    ap.add_argument("--steps", type=int, help="rollout steps per run (default 5, quick 3)")
    ap.add_argument("--out", default=str(ROOT / "bench_results" / "large_mesh"))
    args = ap.parse_args()

    from sim.mesh import Store

    targets = [int(x) for x in (args.nodes or ("5000,15000" if args.quick else "30000,100000,300000")).split(",")]
    steps = args.steps or (3 if args.quick else 5)
    out = Path(args.out)
    models = {"mgn": ("meshgraphnet", {"latent": 64, "steps": 6}),
              "gt": ("graph_transformer", {"dim": 64, "layers": 6, "heads": 4})}
    results: dict[str, object] = {"steps": steps, "mgn_preset": "cpu (latent 64, 6 steps)",
                                  "gt_preset": "small (width 64, 6 layers, 4 heads, 1-hop masks)"}
    for target in targets:
        store = trajectory_store(target, steps, out / "data")
        with Store(store) as s:
            e = s.entry(s.names()[0])
            n = int(e.attrs["num_points"])
            from sim.graph import cell_edges

            edges = cell_edges(e.mesh().cells, n).shape[1]
        key = f"{round(target / 1000)}k"
        results[f"nodes_{key}"], results[f"edges_{key}"] = n, edges
        for name, (network, net_args) in models.items():
            ckpt = fitted_checkpoint(network, net_args, store, out / f"ckpt_{key}")
            series = out / f"series_{key}_{name}"
            print(f"rolling out {name} on {n} nodes ({edges} edges), {steps} steps, streaming to {series}")
            mem = rollout_peak_mem_mb(ckpt, store, steps, out_dir=series)
            results[f"{name}_step_s_{key}"] = mem["cpu_seconds_per_step"]
            results[f"{name}_step_wall_s_{key}"] = mem["seconds_per_step"]
            results[f"{name}_peak_mem_mb_{key}"] = mem["peak_mem_mb"]
            results[f"{name}_rollout_mem_mb_{key}"] = mem["peak_mem_mb"] - mem["base_mem_mb"]
            results[f"{name}_us_per_node_{key}"] = 1e6 * mem["cpu_seconds_per_step"] / n
            shutil.rmtree(series, ignore_errors=True)  # the series proves streaming; keep the disk free
    keys = [f"{round(t / 1000)}k" for t in targets]
    if len(keys) > 1:  # time and memory growth against node growth, first to last size
        a, b = keys[0], keys[-1]
        growth = results[f"nodes_{b}"] / results[f"nodes_{a}"]
        results["node_ratio"] = growth
        for name in models:
            results[f"{name}_time_ratio"] = results[f"{name}_step_s_{b}"] / results[f"{name}_step_s_{a}"]
            results[f"{name}_mem_ratio"] = (results[f"{name}_rollout_mem_mb_{b}"]
                                           / max(results[f"{name}_rollout_mem_mb_{a}"], 1e-9))
    report("large_mesh", results, args.json)


if __name__ == "__main__":
    main()
