"""The Python API: ``sim.load(path) -> Surrogate``, then ``predict`` and ``rollout``.

Every model family answers the same two questions on the caller's own data:

- ``Surrogate.rollout(initial, steps, boundary=None)``: a time series from an initial
  state (time-stepping families), returned as a :class:`~sim.mesh.Trajectory` and
  optionally streamed to a ParaView series while it runs;
- ``Surrogate.predict(query, **scalars)``: fields on the caller's mesh as a pyvista
  object (the next step for time-stepping models; the steady fields with ``<field>_std``
  for MMGP and for ensembles).

``load`` needs nothing but the file: checkpoints carry their model name, constructor
arguments, normalisers and format version (``sim.train.checkpoint``); MMGP files carry their
fitted state as arrays and JSON; an ensemble is a small JSON manifest naming member
checkpoints. No file executes code when loaded. Each family (:mod:`sim.families`) supplies
its Surrogate class; the file says which family reads it.

Surrogates are safe to query from several threads: each query builds its own graph and
state, and the shared network runs under a per-surrogate lock.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sim.families import Surrogate, load, load_model_file
from sim.families.mesh import EnsembleSurrogate, MeshSurrogate
from sim.families.mmgp import MMGPSurrogate
from sim.families.particle import ParticleSurrogate
from sim.families.prose import ProseSurrogate
from sim.families.steady import SteadySurrogate

__all__ = ["EnsembleSurrogate", "MMGPSurrogate", "MeshSurrogate", "ParticleSurrogate", "ProseSurrogate",
           "SteadySurrogate", "Surrogate", "evaluate", "load"]


def evaluate(model: str | os.PathLike, data: str | os.PathLike, entries: list[str] | None = None,
             steps: int | None = None, out: str | os.PathLike | None = None, plot: bool = False) -> dict[str, Any]:
    """What ``sim eval`` reports, as a dict: the model family's metrics on the entries of a store
    (all by default), their means and, per entry, ``entries[name]``. Time-stepping families roll
    out from each entry's start with the true boundary values (rollout RMSE against persistence;
    for flows past an obstacle the shedding frequency, mean-flow and fluctuation errors, and an
    ensemble's spread-error rank correlation). ``out``: also write the series (and with ``plot``
    the pictures) there."""
    family, m, _ = load_model_file(model)
    family.require("eval")
    return family.evaluate(m, Path(data), entries, steps, None if out is None else Path(out), plot=plot).to_dict()
