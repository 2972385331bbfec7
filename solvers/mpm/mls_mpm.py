"""MLS-MPM (Hu et al. 2018, "A moving least squares material point method with
displacement discontinuity and two-way rigid body coupling"), vectorised with torch
scatter operations, dimension-generic (2D and 3D).

Per substep, with quadratic B-spline weights w_ip, grid spacing h and D^-1 = 4 / h^2:

- P2G: :math:`m_i = \\sum_p w_{ip} m_p`,
  :math:`(mv)_i = \\sum_p w_{ip} [m_p v_p + (m_p C_p - \\Delta t\\, V_p D^{-1} \\tau_p)(x_i - x_p)]`
  with :math:`\\tau_p` the Kirchhoff stress;
- grid: :math:`v_i = (mv)_i / m_i + \\Delta t\\, g`, then wall conditions in a band of
  ``bound`` cells (sticky: v = 0; slip: the outward normal component is removed);
- G2P: :math:`v_p = \\sum_i w_{ip} v_i`, :math:`C_p = D^{-1} \\sum_i w_{ip} v_i (x_i - x_p)^T`,
  :math:`x_p \\mathrel{+}= \\Delta t\\, v_p`, :math:`F_p \\leftarrow (I + \\Delta t\\, C_p) F_p`,
  then the material's return mapping.

Materials (Lame parameters from E, nu):

- ``jelly``: fixed-corotated elasticity, :math:`\\tau = 2\\mu (F - R) F^T + \\lambda (J - 1) J I`;
- ``water``: weakly compressible fluid with pressure :math:`p = -K (J - 1)` and a Newtonian
  viscous stress from the APIC velocity gradient C,
  :math:`\\tau = K (J - 1) J I + \\eta J (C + C^T)`; the deformation gradient is reset to
  :math:`J^{1/d} I` each step (no shear memory), K = E / (3 (1 - 2 nu));
- ``plasticine``: von Mises plasticity in Hencky (log) strain, return mapping of the
  deviatoric strain onto the yield surface :math:`\\lVert \\hat\\epsilon \\rVert \\le \\tau_y / (2\\mu)`;
- ``sand``: Drucker-Prager in Hencky strain (Klar et al. 2016): expansion projects to the
  cone tip, compression with :math:`\\Delta\\gamma = \\lVert\\hat\\epsilon\\rVert + \\frac{d\\lambda + 2\\mu}{2\\mu}
  \\operatorname{tr}(\\epsilon)\\,\\alpha > 0` is projected, :math:`\\alpha = \\sqrt{2/3}\\,\\frac{2 \\sin\\phi}{3 - \\sin\\phi}`.

Plasticine and sand use the St Venant-Kirchhoff stress in Hencky strain,
:math:`\\tau = U(2\\mu\\,\\epsilon + \\lambda\\,\\operatorname{tr}(\\epsilon) I)U^T`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from sim.errors import SimError

MATERIALS = ("jelly", "water", "plasticine", "sand")


@dataclass
class Material:
    kind: str
    E: float = 1e5
    nu: float = 0.2
    density: float = 1e3
    yield_stress: float = 5e3  # plasticine
    friction_deg: float = 25.0  # sand
    viscosity: float = 0.0  # water: dynamic viscosity eta

    def __post_init__(self) -> None:
        if self.kind not in MATERIALS:
            raise SimError(f"unknown material {self.kind!r} (known: {', '.join(MATERIALS)})")
        self.mu = self.E / (2 * (1 + self.nu))
        self.lam = self.E * self.nu / ((1 + self.nu) * (1 - 2 * self.nu))
        self.bulk = self.E / (3 * (1 - 2 * self.nu))

    def wave_speed(self) -> float:
        return math.sqrt((self.lam + 2 * self.mu) / self.density)


class MPMSolver:
    """MLS-MPM in the box [0, 1]^dim.

    Args:
        dim: 2 or 3.
        n_grid: grid cells per side.
        materials: one Material per material id.
        gravity: acceleration (negative last axis).
        wall: ``"slip"`` or ``"sticky"``.
        bound: wall band in cells.
        cfl: dt = cfl * h / max(wave speed, particle speed).
    """

    def __init__(self, dim: int, n_grid: int, materials: list[Material], gravity: float = -9.8,
                 wall: str = "slip", bound: int = 3, cfl: float = 0.4, dtype: torch.dtype = torch.float64):
        if dim not in (2, 3):
            raise SimError(f"dim must be 2 or 3, got {dim}")
        if wall not in ("slip", "sticky"):
            raise SimError(f"wall must be 'slip' or 'sticky', got {wall!r}")
        self.dim, self.n, self.materials, self.wall, self.bound, self.cfl = dim, n_grid, materials, wall, bound, cfl
        self.dx = 1.0 / n_grid
        self.inv_dx = float(n_grid)
        self.dtype = dtype
        self.gravity = torch.zeros(dim, dtype=dtype)
        self.gravity[-1] = gravity
        self.offsets = torch.tensor(list(itertools.product(range(3), repeat=dim)), dtype=torch.long)  # (3^d, d)
        self.strides = torch.tensor([(n_grid + 1) ** (dim - 1 - k) for k in range(dim)], dtype=torch.long)
        self.num_nodes = (n_grid + 1) ** dim
        idx = torch.stack(torch.meshgrid(*[torch.arange(n_grid + 1)] * dim, indexing="ij"), -1).reshape(-1, dim)
        self.node_index = idx  # (num_nodes, d) integer grid coordinates

    def coarsened(self, factor: int) -> MPMSolver:
        """The same solver (materials, walls, CFL number, wall band in cells) on a grid ``factor``
        times coarser. The band keeps its cell count, so it is ``factor`` times wider: a band of
        fewer cells matched the fine one's width better but let fast bodies reach the domain's
        edge within a frame (two cells are the stencil's reach)."""
        if factor < 1 or self.n % factor:
            raise SimError(f"the grid of {self.n} cells cannot be coarsened by {factor} (a divisor of it is needed)")
        return MPMSolver(self.dim, self.n // factor, self.materials, gravity=float(self.gravity[-1]), wall=self.wall,
                         bound=self.bound, cfl=self.cfl, dtype=self.dtype)

    def max_dt(self, v: torch.Tensor | None = None) -> float:
        speed = max(m.wave_speed() for m in self.materials)
        if v is not None and len(v):
            speed = max(speed, float(v.norm(dim=1).max()))
        return self.cfl * self.dx / speed

    # ------------------------------------------------------------------ stress and plasticity
    def stress(self, F: torch.Tensor, mat_id: torch.Tensor, C: torch.Tensor | None = None) -> torch.Tensor:
        """Kirchhoff stress (N, d, d) per particle (C, the velocity gradient, for viscosity)."""
        d = self.dim
        eye = torch.eye(d, dtype=F.dtype)
        tau = torch.zeros_like(F)
        for k, m in enumerate(self.materials):
            sel = mat_id == k
            if not sel.any():
                continue
            Fk = F[sel]
            J = torch.linalg.det(Fk)
            if m.kind == "water":
                tau[sel] = (m.bulk * (J - 1) * J)[:, None, None] * eye
                if m.viscosity and C is not None:
                    Ck = C[sel]
                    tau[sel] = tau[sel] + m.viscosity * J[:, None, None] * (Ck + Ck.transpose(1, 2))
            elif m.kind == "jelly":
                U, S, Vh = torch.linalg.svd(Fk)
                R = U @ Vh
                tau[sel] = 2 * m.mu * (Fk - R) @ Fk.transpose(1, 2) + (m.lam * (J - 1) * J)[:, None, None] * eye
            else:  # Hencky St Venant-Kirchhoff
                U, S, Vh = torch.linalg.svd(Fk)
                eps = torch.log(S.clamp(min=1e-6))
                t = 2 * m.mu * eps + m.lam * eps.sum(1, keepdim=True)
                tau[sel] = U @ torch.diag_embed(t) @ U.transpose(1, 2)
        return tau

    def return_mapping(self, F: torch.Tensor, mat_id: torch.Tensor) -> torch.Tensor:
        d = self.dim
        out = F.clone()
        for k, m in enumerate(self.materials):
            sel = mat_id == k
            if not sel.any() or m.kind == "jelly":
                continue
            Fk = F[sel]
            if m.kind == "water":  # keep only the volume change
                J = torch.linalg.det(Fk).clamp(min=1e-6)
                out[sel] = J.pow(1.0 / d)[:, None, None] * torch.eye(d, dtype=F.dtype)
                continue
            U, S, Vh = torch.linalg.svd(Fk)
            eps = torch.log(S.clamp(min=1e-6))
            tr = eps.sum(1, keepdim=True)
            dev = eps - tr / d
            dev_norm = dev.norm(dim=1, keepdim=True).clamp(min=1e-12)
            if m.kind == "plasticine":
                excess = dev_norm - m.yield_stress / (2 * m.mu)
                eps = torch.where(excess > 0, eps - excess * dev / dev_norm, eps)
            else:  # sand: Drucker-Prager (Klar et al. 2016)
                sin_phi = math.sin(math.radians(m.friction_deg))
                alpha = math.sqrt(2 / 3) * 2 * sin_phi / (3 - sin_phi)
                dgamma = dev_norm + (d * m.lam + 2 * m.mu) / (2 * m.mu) * tr * alpha
                projected = eps - dgamma * dev / dev_norm
                eps = torch.where(tr >= 0, torch.zeros_like(eps), torch.where(dgamma > 0, projected, eps))
            out[sel] = U @ torch.diag_embed(torch.exp(eps)) @ Vh
        return out

    # ------------------------------------------------------------------ one substep
    def substep(self, x: torch.Tensor, v: torch.Tensor, C: torch.Tensor, F: torch.Tensor, mat_id: torch.Tensor,
                p_mass: torch.Tensor, p_vol: torch.Tensor, dt: float) -> tuple[torch.Tensor, ...]:
        d = self.dim
        base = (x * self.inv_dx - 0.5).floor().long()  # (N, d)
        fx = x * self.inv_dx - base.to(x.dtype)  # in [0.5, 1.5)
        w = torch.stack([0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1) ** 2, 0.5 * (fx - 0.5) ** 2], dim=1)  # (N, 3, d)
        offs = self.offsets  # (K, d)
        weight = torch.ones(x.shape[0], offs.shape[0], dtype=x.dtype)
        for a in range(d):
            weight = weight * w[:, offs[:, a], a]  # (N, K)
        dpos = (offs[None].to(x.dtype) - fx[:, None, :]) * self.dx  # (N, K, d)
        node = ((base[:, None, :] + offs[None]) * self.strides).sum(-1)  # (N, K) flat node index
        tau = self.stress(F, mat_id, C)
        affine = -dt * 4 * self.inv_dx**2 * p_vol[:, None, None] * tau + p_mass[:, None, None] * C  # (N, d, d)
        mom = p_mass[:, None, None] * v[:, None, :] + torch.einsum("nij,nkj->nki", affine, dpos)  # (N, K, d)
        grid_m = torch.zeros(self.num_nodes, dtype=x.dtype).index_add_(
            0, node.reshape(-1), (weight * p_mass[:, None]).reshape(-1))
        grid_mv = torch.zeros(self.num_nodes, d, dtype=x.dtype).index_add_(
            0, node.reshape(-1), (weight[..., None] * mom).reshape(-1, d))
        has = grid_m > 0
        grid_v = torch.zeros_like(grid_mv)
        grid_v[has] = grid_mv[has] / grid_m[has, None] + dt * self.gravity
        # walls
        lo = self.node_index < self.bound
        hi = self.node_index > self.n - self.bound
        if self.wall == "sticky":
            grid_v[(lo | hi).any(1)] = 0.0
        else:
            grid_v = torch.where(lo & (grid_v < 0), torch.zeros_like(grid_v), grid_v)
            grid_v = torch.where(hi & (grid_v > 0), torch.zeros_like(grid_v), grid_v)
        # G2P
        gv = grid_v[node]  # (N, K, d)
        v_new = (weight[..., None] * gv).sum(1)
        C_new = 4 * self.inv_dx**2 * torch.einsum("nk,nki,nkj->nij", weight, gv, dpos)
        x_new = x + dt * v_new
        F_new = (torch.eye(d, dtype=x.dtype) + dt * C_new) @ F
        F_new = self.return_mapping(F_new, mat_id)
        return x_new, v_new, C_new, F_new, grid_m

    def check_inside(self, x: torch.Tensor) -> None:
        margin = self.dx
        if bool((x < margin).any() or (x > 1 - margin).any()):
            raise SimError("particles left the domain (the time step is too large for these materials)")
