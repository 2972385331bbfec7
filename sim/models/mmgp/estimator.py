"""MMGP (Casenave et al. 2023): Mesh Morphing Gaussian Process regression with uncertainty.

Pipeline (``fit``):

1. morph every training mesh onto the unit disk (:func:`~sim.models.mmgp.morphing.floater_map`,
   corners pinned), unless ``morph=False`` for same-connectivity datasets;
2. the common support is one training sample's morphed mesh (``common_index``, default the
   middle one); P1 transfer operators bring every sample's coordinates and fields onto it;
3. POD with the common mesh's P1 mass matrix compresses the transferred coordinates (the
   shape embedding) and each output field;
4. Gaussian processes (scikit-learn, anisotropic Matern 5/2 x constant + white noise,
   standardised inputs and outputs, optimiser restarts) map [shape coefficients, input
   scalars] to each field's POD coefficients and to each output scalar.

``predict`` morphs the query mesh, embeds it, predicts the coefficients, and transfers the
decompressed fields back to the query mesh's own nodes. Uncertainty: draws of the latent
GP posterior in coefficient space, each decompressed and transferred separately (the
public script reused one draw for every sample, which we do not copy), summarised as
per-node std and quantiles. By default (``uncertainty="predictive"``) the draws include the
GP's fitted white-noise variance: in coefficient space it is the part of the data the
smooth kernel does not explain (high modes, transfer error), and leaving it out made the
95% intervals too narrow on test samples (coverage 0.84 on the medium elasticity set).
``uncertainty="latent"`` gives the noise-free posterior (model uncertainty only).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.preprocessing import StandardScaler

from sim.errors import FileFormatError, SimError
from sim.mesh import Mesh
from sim.mesh.atomic import atomic_path
from sim.models.mmgp.morphing import MORPHS
from sim.models.mmgp.pod import POD
from sim.models.mmgp.transfer import p1_mass_matrix, p1_transfer, trifinder

FORMAT = "sim.mmgp"
VERSION = 1


class NotFittedError(SimError, ValueError):
    """The estimator is used before ``fit``."""


class OptionError(SimError, ValueError):
    """An MMGP constructor argument out of its domain."""


def _triangles(mesh: Mesh, i: Any = "query") -> np.ndarray:
    if list(mesh.cells) != ["triangle"]:
        raise SimError(f"mesh {i}: MMGP needs a 2D triangle mesh, got cells {list(mesh.cells)}")
    return mesh.cells["triangle"]


def _as_2d(a: np.ndarray, n: int, what: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.shape[0] != n:
        raise SimError(f"{what} has {a.shape[0]} rows, expected {n}")
    return a.reshape(n, -1)


class MMGP:
    """Args:
        shape_modes: POD modes of the shape embedding.
        field_modes: POD modes per output field.
        pins: boundary corners pinned at fixed angles when morphing.
        morph: morph meshes (False: all meshes share connectivity; no transfer needed).
        common_index: training sample whose morphed mesh is the common support (default middle).
        refine: uniform refinements of the common support (each splits every triangle in four): the
            fields pass through it on their way to the POD and back, and a finer support loses
            less of their sharp features (stress peaks at notches) in the two P1 transfers.
        n_restarts: GP optimiser restarts.
        n_draws: posterior draws for field uncertainty.
        random_state: seed of the restarts and draws.
        scaling: "power" divides every output (field or scalar) by a power law of the positive
            input scalars fitted to the outputs' RMS sizes (log |y| = a + b . log s by least
            squares) before compression and regression, and multiplies predictions back:
            dimensional analysis the GPs need not learn (in linear elasticity the displacement
            scales as load / E and the stress as the load, exactly); "none" regresses raw outputs.
    """

    file_format = FORMAT  # what a saved model declares (sim.load finds the family by it)

    def __init__(self, shape_modes: int = 12, field_modes: int = 12, pins: int = 4, morph: bool = True,
                 common_index: int | None = None, n_restarts: int = 3, n_draws: int = 100, random_state: int = 0,
                 scaling: str = "power", refine: int = 0):
        if scaling not in ("power", "none"):
            raise OptionError(f"MMGP scaling must be 'power' or 'none', not {scaling!r}")
        self.shape_modes, self.field_modes, self.pins, self.morph = shape_modes, field_modes, pins, morph
        self.scaling, self.refine = scaling, int(refine)
        if self.refine and not morph:
            raise OptionError("MMGP refine needs morph=True (without morphing the samples' own mesh is the support)")
        self.common_index, self.n_restarts, self.n_draws, self.random_state = (common_index, n_restarts, n_draws,
                                                                               random_state)

    # ---------------------------------------------------------------- embedding
    def _morph(self, mesh: Mesh, i: Any) -> tuple[np.ndarray, Any]:
        """(the mesh's morphed coordinates (N, 2), their point locator; None without morphing)."""
        tri = _triangles(mesh, i)
        if not self.morph:
            return mesh.points[:, :2].astype(np.float64), None
        return MORPHS(mesh.points[:, :2], tri, self.pins)

    def _to_common(self, mesh: Mesh, morph: tuple[np.ndarray, Any], i: Any):
        """Operator (Nc, N) from the mesh's P1 space to the common nodes (``morph``: :meth:`_morph`)."""
        if not self.morph:
            if mesh.num_points != len(self.common_points_) or not np.array_equal(_triangles(mesh, i),
                                                                                 self.common_triangles_):
                raise SimError(f"mesh {i} does not share the common connectivity (morph=False needs it)")
            import scipy.sparse as sp

            return sp.identity(mesh.num_points, format="csr")
        morphed, finder = morph
        return p1_transfer(morphed, _triangles(mesh, i), self.common_morphed_, finder=finder)

    def _from_common(self, morphed: np.ndarray):
        """Operator (N, Nc) from the common support's P1 space to a mesh's morphed nodes."""
        finder = getattr(self, "_common_finder", None)
        if finder is None or finder[0] is not self.common_morphed_:  # built once per fitted (or loaded) support
            finder = self._common_finder = (self.common_morphed_,
                                            trifinder(self.common_morphed_, self.common_triangles_))
        return p1_transfer(self.common_morphed_, self.common_triangles_, morphed, finder=finder[1])

    def _shape_snapshot(self, mesh: Mesh, op) -> np.ndarray:
        return np.asarray(op @ mesh.points[:, :2].astype(np.float64)).ravel()

    # ---------------------------------------------------------------- fit
    def fit(self, meshes: list[Mesh], scalars: dict[str, np.ndarray] | None = None,
            fields: dict[str, list[np.ndarray]] | None = None,
            output_scalars: dict[str, np.ndarray] | None = None) -> "MMGP":
        """Args:
            meshes: n training meshes (2D triangles).
            scalars: input scalar name -> (n,) values.
            fields: output field name -> n arrays of (N_i,) or (N_i, c) nodal values.
            output_scalars: output scalar name -> (n,) values.
        Returns ``self``."""
        n = len(meshes)
        if n < 2:
            raise SimError("MMGP needs at least two training samples")
        scalars = {k: _as_2d(v, n, f"input scalar {k!r}") for k, v in (scalars or {}).items()}
        output_scalars = {k: _as_2d(v, n, f"output scalar {k!r}") for k, v in (output_scalars or {}).items()}
        fields = dict(fields or {})
        if not fields and not output_scalars:
            raise SimError("nothing to learn: give fields and/or output_scalars")
        for k, arrs in fields.items():
            if len(arrs) != n:
                raise SimError(f"field {k!r} has {len(arrs)} samples for {n} meshes")
        idx = self.common_index if self.common_index is not None else n // 2
        if not 0 <= idx < n:
            raise SimError(f"common_index {idx} is out of range for {n} samples")
        self.common_index_ = idx
        common = meshes[idx]
        self.common_points_ = common.points[:, :2].astype(np.float64)
        self.common_triangles_ = _triangles(common, idx).copy()
        self.common_morphed_ = self._morph(common, idx)[0]
        if self.refine:  # the same refinement of the physical and the morphed support (scikit-fem keeps vertices first)
            from skfem import MeshTri

            t = self.common_triangles_.T.copy()
            self.common_points_ = MeshTri(self.common_points_.T.copy(), t).refined(self.refine).p.T
            fine = MeshTri(self.common_morphed_.T.copy(), t).refined(self.refine)
            self.common_morphed_, tri = fine.p.T, fine.t.T.astype(np.int64)
            a, b, c = (self.common_morphed_[tri[:, i]] for i in range(3))
            cw = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]) < 0
            tri[cw] = tri[cw][:, [0, 2, 1]]  # counter-clockwise, as the meshes' own triangles
            self.common_triangles_ = tri
        mass = p1_mass_matrix(self.common_points_, self.common_triangles_)
        ops = [self._to_common(m, self._morph(m, i), i) for i, m in enumerate(meshes)]
        self.shape_pod_ = POD(self.shape_modes, mass, components=2).fit(
            np.stack([self._shape_snapshot(m, op) for m, op in zip(meshes, ops)]))
        shape_coef = self.shape_pod_.transform(np.stack([self._shape_snapshot(m, op) for m, op in zip(meshes, ops)]))
        self.scalar_names_ = list(scalars)
        x = np.hstack([shape_coef] + [scalars[k] for k in self.scalar_names_])
        self.x_scaler_ = StandardScaler().fit(x)
        xs = self.x_scaler_.transform(x)
        # the power law's inputs: scalars positive on every training sample (log-able)
        self.scale_names_ = [k for k in self.scalar_names_ if self.scaling == "power" and np.all(scalars[k] > 0)]
        log_s = np.hstack([np.ones((n, 1))] + [np.log(scalars[k]) for k in self.scale_names_])
        self.field_pods_, self.field_gps_, self.field_components_, self.scale_coefs_ = {}, {}, {}, {}
        self.field_means_ = {}
        for k, arrs in fields.items():
            comps = np.asarray(arrs[0]).reshape(meshes[0].num_points, -1).shape[1]
            raw = [_as_2d(a, m.num_points, f"field {k!r} of sample {i}") for i, (a, m) in enumerate(zip(arrs, meshes))]
            factor = self._fit_scaling(f"field:{k}", log_s, np.array([np.sqrt((a ** 2).mean()) for a in raw]))
            common = np.stack([np.asarray(op @ a).ravel() for a, op in zip(raw, ops)])
            self.field_means_[k] = common.mean(0)  # the plain mean training field (a baseline), unscaled
            snaps = common / factor[:, None]
            pod = POD(self.field_modes, mass, components=comps).fit(snaps)
            self.field_pods_[k], self.field_components_[k] = pod, comps
            self.field_gps_[k] = self._fit_gp(xs, pod.transform(snaps))
        self.output_gps_ = {}
        for k, v in output_scalars.items():
            factor = self._fit_scaling(f"out:{k}", log_s, np.sqrt((v ** 2).mean(1)))
            self.output_gps_[k] = self._fit_gp(xs, v / factor[:, None])
        self.n_train_ = n
        return self

    def _fit_scaling(self, name: str, log_s: np.ndarray, size: np.ndarray) -> np.ndarray:
        """Fit log(size) = a + b . log(scalars) over the training samples (``log_s``: a column of
        ones and the log-scalars); store (a, b) under ``name`` and return each sample's factor.
        No scaling (factor 1) without positive inputs or when some output is exactly zero."""
        coef = np.zeros(log_s.shape[1])
        if log_s.shape[1] > 1 and np.all(size > 0):
            coef = np.linalg.lstsq(log_s, np.log(size), rcond=None)[0]
        self.scale_coefs_[name] = coef
        return np.exp(log_s @ coef)

    def _factor(self, name: str, scalars: dict[str, Any]) -> float:
        """The fitted power law's factor of output ``name`` at a query's input scalars."""
        coef = self.scale_coefs_[name]
        with np.errstate(invalid="ignore", divide="ignore"):  # a non-positive input is the error below
            log_s = [np.log(float(np.asarray(scalars[k]).ravel()[0])) for k in self.scale_names_]
        if coef[1:].any() and not all(np.isfinite(log_s)):
            raise SimError(f"input scalars {self.scale_names_} must be positive (the model's output scaling "
                           f"is a power law of them), got {[scalars[k] for k in self.scale_names_]}")
        return float(np.exp(coef[0] + np.dot(coef[1:], log_s))) if coef.any() else 1.0

    def _kernel(self, dim: int):
        """Length scales start at sqrt(dim), the typical distance between standardised inputs: from
        unit length scales the optimiser settled in a poor optimum (log-likelihood -171 against
        -58) and doubled the error of a small benchmark; the restarts' random starting points
        rarely find the better one in many dimensions."""
        return (ConstantKernel(1.0, (1e-3, 1e3)) * Matern(np.full(dim, np.sqrt(dim)), (1e-2, 1e3), nu=2.5)
                + WhiteKernel(1e-4, (1e-10, 1e-1)))

    def _fit_gp(self, x: np.ndarray, y: np.ndarray) -> GaussianProcessRegressor:
        """One GP for all columns of ``y`` with a shared kernel. Columns are centred and divided
        by one common scale (their RMS), not standardised one by one: POD coefficients of
        high modes are small and noisy, and per-column scaling would give them the same
        weight in the likelihood as the energetic modes."""
        y = np.asarray(y, dtype=np.float64).reshape(len(x), -1)
        gp = GaussianProcessRegressor(self._kernel(x.shape[1]), normalize_y=False,
                                      n_restarts_optimizer=self.n_restarts, random_state=self.random_state)
        gp.y_offset_ = y.mean(0)
        gp.y_scale_ = float(np.sqrt(((y - gp.y_offset_) ** 2).mean())) or 1.0
        with warnings.catch_warnings():
            # length scales at their upper bound are how ARD switches an input off: expected here
            warnings.simplefilter("ignore", ConvergenceWarning)
            return gp.fit(x, (y - gp.y_offset_) / gp.y_scale_)

    # ---------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "x_scaler_"):
            raise NotFittedError("this MMGP is not fitted yet; call fit(meshes, scalars, fields, output_scalars) "
                                 "or MMGP.load(path) first")

    @staticmethod
    def _latent_posterior(gp: GaussianProcessRegressor, x: np.ndarray, noise: bool = False
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Mean (m, k) and covariance (m, m, k) of the latent function at x (``noise``: plus the
        fitted white-noise variance on the diagonal, the predictive covariance of a new observation)."""
        mean = gp.predict(x).reshape(len(x), -1) * gp.y_scale_ + gp.y_offset_
        cov = MMGP._gp_covariance(gp, x)
        if noise:
            cov = cov + gp.kernel_.k2.noise_level * np.eye(len(x))
        k = mean.shape[1]
        return mean, np.repeat(cov[:, :, None], k, axis=2) * gp.y_scale_**2

    @staticmethod
    def _gp_covariance(gp: GaussianProcessRegressor, x: np.ndarray, prior: bool = False) -> np.ndarray:
        """(m, m) covariance of the latent function at x in the GP's scaled output units, the
        posterior given the training data (``prior``: the fitted kernel alone, without the noise)."""
        cov = gp.kernel_.k1(x)  # k1 = constant x Matern (no white noise)
        if prior:
            return cov
        v = solve_triangular(gp.L_, gp.kernel_(x, gp.X_train_).T, lower=True)
        return cov - v.T @ v

    def gp_inputs(self, meshes: list[Mesh], scalars: dict[str, np.ndarray]) -> np.ndarray:
        """The GP inputs (n, d) of unsolved samples: standardised [shape POD coefficients, input
        scalars], what every GP of the model regresses on (``scalars``: name -> (n,) values)."""
        self._check_fitted()
        x = [self._embed(m, {k: np.asarray(scalars[k])[i] for k in scalars}, i)[0] for i, m in enumerate(meshes)]
        return np.vstack(x) if x else np.zeros((0, len(self.x_scaler_.mean_)))

    def gp_covariance(self, x: np.ndarray, outputs: str = "fields", prior: bool = False) -> dict[str, np.ndarray]:
        """Covariance (m, m) of the latent GP at the inputs x (:meth:`gp_inputs`), per output
        (``outputs``: "fields", one GP per output field, or "scalars", one per output scalar),
        in each GP's scaled units: the POD coefficients (or scalars) are centred and divided by
        one common RMS scale, so a value of 1 is the training data's own spread. Every column
        of a field GP shares its kernel, so this matrix times the scale squared is the
        covariance of each coefficient. The posterior given the training data by default
        (``prior``: the fitted kernel alone)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return {k: self._gp_covariance(gp, x, prior) for k, gp in self._gps(outputs).items()}

    def gp_noise(self, outputs: str = "fields") -> dict[str, float]:
        """The fitted white-noise variance of each GP of ``outputs``, in the units of :meth:`gp_covariance`."""
        return {k: float(gp.kernel_.k2.noise_level) for k, gp in self._gps(outputs).items()}

    def gp_error_weights(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Per output field, weights (m,) that turn a unit of :meth:`gp_covariance`'s diagonal at the
        inputs x into the expected squared relative field error there (RMS over nodes and components
        over the largest predicted magnitude, squared; the POD truncation and transfer left out):

            w_j = c * s^2 * q / peak_j^2

        s the GP's output scale, q the mean square over the common support's values of the field's
        POD modes summed (every mode shares the GP's kernel), peak_j the largest magnitude of the
        predicted mean field in the power law's scaled units, and c the GP's leave-one-out
        calibration (:meth:`gp_calibration`: 1 for a GP whose variances match its leave-one-out
        errors, above 1 for an over-confident one)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        calibration = self.gp_calibration("fields")
        out = {}
        for k, gp in self.field_gps_.items():
            pod, comps = self.field_pods_[k], self.field_components_[k]
            q = float((pod.modes_**2).sum() / len(pod.modes_))
            coef = gp.predict(x).reshape(len(x), -1) * gp.y_scale_ + gp.y_offset_
            fields = pod.inverse_transform(coef).reshape(len(x), -1, comps)
            peak = np.linalg.norm(fields, axis=2).max(1)
            floor = 1e-6 * max(float(peak.max()), 1e-300)
            out[k] = calibration[k] * gp.y_scale_**2 * q / np.maximum(peak, floor) ** 2
        return out

    def gp_calibration(self, outputs: str = "fields") -> dict[str, float]:
        """Per GP, the mean over its training samples and columns of the squared leave-one-out
        residual over its leave-one-out predictive variance (closed form from the fitted kernel's
        Cholesky factor: residual [K^-1 y]_i / [K^-1]_ii, variance 1 / [K^-1]_ii). 1 for a GP whose
        variances match its errors; above 1 when it is over-confident."""
        from scipy.linalg import cho_solve

        out = {}
        for k, gp in self._gps(outputs).items():
            inv = cho_solve((gp.L_, True), np.eye(len(gp.L_)))
            alpha = np.asarray(gp.alpha_).reshape(len(inv), -1)
            out[k] = float(np.mean(alpha**2 / np.diag(inv)[:, None]))
        return out

    def _gps(self, outputs: str) -> dict[str, GaussianProcessRegressor]:
        self._check_fitted()
        if outputs not in ("fields", "scalars"):
            raise ValueError(f"outputs must be 'fields' or 'scalars', not {outputs!r}")
        return self.field_gps_ if outputs == "fields" else self.output_gps_

    def _embed(self, mesh: Mesh, scalars: dict[str, float] | None, i: Any = "query"
               ) -> tuple[np.ndarray, np.ndarray, Any]:
        """Standardised GP input (1, d) of one mesh, its morphed coordinates and its operator to the
        common support (:meth:`_to_common`)."""
        scalars = scalars or {}
        missing = [k for k in self.scalar_names_ if k not in scalars]
        if missing:
            raise SimError(f"missing input scalar(s) {missing} (the model was fitted with {self.scalar_names_})")
        morph = self._morph(mesh, i)
        op = self._to_common(mesh, morph, i)
        coef = self.shape_pod_.transform(self._shape_snapshot(mesh, op)[None])
        x = np.hstack([coef] + [np.atleast_2d(np.asarray(scalars[k], dtype=float)).reshape(1, -1)
                                for k in self.scalar_names_])
        return self.x_scaler_.transform(x), morph[0], op

    def _inputs(self, mesh: Mesh, scalars: dict[str, float] | None) -> tuple[np.ndarray, Any]:
        x, morphed, _ = self._embed(mesh, scalars)
        back = None
        if self.morph:
            back = self._from_common(morphed)
        return x, back

    def predict(self, mesh: Mesh, scalars: dict[str, float] | None = None, return_std: bool = True,
                n_draws: int | None = None, quantiles: tuple[float, ...] = (0.025, 0.975),
                uncertainty: str = "predictive") -> dict[str, Any]:
        """Fields on ``mesh``'s own nodes and output scalars.

        ``uncertainty``: "predictive" (posterior plus the fitted noise: intervals for the true
        values) or "latent" (the noise-free posterior: model uncertainty only).

        Returns a dict with ``fields`` (name -> (N, c) mean), ``scalars`` (name -> mean) and,
        with ``return_std``, ``fields_std``, ``fields_quantiles`` (name -> (q, N, c)) and
        ``scalars_std``.
        """
        self._check_fitted()
        if uncertainty not in ("predictive", "latent"):
            raise ValueError(f"uncertainty must be 'predictive' or 'latent', not {uncertainty!r}")
        noise = uncertainty == "predictive"
        x, back = self._inputs(mesh, scalars)
        rng = np.random.default_rng(self.random_state)
        draws = n_draws or self.n_draws
        out: dict[str, Any] = {"fields": {}, "scalars": {}}
        if return_std:
            out.update(fields_std={}, fields_quantiles={}, scalars_std={})
        for k, gp in self.field_gps_.items():
            pod, comps = self.field_pods_[k], self.field_components_[k]

            factor = self._factor(f"field:{k}", scalars)

            def to_mesh(coef: np.ndarray) -> np.ndarray:
                common = pod.inverse_transform(coef).reshape(-1, len(self.common_points_), comps) * factor
                return common if back is None else np.stack([back @ c for c in common])

            mean, cov = self._latent_posterior(gp, x, noise)
            out["fields"][k] = to_mesh(mean)[0]
            if return_std:
                sd = np.sqrt(np.clip(cov[0, 0], 0.0, None))  # (k,) independent outputs, shared kernel
                samples = mean + rng.standard_normal((draws, mean.shape[1])) * sd[None]
                fields = to_mesh(samples)  # (draws, N, c), each draw decompressed and transferred
                out["fields_std"][k] = fields.std(0)
                out["fields_quantiles"][k] = np.quantile(fields, quantiles, axis=0)
        for k, gp in self.output_gps_.items():
            factor = self._factor(f"out:{k}", scalars)
            mean, cov = self._latent_posterior(gp, x, noise)
            mean = mean * factor
            out["scalars"][k] = mean[0] if mean.shape[1] > 1 else float(mean[0, 0])
            if return_std:
                sd = np.sqrt(np.clip(cov[0, 0], 0.0, None)) * factor
                out["scalars_std"][k] = sd if sd.size > 1 else float(sd[0])
        return out

    def stage_errors(self, mesh: Mesh, scalars: dict[str, float] | None, fields: dict[str, np.ndarray]
                     ) -> dict[str, dict[str, float]]:
        """Where the error of one sample comes from: its true ``fields`` (name -> (N,) or (N, c) on
        ``mesh``'s nodes) passed through each stage of the model and back to the mesh, as RMS
        errors relative to the field's max |value| (PLAID's per-sample RRMSE):

        - ``transfer``: to the common support and back, nothing else (the morphing and P1 transfers);
        - ``projection``: plus the POD truncation (the true field's own coefficients);
        - ``prediction``: the model's prediction (the GP's coefficients instead of the true ones).

        Each stage includes the ones before it, so the differences are the stages' shares."""
        x, morphed, op = self._embed(mesh, scalars)  # the query is morphed once for both directions
        back = self._from_common(morphed) if self.morph else None
        out = {}
        for k, truth in fields.items():
            truth = _as_2d(truth, mesh.num_points, f"field {k!r}")
            pod, gp, comps = self.field_pods_[k], self.field_gps_[k], self.field_components_[k]
            factor = self._factor(f"field:{k}", scalars or {})
            scale = float(np.abs(truth).max()) or 1.0

            def err(common: np.ndarray) -> float:
                common = common.reshape(-1, comps)
                pred = common if back is None else back @ common
                return float(np.sqrt(((pred - truth) ** 2).mean()) / scale)

            common = np.asarray(op @ truth)
            coef = pod.transform(common.ravel()[None] / factor)
            mean = gp.predict(x).reshape(1, -1) * gp.y_scale_ + gp.y_offset_
            out[k] = {"transfer": err(common), "projection": err(pod.inverse_transform(coef) * factor),
                      "prediction": err(pod.inverse_transform(mean) * factor)}
        return out

    def predict_pyvista(self, mesh: Mesh, scalars: dict[str, float] | None = None):
        """The query mesh as a pyvista grid with ``<field>`` and ``<field>_std`` point arrays and the
        output scalars (and ``<scalar>_std``) in its field data."""
        res = self.predict(mesh, scalars)
        grid = Mesh(mesh.points, mesh.cells).to_pyvista()
        for k, v in res["fields"].items():
            grid.point_data[k] = v[:, 0] if v.shape[1] == 1 else v
            s = res["fields_std"][k]
            grid.point_data[f"{k}_std"] = s[:, 0] if s.shape[1] == 1 else s
        for k, v in res["scalars"].items():
            grid.field_data[k] = np.atleast_1d(v)
            grid.field_data[f"{k}_std"] = np.atleast_1d(res["scalars_std"][k])
        return grid

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Arrays and JSON only (``np.savez`` without pickles); GPs are stored as their
        training data and optimised hyper-parameters and rebuilt exactly on load."""
        self._check_fitted()
        arrays: dict[str, np.ndarray] = {
            "common_points": self.common_points_, "common_triangles": self.common_triangles_,
            "common_morphed": self.common_morphed_, "x_mean": self.x_scaler_.mean_, "x_scale": self.x_scaler_.scale_,
        }
        meta: dict[str, Any] = {
            "format": FORMAT, "version": VERSION,
            "params": {"shape_modes": self.shape_modes, "field_modes": self.field_modes, "pins": self.pins,
                       "morph": self.morph, "common_index": self.common_index, "n_restarts": self.n_restarts,
                       "n_draws": self.n_draws, "random_state": self.random_state, "scaling": self.scaling,
                       "refine": self.refine},
            "scalar_names": self.scalar_names_, "scale_names": self.scale_names_,
            "fields": {k: self.field_components_[k] for k in self.field_pods_},
            "outputs": list(self.output_gps_), "common_index": self.common_index_, "n_train": self.n_train_,
        }
        pods = {"shape": self.shape_pod_, **{f"field:{k}": p for k, p in self.field_pods_.items()}}
        for name, p in pods.items():
            arrays[f"pod:{name}:mean"], arrays[f"pod:{name}:modes"] = p.mean_, p.modes_
        for k, v in self.field_means_.items():
            arrays[f"mean:field:{k}"] = v
        gps = {**{f"field:{k}": g for k, g in self.field_gps_.items()}, **{f"out:{k}": g for k, g in
                                                                          self.output_gps_.items()}}
        for name, g in gps.items():
            y_raw = g.y_train_.reshape(len(g.X_train_), -1) * g.y_scale_ + g.y_offset_
            arrays[f"gp:{name}:X"], arrays[f"gp:{name}:y"] = g.X_train_, y_raw
            arrays[f"gp:{name}:theta"] = g.kernel_.theta
            arrays[f"scale:{name}"] = self.scale_coefs_[name]
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MMGP":
        path = Path(path)
        if not path.exists():
            raise FileFormatError("no such MMGP file", path)
        try:
            data = np.load(path, allow_pickle=False)
            meta = json.loads(bytes(data["meta"]).decode())
        except Exception as exc:
            raise FileFormatError(f"not a readable MMGP file ({type(exc).__name__}: {exc})", path) from None
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise FileFormatError(f"not an MMGP file of version {VERSION} (format {meta.get('format')!r}, "
                                  f"version {meta.get('version')!r})", path)
        m = cls(**{"scaling": "none", **meta["params"]})  # files from before the output scaling
        m.scale_names_ = meta.get("scale_names", [])
        m.common_points_, m.common_triangles_ = data["common_points"], data["common_triangles"]
        m.common_morphed_, m.common_index_, m.n_train_ = data["common_morphed"], meta["common_index"], meta["n_train"]
        m.x_scaler_ = StandardScaler()
        m.x_scaler_.mean_, m.x_scaler_.scale_ = data["x_mean"], data["x_scale"]
        m.x_scaler_.var_, m.x_scaler_.n_features_in_ = data["x_scale"] ** 2, len(data["x_mean"])
        m.scalar_names_ = meta["scalar_names"]
        mass = p1_mass_matrix(m.common_points_, m.common_triangles_)

        def pod(name: str, comps: int) -> POD:
            p = POD(0, mass, comps)
            p.mean_, p.modes_ = data[f"pod:{name}:mean"], data[f"pod:{name}:modes"]
            return p

        def gp(name: str) -> GaussianProcessRegressor:
            x, y = data[f"gp:{name}:X"], data[f"gp:{name}:y"]
            kernel = m._kernel(x.shape[1]).clone_with_theta(data[f"gp:{name}:theta"])
            g = GaussianProcessRegressor(kernel, optimizer=None)
            g.y_offset_ = y.mean(0)
            g.y_scale_ = float(np.sqrt(((y - g.y_offset_) ** 2).mean())) or 1.0
            return g.fit(x, (y - g.y_offset_) / g.y_scale_)

        m.shape_pod_ = pod("shape", 2)
        m.field_components_ = {k: int(c) for k, c in meta["fields"].items()}
        m.field_pods_ = {k: pod(f"field:{k}", c) for k, c in m.field_components_.items()}
        # files from before the output scaling hold no plain mean: their POD mean is it (unscaled)
        m.field_means_ = {k: data[f"mean:field:{k}"] if f"mean:field:{k}" in data else m.field_pods_[k].mean_
                          for k in m.field_components_}
        m.field_gps_ = {k: gp(f"field:{k}") for k in m.field_components_}
        m.output_gps_ = {k: gp(f"out:{k}") for k in meta["outputs"]}
        names = [f"field:{k}" for k in m.field_components_] + [f"out:{k}" for k in meta["outputs"]]
        m.scale_coefs_ = {k: data[f"scale:{k}"] if f"scale:{k}" in data else np.zeros(1 + len(m.scale_names_))
                          for k in names}
        return m
