"""Training noise that teaches one-step models to correct their own rollout errors.

- :func:`mesh_input_noise` (MeshGraphNet, Pfaff et al. 2021, Sec. 3.1): Gaussian noise on
  the input fields of the nodes the model predicts (interior by default); the target is
  recomputed from the noisy input with weight ``gamma`` (gamma = 1: the model learns to
  return to the true next state).
- :func:`random_walk_noise` (GNS, Sanchez-Gonzalez et al. 2020): noise on a position history
  whose velocity noise is a random walk, so the last positions carry the accumulated noise.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from sim.mesh import NodeType


def node_mask(node_type: torch.Tensor, types: Iterable[int]) -> torch.Tensor:
    """(N,) bool: nodes whose type is in ``types``."""
    return torch.isin(node_type, torch.as_tensor(list(types), dtype=node_type.dtype, device=node_type.device))


def mesh_input_noise(state: torch.Tensor, node_type: torch.Tensor, std: float | torch.Tensor,
                     types: Iterable[int] = (NodeType.INTERIOR,), generator: torch.Generator | None = None,
                     rows: tuple[torch.Tensor, int] | None = None) -> torch.Tensor:
    """Noise (N, F) to add to ``state``: zero on nodes whose type is not in ``types``.

    ``std`` may be per feature (F,). The caller forms ``noisy = state + noise`` and the delta
    target ``target - noisy`` (gamma = 1) or ``target - state - gamma * noise``. ``rows``:
    (ids, total) when ``state`` holds rows ``ids`` of a graph of ``total`` nodes (one rank's
    part): the noise is drawn for the whole graph and those rows kept, so every rank holding a
    node gives it the same noise.
    """
    if rows is None:
        noise = torch.randn(state.shape, generator=generator, dtype=state.dtype, device=state.device)
    else:
        ids, total = rows
        noise = torch.randn((int(total), *state.shape[1:]), generator=generator, dtype=state.dtype,
                            device=state.device)[ids.to(state.device)]
    noise = noise * torch.as_tensor(std, dtype=state.dtype, device=state.device)
    return noise * node_mask(node_type, types)[:, None].to(state.dtype)


def random_walk_noise(positions: torch.Tensor, std_last_step: float, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
    """Noise for a position history (N, H, d): velocity noise is a random walk over the H - 1
    velocities with per-step std ``std_last_step / sqrt(H - 1)``, integrated to positions
    (the first position gets none). Returns the position noise (N, H, d)."""
    n, h, d = positions.shape
    if h < 2:
        return torch.zeros_like(positions)
    step_std = std_last_step / (h - 1) ** 0.5
    vel_noise = torch.randn((n, h - 1, d), generator=generator, dtype=positions.dtype,
                            device=positions.device) * step_std
    vel_noise = vel_noise.cumsum(dim=1)
    pos_noise = torch.cat([torch.zeros_like(vel_noise[:, :1]), vel_noise.cumsum(dim=1)], dim=1)
    return pos_noise
