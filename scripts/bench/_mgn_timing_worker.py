"""Timing worker of ``peer_meshgraphnet.py``: builds one MeshGraphNet (ours or PhysicsNeMo's)
on a saved graph and times it on request.

    <python> _mgn_timing_worker.py --impl ours|peer --graph GRAPH.npz --latent L --steps S
                                   --hidden-layers H --threads T [--root REPO] [--concat-trick]

The parent starts one worker per implementation, ours with our interpreter and the peer's with
the peer's (its own venv), and alternates requests between them so that both see the same
machine load. The worker imports only torch and numpy at the top (plus, lazily, ``sim`` for
ours and ``physicsnemo`` for the peer), so it runs in either venv.

Protocol: one JSON request per line on stdin, one JSON answer per line on stdout prefixed with
``@@`` (libraries may print their own lines). The first answer is ``ready`` (parameter count,
versions) or ``error`` (what could not be imported or built). Requests:

- ``{"op": "time", "kind": "fwd"|"fwdbwd", "n": k}``: k timed calls; answers the CPU seconds
  (``time.process_time``) and wall seconds (``time.perf_counter``) of each call. ``fwd`` is
  inference (``torch.no_grad``); ``fwdbwd`` is forward, MSE loss against the saved target and
  backward, gradients cleared before each call.
- ``{"op": "load", "weights": PATH}``: load our model's state dict (npz of named arrays),
  mapped onto this implementation's parameter names.
- ``{"op": "forward", "out": PATH}``: write the output of one forward to ``PATH`` (npz ``out``).
- ``{"op": "quit"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from typing import Any, Callable

PREFIX = "@@"


def answer(obj: dict[str, Any]) -> None:
    sys.stdout.write(PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def build_ours(args: argparse.Namespace, node_in: int, edge_in: int, out_dim: int) -> tuple[Any, Callable, dict]:
    import torch

    if args.root and args.root not in sys.path:
        sys.path.insert(0, args.root)
    from sim.models.networks.meshgraphnet import MeshGraphNet

    model = MeshGraphNet(node_in, edge_in, out_dim, latent=args.latent, steps=args.steps,
                         hidden_layers=args.hidden_layers)

    def call(x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        return model(x, edge_index, edge_attr)

    import sim

    return model, call, {"torch": torch.__version__, "sim_file": sim.__file__}


def allow_torchvision_without_ops() -> bool:
    """Let ``import torchvision`` succeed when its C++ ops cannot load; returns whether it had to.

    PhysicsNeMo imports timm, which imports torchvision. PyPI's torchvision wheels are built
    against CUDA torch; next to a CPU torch their ``_C`` library does not load (it needs
    ``libtorch_cuda.so``), torchvision then runs without its ops, except that its
    ``_meta_registrations`` registers fake kernels for ``torchvision::nms`` and ``::qnms``
    unconditionally and fails on the missing operators. Declaring the two schemas (no kernels)
    lets the import finish; MeshGraphNet never calls them. Nothing is declared when ``_C``
    loads, so a matching torchvision is left alone."""
    import importlib.util
    from pathlib import Path

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    libs = sorted(Path(next(iter(spec.submodule_search_locations))).glob("_C*.so"))
    try:
        if libs:
            torch.ops.load_library(str(libs[0]))
            return False
    except (OSError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    allow_torchvision_without_ops.library = lib  # the declarations live as long as this object
    return True


def build_peer(args: argparse.Namespace, node_in: int, edge_in: int, out_dim: int) -> tuple[Any, Callable, dict]:
    import importlib.metadata as md

    import torch

    # Transformer Engine LayerNorm is CUDA-only; say so instead of letting it probe
    os.environ.setdefault("PHYSICSNEMO_FORCE_TE", "False")
    shimmed = allow_torchvision_without_ops()
    import torch_geometric  # noqa: F401  PhysicsNeMo's graph type (its GNN layers need PyG and torch_scatter)
    import torch_scatter  # noqa: F401
    from physicsnemo.models.meshgraphnet import MeshGraphNet
    from torch_geometric.data import Data

    h = args.hidden_layers
    model = MeshGraphNet(
        input_dim_nodes=node_in, input_dim_edges=edge_in, output_dim=out_dim, processor_size=args.steps,
        mlp_activation_fn="relu", num_layers_node_processor=h, num_layers_edge_processor=h,
        hidden_dim_processor=args.latent, hidden_dim_node_encoder=args.latent, num_layers_node_encoder=h,
        hidden_dim_edge_encoder=args.latent, num_layers_edge_encoder=h, hidden_dim_node_decoder=args.latent,
        num_layers_node_decoder=h, aggregation="sum", do_concat_trick=args.concat_trick)
    graphs: dict[int, Any] = {}

    def call(x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        key = id(edge_index)
        if key not in graphs:  # the graph object is built once, like a user's dataloader would
            graphs[key] = Data(edge_index=edge_index, num_nodes=x.shape[0])
        return model(x, edge_attr, graphs[key])

    versions = {"torch": torch.__version__, "physicsnemo": md.version("nvidia-physicsnemo"),
                "torch_scatter": md.version("torch-scatter"), "torch_geometric": md.version("torch-geometric"),
                "torchvision_ops": "declared only (CUDA wheel next to CPU torch)" if shimmed else "loaded"}
    return model, call, versions


def peer_state_from_ours(ours: dict[str, Any], model: Any, latent: int) -> dict[str, Any]:
    """Our parameter names -> PhysicsNeMo's. Same layers, same shapes, two differences of layout:
    its MLPs sit under ``.model``, its processor alternates edge and node blocks in one list, and its
    node MLP reads ``[aggregate, v]`` where ours reads ``[v, aggregate]`` (first-layer columns swapped).
    With ``do_concat_trick`` its edge MLP keeps the first layer as three matrices and shifts the rest."""
    import torch

    out: dict[str, Any] = {}
    trick = any(k.endswith("edge_mlp.lin_efeat") for k in model.state_dict())
    for name, value in ours.items():
        t = torch.as_tensor(value)
        parts = name.split(".")
        if parts[0] in ("node_encoder", "edge_encoder"):
            out[f"{parts[0]}.model.{'.'.join(parts[1:])}"] = t
        elif parts[0] == "decoder":
            out[f"node_decoder.model.{'.'.join(parts[1:])}"] = t
        elif parts[0] == "processor":
            k, mlp_name, idx, kind = int(parts[1]), parts[2], int(parts[3]), parts[4]
            if mlp_name == "edge_mlp":
                base = f"processor.processor_layers.{2 * k}.edge_mlp"
                if trick and idx == 0:
                    if kind == "weight":
                        for piece, w in zip(("lin_efeat", "lin_src", "lin_dst"), t.split(latent, dim=1)):
                            out[f"{base}.{piece}"] = w
                    else:
                        out[f"{base}.bias"] = t
                else:
                    out[f"{base}.model.{idx - 1 if trick else idx}.{kind}"] = t
            else:
                if idx == 0 and kind == "weight":
                    t = torch.cat([t[:, latent:], t[:, :latent]], dim=1)
                out[f"processor.processor_layers.{2 * k + 1}.node_mlp.model.{idx}.{kind}"] = t
        else:
            raise KeyError(f"no PhysicsNeMo counterpart for our parameter {name}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["ours", "peer"], required=True)
    ap.add_argument("--graph", required=True)
    ap.add_argument("--latent", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--hidden-layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--root", help="repository root to import sim from (ours)")
    ap.add_argument("--concat-trick", action="store_true", help="PhysicsNeMo's do_concat_trick (peer only)")
    args = ap.parse_args()
    try:
        import numpy as np
        import torch

        torch.set_num_threads(args.threads)
        g = np.load(args.graph)
        x = torch.from_numpy(g["x"])
        edge_index = torch.from_numpy(g["edge_index"]).long()
        edge_attr = torch.from_numpy(g["edge_attr"])
        target = torch.from_numpy(g["target"])
        build = build_ours if args.impl == "ours" else build_peer
        model, call, versions = build(args, x.shape[1], edge_attr.shape[1], target.shape[1])
        model.eval()  # no dropout or batch norm in either model: eval() only pins the mode
    except Exception as exc:  # the parent reports this as the reason the side is unavailable
        answer({"op": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return
    params = sum(p.numel() for p in model.parameters())
    answer({"op": "ready", "params": params, "versions": versions, "python": sys.executable,
            "threads": torch.get_num_threads()})

    def fwd() -> None:
        with torch.no_grad():
            call(x, edge_index, edge_attr)

    def fwdbwd() -> None:
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(call(x, edge_index, edge_attr), target)
        loss.backward()

    kinds = {"fwd": fwd, "fwdbwd": fwdbwd}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "quit":
                break
            if req["op"] == "time":
                fn = kinds[req["kind"]]
                cpu, wall = [], []
                for _ in range(int(req.get("n", 1))):
                    c, w = time.process_time(), time.perf_counter()
                    fn()
                    cpu.append(time.process_time() - c)
                    wall.append(time.perf_counter() - w)
                answer({"op": "time", "cpu": cpu, "wall": wall})
            elif req["op"] == "load":
                ours = dict(np.load(req["weights"]))
                state = ours if args.impl == "ours" else peer_state_from_ours(ours, model, args.latent)
                state = {k: torch.as_tensor(v) for k, v in state.items()}
                model.load_state_dict(state, strict=True)
                answer({"op": "load", "tensors": len(state)})
            elif req["op"] == "forward":
                with torch.no_grad():
                    out = call(x, edge_index, edge_attr)
                np.savez(req["out"], out=out.numpy())
                answer({"op": "forward", "out": req["out"]})
            else:
                raise ValueError(f"unknown request {req['op']!r}")
        except Exception as exc:
            answer({"op": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})


if __name__ == "__main__":
    main()
