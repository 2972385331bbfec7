"""Surrogate adapters: a model family as the active-learning loop and its strategies see it.

The loop never branches on the family: it reads the model configuration, looks up the
family's adapter (:func:`adapter_for`) and calls

- ``fit(samples)``: (re)fit on the solved samples (a list of :class:`~sim.mesh.Mesh`);
- ``features(candidates) -> (P, d)``: what the surrogate knows of unsolved candidates;
- ``kernel(features, prior=False) -> (P, P)``, ``variance(features) -> (P,)``, ``noise()``:
  the scorer a selection plugin uses (:mod:`sim.plugins.selection`);
- ``score(test) -> {metric: value}``: test-split errors, ``rrmse_fields`` first;
- ``save(path)``: the fitted model, loadable with ``sim.load``.

A second family (say a mesh time-stepping model, whose candidates are a trajectory's
parameters and whose kernel would be a last-layer or empirical-NTK kernel) registers its own
class with :func:`register_adapter`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sim.errors import SimError
from sim.mesh import Mesh

_ADAPTERS: dict[str, type["SurrogateAdapter"]] = {}


def register_adapter(cls: type["SurrogateAdapter"]) -> type["SurrogateAdapter"]:
    """Class decorator: the adapter of the model family ``cls.family``."""
    _ADAPTERS[cls.family] = cls
    return cls


def adapter_for(model: Any, options: Any, source: Any = None) -> "SurrogateAdapter":
    """A fresh adapter for the model configuration ``model`` (a ``ModelConfig``) and its family's
    parsed ``options``; a family without one is one error naming the configuration."""
    cls = _ADAPTERS.get(model.family)
    if cls is None:
        raise SimError(f"active learning has no surrogate adapter for model family {model.family!r} (adapters: "
                       f"{', '.join(sorted(_ADAPTERS))})", source)
    return cls(model, options, source)


class SurrogateAdapter:
    """Base of the adapters (see the module docstring); learned state ends in ``_``."""

    family: ClassVar[str] = ""
    min_samples: ClassVar[int] = 1  # fewest solved samples ``fit`` accepts

    def __init__(self, model: Any, options: Any, source: Any = None):
        self.model, self.options, self.source = model, options, source

    def fit(self, samples: list[Mesh]) -> "SurrogateAdapter":
        raise NotImplementedError

    def features(self, candidates: list[Mesh]) -> np.ndarray:
        raise NotImplementedError

    def kernel(self, features: np.ndarray, prior: bool = False) -> np.ndarray:
        raise NotImplementedError

    def variance(self, features: np.ndarray) -> np.ndarray:
        return np.diag(self.kernel(features)).copy()

    def noise(self) -> float:
        raise NotImplementedError

    def score(self, test: list[Mesh]) -> dict[str, float]:
        raise NotImplementedError

    def save(self, path: Path) -> Path:
        raise NotImplementedError


def _scalars(meshes: list[Mesh], names: list[str], where: Any) -> dict[str, np.ndarray]:
    from sim.families.steady import sample_scalars

    rows = [sample_scalars(m, names, where) for m in meshes]
    return {k: np.array([r[k] for r in rows]) for k in names}


@register_adapter
class MMGPAdapter(SurrogateAdapter):
    """MMGP (:class:`~sim.models.mmgp.MMGP`) on steady samples.

    - features: the GP inputs of each candidate, [shape POD coefficients of its morphed mesh,
      input scalars], standardised with the training set's scaler (:meth:`MMGP.gp_inputs`);
      a candidate only needs its mesh and input scalars, not its solution.
    - kernel: the covariance of the latent Gaussian process of each output field at the
      candidates, the posterior given the training set by default (``prior``: the fitted
      kernel), in each GP's scaled units (1 = the spread of that field's POD coefficients over
      the training set), averaged over the fields. Per field this is the covariance of the
      field's error in the mass-matrix norm relative to the training fields' spread, so fields
      of different units weigh the same.
    - variance: its diagonal, the predicted squared field error relative to the training
      spread, averaged over the fields (POD truncation and transfer error left out).
    - noise: the GPs' fitted white-noise variances, averaged, in the same units.
    - score: PLAID's field RRMSE on the test samples (per sample the RMS error over nodes and
      components divided by the largest true magnitude, then the RMS over samples) per field,
      their mean ``rrmse_fields``, and the relative RMS error of each output scalar.
    """

    family = "mmgp"
    min_samples = 2

    def fit(self, samples: list[Mesh]) -> "MMGPAdapter":
        import dataclasses

        from sim.models.mmgp import MMGP

        opts = dataclasses.asdict(self.options)
        outputs = opts.pop("output_scalars")
        fields = list(self.model.fields)
        for f in fields:
            bad = [i for i, m in enumerate(samples) if f not in m.point_data]
            if bad:
                raise SimError(f"model.fields: solved sample {bad[0]} has no point field {f!r} (it has "
                               f"{sorted(samples[bad[0]].point_data)})", self.source)
        self.fields_, self.outputs_ = fields, outputs
        self.mmgp_ = MMGP(**opts).fit(samples, _scalars(samples, self.model.scalars, self.source),
                                      {f: [m.point_data[f] for m in samples] for f in fields},
                                      _scalars(samples, outputs, self.source))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "mmgp_"):
            raise SimError("the MMGP adapter is not fitted yet; call fit(samples) first")

    def features(self, candidates: list[Mesh]) -> np.ndarray:
        self._check_fitted()
        return self.mmgp_.gp_inputs(candidates, _scalars(candidates, self.model.scalars, self.source))

    def _outputs(self) -> str:
        return "fields" if self.fields_ else "scalars"

    def kernel(self, features: np.ndarray, prior: bool = False) -> np.ndarray:
        self._check_fitted()
        covs = list(self.mmgp_.gp_covariance(features, self._outputs(), prior=prior).values())
        k = np.mean(covs, axis=0)
        return 0.5 * (k + k.T)

    def noise(self) -> float:
        self._check_fitted()
        return float(np.mean(list(self.mmgp_.gp_noise(self._outputs()).values())))

    def score(self, test: list[Mesh]) -> dict[str, float]:
        from sim.families.steady import rrmse

        self._check_fitted()
        if not test:
            raise SimError("the test set is empty")
        scalars = _scalars(test, self.model.scalars, self.source)
        preds = [self.mmgp_.predict(m, {k: v[i] for k, v in scalars.items()}, return_std=False)
                 for i, m in enumerate(test)]
        out: dict[str, float] = {}
        for f in self.fields_:
            per = [rrmse(p["fields"][f], m.point_data[f].reshape(p["fields"][f].shape)) for m, p in zip(test, preds)]
            out[f"rrmse_{f}"] = float(np.sqrt(np.mean(np.square(per))))
        result = {"rrmse_fields": float(np.mean(list(out.values())))} if out else {}
        for k in self.outputs_:
            truth = _scalars(test, [k], self.source)[k]
            pred = np.array([float(np.asarray(p["scalars"][k]).reshape(-1)[0]) for p in preds])
            out[f"rrmse_{k}"] = float(np.sqrt(np.mean(((pred - truth) / np.maximum(np.abs(truth), 1e-30)) ** 2)))
        return {**result, **out}

    def save(self, path: Path) -> Path:
        self._check_fitted()
        return self.mmgp_.save(path)
