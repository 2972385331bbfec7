"""Proper orthogonal decomposition in a weighted inner product (the P1 mass matrix).

Snapshots x_s (rows of X, each a field on the common mesh flattened node-major) are
centred and decomposed by the method of snapshots:

.. math:: C = X_c (M \\otimes I_c) X_c^T = V \\Lambda V^T, \\qquad
          \\Phi = X_c^T V \\Lambda^{-1/2}

so the modes Phi are M-orthonormal; coefficients are ``(x - mean) M Phi`` and
reconstruction is ``mean + coef Phi^T``. With all non-zero modes the training snapshots
are reconstructed exactly.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class POD:
    """Args:
        modes: number of modes kept (capped by the number of non-negligible eigenvalues).
        mass: (n_nodes, n_nodes) mass matrix (identity if None).
        components: values per node (a vector field has 2)."""

    def __init__(self, modes: int, mass: sp.spmatrix | None = None, components: int = 1):
        self.modes, self.mass, self.components = modes, mass, components

    def _weigh(self, x: np.ndarray) -> np.ndarray:
        if self.mass is None:
            return x
        n = self.mass.shape[0]
        xr = x.reshape(x.shape[0], n, self.components)
        return np.stack([(self.mass @ xr[:, :, c].T).T for c in range(self.components)], -1).reshape(x.shape)

    def fit(self, snapshots: np.ndarray) -> "POD":
        x = np.asarray(snapshots, dtype=np.float64)
        self.mean_ = x.mean(0)
        xc = x - self.mean_
        corr = xc @ self._weigh(xc).T
        vals, vecs = np.linalg.eigh(corr)
        order = np.argsort(vals)[::-1]
        vals, vecs = vals[order], vecs[:, order]
        keep = vals > max(vals[0], 0.0) * 1e-12
        k = int(min(self.modes, keep.sum()))
        self.eigenvalues_ = vals[:k]
        self.modes_ = (xc.T @ vecs[:, :k]) / np.sqrt(vals[:k])  # (n_dof, k)
        self.explained_ = float(vals[:k].sum() / max(vals[vals > 0].sum(), 1e-300))
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return self._weigh(np.atleast_2d(x) - self.mean_) @ self.modes_

    def inverse_transform(self, coef: np.ndarray) -> np.ndarray:
        return self.mean_ + np.atleast_2d(coef) @ self.modes_.T
