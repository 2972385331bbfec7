"""Our MeshGraphNet side by side with NVIDIA PhysicsNeMo's on the same cylinder-flow graph.

    python scripts/bench/peer_meshgraphnet.py [--quick] [--json PATH] [--peer-python PATH]
                                              [--latent 128 --steps 15] [--threads 1] [--data STORE]

Installs nothing. The peer runs in its own interpreter (``--peer-python``, default
``/work/peer_venv/bin/python`` or ``$SIM_PEER_PYTHON``; docs/peer_benchmark.md says how to
make that venv), ours in this one. Both build a MeshGraphNet of the same width, depth,
processor size, MLP layout (2 hidden layers, ReLU, LayerNorm but on the decoder, sum
aggregation) and input/output widths, load the *same weights* (ours, mapped onto the peer's
names) and run on the *same graph*: the mesh, first-frame velocity + node-type one-hot and
edge features of a cylinder-flow trajectory (``--data``, else ``datasets/cylinder_flow/small/
test.h5``, else one test trajectory of the small recipe generated into ``--work``), saved to
``graph.npz``.

Each side is a long-lived worker process (``_mgn_timing_worker.py``); this script sends them
timing requests in alternating order (warm-up, then ``--repeats`` rounds of one forward and one
forward+backward each), so both see the same machine load. Times are per call: CPU seconds
(``time.process_time``, what the ratios use: other jobs share the machine) and wall seconds;
medians over the rounds. Forward is inference (no grad); forward+backward is an MSE loss on a
fixed target and its backward.

A correctness check runs first: the peer's output with our weights must match our modules
evaluated with the peer's update order (it aggregates the edge latents *after* the edge
residual, ours, like the paper's code, aggregates the edge MLP's output), which proves the two
networks are the same architecture with the same parameters (``peer_check_max_abs_diff``).

When the peer interpreter is missing or cannot import/build PhysicsNeMo's MeshGraphNet, the
script says so, writes the JSON with the peer's values null and ``peer_error``, and exits 0.

JSON keys: ours_fwd_s, peer_fwd_s, ours_fwdbwd_s, peer_fwdbwd_s, ratio_fwd (= peer/ours, CPU
time), ratio_fwdbwd, the same with ``_wall`` for wall time, ours_params, peer_params, nodes,
edges, latent, steps, threads, versions, peer_check_max_abs_diff, peer_vs_ours_max_abs_diff,
peer_error.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import ROOT, peak_mem_mb, report

WORKER = Path(__file__).resolve().parent / "_mgn_timing_worker.py"
DEFAULT_PEER_PYTHON = os.environ.get("SIM_PEER_PYTHON", "/work/peer_venv/bin/python")
CYLINDER_RECIPE = ROOT / "datasets" / "cylinder_flow.yaml"


class WorkerError(RuntimeError):
    """A worker could not start, answered an error or died."""


class Worker:
    """One timing worker process; requests and answers are JSON lines (answers prefixed ``@@``)."""

    def __init__(self, name: str, python: str, args: list[str], threads: int, log: Path):
        self.name = name
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.log = log
        self._log_file = open(log, "w")
        self.proc = subprocess.Popen([python, str(WORKER), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log_file, text=True, env=env, cwd=ROOT)
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                self._log_file.flush()
                tail = self.log.read_text()[-2000:].strip()
                raise WorkerError(f"the {self.name} worker exited (code {self.proc.returncode})"
                                  + (f"; its stderr ends with:\n{tail}" if tail else ""))
            if line.startswith("@@"):
                msg = json.loads(line[2:])
                if msg.get("op") == "error":
                    raise WorkerError(msg["error"])
                return msg

    def request(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request(op="quit")
            except (WorkerError, OSError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log_file.close()


def cylinder_store(data: str | None, work: Path) -> Path:
    """A store with at least one cylinder-flow trajectory: ``data``, else the small recipe's test
    split if it was generated, else one test trajectory of the small recipe generated now."""
    if data:
        p = Path(data)
        if not p.exists():
            raise SystemExit(f"--data {p}: no such file")
        return p
    generated = ROOT / "datasets" / "cylinder_flow" / "small" / "test.h5"
    if generated.exists():
        return generated
    mine = work / "cylinder_small_test.h5"
    if not mine.exists():
        from sim.mesh import StoreWriter
        from solvers.recipes import generate_entry, load_recipe

        recipe = load_recipe(CYLINDER_RECIPE)
        split = next(s for s in recipe.splits("small") if s.name == "test")
        print(f"generating one cylinder-flow trajectory into {mine} ...", flush=True)
        traj = generate_entry(recipe.generator, split.params, recipe.seed, "test", 0)
        with StoreWriter(mine, metadata={"recipe": recipe.name, "size": "small", "split": "test"}) as out:
            out.append(traj, name="000000")
    return mine


def save_graph(store: Path, out: Path) -> dict[str, int]:
    """The first trajectory's mesh graph with MeshGraphNet's inputs: node features
    [velocity at frame 0, node-type one-hot], edge features [dx, |dx|], target the velocity
    change to frame 1 (scaled to unit std). Written as npz so the peer's venv reads it with numpy."""
    import torch

    from sim.graph import mesh_graph
    from sim.mesh import NUM_NODE_TYPES, Store

    with Store(store) as s:
        entry = s.entry(s.names()[0])
        mesh = entry.mesh()
        velocity = np.asarray(entry.point_fields["velocity"][:2], dtype=np.float32)
    g = mesh_graph(mesh)
    one_hot = torch.nn.functional.one_hot(g.node_type.clamp(0, NUM_NODE_TYPES - 1), NUM_NODE_TYPES).float()
    x = torch.cat([torch.from_numpy(velocity[0]), one_hot], dim=-1)
    delta = velocity[1] - velocity[0]
    target = delta / max(float(delta.std()), 1e-12)
    np.savez(out, x=x.numpy(), edge_index=g.edge_index.numpy().astype(np.int64),
             edge_attr=g.edge_attr.numpy().astype(np.float32), target=target.astype(np.float32))
    return {"nodes": int(x.shape[0]), "edges": int(g.edge_index.shape[1])}


def peer_order_reference(model: Any, x: Any, edge_index: Any, edge_attr: Any) -> Any:
    """Our modules evaluated in PhysicsNeMo's order: its node block sums the edge latents after
    the edge residual (``e + e'``), ours sums ``e'``. Used only to check the weight mapping."""
    import torch

    from sim.nn.layers import scatter_sum

    v, e = model.node_encoder(x), model.edge_encoder(edge_attr)
    senders, receivers = edge_index
    for block in model.processor:
        e = e + block.edge_mlp[1:](block.first_edge_layer(v, senders, receivers, e))
        v = v + block.node_mlp(torch.cat([v, scatter_sum(e, receivers, v.shape[0])], dim=-1))
    return model.decoder(v)


def check_weights(ours: Worker, peer: Worker, model: Any, graph: Path, weights: Path, work: Path
                  ) -> tuple[float, float]:
    """Both workers load our weights; returns the peer's max abs deviation from
    :func:`peer_order_reference` and from our own output (the latter is the update-order
    difference, not an error). Also checks our worker reproduces this process's output."""
    import torch

    g = np.load(graph)
    x, ei, ea = (torch.from_numpy(g[k]) for k in ("x", "edge_index", "edge_attr"))
    with torch.no_grad():
        ours_out = model(x, ei, ea).numpy()
        reference = peer_order_reference(model, x, ei, ea).numpy()
    outs = {}
    for w in (ours, peer):
        w.request(op="load", weights=str(weights))
        path = work / f"out_{w.name}.npz"
        w.request(op="forward", out=str(path))
        outs[w.name] = np.load(path)["out"]
    if not np.allclose(outs["ours"], ours_out, atol=1e-5):
        raise SystemExit("our worker's output differs from this process's: the weights were not loaded")
    return (float(np.abs(outs["peer"] - reference).max()), float(np.abs(outs["peer"] - ours_out).max()))


def timed_rounds(workers: list[Worker], warmup: int, repeats: int) -> dict[str, dict[str, list[float]]]:
    """Warm-up, then ``repeats`` rounds; in each round every worker times one forward, then every
    worker one forward+backward, the order of the workers flipping from round to round."""
    from tqdm import tqdm

    samples = {w.name: {"fwd_cpu": [], "fwd_wall": [], "fwdbwd_cpu": [], "fwdbwd_wall": []} for w in workers}
    for w in workers:
        for kind in ("fwd", "fwdbwd"):
            w.request(op="time", kind=kind, n=warmup)
    for r in tqdm(range(repeats), desc="rounds", unit="round"):
        order = workers if r % 2 == 0 else workers[::-1]
        for kind in ("fwd", "fwdbwd"):
            for w in order:
                ans = w.request(op="time", kind=kind, n=1)
                samples[w.name][f"{kind}_cpu"] += ans["cpu"]
                samples[w.name][f"{kind}_wall"] += ans["wall"]
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds (same quantities)")
    ap.add_argument("--json")
    ap.add_argument("--peer-python", default=DEFAULT_PEER_PYTHON,
                    help="interpreter of the venv with nvidia-physicsnemo, torch_geometric and torch_scatter")
    ap.add_argument("--latent", type=int, default=128)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--hidden-layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of both sides")
    ap.add_argument("--repeats", type=int, help="timed rounds (default 20, 5 with --quick)")
    ap.add_argument("--warmup", type=int, help="untimed calls per kind first (default 3, 2 with --quick)")
    ap.add_argument("--data", help="a cylinder-flow store (its first trajectory gives the graph)")
    ap.add_argument("--peer-concat-trick", action="store_true",
                    help="build the peer with do_concat_trick=True (its own fused first edge layer; "
                         "uses torch.compile)")
    ap.add_argument("--work", default=str(ROOT / "bench_results" / "peer_meshgraphnet"))
    args = ap.parse_args()
    repeats = args.repeats or (5 if args.quick else 20)
    warmup = args.warmup or (2 if args.quick else 3)

    import torch

    from sim.models.networks.meshgraphnet import MeshGraphNet

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    graph = work / "graph.npz"
    sizes = save_graph(cylinder_store(args.data, work), graph)
    g = np.load(graph)
    torch.manual_seed(0)
    model = MeshGraphNet(g["x"].shape[1], g["edge_attr"].shape[1], g["target"].shape[1], latent=args.latent,
                         steps=args.steps, hidden_layers=args.hidden_layers).eval()
    weights = work / "weights.npz"
    np.savez(weights, **{k: v.numpy() for k, v in model.state_dict().items()})

    common = ["--graph", str(graph), "--latent", str(args.latent), "--steps", str(args.steps),
              "--hidden-layers", str(args.hidden_layers), "--threads", str(args.threads)]
    ours = Worker("ours", sys.executable, ["--impl", "ours", "--root", str(ROOT), *common], args.threads,
                  work / "ours_worker.log")
    peer: Worker | None = None
    peer_error: str | None = None
    checks: tuple[float | None, float | None] = (None, None)
    if not Path(args.peer_python).exists():
        peer_error = f"peer interpreter {args.peer_python} does not exist (see docs/peer_benchmark.md)"
    else:
        try:
            peer = Worker("peer", args.peer_python, ["--impl", "peer", *common]
                          + (["--concat-trick"] if args.peer_concat_trick else []), args.threads,
                          work / "peer_worker.log")
            checks = check_weights(ours, peer, model, graph, weights, work)
        except WorkerError as exc:
            peer_error = f"PhysicsNeMo's MeshGraphNet is unavailable in {args.peer_python}: {exc}"
            if peer is not None:
                peer.close()
            peer = None
    if peer_error:
        print(f"peer unavailable: {peer_error}", flush=True)
    if checks[0] is not None and checks[0] > 1e-3:
        raise SystemExit(f"the peer's output with our weights deviates by {checks[0]:.3g} from the same network "
                         "in our code: the two models are not the same architecture; not timing them")

    t0 = time.perf_counter()
    workers = [ours] + ([peer] if peer else [])
    try:
        samples = timed_rounds(workers, warmup, repeats)
    except WorkerError as exc:
        if peer is None:
            raise SystemExit(f"our worker failed: {exc}")
        peer_error = f"the peer failed while timing: {exc}"
        print(f"peer unavailable: {peer_error}", flush=True)
        peer.close()
        peer, workers = None, [ours]
        samples = timed_rounds(workers, warmup, repeats)
    seconds = time.perf_counter() - t0
    for w in workers:
        w.close()

    def med(side: str, key: str) -> float | None:
        vals = samples.get(side, {}).get(key)
        return statistics.median(vals) if vals else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b is not None else None

    res: dict[str, Any] = {"latent": args.latent, "steps": args.steps, "hidden_layers": args.hidden_layers,
                           "threads": args.threads, **sizes, "repeats": repeats, "warmup": warmup}
    for kind in ("fwd", "fwdbwd"):
        for side in ("ours", "peer"):
            res[f"{side}_{kind}_s"] = med(side, f"{kind}_cpu")
    for kind in ("fwd", "fwdbwd"):
        res[f"ratio_{kind}"] = ratio(res[f"peer_{kind}_s"], res[f"ours_{kind}_s"])
    for kind in ("fwd", "fwdbwd"):
        for side in ("ours", "peer"):
            res[f"{side}_{kind}_wall_s"] = med(side, f"{kind}_wall")
        res[f"ratio_{kind}_wall"] = ratio(res[f"peer_{kind}_wall_s"], res[f"ours_{kind}_wall_s"])
    pv = peer.ready["versions"] if peer else {}
    res.update({
        "ours_params": ours.ready["params"], "peer_params": peer.ready["params"] if peer else None,
        "peer_check_max_abs_diff": checks[0], "peer_vs_ours_max_abs_diff": checks[1],
        "peer_concat_trick": args.peer_concat_trick,
        "ours_torch": ours.ready["versions"]["torch"], "peer_torch": pv.get("torch"),
        "peer_physicsnemo": pv.get("physicsnemo"), "peer_torch_scatter": pv.get("torch_scatter"),
        "peer_torch_geometric": pv.get("torch_geometric"),
        "versions": (f"ours torch {ours.ready['versions']['torch']}; peer "
                     + (", ".join(f"{k} {v}" for k, v in pv.items()) if pv else "unavailable")),
        "peer_python": args.peer_python, "timing_s": seconds, "peak_mem_mb": peak_mem_mb(),
        "peer_error": peer_error,
    })
    report("peer_meshgraphnet", res, args.json)


if __name__ == "__main__":
    main()
