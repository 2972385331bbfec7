"""Transient advection-diffusion on tetrahedral meshes (P1, scikit-fem), implicit Euler.

.. math:: \\partial_t T + a\\cdot\\nabla T = \\kappa \\Delta T + s(x), \\qquad T = g \\text{ on } \\Gamma_D,
          \\quad \\kappa \\partial_n T = 0 \\text{ elsewhere}

:math:`(M/\\Delta t + \\kappa K + A)\\,T^{n+1} = M T^n / \\Delta t + f` with the constant matrix
LU-factorised once on its free DOFs, so each step is one triangular solve pair.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import splu

from sim.errors import SimError


class HeatSolver:
    """Args:
        points (N, 3), tets (M, 4): the mesh.
        kappa: diffusivity.
        dt: time step.
        dirichlet: (N,) bool, nodes with prescribed temperature.
        velocity: constant advection velocity (3,) or None.
        source: (N,) nodal source values (interpolated, integrated with the mass matrix) or None.
    """

    def __init__(self, points: np.ndarray, tets: np.ndarray, kappa: float, dt: float, dirichlet: np.ndarray,
                 velocity: np.ndarray | None = None, source: np.ndarray | None = None):
        from skfem import Basis, BilinearForm, ElementTetP1, MeshTet, asm
        from skfem.helpers import dot, grad

        if kappa <= 0 or dt <= 0:
            raise SimError(f"kappa and dt must be positive (got {kappa}, {dt})")
        m = MeshTet(points.T.copy(), tets.T.copy())
        basis = Basis(m, ElementTetP1())
        vel = np.zeros(3) if velocity is None else np.asarray(velocity, dtype=float)

        @BilinearForm
        def mass(u, v, w):
            return u * v

        @BilinearForm
        def stiff(u, v, w):
            return dot(grad(u), grad(v))

        @BilinearForm
        def advect(u, v, w):
            return (vel[0] * grad(u)[0] + vel[1] * grad(u)[1] + vel[2] * grad(u)[2]) * v

        self.M = asm(mass, basis)
        a = (self.M / dt + kappa * asm(stiff, basis) + asm(advect, basis)).tocsr()
        self.fixed = np.flatnonzero(dirichlet)
        self.free = np.flatnonzero(~dirichlet)
        self.lu = splu(a[self.free][:, self.free].tocsc())
        self.coupling = a[self.free][:, self.fixed].tocsr()
        self.dt = dt
        self.f = self.M @ source if source is not None else np.zeros(len(points))

    def step(self, T: np.ndarray, boundary_values: np.ndarray) -> np.ndarray:
        out = np.empty_like(T)
        out[self.fixed] = boundary_values
        rhs = (self.M @ T) / self.dt + self.f
        out[self.free] = self.lu.solve(rhs[self.free] - self.coupling @ boundary_values)
        return out
