"""Learned Lagrangian particle simulators: a graph network on a particle radius graph,
wrapped with the GNS input features, pooled normalisation and the acceleration target.

Node features of particle i (Sanchez-Gonzalez et al. 2020):
``[normalised velocities of the last H - 1 frames, wall distances / r clipped to [-1, 1],
particle-type embedding]``; edge features ``[x_j - x_i, |x_j - x_i|] / r`` on the radius
graph (KD-tree, rebuilt from the current positions at every call). Output: the normalised
acceleration of the last frame. The rollout integrates it with semi-implicit Euler
(:mod:`sim.rollout.particles`).

Two configurations:

- GNS-style full-resolution baseline: ``network="meshgraphnet"`` with ``sample_ratio=1``;
- GIOROM: ``network="giorom"`` on a fixed sparse subset per trajectory
  (``sample_ratio`` 0.01-0.25, farthest-point or random) plus a
  :class:`~sim.nn.dense_decoder.DenseDecoder` that evaluates the motion at any query
  point. By default the sparse graph's radius is the full-resolution radius times
  ``sample_ratio ** (-1 / dim)``, which keeps the number of neighbours per particle.

Training loss: MSE of the normalised acceleration after GNS random-walk noise on the
position history (the target is taken from the noisy last positions and the next position
shifted by the last noise, so the model learns to undo the velocity noise), plus, when the
batch carries dense queries, ``decoder_loss_weight`` times the decoder's displacement MSE
over the squared full-resolution radius.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from sim.data.noise import random_walk_noise
from sim.data.normalizer import Normalizer
from sim.data.particles import ParticleStatistics, acceleration_target, velocities, wall_distances
from sim.data.sampling import SAMPLE_RULES, spacing_ratio, sparse_subset, trajectory_seed
from sim.graph import point_cloud_graph
from sim.models.registry import build_model, register_model
from sim.nn.dense_decoder import DecodePlan, DenseDecoder

NUM_PARTICLE_TYPES = 9


@register_model("particle_simulator")
class ParticleSimulator(nn.Module):
    """Args:
        network: registered graph network (``"giorom"``, ``"meshgraphnet"``, ...).
        network_args: its constructor arguments except ``node_in``, ``edge_in``, ``out_dim``.
        statistics: :class:`~sim.data.particles.ParticleStatistics` as a dict.
        history: positions per input window (6: five velocities).
        connectivity_radius: radius of the particle graph (default: see the module docstring).
        sample_ratio: fraction of the particles the network runs on (1: all).
        sampling: ``"fps"`` or ``"random"``.
        sample_rule: ``"ratio"`` (``sample_ratio`` of any particle set) or ``"spacing"`` (the
            sparse nodes as far apart as in training on any particle set, so a finer set is
            run at the training resolution and decoded: :func:`~sim.data.sampling.spacing_ratio`).
        reference_spacing: the training particles' spacing, for ``"spacing"``.
        sampling_seed: base seed of the per-trajectory subsets.
        noise_std: random-walk noise std on the last velocity, in length per frame.
        type_embedding: width of the particle-type embedding.
        max_neighbors: cap on graph neighbours per particle (None: all within the radius).
        decoder: :class:`DenseDecoder` arguments (None: no dense decoder).
        decoder_loss_weight: weight of the decoder loss.

    Shapes:
        history (N, H, d), particle_type (N,), batch (N,) -> normalised acceleration (N, d).
    """


    def __init__(self, network: str, network_args: dict[str, Any], statistics: dict[str, Any], history: int = 6,
                 connectivity_radius: float | None = None, sample_ratio: float = 1.0, sampling: str = "fps",
                 sampling_seed: int = 0, noise_std: float = 0.0, type_embedding: int = 16,
                 max_neighbors: int | None = None, decoder: dict[str, Any] | None = None,
                 decoder_loss_weight: float = 1.0, sample_rule: str = "ratio", reference_spacing: float | None = None):
        super().__init__()
        stats = ParticleStatistics.from_dict(statistics)
        dim = stats.dim
        if connectivity_radius is None:
            connectivity_radius = stats.connectivity_radius * sample_ratio ** (-1.0 / dim)
        network_args = dict(network_args)
        if network == "giorom":
            network_args.setdefault("dim", dim)
        self.config = {"network": network, "network_args": network_args, "statistics": stats.to_dict(),
                       "history": history, "connectivity_radius": float(connectivity_radius),
                       "sample_ratio": float(sample_ratio), "sampling": sampling, "sampling_seed": int(sampling_seed),
                       "noise_std": float(noise_std), "type_embedding": type_embedding,
                       "max_neighbors": max_neighbors, "decoder": None if decoder is None else dict(decoder),
                       "decoder_loss_weight": float(decoder_loss_weight)}
        if sample_rule not in SAMPLE_RULES:
            raise ValueError(f"unknown sample rule {sample_rule!r} (known: {', '.join(SAMPLE_RULES)})")
        if sample_rule == "spacing":  # only when used, so ratio checkpoints keep their configuration
            if reference_spacing is None or not reference_spacing > 0:
                raise ValueError("the spacing sample rule needs the training particles' reference_spacing (> 0)")
            self.config.update(sample_rule=sample_rule, reference_spacing=float(reference_spacing))
        self.dim, self.dt, self.radius = dim, stats.dt, float(connectivity_radius)
        node_in = (history - 1) * dim + 2 * dim + type_embedding
        self.network = build_model(network, node_in=node_in, edge_in=dim + 1, out_dim=dim, **network_args)
        self.type_embedding = nn.Embedding(NUM_PARTICLE_TYPES, type_embedding)
        self.velocity_normalizer = Normalizer.from_statistics(stats.vel_mean, stats.vel_std)
        self.acceleration_normalizer = Normalizer.from_statistics(stats.acc_mean, stats.acc_std)
        # the precision rollouts run the network in (sim.families.base.set_precision); training is float32
        self.inference_precision = "fp32"
        self.register_buffer("bounds", torch.tensor(stats.bounds, dtype=torch.float32), persistent=False)
        self.decoder = DenseDecoder(dim, **decoder) if decoder is not None else None

    # -- inputs ---------------------------------------------------------------------------
    def sparse_indices(self, reference: np.ndarray, name: str = "") -> np.ndarray:
        """The fixed sparse subset of a trajectory (all particles when ``sample_ratio`` is 1; with the
        ``"spacing"`` rule, as many as keep the nodes as far apart as in training)."""
        c = self.config
        ratio = c["sample_ratio"] if c.get("sample_rule", "ratio") == "ratio" else \
            spacing_ratio(reference, c["sample_ratio"], c["reference_spacing"])
        return sparse_subset(reference, ratio, c["sampling"], trajectory_seed(c["sampling_seed"], name))

    def unit_positions(self, pos: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds[:, 0].to(pos.dtype), self.bounds[:, 1].to(pos.dtype)
        return (pos - lo) / (hi - lo)

    def node_features(self, history: torch.Tensor, particle_type: torch.Tensor) -> torch.Tensor:
        vel = self.velocity_normalizer(velocities(history, self.dt), accumulate=False)
        walls = wall_distances(history[:, -1], self.bounds.to(history.dtype), self.radius)
        emb = self.type_embedding(particle_type.long().clamp(0, NUM_PARTICLE_TYPES - 1))
        return torch.cat([vel.flatten(1), walls, emb.to(history.dtype)], dim=-1)

    def forward(self, history: torch.Tensor, particle_type: torch.Tensor, batch: torch.Tensor | None = None,
                network: Any = None) -> torch.Tensor:
        """Normalised acceleration (N, d) of the last frame of ``history`` (N, H, d); ``network``:
        a stand-in for the graph network (e.g. its ``torch.compile``; the graph is built eagerly)."""
        if history.dim() != 3 or history.shape[1] != self.config["history"] or history.shape[2] != self.dim:
            raise ValueError(f"history must be (N, {self.config['history']}, {self.dim}), got {tuple(history.shape)}")
        pos = history[:, -1]
        g = point_cloud_graph(pos.detach(), self.radius, batch, self.config["max_neighbors"])
        edge_index = g.edge_index.to(pos.device)
        edge_attr = g.edge_attr.to(pos.device, pos.dtype)
        x = self.node_features(history, particle_type)
        net = self.network if network is None else network
        return net(x, edge_index, edge_attr, pos=self.unit_positions(pos), batch=batch)

    # -- training -------------------------------------------------------------------------
    def loss(self, batch: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        """Loss on a batched ``Data`` from :class:`~sim.data.particles.ParticleWindowDataset`; a
        batch may carry per-particle ``noise_scale`` (the random-walk noise is multiplied by it)
        and ``loss_weight`` (each particle's squared acceleration error is), as coreset
        augmentation (:mod:`sim.plugins.training.coreset`) sets them (the decoder loss is not weighted)."""
        err, _ = self.loss_residual(batch, generator)
        weight = getattr(batch, "loss_weight", None)
        loss = (err ** 2).mean() if weight is None else ((err ** 2) * weight[:, None].to(err.dtype)).mean()
        if self.decoder is not None and getattr(batch, "query_reference", None) is not None:
            loss = loss + self.config["decoder_loss_weight"] * self.decoder_loss(batch)
        return loss

    def loss_residual(self, batch: Any, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prediction minus target of the normalised acceleration (N, d) and the mask (N,) of the
        particles the loss counts (all); in training mode after the random-walk noise, in eval
        mode without it."""
        history, target = batch.history, batch.target
        if self.training and self.config["noise_std"] > 0:
            noise = random_walk_noise(history, self.config["noise_std"], generator)
            scale = getattr(batch, "noise_scale", None)
            if scale is not None:
                noise = noise * scale[:, None, None].to(noise.dtype)
            history = history + noise
            target = target + noise[:, -1]
        acc = acceleration_target(history, target, self.dt)
        norm_acc = self.acceleration_normalizer(acc, accumulate=False)
        pred = self(history, batch.particle_type, getattr(batch, "batch", None))
        err = pred - norm_acc
        return err, torch.ones(err.shape[0], dtype=torch.bool, device=err.device)

    def decoder_loss(self, batch: Any) -> torch.Tensor:
        """Displacement MSE of the dense queries over the squared full-resolution radius."""
        sparse_disp = batch.history[:, -1] - batch.reference
        pred = self.decoder(batch.reference, sparse_disp, batch.query_reference, batch.decoder_index.T)
        scale = self.config["statistics"]["connectivity_radius"]
        return ((pred - batch.query_displacement) ** 2).mean() / scale**2

    # -- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def predict_acceleration(self, history: torch.Tensor, particle_type: torch.Tensor,
                             batch: torch.Tensor | None = None, network: Any = None) -> torch.Tensor:
        """Physical acceleration (N, d) of the last frame. With ``inference_precision`` ``"bf16"``
        the network runs under bfloat16 autocast (its matrix products; the positions, features
        and integration stay float32)."""
        if self.inference_precision == "bf16":
            with torch.autocast(history.device.type, dtype=torch.bfloat16):
                out = self(history, particle_type, batch, network)
            return self.acceleration_normalizer.inverse(out.float())
        return self.acceleration_normalizer.inverse(self(history, particle_type, batch, network))

    @torch.no_grad()
    def decode_plan(self, sparse_reference: torch.Tensor, query: torch.Tensor) -> DecodePlan:
        """Neighbours and coefficients of a query set (reference configuration), built once."""
        if self.decoder is None:
            raise ValueError("this particle simulator has no dense decoder (it runs on every particle)")
        return self.decoder.plan(sparse_reference, query)
