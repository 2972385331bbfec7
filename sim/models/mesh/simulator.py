"""One-step mesh simulators: a graph network wrapped with its normalisers and target convention.

The network sees normalised node features ``[state, one_hot(node_type), node inputs, scalars]`` (and, with
``history`` h > 1, the h - 1 latest changes ``x_t - x_{t-1}, ..., x_{t-h+2} - x_{t-h+1}`` after
the state) and normalised edge features, and predicts the normalised *update* of the state: a delta
(``x_{t+1} - x_t``) or a derivative (``(x_{t+1} - x_t) / dt``). The rollout engine owns the
integration and the boundary conditions; the simulator only maps a state to an update.
``scalars`` are parameters of the whole trajectory (e.g. the viscosity ``nu``), read from its
``params`` and broadcast to every node: without them a model must guess from one state what
the physics is, and a dataset that varies the viscosity independently of the flow makes the
one-step map ambiguous. ``node_inputs`` are static point fields of the mesh the model reads but
does not predict (e.g. a heat source density, a material map): the same at every step, so they
come from the mesh and not from the state.
Loss (MeshGraphNet): MSE of the normalised update on the nodes the model predicts
(interior and outflow by default), after input noise on the interior nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from sim.data.noise import mesh_input_noise, node_mask
from sim.data.normalizer import Normalizer
from sim.data.windows import node_input_widths, static_node_inputs, trajectory_scalars
from sim.mesh import NUM_NODE_TYPES, NodeType
from sim.models.registry import build_model, register_model

TARGETS = ("delta", "derivative")


@dataclass
class StepInputs:
    """Everything the one-step map reads besides the state, aligned with the graph's nodes:
    node types, edges and their features, mesh positions, the node-to-graph map, each graph's
    conditioning scalars (G, S), the frames before the state (N, h - 1, F), the static node
    inputs (N, K) and the factor from an update to a state change (N, 1): 1 for a delta target,
    each node's dt for a derivative.

    The engine, the pushforward loss and the diagnostics all build it with
    :meth:`MeshSimulator.step_inputs` and call the map through it, so no caller assembles
    the network's inputs by hand. :meth:`subgraph` restricts it to a node subset (the
    diagnostics' receptive-field subgraphs)."""

    node_type: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    scale: torch.Tensor
    pos: torch.Tensor | None = None
    batch: torch.Tensor | None = None
    scalars: torch.Tensor | None = None
    past: torch.Tensor | None = None
    static: torch.Tensor | None = None

    def subgraph(self, subset: torch.Tensor, edge_index: torch.Tensor, edge_mask: torch.Tensor) -> "StepInputs":
        """The inputs of the nodes ``subset`` with the (relabelled) ``edge_index`` of the edges
        ``edge_mask`` (as :func:`torch_geometric.utils.k_hop_subgraph` returns them)."""
        def take(a: torch.Tensor | None) -> torch.Tensor | None:
            return None if a is None else a[subset]

        return replace(self, node_type=self.node_type[subset], edge_index=edge_index,
                       edge_attr=self.edge_attr[edge_mask], scale=self.scale[subset], pos=take(self.pos),
                       batch=take(self.batch), past=take(self.past), static=take(self.static))

    def to(self, dtype: torch.dtype) -> "StepInputs":
        """The same inputs with floating tensors in ``dtype`` (float64 for the verified bounds)."""
        def cast(a: torch.Tensor | None) -> torch.Tensor | None:
            return a.to(dtype) if a is not None and a.is_floating_point() else a

        return replace(self, edge_attr=cast(self.edge_attr), scale=cast(self.scale), pos=cast(self.pos),
                       scalars=cast(self.scalars), past=cast(self.past), static=cast(self.static))

    def node_columns(self) -> torch.Tensor:
        """Every node-aligned input as columns: ``[pos | node type | past frames | node inputs | scalars]``,
        for tools that slice a graph by nodes (torch_geometric's influence utilities); rebuilt
        with :meth:`from_node_columns`."""
        n = self.node_type.shape[0]
        like = self.edge_attr
        parts = [self.pos.to(like.dtype) if self.pos is not None else like.new_zeros((n, 0)),
                 self.node_type.to(like.dtype)[:, None],
                 self.past.reshape(n, -1) if self.past is not None else like.new_zeros((n, 0)),
                 self.static.to(like.dtype) if self.static is not None else like.new_zeros((n, 0))]
        if self.scalars is not None:
            s = (self.scalars if self.scalars.dim() == 2 else self.scalars.reshape(1, -1)).to(like.dtype)
            parts.append(s[self.batch] if self.batch is not None else s.expand(n, -1))
        return torch.cat(parts, dim=-1)

    def from_node_columns(self, cols: torch.Tensor, edge_index: torch.Tensor) -> "StepInputs":
        """The inputs of the nodes whose :meth:`node_columns` (of these inputs) are ``cols``, on
        ``edge_index`` (edge features rebuilt from the positions: mesh-space features only)."""
        from sim.graph import edge_features

        d = 0 if self.pos is None else self.pos.shape[1]
        p = 0 if self.past is None else self.past.shape[1] * self.past.shape[2]
        k = 0 if self.static is None else self.static.shape[1]
        pos = cols[:, :d]
        past = None if self.past is None else cols[:, d + 1:d + 1 + p].reshape(cols.shape[0], *self.past.shape[1:])
        return replace(self, node_type=cols[:, d].round().long(), edge_index=edge_index,
                       edge_attr=edge_features(pos, edge_index).to(self.edge_attr.dtype),
                       scale=self.scale[:1].expand(cols.shape[0], 1), pos=pos if self.pos is not None else None,
                       batch=None, past=past, static=cols[:, d + 1 + p:d + 1 + p + k] if k else None,
                       scalars=cols[:, d + 1 + p + k:] if self.scalars is not None else None)

    def shifted(self, state: torch.Tensor) -> "StepInputs":
        """The inputs of the next step: ``state`` joins the frames before it."""
        return self if self.past is None else replace(self, past=shift_history(self.past, state))


@register_model("mesh_simulator")
class MeshSimulator(nn.Module):
    """Args:
        network: registered name of the graph network (e.g. ``"meshgraphnet"``).
        network_args: its constructor arguments except ``node_in``, ``edge_in``, ``out_dim``.
        fields: state field names, in order.
        field_dims: width of each field.
        edge_in: edge feature width (mesh dimension + 1, + world dimension + 1 when moving).
        target: ``"delta"`` or ``"derivative"``.
        noise_std: std of the training input noise (scalar or one per state feature).
        noise_types: node types that receive input noise.
        predicted_types: node types the model predicts (the loss uses them; the engine
            prescribes every other node from boundary conditions).
        scalars: names of the trajectory parameters (``Trajectory.params``) the model is
            conditioned on, broadcast to every node (normalised with the node features).
        pushforward: most model steps taken without gradient before the trained step
            (Brandstetter et al. 2022): per batch k is drawn from 0..pushforward, the model
            rolls the (noisy) state k steps forward with the true boundary values, and the
            loss asks it to return to the true state k + 1 steps after the input, so it
            learns to correct the errors of its own rollouts and not only Gaussian ones.
            Needs samples with ``future`` frames (``MeshStepDataset(horizon=pushforward + 1)``);
            starts once the normalisers are frozen (before, a rollout of the untrained model
            means nothing, and the extra passes must not move the statistics).
        history: frames the model sees, the state and the ``history - 1`` before it, given as
            their successive changes (MeshGraphNet's cloth model uses 2: positions without
            velocities). Needs samples with ``past`` frames (``MeshStepDataset(history=...)``);
            a rollout starts from the last of ``history`` frames. Input noise goes on the
            current state only, so the latest change carries it as it carries a rollout's error.
        node_inputs: names of static point fields of the mesh (``Mesh.point_data``) the model
            reads at every node and does not predict, e.g. a source density; normalised with the
            node features.
        node_input_dims: width of each (default 1 each).
        unrolled: train through the pushforward steps (unrolled training, backpropagation
            through the model's own rollout): the k steps keep their gradient and the loss is
            the mean squared residual over all k + 1 steps, so the model is also taught not to
            make the errors its later steps inherit, not only to correct them. Training mode
            only: in eval mode (validation, the self-tuning loss) the residual is the plain one.
    """

    def __init__(self, network: str, network_args: dict[str, Any], fields: Sequence[str], field_dims: Sequence[int],
                 edge_in: int, target: str = "delta", noise_std: float | Sequence[float] = 0.0,
                 noise_types: Sequence[int] = (NodeType.INTERIOR,),
                 predicted_types: Sequence[int] = (NodeType.INTERIOR, NodeType.OUTFLOW),
                 scalars: Sequence[str] = (), pushforward: int = 0, history: int = 1, correction: str = "none",
                 bundle: int = 1, node_inputs: Sequence[str] = (), node_input_dims: Sequence[int] | None = None,
                 unrolled: bool = False):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if len(fields) != len(field_dims):
            raise ValueError("fields and field_dims must have the same length")
        self.config = {"network": network, "network_args": dict(network_args), "fields": list(fields),
                       "field_dims": [int(d) for d in field_dims], "edge_in": int(edge_in), "target": target,
                       "noise_std": noise_std if isinstance(noise_std, (int, float)) else list(noise_std),
                       "noise_types": [int(t) for t in noise_types],
                       "predicted_types": [int(t) for t in predicted_types], "scalars": list(scalars),
                       "pushforward": int(pushforward), "history": int(history),
                       "correction": str(correction)}
        if pushforward < 0:
            raise ValueError(f"pushforward must be >= 0, got {pushforward}")
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        if bundle < 1:
            raise ValueError(f"bundle must be >= 1, got {bundle}")
        if bundle > 1:  # only when used, so one-frame checkpoints keep their configuration
            self.config["bundle"] = int(bundle)
        self.bundle = int(bundle)
        if unrolled:  # only when used, so checkpoints without it keep their configuration
            self.config["unrolled"] = True
        dims = node_input_widths(node_inputs, node_input_dims, fields)
        if node_inputs:  # only when used, so checkpoints without them keep their configuration
            self.config["node_inputs"] = list(node_inputs)
            self.config["node_input_dims"] = dims
        self.num_static = int(sum(dims))
        self.num_features = int(sum(field_dims))
        node_in = self.num_features * int(history) + NUM_NODE_TYPES + self.num_static + len(self.config["scalars"])
        # a hypernetwork takes the scalars (normalised with the node features) instead of the nodes
        self._hyper = len(self.config["scalars"]) if network_args.get("hypernet") is not None else 0
        # set by partitioned training for the step it runs (sim.distributed.training.HaloContext)
        self.halo: Any = None
        if network_args.get("hypernet") is not None and not self._hyper:
            raise ValueError("network_args.hypernet conditions on the trajectory's parameters: set model.scalars")
        extra = {"cond_dim": self._hyper} if self._hyper else {}
        self.network = build_model(network, node_in=node_in - self._hyper, edge_in=edge_in,
                                   out_dim=self.num_features * self.bundle, **network_args, **extra)
        self.node_normalizer = Normalizer(node_in)
        self.edge_normalizer = Normalizer(edge_in)
        self.output_normalizer = Normalizer(self.num_features * self.bundle)
        # the precision rollouts run the network in (set_precision); training is always float32
        self.inference_precision = "fp32"

    @property
    def receptive_hops(self) -> int | None:
        """The network's ``receptive_hops`` (None: unknown or the whole graph)."""
        return getattr(self.network, "receptive_hops", None)

    def initialize(self, sample: Any) -> None:
        """Apply the network's ``init`` plugin (``network_args: {init: virgo}``) with one training
        sample (a ``Data`` with ``state``, ``node_type``, ``edge_index``); a no-op without one."""
        init = getattr(self.network, "initialize", None)
        if init is None or self.network.config.get("init") in (None, "default"):
            return
        inputs = self.step_inputs(sample)
        x = self.node_features(sample.state, sample.node_type, inputs.batch, inputs.scalars, inputs.past,
                               inputs.static)
        x = x[:, : x.shape[1] - self._hyper]  # the hypernetwork's scalars are not node inputs
        init(sample.edge_index, x.shape[0], x=x, batch=inputs.batch)

    def step_dataset(self, path: Any, training: bool = True) -> Any:
        """The samples of store ``path`` shaped as this model consumes them (its fields, scalars, node
        inputs and history; with ``training``, the future frames its loss needs: pushforward and bundle)."""
        from sim.data.windows import MeshStepDataset

        c = self.config
        horizon = (c["pushforward"] + 1) * self.bundle if training else 1
        return MeshStepDataset(path, c["fields"], scalars=c["scalars"], history=c["history"], horizon=horizon,
                               node_inputs=c.get("node_inputs") or ())

    def node_input_values(self, point_data: dict[str, Any], n: int, where: Any = None, what: str = "the mesh"
                          ) -> np.ndarray | None:
        """The (N, K) static node inputs from a mesh's ``point_data`` (None for a model without
        them; a :class:`~sim.errors.SimError` naming ``what`` and the missing or misshaped field)."""
        names = self.config.get("node_inputs") or []
        if not names:
            return None
        return static_node_inputs(point_data, names, n, where, what, self.config["node_input_dims"])

    def scalar_values(self, params: dict[str, Any] | None, where: Any = None, what: str = "the trajectory"
                      ) -> np.ndarray:
        """The (S,) conditioning values of one trajectory from its ``params`` (a
        :class:`~sim.errors.SimError` naming what is missing)."""
        return trajectory_scalars(params, self.config["scalars"], where, what)

    def node_scalars(self, scalars: torch.Tensor | None, batch: torch.Tensor | None, like: torch.Tensor
                     ) -> torch.Tensor:
        """Per-node scalars (N, S) from per-graph values (G, S) (or (S,) for one graph) and the
        node-to-graph map ``batch``."""
        n_s = len(self.config["scalars"])
        if n_s == 0:
            return like.new_zeros((like.shape[0], 0))
        if scalars is None:
            raise ValueError(f"the model is conditioned on {self.config['scalars']}; pass their values")
        s = torch.as_tensor(scalars, dtype=like.dtype, device=like.device).reshape(-1, n_s)
        if batch is None:
            if s.shape[0] == like.shape[0]:  # already one row per node
                return s
            if s.shape[0] != 1:
                raise ValueError(f"{s.shape[0]} rows of scalars for one graph")
            return s.expand(like.shape[0], n_s)
        return s[batch]

    def predicted_mask(self, node_type: torch.Tensor) -> torch.Tensor:
        return node_mask(node_type, self.config["predicted_types"])

    def node_features(self, state: torch.Tensor, node_type: torch.Tensor, batch: torch.Tensor | None = None,
                      scalars: torch.Tensor | None = None, past: torch.Tensor | None = None,
                      static: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised node features (N, node_in): ``[state, changes, one_hot(node_type),
        static, scalars]``, the changes from ``past`` (N, history - 1, F), the frames before
        ``state`` oldest first, ``static`` the node inputs (N, K)."""
        if state.shape[-1] != self.num_features:
            raise ValueError(f"state has {state.shape[-1]} features; the model was trained on "
                             f"{self.num_features} ({', '.join(self.config['fields'])})")
        h = self.config["history"] - 1
        parts = [state]
        if h:
            if past is None or past.shape[1:] != (h, self.num_features):
                got = "none" if past is None else tuple(past.shape[1:])
                raise ValueError(f"the model sees {h + 1} frames: pass the {h} before the state as past "
                                 f"(N, {h}, {self.num_features}), got {got}")
            # newest change first; elementwise so that bound propagation (sim.verify) runs through it
            frames = [*past.unbind(1), state]
            parts += [frames[i] - frames[i - 1] for i in range(h, 0, -1)]
        one_hot = nn.functional.one_hot(node_type.long().clamp(0, NUM_NODE_TYPES - 1), NUM_NODE_TYPES)
        parts.append(one_hot.to(state.dtype))
        if self.num_static:
            if static is None or static.shape != (state.shape[0], self.num_static):
                got = "none" if static is None else tuple(static.shape)
                raise ValueError(f"the model reads the node inputs {self.config['node_inputs']}: pass them as static "
                                 f"({state.shape[0]}, {self.num_static}), got {got}")
            parts.append(static.to(state.dtype))
        return torch.cat([*parts, self.node_scalars(scalars, batch, state)], dim=-1)

    def forward(self, state: torch.Tensor, node_type: torch.Tensor, edge_index: torch.Tensor,
                edge_attr: torch.Tensor, pos: torch.Tensor | None = None, batch: torch.Tensor | None = None,
                scalars: torch.Tensor | None = None, past: torch.Tensor | None = None,
                static: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised update (N, F) from the state (N, F) on a graph (``pos``: mesh coordinates,
        ``batch``: graph id per node, for networks that use them; ``scalars``: the conditioning
        values per graph, (G, S); ``past``: the frames before the state, (N, history - 1, F);
        ``static``: the node inputs, (N, K))."""
        learn = self.training and torch.is_grad_enabled()  # pushforward passes leave the statistics alone
        part = self.halo if learn else None  # a partitioned training step: statistics of what this rank owns
        x = self.node_normalizer(self.node_features(state, node_type, batch, scalars, past, static), accumulate=learn,
                                 rows=None if part is None else slice(0, part.num_owned))
        e = self.edge_normalizer(edge_attr, accumulate=learn,
                                 rows=None if part is None else edge_index[1] < part.num_owned)
        if self._hyper:
            return self.network(x[:, :-self._hyper], edge_index, e, pos=pos, batch=batch, cond=x[:, -self._hyper:])
        return self.network(x, edge_index, e, pos=pos, batch=batch)

    # -- the one-step map: every caller goes through step_inputs / update / advance ----------
    def step_inputs(self, sample: Any, scalars: torch.Tensor | None = None, past: torch.Tensor | None = None,
                    dt: torch.Tensor | float | None = None) -> StepInputs:
        """The inputs of the one-step map on a (batched) graph ``sample``: a ``Data`` with
        ``node_type``, ``edge_index``, ``edge_attr`` and optionally ``mesh_pos``, ``batch``, and, as
        the datasets attach them, ``scalars`` (G, S), ``past`` (N, h - 1, F), ``static`` (N, K)
        and ``dt`` per graph; ``scalars``/``past``/``dt`` given here take precedence. Checks that a
        model conditioned on scalars, history or node inputs gets them."""
        batch = getattr(sample, "batch", None)
        scalars = scalars if scalars is not None else getattr(sample, "scalars", None)
        past = past if past is not None else getattr(sample, "past", None)
        reads = bool(self.config.get("node_inputs"))
        static = getattr(sample, "static", None) if reads else None
        if reads and static is None:
            raise ValueError(f"the model reads the node inputs {self.config['node_inputs']}; the sample carries none")
        if self.config["scalars"] and scalars is None:
            raise ValueError(f"the model is conditioned on {self.config['scalars']}; the sample carries no scalars")
        if self.config["history"] > 1 and past is None:
            raise ValueError(f"the model sees {self.config['history']} frames; the sample carries no past frames")
        like = sample.edge_attr
        n = int(sample.node_type.shape[0])
        if self.config["target"] == "delta":
            scale = torch.ones((n, 1), dtype=like.dtype, device=like.device)
        else:
            dt = dt if dt is not None else getattr(sample, "dt", None)
            if dt is None:
                raise ValueError("a derivative target needs dt")
            dt = torch.as_tensor(dt, dtype=like.dtype, device=like.device).reshape(-1, 1)
            scale = dt[batch] if batch is not None and dt.shape[0] > 1 else dt.expand(n, 1) \
                if dt.shape[0] == 1 else dt
        return StepInputs(node_type=sample.node_type, edge_index=sample.edge_index, edge_attr=sample.edge_attr,
                          scale=scale, pos=getattr(sample, "mesh_pos", None), batch=batch, scalars=scalars, past=past,
                          static=static)

    def update(self, state: torch.Tensor, inputs: StepInputs, normalised: bool = False) -> torch.Tensor:
        """The update (N, F) of ``state``: physical (a delta, or a derivative to multiply by
        ``inputs.scale``), or in the network's normalised units."""
        out = self(state, inputs.node_type, inputs.edge_index, inputs.edge_attr, inputs.pos, inputs.batch,
                   inputs.scalars, inputs.past, inputs.static)
        return out if normalised else self.output_normalizer.inverse(out)

    def advance(self, state: torch.Tensor, inputs: StepInputs, boundary: torch.Tensor | None = None,
                update: Callable[..., torch.Tensor] | None = None) -> tuple[torch.Tensor, StepInputs]:
        """One step of the map a rollout iterates: the predicted nodes move by the integrated
        update, every other node takes its ``boundary`` value (N, F) (or keeps its state when no
        boundary is given); returns the next state and the inputs of the step after it.
        ``update``: the tensor-level update function to use (e.g. a ``torch.compile`` of
        :meth:`predict_update`).

        A bundling model (``bundle`` K > 1, temporal bundling: Brandstetter et al. 2022) predicts
        the next K frames in one call, each as an update of ``state``: ``boundary`` is then
        (K, N, F) and the first value returned the K frames (K, N, F)."""
        fn = update or self.predict_update
        upd = fn(state, inputs.node_type, inputs.edge_index, inputs.edge_attr, inputs.pos, inputs.batch,
                 inputs.scalars, inputs.past, inputs.static)
        k = int(self.config.get("bundle", 1))
        if k == 1:
            nxt = state + inputs.scale * upd
            if boundary is not None:
                nxt = torch.where(self.predicted_mask(inputs.node_type)[:, None], nxt, boundary.to(nxt.dtype))
            return nxt, inputs.shifted(state)
        frames = state[None] + inputs.scale[None] * upd.reshape(state.shape[0], k, -1).transpose(0, 1)
        if boundary is not None:
            if boundary.shape[0] != k:
                raise ValueError(f"a model bundling {k} frames needs boundary values of {k} frames, got "
                                 f"{boundary.shape[0]}")
            frames = torch.where(self.predicted_mask(inputs.node_type)[None, :, None], frames,
                                 boundary.to(frames.dtype))
        return frames, shifted_through(inputs, [state, *frames[:-1].unbind(0)])

    # -- training ----------------------------------------------------------------------------
    def loss(self, batch: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training loss on a (batched) ``Data`` with ``state``, ``target``, ``node_type``,
        ``edge_index``, ``edge_attr`` (and ``dt`` per graph for derivatives); a batch may carry
        per-node ``noise_scale`` (the input noise is multiplied by it) and ``loss_weight`` (each
        node's squared error is), as coreset augmentation (:mod:`sim.plugins.training.coreset`) sets them."""
        err, mask = self.loss_residual(batch, generator)
        sq = err ** 2
        weight = getattr(batch, "loss_weight", None)
        if weight is not None:
            sq = sq * weight[:, None].to(sq.dtype)
        part = self.halo
        if part is None:
            return sq[mask].mean()
        mask[part.num_owned:] = False  # this rank's share of the whole graph's mean
        return sq[mask].sum() / (part.predicted_global * err.shape[-1])

    def loss_residual(self, batch: Any, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The residual of the loss, prediction minus target of the normalised update (N, F),
        and the mask (N,) of the nodes the loss counts. In training mode after the input noise
        and the pushforward steps; in eval mode without either (the clean one-step residual)."""
        state, node_type = batch.state, batch.node_type
        std = self.config["noise_std"]
        part = self.halo
        if self.training and (std if isinstance(std, (int, float)) else max(std)) > 0:
            noise = mesh_input_noise(state, node_type, std, self.config["noise_types"], generator,
                                     rows=None if part is None else (part.rows, part.num_global))
            scale = getattr(batch, "noise_scale", None)
            state = state + (noise if scale is None else noise * scale[:, None].to(noise.dtype))
        return self._residual(batch, state, self.step_inputs(batch), self._pushforward_steps(generator))

    def rollout_residual(self, batch: Any, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The residual of the step after ``steps`` model steps from the clean state (no input
        noise; the pushforward steps without gradient, the last with it), and its mask: how far
        the model's own rollout errors throw its next step. Self-tuned hyperparameters
        (:mod:`sim.plugins.training.self_tuning`) are tuned on it; call it in eval mode so the normalisers
        keep their statistics."""
        inputs = self.step_inputs(batch)
        return self._residual(batch, batch.state, inputs, steps)

    def _residual(self, batch: Any, state: torch.Tensor, inputs: StepInputs, k: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        node_type, part = batch.node_type, self.halo
        if k and self.config.get("unrolled") and self.training and torch.is_grad_enabled():
            return self._unrolled_residual(batch, state, inputs, k)
        if k:
            state, inputs = self.pushforward(batch, state, k, inputs)
        own = self._frames(batch)[k * self.bundle:(k + 1) * self.bundle]  # the frames after the (pushed) state
        pred = self.update(state, inputs, normalised=True)
        return pred - self._normalised_update(state, inputs, own, part), self.predicted_mask(node_type)

    def _unrolled_residual(self, batch: Any, state: torch.Tensor, inputs: StepInputs, k: int
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """The residuals of k + 1 steps of the model's own rollout from ``state``, the gradient
        flowing through every step, side by side along the feature axis (N, (k + 1) * F * bundle):
        the mean of their squares is the mean over the steps."""
        if self.halo is not None:  # the halo exchange between a partition's steps carries no gradient
            raise ValueError("unrolled training runs in one process: partitioned (halo) training exchanges the "
                             "halo's state without gradient, so it cannot train through the steps")
        b = self.bundle
        frames = self._frames(batch, k, "an unrolled loss of")
        residuals = []
        for j in range(k + 1):
            own = frames[j * b:(j + 1) * b]
            pred = self.update(state, inputs, normalised=True)
            residuals.append(pred - self._normalised_update(state, inputs, own))
            if j < k:
                upd = self.output_normalizer.inverse(pred)
                state, inputs = self._advance_through(state, inputs, own, update=lambda *_: upd)
        return torch.cat(residuals, dim=-1), self.predicted_mask(batch.node_type)

    def _frames(self, batch: Any, k: int = 0, what: str = "pushforward of") -> list[torch.Tensor]:
        """``[target, *future]`` of ``batch``, checked to hold the frames of k + 1 model steps."""
        future = getattr(batch, "future", None)
        need = (k + 1) * self.bundle - 1
        if k and (future is None or future.shape[1] < need):
            raise ValueError(f"{what} {k} steps needs samples with {need} future frames beyond t+1 "
                             "(MeshStepDataset(horizon=(pushforward + 1) * bundle))")
        return [batch.target] if future is None else [batch.target, *future.unbind(1)]

    def _normalised_update(self, state: torch.Tensor, inputs: StepInputs, own: list[torch.Tensor],
                           part: Any = None) -> torch.Tensor:
        """The true update of ``state`` to the next ``bundle`` frames ``own``, normalised (the
        statistics of a partitioned step: the rows this rank owns)."""
        delta = torch.cat([(f - state) / inputs.scale for f in own], dim=-1)
        return self.output_normalizer(delta, rows=None if part is None else slice(0, part.num_owned))

    def _advance_through(self, state: torch.Tensor, inputs: StepInputs, own: list[torch.Tensor],
                         update: Callable[..., torch.Tensor] | None = None) -> tuple[torch.Tensor, StepInputs]:
        """One model call from ``state`` with the true boundary values of the ``bundle`` frames
        ``own`` after it: the last frame it reaches and the inputs of the call after it."""
        one = self.bundle == 1
        out, inputs = self.advance(state, inputs, boundary=own[0] if one else torch.stack(own), update=update)
        return (out if one else out[-1]), inputs

    def _pushforward_steps(self, generator: torch.Generator | None) -> int:
        p = self.config["pushforward"]
        if not (p and self.training) or any(int(n.accumulations) < n.max_accumulations for n in
                                            (self.node_normalizer, self.edge_normalizer, self.output_normalizer)):
            return 0
        device = generator.device if generator is not None else "cpu"
        return int(torch.randint(0, p + 1, (1,), generator=generator, device=device))

    @torch.no_grad()
    def pushforward(self, batch: Any, state: torch.Tensor, k: int, inputs: StepInputs | None = None
                    ) -> tuple[torch.Tensor, StepInputs]:
        """The state after ``k`` model steps (:meth:`advance`) from ``state`` on ``batch``'s graph,
        the prescribed nodes set to the true values (``batch.target``, then ``batch.future``), as a
        rollout does, and the inputs of the step after it; no gradient flows through it."""
        b = self.bundle
        frames = self._frames(batch, k)
        inputs = inputs or self.step_inputs(batch)
        for j in range(k):
            state, inputs = self._advance_through(state, inputs, frames[j * b:(j + 1) * b])
            if self.halo is not None:  # a partitioned step: the halo takes its owners' new state
                state = self.halo.exchange(state)
        return state, inputs

    @torch.no_grad()
    def predict_update(self, state: torch.Tensor, node_type: torch.Tensor, edge_index: torch.Tensor,
                       edge_attr: torch.Tensor, pos: torch.Tensor | None = None, batch: torch.Tensor | None = None,
                       scalars: torch.Tensor | None = None, past: torch.Tensor | None = None,
                       static: torch.Tensor | None = None) -> torch.Tensor:
        """Physical update (N, F) from tensors (the form ``torch.compile`` takes; see :meth:`update`).
        With ``inference_precision`` ``"bf16"`` the network runs under bfloat16 autocast (its
        matrix products; normalisation, the state and its integration stay float32)."""
        if self.inference_precision == "bf16":
            with torch.autocast(state.device.type, dtype=torch.bfloat16):
                out = self(state, node_type, edge_index, edge_attr, pos, batch, scalars, past, static)
            return self.output_normalizer.inverse(out.float())
        return self.output_normalizer.inverse(self(state, node_type, edge_index, edge_attr, pos, batch, scalars,
                                                   past, static))


def shifted_through(inputs: StepInputs, frames: Sequence[torch.Tensor]) -> StepInputs:
    """``inputs`` after each of ``frames`` (oldest first) joined its past in turn: the inputs of
    the call after a bundle, whose past is the frames just before the bundle's last."""
    for f in frames:
        inputs = inputs.shifted(f)
    return inputs


def shift_history(past: torch.Tensor | None, state: torch.Tensor) -> torch.Tensor | None:
    """The frames before the next state: ``past`` (N, h, F) without its oldest frame, then
    ``state``; None stays None (a model without history)."""
    if past is None:
        return None
    return torch.cat([past[:, 1:], state[:, None]], dim=1)
