"""Surrogate adapters: a model family as the active-learning loop and its strategies see it.

The loop never branches on the family: it reads the model configuration, looks up the
family's adapter (:func:`adapter_for`) and calls

- ``fit(samples, drawn)``: (re)fit on the solved samples (:class:`~sim.mesh.Mesh` or
  :class:`~sim.mesh.Trajectory`, as ``sample_kind`` says), ``drawn`` their candidates as drawn;
- ``features(candidates) -> (P, d)``: what the surrogate knows of unsolved candidates;
- ``kernel(features, prior=False) -> (P, P)``, ``variance(features) -> (P,)``, ``noise()``:
  the scorer a selection plugin uses (:mod:`sim.plugins.selection`);
- ``score(test) -> {metric: value}``: test-split errors, ``rrmse_fields`` first;
- ``save(path)``: the fitted model, loadable with ``sim.load``.

Adapters: MMGP (steady samples, its Gaussian processes' covariance) and mesh time-stepping
models (:class:`MeshAdapter`: trajectories, a Bayesian last-layer kernel); another family
registers its own class with :func:`register_adapter`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sim.errors import SimError
from sim.mesh import Mesh, Trajectory

_ADAPTERS: dict[str, type["SurrogateAdapter"]] = {}


def register_adapter(cls: type["SurrogateAdapter"]) -> type["SurrogateAdapter"]:
    """Class decorator: the adapter of the model family ``cls.family``."""
    _ADAPTERS[cls.family] = cls
    return cls


def adapter_for(model: Any, options: Any, source: Any = None, sections: dict[str, Any] | None = None
                ) -> "SurrogateAdapter":
    """A fresh adapter for the model configuration ``model`` (a ``ModelConfig``) and its family's
    parsed ``options``; a family without one is one error naming the configuration. ``sections``:
    the configuration's other sections (``optim``, ``train``, ``data``) for adapters that train."""
    cls = _ADAPTERS.get(model.family)
    if cls is None:
        raise SimError(f"active learning has no surrogate adapter for model family {model.family!r} (adapters: "
                       f"{', '.join(sorted(_ADAPTERS))})", source)
    return cls(model, options, source, sections) if sections else cls(model, options, source)


class SurrogateAdapter:
    """Base of the adapters (see the module docstring); learned state ends in ``_``."""

    family: ClassVar[str] = ""
    min_samples: ClassVar[int] = 1  # fewest solved samples ``fit`` accepts
    sample_kind: ClassVar[type] = Mesh  # what a solve gives: Mesh (steady samples) or Trajectory

    def __init__(self, model: Any, options: Any, source: Any = None, sections: dict[str, Any] | None = None):
        self.model, self.options, self.source = model, options, source

    def fit(self, samples: list[Any], drawn: list[Mesh] | None = None) -> "SurrogateAdapter":
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

    def fit(self, samples: list[Mesh], drawn: list[Mesh] | None = None) -> "MMGPAdapter":
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

    def error_terms(self, features: np.ndarray, prior: bool = False) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Per output field (kernel (P, P), weights (P,), noise variance): the field GP's covariance,
        :meth:`MMGP.gp_error_weights` (a unit of its diagonal as expected squared relative error,
        calibrated by leave-one-out) and its fitted noise variance."""
        self._check_fitted()
        if not self.fields_:
            raise SimError("error-weighted selection needs output fields (the model has output scalars only)")
        covs = self.mmgp_.gp_covariance(features, "fields", prior=prior)
        weights = self.mmgp_.gp_error_weights(features)
        noise = self.mmgp_.gp_noise("fields")
        return [(covs[f], weights[f], noise[f]) for f in self.fields_]

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


@register_adapter
class MeshAdapter(SurrogateAdapter):
    """Mesh time-stepping models (``model.family: mesh``) on trajectories: a candidate is a whole
    trajectory's geometry and parameters, drawn without simulating it.

    - fit: trains the configured model from scratch on the solved trajectories through the one
      trainer, with the model configuration's ``optim`` and ``train`` sections (``train.steps``,
      default :data:`FIT_STEPS`; ``data.batch_size``); the same seed every round, so a fit
      depends only on the trajectories.
    - features: the network's last hidden layer (the decoder's input), averaged over the nodes,
      for one step from the candidate's drawn first guess of the flow (its ``point_data``; for
      :mod:`solvers.cfd.cylinder`: the inflow profile carried through the channel) with its
      parameters (``field_data``) as the scalars the model is conditioned on; standardised
      with the training candidates' features. The training trajectories are embedded through
      their drawn candidates, so pool and training set are seen the same way.
    - kernel: Bayesian linear regression on those features (a last-layer kernel, the NTK of the
      output layer): prior ``phi_a . phi_b / d``, the posterior given the training candidates
      with noise variance :data:`KERNEL_NOISE` by default.
    - score: rollout RMSE on the test trajectories (``rmse_all`` first, then ``rmse_1``,
      ``rmse_50`` and persistence's), as ``sim eval`` computes it.
    """

    family = "mesh"
    min_samples = 1
    sample_kind = Trajectory
    FIT_STEPS = 500
    KERNEL_NOISE = 0.1

    def __init__(self, model: Any, options: Any, source: Any = None, sections: dict[str, Any] | None = None):
        super().__init__(model, options, source)
        import tempfile

        sections = sections or {}
        self.optim = dict(sections.get("optim") or {})
        self.train_args = {"steps": self.FIT_STEPS, **(sections.get("train") or {})}
        for key in ("out", "tensorboard"):
            self.train_args.pop(key, None)
        self.batch_size = int((sections.get("data") or {}).get("batch_size", 1))
        self._tmp = tempfile.TemporaryDirectory(prefix="sim_active_mesh_")
        self.work = Path(self._tmp.name)
        self.fits_ = 0

    def fit(self, samples: list[Trajectory], drawn: list[Mesh] | None = None) -> "MeshAdapter":
        import dataclasses

        from sim.families import train
        from sim.families.mesh import MeshSurrogate
        from sim.mesh import StoreWriter
        from sim.train import Config, load_model

        if drawn is None or len(drawn) != len(samples):
            raise SimError("the mesh adapter embeds the training trajectories through their drawn candidates: give "
                           "fit(samples, drawn) with one drawn candidate per sample")
        self.fits_ += 1
        data = self.work / f"train_{self.fits_}.h5"
        with StoreWriter(data) as w:
            for i, s in enumerate(samples):
                w.append(s, name=f"{i:06d}")
        run = self.work / f"run_{self.fits_}"
        cfg = Config.from_dict({"model": dataclasses.asdict(self.model),
                                "data": {"train": str(data), "batch_size": self.batch_size},
                                "optim": self.optim,
                                "train": {**self.train_args, "out": str(run), "tensorboard": False}}, self.source)
        summary = train(cfg, progress=False)
        simulator, _ = load_model(summary["checkpoint"])
        self.checkpoint_ = Path(summary["checkpoint"])
        self.surrogate_ = MeshSurrogate(simulator.eval(), self.checkpoint_)
        raw = self._embed(drawn)
        self.mean_ = raw.mean(0)
        self.std_ = np.maximum(raw.std(0), 1e-6 * max(float(np.abs(raw).max()), 1e-30))
        self.train_features_ = (raw - self.mean_) / self.std_
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "surrogate_"):
            raise SimError("the mesh adapter is not fitted yet; call fit(samples, drawn) first")

    def _embed(self, meshes: list[Mesh]) -> np.ndarray:
        """(P, latent): the decoder's input averaged over the nodes, one step from each mesh's state."""
        import torch

        sur = self.surrogate_
        decoder = getattr(sur.simulator.network, "decoder", None)
        if decoder is None:
            raise SimError(f"network {sur.network!r} has no decoder module to take last-layer features from")
        seen: list[np.ndarray] = []

        def grab(_module: Any, inputs: tuple) -> None:
            seen.append(inputs[0].detach().double().mean(0).cpu().numpy())

        hook = decoder.register_forward_pre_hook(grab)
        try:
            out = []
            for m in meshes:
                seen.clear()
                scalars = {k: float(np.asarray(m.field_data[k]).reshape(-1)[0]) for k in sur.scalars
                           if k in m.field_data}
                with torch.no_grad():
                    sur.predict(m, **scalars)
                out.append(seen[0])
        finally:
            hook.remove()
        return np.stack(out)

    def features(self, candidates: list[Mesh]) -> np.ndarray:
        self._check_fitted()
        return (self._embed(candidates) - self.mean_) / self.std_

    def kernel(self, features: np.ndarray, prior: bool = False) -> np.ndarray:
        self._check_fitted()
        d = features.shape[1]
        k = features @ features.T / d
        if not prior:
            t = self.train_features_
            ktt = t @ t.T / d + self.KERNEL_NOISE * np.eye(len(t))
            kct = features @ t.T / d
            k = k - kct @ np.linalg.solve(ktt, kct.T)
        return 0.5 * (k + k.T)

    def noise(self) -> float:
        return self.KERNEL_NOISE

    def score(self, test: list[Trajectory]) -> dict[str, float]:
        from sim.families import get_family
        from sim.mesh import StoreWriter

        self._check_fitted()
        if not test:
            raise SimError("the test set is empty")
        path = self.work / "test.h5"
        if not path.exists():
            with StoreWriter(path) as w:
                for i, s in enumerate(test):
                    w.append(s, name=f"{i:06d}")
        ev = get_family("mesh").evaluate(self.surrogate_.simulator, path, None)
        keys = ("rmse_all", "rmse_1", "rmse_50", "persistence_rmse_all", "persistence_rmse_50")
        return {k: float(ev.summary[k]) for k in keys if ev.summary.get(k) is not None}

    def save(self, path: Path) -> Path:
        import shutil

        self._check_fitted()
        target = Path(path).with_suffix(".pt")
        shutil.copyfile(self.checkpoint_, target)
        return target
