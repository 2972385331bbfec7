"""One loader for every saved model: a checkpoint (``sim.checkpoint``), an MMGP file (``.npz``
holding ``sim.mmgp``), an ensemble manifest (JSON, ``sim.ensemble``). The file says what it
is; the family that reads it is a registry lookup (by registered model name or by format)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import FileFormatError
from sim.families.base import Family, Surrogate, family_for_format, family_of


def _format_of(path: Path) -> str | None:
    """The ``format`` a JSON or ``.npz`` model file declares (None: anything else, e.g. a
    torch checkpoint, which declares its own inside)."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.lstrip().startswith(b"{"):
        try:
            meta = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FileFormatError(f"not a readable model manifest ({exc})", path) from None
        return str(meta.get("format")) if isinstance(meta, dict) else None
    if head.startswith(b"PK") and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if "meta.npy" in names:  # numpy's .npz: arrays and a JSON 'meta' (no pickles)
                try:
                    meta = json.loads(bytes(np.load(path, allow_pickle=False)["meta"]).decode())
                except Exception as exc:
                    raise FileFormatError(f"not a readable model file ({type(exc).__name__}: {exc})", path) from None
                return str(meta.get("format"))
    return None


def load_model_file(path: str | os.PathLike) -> tuple[Family, Any, dict[str, Any]]:
    """(family, model, checkpoint payload or {}) of any saved model (or ``zoo:<name>``, a model of
    the zoo shipped with the package); nothing executes code."""
    from sim.zoo import resolve

    path = resolve(path)
    if not path.exists():
        raise FileFormatError("no such model file", path)
    if path.is_dir():
        raise FileFormatError("is a folder; give the model file (e.g. its checkpoint.pt)", path)
    fmt = _format_of(path)
    if fmt is not None:
        family = family_for_format(fmt, path)
        return family, family.load(path), {}
    from sim.train.checkpoint import load_model

    model, payload = load_model(path)
    model.train_config = payload.get("train", {}).get("config")  # what it was trained with (None: an export)
    try:
        return family_of(model), model, payload
    except Exception:
        raise FileFormatError(f"no model family serves model {payload['model']['name']!r}", path) from None


def load(path: str | os.PathLike) -> Surrogate:
    """Load any saved model as a :class:`Surrogate` (checkpoint, MMGP file or ensemble manifest)."""
    family, model, payload = load_model_file(path)
    return family.surrogate(model, payload, Path(path))
