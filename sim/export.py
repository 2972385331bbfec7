"""Portable models: the one-step map of a mesh or particle model as an ONNX file or a
``torch.export`` program (``sim export CHECKPOINT OUT.onnx|OUT.pt2``), with a model card.

What is exported is one step of the model with its normalisers folded in as constants, so
the file takes physical inputs and gives physical outputs and needs nothing of ``sim``:

- mesh models (:class:`~sim.models.mesh.simulator.MeshSimulator` around MeshGraphNet or the
  graph transformer): inputs ``state`` (N, F), ``node_type`` (N,), ``edge_index`` (2, E),
  ``edge_attr`` (E, d + 1) (relative mesh positions sender minus receiver and their norm),
  and as the model needs them ``mesh_pos`` (N, d), ``scalars`` (S,), ``past`` (N, h - 1, F),
  ``static`` (N, K) (the node inputs: static point data of the mesh),
  ``dt`` (1,) and the transformer's ``attention_mask_<k>`` (2, M_k); outputs ``update``
  (the physical delta or time derivative) and ``next_state`` (the update applied on the
  nodes the model predicts, the other nodes unchanged: impose their boundary values);
- particle models (:class:`~sim.models.particle.simulator.ParticleSimulator`: GIOROM or the
  GNS-style baseline): inputs ``history`` (N, H, d) positions, ``particle_type`` (N,),
  ``edge_index`` / ``edge_attr`` of the radius graph at the last frame and, for GIOROM,
  ``grid_edges`` (2, E_g) between the particles and its latent grid; outputs
  ``acceleration`` and ``next_position`` (semi-implicit Euler kept in the domain box, as the
  rollout steps). GIOROM's dense decoder is not part of the export.

Node and edge counts are dynamic (at least 2 of each): one file runs on any graph. Graphs are
inputs because they are built on the host (KD-trees, cell edges, hop masks):
:func:`inputs_for` builds every input from a :class:`~sim.mesh.Mesh` or particle positions,
and the model card (``OUT.json`` beside the file, e.g. ``model.onnx.json``) says how to build
them without ``sim``.

Every export is checked before it is written: the saved file is run (onnxruntime, or
``torch.export.load``) on two example graphs of different sizes and must match the model's
own one-step map (:meth:`~sim.models.mesh.simulator.MeshSimulator.advance`, or the particle
rollout's step) within :data:`TOLERANCE` (relative to the output's largest magnitude);
otherwise nothing is written. Steady, PROSE and MMGP models are refused.

ONNX needs the optional packages of ``pip install 'sim-surrogates[export]'`` (onnx,
onnxscript for the exporter, onnxruntime for the check). Complex tensors do not exist in
ONNX, so GIOROM's Fourier layers are exported through a real-valued twin
(:class:`RealSpectralConv`: the same FFTs with the complex products written out).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import itertools
import json
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sim.errors import SimError

FORMAT = "sim.export"
VERSION = 1
KINDS = {".onnx": "onnx", ".pt2": "pt2"}
FAMILIES = ("mesh", "particle")
TOLERANCE = 1e-4
EXTRA = "pip install 'sim-surrogates[export]'"
MIN_SIZE = 2  # dynamic sizes start at 2 (torch.export specialises 0 and 1)


def card_path(out: str | os.PathLike) -> Path:
    """The model card written beside an export: ``OUT.json`` (``model.onnx`` -> ``model.onnx.json``)."""
    out = Path(out)
    return out.with_name(out.name + ".json")


# --------------------------------------------------------------------------- the step modules
class FoldedNormalizer(nn.Module):
    """A frozen :class:`~sim.data.normalizer.Normalizer` as two constants: the float32 mean and
    std it applies (the same map, bit for bit, on float32 inputs)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.register_buffer("mean", norm.mean.to(torch.float32).clone())
        self.register_buffer("std", norm.std.to(torch.float32).clone())

    def forward(self, x: torch.Tensor, accumulate: bool | None = None) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x.dtype) + self.mean.to(x.dtype)


class RealSpectralConv(nn.Module):
    """:class:`~sim.nn.fno.SpectralConv` without complex tensors in between (ONNX has none): the
    spectrum as (real, imaginary) pairs, the complex channel mixing written out. Same weights;
    equal to the original up to rounding."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.dim, self.modes = conv.dim, conv.modes
        self.register_buffer("wr", conv.weight.detach().real.contiguous().clone())
        self.register_buffer("wi", conv.weight.detach().imag.contiguous().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(-self.dim, 0))
        size = x.shape[-self.dim:]
        spec = torch.view_as_real(torch.fft.rfftn(x.float(), dim=dims))
        out = spec.new_zeros(spec.shape)
        m = [min(self.modes, s // 2) for s in size[:-1]] + [min(self.modes, size[-1] // 2 + 1)]
        mix = "bi...,io...->bo..."
        for c, signs in enumerate(itertools.product((1, -1), repeat=self.dim - 1)):
            index = [slice(None), slice(None)]
            for axis, sign in enumerate(signs):
                index.append(slice(0, m[axis]) if sign > 0 else slice(size[axis] - m[axis], size[axis]))
            index.append(slice(0, m[-1]))
            w = (slice(None), slice(None)) + tuple(slice(0, k) for k in m)
            wr, wi = self.wr[c][w], self.wi[c][w]
            sub = spec[tuple(index)]
            sr, si = sub[..., 0], sub[..., 1]
            real = torch.einsum(mix, sr, wr) - torch.einsum(mix, si, wi)
            imag = torch.einsum(mix, sr, wi) + torch.einsum(mix, si, wr)
            out[tuple(index)] = torch.stack([real, imag], dim=-1)
        return torch.fft.irfftn(torch.view_as_complex(out), s=size, dim=dims).to(x.dtype)


def _replace(model: nn.Module, kind: type, make: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """``model`` with every submodule of type ``kind`` replaced by ``make(it)`` (in place)."""
    for name, child in list(model.named_children()):
        if isinstance(child, kind):
            setattr(model, name, make(child))
        else:
            _replace(child, kind, make)
    return model


def folded(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` whose normalisers are constants (:class:`FoldedNormalizer`)."""
    from sim.data.normalizer import Normalizer

    model = _replace(copy.deepcopy(model), Normalizer, FoldedNormalizer).eval()
    return model.requires_grad_(False)


def _mask_plan(network: nn.Module) -> tuple[list[tuple[int, ...]], list[int]] | None:
    """For a graph transformer: the distinct hop sets whose masks are inputs and, per layer, the
    index of its mask (an empty list of hop sets: every layer attends over the mesh edges, the
    edge index itself); None for other networks."""
    from sim.models.networks.graph_transformer import GraphTransformer

    if not isinstance(network, GraphTransformer):
        return None
    c = network.config
    if all(h == (1,) for h in network.layer_hops) and not (c["global_nodes"] or c["global_tokens"]
                                                           or c["random_edges"]):
        return [], [0] * len(network.layer_hops)
    sets = list(dict.fromkeys(network.layer_hops))
    return sets, [sets.index(h) for h in network.layer_hops]


def _network_extras(network: nn.Module, edge_index: torch.Tensor, masks: list[torch.Tensor],
                    grid_edges: torch.Tensor | None, plan: Any) -> dict[str, Any]:
    """The keyword arguments that hand a network the host-built graph parts it would otherwise
    build itself (the transformer's masks, GIOROM's grid edges)."""
    extra: dict[str, Any] = {}
    if plan is not None:
        sets, per_layer = plan
        extra["masks"] = [edge_index if not sets else masks[i] for i in per_layer]
    if grid_edges is not None:
        extra["grid_edges"] = grid_edges
    return extra


class MeshStep(nn.Module):
    """One step of a mesh simulator on one graph, from physical inputs to physical outputs:
    ``(update, next_state)``; the inputs are positional, in the order of :attr:`names`."""

    def __init__(self, simulator: nn.Module, names: list[str]):
        super().__init__()
        self.sim = folded(simulator)
        self.names = names
        self.plan = _mask_plan(self.sim.network)
        self.register_buffer("predicted", torch.tensor(self.sim.config["predicted_types"], dtype=torch.long))

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = dict(zip(self.names, inputs))
        state, node_type, edge_index = a["state"], a["node_type"], a["edge_index"]
        s = self.sim
        scalars = a.get("scalars")
        x = s.node_normalizer(s.node_features(state, node_type, None, None if scalars is None else scalars[None],
                                              a.get("past"), a.get("static")))
        e = s.edge_normalizer(a["edge_attr"])
        masks = [a[k] for k in self.names if k.startswith("attention_mask_")]
        extra = _network_extras(s.network, edge_index, masks, None, self.plan)
        update = s.output_normalizer.inverse(s.network(x, edge_index, e, pos=a.get("mesh_pos"), batch=None, **extra))
        change = update if "dt" not in a else a["dt"].reshape(1, 1) * update
        predicted = (node_type[:, None] == self.predicted[None, :]).any(dim=1)
        return update, torch.where(predicted[:, None], state + change, state)


class ParticleStep(nn.Module):
    """One step of a particle simulator on one sample: ``(acceleration, next_position)``."""

    def __init__(self, simulator: nn.Module, names: list[str]):
        super().__init__()
        self.sim = folded(simulator)
        self.names = names
        self.plan = _mask_plan(self.sim.network)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from sim.data.particles import semi_implicit_euler

        a = dict(zip(self.names, inputs))
        history, edge_index = a["history"], a["edge_index"]
        s = self.sim
        x = s.node_features(history, a["particle_type"])
        masks = [a[k] for k in self.names if k.startswith("attention_mask_")]
        extra = _network_extras(s.network, edge_index, masks, a.get("grid_edges"), self.plan)
        out = s.network(x, edge_index, a["edge_attr"], pos=s.unit_positions(history[:, -1]), batch=None, **extra)
        acc = s.acceleration_normalizer.inverse(out)
        lo, hi = s.bounds[:, 0].to(history.dtype), s.bounds[:, 1].to(history.dtype)
        return acc, torch.minimum(torch.maximum(semi_implicit_euler(history, acc, s.dt), lo), hi)


# --------------------------------------------------------------------------- what a file takes
@dataclass
class Port:
    """One input or output of an export: name, shape (ints and dynamic dimension names), dtype
    and how to build it."""

    name: str
    shape: list[int | str]
    dtype: str
    about: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype, "about": self.about}


@dataclass
class Spec:
    """What an exported model of one checkpoint takes and gives (the model card's contents)."""

    family: str
    network: str
    inputs: list[Port]
    outputs: list[Port]
    constants: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.inputs]


def _node_types() -> dict[str, int]:
    from sim.mesh import NodeType

    return {t.name.lower(): int(t) for t in NodeType}


def _mask_inputs(network: nn.Module, plan: Any) -> list[Port]:
    if not plan or not plan[0]:
        return []
    c = network.config
    extras = [w for w, k in (("global nodes", "global_nodes"), ("global tokens", "global_tokens"),
                             ("random senders", "random_edges")) if c[k]]
    out = []
    for i, hops in enumerate(plan[0]):
        layers = [j for j, k in enumerate(plan[1]) if k == i]
        out.append(Port(f"attention_mask_{i}", [2, f"num_mask_pairs_{i}"], "int64",
                        f"(sender, receiver) pairs the transformer layer(s) {layers} attend over: the node pairs "
                        f"at hop distance {list(hops)} on the mesh graph"
                        + (f", plus the pairs of the {', '.join(extras)}" if extras else "")
                        + (f" (indices num_nodes.. are the {c['global_tokens']} global tokens)"
                           if c["global_tokens"] else "")
                        + "; built on the host: sim.export.inputs_for builds it "
                          "(GraphTransformer.masks with one graph)"))
    return out


def mesh_spec(sim: nn.Module) -> Spec:
    """The inputs and outputs of a mesh simulator's export."""
    from sim.mesh import NodeType

    c = sim.config
    net = sim.network
    fields = ", ".join(f"{f} ({d})" for f, d in zip(c["fields"], c["field_dims"]))
    f = sim.num_features
    d = int(c["edge_in"]) - 1
    h = int(c.get("history", 1))
    derivative = c["target"] == "derivative"
    predicted = [NodeType(t).name.lower() for t in c["predicted_types"]]
    inputs = [
        Port("state", ["num_nodes", f], "float32",
             f"the fields {fields} at each node, concatenated in this order, in the units of the training data"),
        Port("node_type", ["num_nodes"], "int64",
             "each node's role: " + ", ".join(f"{v} {k}" for k, v in _node_types().items())),
        Port("edge_index", [2, "num_edges"], "int64",
             "row 0 senders, row 1 receivers: every edge of the mesh cells in both directions, no self-loops "
             "(sim.graph.cell_edges)"),
        Port("edge_attr", ["num_edges", d + 1], "float32",
             f"per edge [x_sender - x_receiver ({d} columns), |x_sender - x_receiver|] in mesh coordinates "
             "(sim.graph.edge_features)"),
    ]
    if getattr(net, "config", {}).get("coord_dim") or getattr(net, "config", {}).get("rope") \
            or getattr(net, "plugins", None) is not None:
        inputs.append(Port("mesh_pos", ["num_nodes", d], "float32", "the node coordinates of the mesh"))
    if c.get("scalars"):
        inputs.append(Port("scalars", [len(c["scalars"])], "float32",
                           f"the trajectory parameters {c['scalars']} the model is conditioned on, in this order"))
    if h > 1:
        inputs.append(Port("past", ["num_nodes", h - 1, f], "float32",
                           f"the {h - 1} state(s) before `state`, oldest first, laid out as `state`"))
    if c.get("node_inputs"):
        parts = ", ".join(f"{k} ({w})" for k, w in zip(c["node_inputs"], c["node_input_dims"]))
        inputs.append(Port("static", ["num_nodes", sim.num_static], "float32",
                           f"the static point data {parts} of the mesh at each node, concatenated in this order"))
    if derivative:
        inputs.append(Port("dt", [1], "float32", "the time step (the model predicts a time derivative)"))
    inputs += _mask_inputs(net, _mask_plan(net))
    upd = "the time derivative d(state)/dt" if derivative else "the change of the state over one step"
    outputs = [
        Port("update", ["num_nodes", f], "float32", f"{upd}, in physical units, at every node"),
        Port("next_state", ["num_nodes", f], "float32",
             f"state + {'dt * ' if derivative else ''}update on the nodes of the types the model predicts "
             f"({', '.join(predicted)}); `state` unchanged on the others: impose their boundary values there "
             "before the next step"),
    ]
    consts = {"fields": dict(zip(c["fields"], c["field_dims"])), "target": c["target"], "mesh_dim": d,
              "predicted_node_types": predicted, "node_types": _node_types(), "scalars": list(c.get("scalars") or []),
              "history": h, "node_inputs": list(c.get("node_inputs") or [])}
    return Spec("mesh", c["network"], inputs, outputs, consts)


def particle_spec(sim: nn.Module) -> Spec:
    """The inputs and outputs of a particle simulator's export."""
    c = sim.config
    d, hist, r = sim.dim, int(c["history"]), float(sim.radius)
    bounds = sim.bounds.tolist()
    cap = c.get("max_neighbors")
    inputs = [
        Port("history", ["num_particles", hist, d], "float32",
             f"the positions of the last {hist} frames, oldest first, {sim.dt:g} time units apart, in the "
             "units of the training data"),
        Port("particle_type", ["num_particles"], "int64", "each particle's material type (0-8; the rollout's "
             "default is 0)"),
        Port("edge_index", [2, "num_edges"], "int64",
             f"row 0 senders, row 1 receivers: every ordered pair of distinct particles at most {r:g} apart at "
             "the last frame" + (f", keeping the {cap} nearest senders per receiver" if cap else "")
             + " (sim.graph.radius_graph)"),
        Port("edge_attr", ["num_edges", d + 1], "float32",
             f"per edge [x_sender - x_receiver, |x_sender - x_receiver|] / {r:g} at the last frame"),
    ]
    consts: dict[str, Any] = {"dim": d, "history": hist, "dt": float(sim.dt), "connectivity_radius": r,
                              "bounds": bounds, "max_neighbors": cap, "sample_ratio": c["sample_ratio"]}
    if c["network"] == "giorom":
        g = sim.network.config
        inputs.append(Port("grid_edges", [2, "num_grid_edges"], "int64",
                           f"row 0 particle, row 1 grid node: every (particle, grid node) pair at most "
                           f"{g['gno_radius']:g} apart in unit-box coordinates u = (x - lo) / (hi - lo) of the "
                           f"last frame (bounds {bounds}); the grid has {g['grid']} nodes per axis on [0, 1] "
                           f"(node (i_1, ..., i_d) at (i_1, ..., i_d) / {g['grid'] - 1}, index "
                           f"sum_a i_a * {g['grid']}^(d-a), the last axis fastest)"))
        consts.update(grid=g["grid"], gno_radius=g["gno_radius"])
    inputs += _mask_inputs(sim.network, _mask_plan(sim.network))
    outputs = [Port("acceleration", ["num_particles", d], "float32",
                    "the acceleration at the last frame, in physical units (length / time^2)"),
               Port("next_position", ["num_particles", d], "float32",
                    "the next positions: v = (x_t - x_{t-1}) / dt + dt * acceleration, x_{t+1} = x_t + dt * v, "
                    "kept inside the bounds")]
    if c["sample_ratio"] < 1:
        share = f"{c['sample_ratio']:g} of the particles" if c.get("sample_rule", "ratio") == "ratio" else \
            f"as far apart as {c['sample_ratio']:g} of particles {c['reference_spacing']:.4g} apart"
        consts["note"] = (f"trained on a sparse subset ({share}, {c['sampling']} sampling): give it such a subset "
                          "(ParticleSimulator.sparse_indices)")
    return Spec("particle", c["network"], inputs, outputs, consts)


# --------------------------------------------------------------------------- inputs
def _load(model: Any) -> tuple[Any, Any, Path | None]:
    """(family, model, path) of a checkpoint path or an already loaded model."""
    from sim.families import family_of, load_model_file

    if isinstance(model, (str, os.PathLike)):
        family, m, _ = load_model_file(model)
        return family, m, Path(model)
    return family_of(model), model, None


def _exportable(family: Any, model: Any, path: Path | None) -> None:
    if family.name not in FAMILIES:
        raise SimError(f"`sim export` does not apply to {family.name} models: it exports the one-step map of "
                       "mesh models (MeshGraphNet, the graph transformer) and particle models (GIOROM, the "
                       "particle simulator)", path)
    if isinstance(model, list):
        raise SimError("this is an ensemble manifest: export each member checkpoint on its own", path)
    if int(getattr(model, "config", {}).get("bundle", 1)) > 1:
        raise SimError(f"the model predicts {model.config['bundle']} frames per call (temporal bundling); the export "
                       "is of one-frame maps: export a model without family_args.bundle", path)
    features = getattr(getattr(model, "network", None), "config", {}).get("features")
    if features:
        raise SimError(f"the model's feature plugins ({', '.join(str(f) for f in features)}) count graph structure "
                       "on the host with numpy, which an exported graph cannot run: export a model without "
                       "`features`", path)


def _graph_masks(network: nn.Module, edge_index: torch.Tensor, n: int, batched: bool) -> dict[str, np.ndarray]:
    """The transformer's mask inputs on one graph, as the rollout builds them (mesh rollouts run
    a batch of one graph, ``batched``; random senders depend on it)."""
    plan = _mask_plan(network)
    if not plan or not plan[0]:
        return {}
    masks = network.masks(edge_index, n, torch.zeros(n, dtype=torch.long) if batched else None)
    first = {k: masks[plan[1].index(k)] for k in range(len(plan[0]))}
    return {f"attention_mask_{k}": m.numpy().astype(np.int64) for k, m in first.items()}


def inputs_for(model: Any, mesh: Any, state: Any = None, *, params: dict[str, Any] | None = None,
               past: Any = None, dt: float | None = None, particle_type: Any = None) -> dict[str, np.ndarray]:
    """The inputs of the exported one-step map of ``model`` (a checkpoint path or a loaded model),
    by name and in order, as numpy arrays: ``onnxruntime.InferenceSession(...).run(None,
    inputs)`` or ``torch.export.load(...).module()(*map(torch.from_numpy, inputs.values()))``.

    Mesh models: ``mesh`` is a :class:`~sim.mesh.Mesh` with node types and ``state`` its fields
    (a dict of point arrays or an (N, F) array; default: the mesh's ``point_data``), or
    ``mesh`` is a :class:`~sim.mesh.Trajectory` whose first ``history`` steps give the state (the
    last) and the ``past`` frames and whose ``params`` the scalars. ``params``: the trajectory
    parameters the model is conditioned on; ``past``: (h - 1, N, F) frames before the state,
    oldest first; ``dt``: the time step (models that predict a time derivative).

    Particle models: ``mesh`` is the positions (H, N, d), oldest first, or a particle
    :class:`~sim.mesh.Trajectory` (its first H frames and ``particle_type``); ``particle_type``
    (N,) defaults to zeros.
    """
    family, m, path = _load(model)
    _exportable(family, m, path)
    if family.name == "mesh":
        return _mesh_inputs(family, m, path, mesh, state, params, past, dt)
    return _particle_inputs(m, path, mesh, particle_type)


def _mesh_inputs(family: Any, sim: Any, path: Path | None, mesh: Any, state: Any, params: Any, past: Any,
                 dt: Any) -> dict[str, np.ndarray]:
    from sim.graph import mesh_graph
    from sim.mesh import Mesh, Trajectory

    where = path or "the model"
    surrogate = family.surrogate(sim, {}, where)
    h = surrogate.history
    spec = mesh_spec(sim)
    if isinstance(mesh, Trajectory):
        if state is not None or past is not None:
            raise SimError("give either a Trajectory (its steps are the state and the frames before it) or a Mesh "
                           "with state and past", where)
        frames, dt0, _, _ = surrogate._initial(mesh, None)[1:]
        params = surrogate._params(mesh, params)
        mesh_, x, before = mesh.mesh, frames[-1], frames[:-1]
        dt = dt if dt is not None else dt0
    elif isinstance(mesh, Mesh):
        surrogate.check_mesh(mesh)
        mesh_ = mesh
        n = mesh.num_points
        if state is None:
            state = mesh.point_data
        x = surrogate.state_from(state, n, "the state") if isinstance(state, dict) else \
            np.asarray(state, dtype=np.float32)
        if x.shape != (n, sim.num_features):
            raise SimError(f"the state has shape {x.shape}; the model expects ({n}, {sim.num_features}) "
                           f"for fields {surrogate.fields}", where)
        params = surrogate._params(mesh, params)
        before = None
        if h > 1:
            if past is None:
                raise SimError(f"the model sees {h} frames: give past, the {h - 1} state(s) before this one "
                               f"({h - 1}, {n}, {sim.num_features}), or a Trajectory", where)
            before = np.asarray(past, dtype=np.float32)
            if before.shape != (h - 1, n, sim.num_features):
                raise SimError(f"past has shape {before.shape}; the model expects ({h - 1}, {n}, "
                               f"{sim.num_features})", where)
    else:
        raise SimError(f"a mesh model's inputs come from a sim.mesh.Mesh or Trajectory, not {type(mesh).__name__}",
                       where)
    g = mesh_graph(mesh_)
    out: dict[str, np.ndarray] = {
        "state": np.ascontiguousarray(x, dtype=np.float32),
        "node_type": g.node_type.numpy().astype(np.int64),
        "edge_index": g.edge_index.numpy().astype(np.int64),
        "edge_attr": g.edge_attr.numpy().astype(np.float32),
        "mesh_pos": g.mesh_pos.numpy().astype(np.float32),
    }
    if sim.config.get("scalars"):
        out["scalars"] = sim.scalar_values(params, where)
    if h > 1:
        out["past"] = np.ascontiguousarray(np.asarray(before, dtype=np.float32).transpose(1, 0, 2))
    static = sim.node_input_values(mesh_.point_data, mesh_.num_points, where)
    if static is not None:
        out["static"] = static
    if sim.config["target"] == "derivative":
        if dt is None:
            raise SimError("give dt: the model predicts a time derivative", where)
        out["dt"] = np.array([dt], dtype=np.float32)
    out.update(_graph_masks(sim.network, g.edge_index, mesh_.num_points, batched=True))
    return {k: out[k] for k in spec.names}


def _particle_inputs(sim: Any, path: Path | None, positions: Any, particle_type: Any) -> dict[str, np.ndarray]:
    from sim.graph import point_cloud_graph
    from sim.mesh import Trajectory

    where = path or "the model"
    spec = particle_spec(sim)
    hist = int(sim.config["history"])
    if isinstance(positions, Trajectory):
        if positions.positions is None:
            raise SimError("a particle model's inputs come from a particle Trajectory with moving positions", where)
        if particle_type is None:
            particle_type = positions.mesh.point_data.get("particle_type")
        positions = positions.positions[:hist]
    pos = np.asarray(positions, dtype=np.float32)
    if pos.ndim != 3 or pos.shape[0] != hist or pos.shape[2] != sim.dim:
        raise SimError(f"the positions have shape {pos.shape}; the model expects the last {hist} frames of "
                       f"{sim.dim}D particles, ({hist}, N, {sim.dim})", where)
    n = pos.shape[1]
    ptype = np.zeros(n, dtype=np.int64) if particle_type is None else np.asarray(particle_type).astype(np.int64)
    if ptype.shape != (n,):
        raise SimError(f"particle_type has shape {ptype.shape}; expected ({n},)", where)
    last = torch.from_numpy(pos[-1])
    g = point_cloud_graph(last, sim.radius, None, sim.config["max_neighbors"])
    out = {"history": np.ascontiguousarray(pos.transpose(1, 0, 2)), "particle_type": ptype,
           "edge_index": g.edge_index.numpy().astype(np.int64), "edge_attr": g.edge_attr.numpy().astype(np.float32)}
    if "grid_edges" in spec.names:
        _, p2g = sim.network.grid_edges(sim.unit_positions(last), None, 1)
        out["grid_edges"] = p2g.numpy().astype(np.int64)
    out.update(_graph_masks(sim.network, g.edge_index, n, batched=False))
    return {k: out[k] for k in spec.names}


# --------------------------------------------------------------------------- examples and reference
def _lattice_mesh(dim: int, size: int) -> Any:
    """A structured mesh of the unit box with ``size`` + 1 + axis points per axis: inflow at x = 0,
    outflow at x = 1, walls elsewhere on the boundary (a channel, as in cylinder flow)."""
    from sim.mesh import Mesh, NodeType

    counts = [size + 1 + a for a in range(dim)]
    axes = [np.linspace(0.0, 1.0, k) for k in counts]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, dim)
    ids = np.arange(grid.shape[0]).reshape(counts)
    if dim == 1:
        cells = {"line": np.stack([ids[:-1], ids[1:]], 1)}
    elif dim == 2:
        cells = {"quad": np.stack([ids[:-1, :-1], ids[1:, :-1], ids[1:, 1:], ids[:-1, 1:]], -1).reshape(-1, 4)}
    else:
        c = [ids[:-1, :-1, :-1], ids[1:, :-1, :-1], ids[1:, 1:, :-1], ids[:-1, 1:, :-1],
             ids[:-1, :-1, 1:], ids[1:, :-1, 1:], ids[1:, 1:, 1:], ids[:-1, 1:, 1:]]
        cells = {"hexahedron": np.stack(c, -1).reshape(-1, 8)}
    node_type = np.full(grid.shape[0], int(NodeType.INTERIOR), dtype=np.int64)
    boundary = np.any((grid <= 0.0) | (grid >= 1.0), axis=1)
    node_type[boundary] = int(NodeType.WALL)
    node_type[grid[:, 0] <= 0.0] = int(NodeType.INFLOW)
    node_type[grid[:, 0] >= 1.0] = int(NodeType.OUTFLOW)
    return Mesh(grid, cells, node_type=node_type)


def _mesh_example(sim: Any, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs on a synthetic channel mesh, with states (and node inputs) drawn from the training statistics."""
    from sim.mesh import NUM_NODE_TYPES

    c = sim.config
    d = int(c["edge_in"]) - 1
    if d not in (1, 2, 3):
        raise SimError(f"the model's edge features have {d + 1} columns; exports cover models of 1-3D meshes "
                       "(relative mesh position and its norm)")
    mesh = _lattice_mesh(d, size)
    n, f, h = mesh.num_points, sim.num_features, int(c.get("history", 1))
    mean = sim.node_normalizer.mean.numpy()
    std = sim.node_normalizer.std.numpy()
    std = np.where(std > 1e-6, std, 1.0)
    frames = (mean[:f] + std[:f] * rng.standard_normal((h, n, f))).astype(np.float32)
    ns = len(c.get("scalars") or [])
    params = dict(zip(c.get("scalars") or [], (mean[-ns:] if ns else [])))
    at = f * h + NUM_NODE_TYPES  # the node inputs' columns of the node features
    for name, w in zip(c.get("node_inputs") or [], c.get("node_input_dims") or []):
        v = (mean[at:at + w] + std[at:at + w] * rng.standard_normal((n, w))).astype(np.float32)
        mesh.point_data[name] = v[:, 0] if w == 1 else v
        at += w
    return _mesh_inputs(_family("mesh"), sim, None, mesh, frames[-1], params, frames[:-1] if h > 1 else None,
                        1e-2 if c["target"] == "derivative" else None)


def _particle_example(sim: Any, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs on a jittered block of particles inside the domain, moving with the training velocities."""
    d, hist, r = sim.dim, int(sim.config["history"]), float(sim.radius)
    lo, hi = sim.bounds[:, 0].numpy().astype(np.float64), sim.bounds[:, 1].numpy().astype(np.float64)
    k = size + 2
    spacing = min(0.6 * r, 0.5 * float(np.min(hi - lo)) / (k - 1))
    axes = [np.arange(k + a) * spacing for a in range(d)]
    block = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
    last = lo + 0.25 * (hi - lo) + block + rng.uniform(-0.1, 0.1, block.shape) * spacing
    stats = sim.config["statistics"]
    vel = np.asarray(stats["vel_mean"]) + np.asarray(stats["vel_std"]) * rng.standard_normal((hist - 1, *last.shape))
    frames = [last]
    for v in vel[::-1]:
        frames.append(frames[-1] - sim.dt * v)
    return _particle_inputs(sim, None, np.stack(frames[::-1]).astype(np.float32), None)


def _family(name: str) -> Any:
    from sim.families import get_family

    return get_family(name)


def _reference(family: str, sim: Any, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The model's own one-step outputs (the path rollouts take) for the export's inputs."""
    from torch_geometric.data import Data

    t = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        if family == "mesh":
            n = t["state"].shape[0]
            data = Data(node_type=t["node_type"], edge_index=t["edge_index"], edge_attr=t["edge_attr"],
                        mesh_pos=t.get("mesh_pos"), batch=torch.zeros(n, dtype=torch.long), num_nodes=n,
                        static=t.get("static"))
            step = sim.step_inputs(data, scalars=t["scalars"][None] if "scalars" in t else None, past=t.get("past"),
                                   dt=t["dt"] if "dt" in t else None)
            update = sim.update(t["state"], step)
            nxt, _ = sim.advance(t["state"], step, boundary=t["state"])  # the other nodes keep their state
            return [update.numpy(), nxt.numpy()]
        from sim.data.particles import semi_implicit_euler

        history = t["history"]
        acc = sim.predict_acceleration(history, t["particle_type"], None)
        lo, hi = sim.bounds[:, 0], sim.bounds[:, 1]
        nxt = torch.minimum(torch.maximum(semi_implicit_euler(history, acc, sim.dt), lo), hi)
        return [acc.numpy(), nxt.numpy()]


def relative_difference(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    """The largest ``max |got - want| / max |want|`` over the outputs."""
    worst = 0.0
    for g, w in zip(got, want):
        g, w = np.asarray(g, dtype=np.float64), np.asarray(w, dtype=np.float64)
        if g.shape != w.shape:
            return float("inf")
        scale = max(float(np.max(np.abs(w), initial=0.0)), 1e-30)
        worst = max(worst, float(np.max(np.abs(g - w), initial=0.0)) / scale)
    return worst


# --------------------------------------------------------------------------- export
@contextlib.contextmanager
def _quiet() -> Any:
    """The exporters' progress lines and warnings kept off the terminal (their errors still raise)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx",
                                              "onnxscript", "torch._export", "torch.utils._sympy")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _dims(spec: Spec) -> tuple[Any, ...]:
    """torch.export dynamic shapes of the inputs, in order (one Dim per named size)."""
    made: dict[str, Any] = {}

    def dim(name: str) -> Any:
        if name not in made:
            made[name] = torch.export.Dim(name, min=MIN_SIZE)
        return made[name]

    # one entry: the step modules take their inputs as *inputs
    return (tuple({i: dim(s) for i, s in enumerate(t.shape) if isinstance(s, str)} or None for t in spec.inputs),)


def _require_onnx() -> None:
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise SimError(f"ONNX export needs {', '.join(missing)} (the optional 'export' packages): {EXTRA}")


@dataclass
class Exported:
    """What :func:`export` wrote and how it checked it."""

    path: Path
    card: Path
    kind: str
    family: str
    network: str
    checks: list[dict[str, Any]]

    @property
    def max_difference(self) -> float:
        return max(c["max_relative_difference"] for c in self.checks)


def _run_saved(kind: str, path: Path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    if kind == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return session.run(None, inputs)
    program = torch.export.load(str(path))
    with torch.no_grad():
        out = program.module()(*[torch.from_numpy(v) for v in inputs.values()])
    return [o.numpy() for o in out]


def _reason(exc: BaseException) -> str:
    """The innermost cause of an exporter's failure on one line (the exporters wrap it in advice)."""
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    inner = seen[-1]
    lines = [ln.strip() for ln in str(inner).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    return f"{type(inner).__name__}: {text[:240]}" + (" (an operation that depends on the values, not only on the "
                                                       "shapes)" if "DataDependent" in type(inner).__name__ else "")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export(checkpoint: str | os.PathLike, out: str | os.PathLike, seed: int = 0) -> Exported:
    """Export the one-step map of the model in ``checkpoint`` to ``out`` (``.onnx`` or ``.pt2``)
    with its model card ``out.json``; both appear only when the saved file reproduces the model
    on two example graphs of different sizes (:data:`TOLERANCE`)."""
    from sim.mesh.atomic import AtomicFile, swap_in

    out = Path(out)
    if out.is_dir():
        raise SimError("is a folder; give the file to write (OUT.onnx or OUT.pt2)", out)
    kind = KINDS.get(out.suffix.lower())
    if kind is None:
        raise SimError("the export's format comes from its extension: give OUT.onnx (ONNX) or OUT.pt2 "
                       "(torch.export)", out)
    if kind == "onnx":
        _require_onnx()
    family, sim, path = _load(checkpoint)
    _exportable(family, sim, path)
    spec = mesh_spec(sim) if family.name == "mesh" else particle_spec(sim)
    example = _mesh_example if family.name == "mesh" else _particle_example
    rng = np.random.default_rng(seed)
    examples = [example(sim, size, rng) for size in (3, 6)]
    step = (MeshStep if family.name == "mesh" else ParticleStep)(sim, spec.names)
    if kind == "onnx":
        from sim.nn.fno import SpectralConv

        _replace(step, SpectralConv, RealSpectralConv)
    args = tuple(torch.from_numpy(v) for v in examples[0].values())
    what = f"the {spec.network} {family.name} model"
    try:
        with _quiet(), torch.no_grad():
            if kind == "onnx":
                program = torch.onnx.export(step, args, None, input_names=spec.names,
                                            output_names=[t.name for t in spec.outputs],
                                            dynamic_shapes=_dims(spec), dynamo=True, verbose=False)
                blob = program.model_proto.SerializeToString()
                opset = {o.domain or "ai.onnx": int(o.version) for o in program.model_proto.opset_import}
            else:
                program = torch.export.export(step, args, dynamic_shapes=_dims(spec), strict=False)
                program.example_inputs = None  # the archive then holds no pickle, only weights and JSON
                buffer = io.BytesIO()  # (a buffer: the archive's folder is not named after a temporary file)
                torch.export.save(program, buffer)
                blob, opset = buffer.getvalue(), {}
    except Exception as exc:
        raise SimError(f"{what} cannot be exported to {kind.upper()}: {_reason(exc)}", path) from None
    files = [AtomicFile(out), AtomicFile(card_path(out))]
    try:
        try:
            files[0].tmp.write_bytes(blob)
        except OSError as exc:
            from sim.mesh.atomic import write_error

            raise write_error(out, exc) from None
        checks = []
        for inputs in examples:
            sizes = {s: int(inputs[t.name].shape[i]) for t in spec.inputs for i, s in enumerate(t.shape)
                     if isinstance(s, str)}
            try:
                with _quiet():
                    got = _run_saved(kind, files[0].tmp, inputs)
            except Exception as exc:
                raise SimError(f"the exported {kind.upper()} file of {what} does not run on a graph of sizes "
                               f"{sizes}: {_reason(exc)}; nothing was written", path) from None
            diff = relative_difference(got, _reference(family.name, sim, inputs))
            checks.append({"sizes": sizes, "max_relative_difference": diff})
            if not diff <= TOLERANCE:
                raise SimError(f"the exported {kind.upper()} file does not reproduce {what} (largest relative "
                               f"difference {diff:.3g} > {TOLERANCE:g} on a graph of sizes {sizes}); nothing was "
                               "written", path)
        card = _card(spec, kind, out, path, sim, opset, checks)
        try:
            files[1].tmp.write_text(json.dumps(card, indent=2) + "\n")
        except OSError as exc:
            from sim.mesh.atomic import write_error

            raise write_error(card_path(out), exc) from None
        swap_in([(files[0].tmp, out), (files[1].tmp, card_path(out))])
    finally:
        for f in files:
            f.discard()
    return Exported(out, card_path(out), kind, family.name, spec.network, checks)


def _card(spec: Spec, kind: str, out: Path, checkpoint: Path | None, sim: Any, opset: dict[str, int],
          checks: list[dict[str, Any]]) -> dict[str, Any]:
    from sim._version import __version__

    names = spec.names
    if kind == "onnx":
        run = ("import onnxruntime as ort\n"
               f"session = ort.InferenceSession({out.name!r})\n"
               f"{', '.join(t.name for t in spec.outputs)} = session.run(None, {{name: array, ...}})  "
               f"# inputs by name: {', '.join(names)}")
    else:
        run = ("import torch\n"
               f"step = torch.export.load({out.name!r}).module()\n"
               f"{', '.join(t.name for t in spec.outputs)} = step({', '.join(names)})  # torch tensors, in this order")
    return {
        "format": FORMAT, "version": VERSION, "file": out.name,
        "kind": "ONNX" if kind == "onnx" else "torch.export (torch.export.load)",
        "family": spec.family, "network": spec.network,
        "what": ("one step of the model on one graph, normalisers folded in: physical inputs, physical outputs; "
                 "node and edge counts are dynamic (at least 2 each)"),
        "inputs": [t.to_dict() for t in spec.inputs],
        "outputs": [t.to_dict() for t in spec.outputs],
        "constants": spec.constants,
        "build_inputs_with_sim": "sim.export.inputs_for(checkpoint, mesh_or_positions, state, params=..., past=..., "
                                 "dt=...) returns these inputs by name as numpy arrays",
        "run": run,
        "checked": {"tolerance": TOLERANCE, "against": "the model's one-step map in sim", "graphs": checks},
        "source": {"checkpoint": None if checkpoint is None else str(checkpoint),
                   "sha256": None if checkpoint is None else _sha256(checkpoint)},
        "versions": {"sim": __version__, "torch": torch.__version__, **({"onnx_opset": opset} if opset else {})},
    }
