"""2D linear elasticity in plane stress with scikit-fem (P2 displacements).

.. math:: -\\nabla\\cdot\\sigma(u) = 0,\\quad \\sigma = 2\\mu\\,\\varepsilon(u) + \\lambda^*\\operatorname{tr}\\varepsilon(u)\\,I,
          \\quad \\lambda^* = \\frac{2\\lambda\\mu}{\\lambda + 2\\mu}\\ \\text{(plane stress)}

with u = 0 on the clamped facets and the traction t on the loaded facets (free
elsewhere). Nodal outputs: displacement at the mesh vertices and the von Mises stress
(plane stress, :math:`\\sqrt{\\sigma_{xx}^2 - \\sigma_{xx}\\sigma_{yy} + \\sigma_{yy}^2 + 3\\sigma_{xy}^2}`)
recovered at the vertices by L2 projection onto continuous P1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.errors import SimError


@dataclass
class ElasticResult:
    displacement: np.ndarray  # (N, 2) at the vertices
    von_mises: np.ndarray  # (N,)
    dofs: int


def solve_plane_stress(points: np.ndarray, triangles: np.ndarray, E: float, nu: float,
                       clamped: callable, loaded: callable, traction: tuple[float, float]) -> ElasticResult:
    """Args:
        points / triangles: the mesh (counter-clockwise triangles).
        E, nu: Young's modulus and Poisson ratio.
        clamped / loaded: functions of facet midpoints (2, m) -> bool mask selecting the
            clamped and the loaded boundary facets.
        traction: (t_x, t_y) applied on the loaded facets.
    """
    from scipy.sparse.linalg import spsolve
    from skfem import (Basis, BilinearForm, ElementTriP1, ElementTriP2, ElementVector, FacetBasis, LinearForm,
                       MeshTri, asm, condense)
    from skfem.helpers import sym_grad
    from skfem.models.elasticity import lame_parameters, linear_elasticity

    if E <= 0 or not 0 <= nu < 0.5:
        raise SimError(f"need E > 0 and 0 <= nu < 0.5 (got E={E}, nu={nu})")
    m = MeshTri(points[:, :2].T.copy(), triangles.T.copy()).with_boundaries({"clamped": clamped, "loaded": loaded})
    if len(m.boundaries["clamped"]) == 0:
        raise SimError("no clamped boundary facets: the problem would be singular")
    lam, mu = lame_parameters(E, nu)
    lam_ps = 2 * lam * mu / (lam + 2 * mu)
    vb = Basis(m, ElementVector(ElementTriP2()))
    K = asm(linear_elasticity(lam_ps, mu), vb)
    fb = FacetBasis(m, ElementVector(ElementTriP2()), facets=m.boundaries["loaded"])
    tx, ty = traction

    @LinearForm
    def load(v, w):
        return tx * v[0] + ty * v[1]

    f = asm(load, fb) if len(m.boundaries["loaded"]) else np.zeros(vb.N)
    u = np.zeros(vb.N)
    u[vb.complement_dofs(vb.get_dofs("clamped"))] = spsolve(*condense(K, f, D=vb.get_dofs("clamped"))[:2])
    # nodal values
    ux = u[vb.nodal_dofs[0]]
    uy = u[vb.nodal_dofs[1]]
    # von Mises at quadrature points, L2-projected onto continuous P1
    pb = vb.with_element(ElementTriP1())
    field = vb.interpolate(u)

    @LinearForm
    def vm_rhs(q, w):
        e = sym_grad(w["u"])
        tr = e[0, 0] + e[1, 1]
        sxx = 2 * mu * e[0, 0] + lam_ps * tr
        syy = 2 * mu * e[1, 1] + lam_ps * tr
        sxy = 2 * mu * e[0, 1]
        return np.sqrt(np.maximum(sxx**2 - sxx * syy + syy**2 + 3 * sxy**2, 0.0)) * q

    @BilinearForm
    def mass(p, q, w):
        return p * q

    vm = spsolve(asm(mass, pb).tocsc(), asm(vm_rhs, pb, u=field))
    return ElasticResult(np.stack([ux, uy], 1), vm[pb.nodal_dofs[0]], int(vb.N))
