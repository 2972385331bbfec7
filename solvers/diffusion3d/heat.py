"""Transient advection-diffusion on tetrahedral meshes (P1, scikit-fem), implicit Euler.

.. math:: \\partial_t T + a\\cdot\\nabla T = \\kappa \\Delta T + s(x), \\qquad T = g \\text{ on } \\Gamma_D,
          \\quad \\kappa \\partial_n T = 0 \\text{ elsewhere}

:math:`(M/\\Delta t + \\kappa K + A)\\,T^{n+1} = M T^n / \\Delta t + f` with the constant matrix
LU-factorised once on its free DOFs, so each step is one triangular solve pair. Above
``direct_limit`` unknowns (3D LU fill-in grows too fast for this machine's memory at
~300k nodes) the same system is solved by BiCGSTAB with a Jacobi preconditioner, warm
started from the previous step (the mass term keeps it well conditioned).
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
                 velocity: np.ndarray | None = None, source: np.ndarray | None = None,
                 direct_limit: int = 60_000):
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
        a_ff = a[self.free][:, self.free].tocsc()
        self.direct = len(self.free) <= direct_limit
        if self.direct:
            self.lu = splu(a_ff)
        else:
            self.a_ff = a_ff.tocsr()
            self.inv_diag = 1.0 / self.a_ff.diagonal()
        self.coupling = a[self.free][:, self.fixed].tocsr()
        self.dt = dt
        self.f = self.M @ source if source is not None else np.zeros(len(points))

    def step(self, T: np.ndarray, boundary_values: np.ndarray) -> np.ndarray:
        out = np.empty_like(T)
        out[self.fixed] = boundary_values
        rhs = (self.M @ T) / self.dt + self.f
        b = rhs[self.free] - self.coupling @ boundary_values
        if self.direct:
            out[self.free] = self.lu.solve(b)
            return out
        from scipy.sparse.linalg import LinearOperator, bicgstab

        pre = LinearOperator(self.a_ff.shape, matvec=lambda r: self.inv_diag * r)
        sol, info = bicgstab(self.a_ff, b, x0=T[self.free], M=pre, rtol=1e-10, atol=0.0, maxiter=2000)
        if info != 0:
            raise SimError(f"the heat solve did not converge (BiCGSTAB info {info})")
        out[self.free] = sol
        return out
