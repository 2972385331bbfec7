"""Checkpoints that describe themselves and cannot execute code when loaded.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values
(dicts, lists, strings, numbers), read back with ``torch.load(weights_only=True)``:

- ``format`` = ``"sim.checkpoint"``, ``version`` (refused when unknown);
- ``model``: the registered model name and its constructor arguments;
- ``state_dict``: weights *and* normaliser statistics (buffers);
- ``train``: the training configuration, step, optimiser / scheduler state and RNG states
  (absent from an inference-only export).

Writes are atomic.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sim.errors import FileFormatError
from sim.mesh.atomic import atomic_path
from sim.models.registry import build_model

FORMAT = "sim.checkpoint"
VERSION = 1
ENSEMBLE_FORMAT = "sim.ensemble"
ENSEMBLE_VERSION = 1


@contextlib.contextmanager
def _quiet_complex_half() -> Iterator[None]:
    """torch flags complex32 (half-stored spectral weights) as experimental; casting to and from it
    is all a checkpoint does with it, which works."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ComplexHalf support is experimental.*")
        yield


def save_checkpoint(path: str | os.PathLike, model: nn.Module, train_state: dict[str, Any] | None = None,
                    half: bool = False, compress: bool = False) -> Path:
    """Write the model (name, constructor arguments, weights) and ``train_state``. ``half``: store
    float32 tensors as float16 and complex64 ones (spectral weights) as complex32 (half the file;
    loading casts them back to the model's precision, so a shipped model is smaller at a rounding
    of about 1e-3 relative; float64 statistics such as the normalisers' stay exact). ``compress``:
    deflate the archive's records (lossless; ``torch.load`` inflates them, so reading is unchanged
    and a little slower); trained half-precision weights shrink by about a tenth."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        narrow = {torch.float32: torch.float16, torch.complex64: torch.complex32}
        with _quiet_complex_half():
            state = {k: v.to(narrow[v.dtype]) if v.dtype in narrow else v for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"name": model.registered_name, "config": model.config},
        "state_dict": state,
    }
    if train_state is not None:
        payload["train"] = train_state
    with atomic_path(path) as tmp:
        if compress:
            _save_deflated(payload, tmp)
        else:
            torch.save(payload, tmp)
    return Path(path)


def _save_deflated(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save``'s archive with every record deflated (the same records, names and order)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    buf.seek(0)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info), compress_type=zipfile.ZIP_DEFLATED)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileFormatError("no such checkpoint", path)
    try:
        with _quiet_complex_half():  # rebuilding a complex32 tensor warns too
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated files, pickles of objects, foreign formats
        raise FileFormatError(f"not a readable sim checkpoint ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]})", path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FileFormatError("not a sim checkpoint (no 'format': 'sim.checkpoint')", path)
    if payload.get("version") != VERSION:
        raise FileFormatError(f"checkpoint version {payload.get('version')} is not supported "
                              f"(this sim reads version {VERSION})", path)
    return payload


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from a checkpoint alone; returns (model in eval mode, payload)."""
    payload = read_checkpoint(path)
    model = build_model(payload["model"]["name"], **payload["model"]["config"])
    with _quiet_complex_half():
        missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise FileFormatError(f"weights do not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})",
                              path)
    model.eval()
    return model, payload


def save_ensemble(path: str | os.PathLike, members: list[str | os.PathLike]) -> Path:
    """Write a deep-ensemble manifest: JSON naming member checkpoints (relative to the manifest)."""
    import json

    path = Path(path)
    rel = [os.path.relpath(Path(m).resolve(), path.resolve().parent) for m in members]
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps({"format": ENSEMBLE_FORMAT, "version": ENSEMBLE_VERSION, "members": rel},
                                        indent=2))
    return path


def read_ensemble(path: str | os.PathLike) -> list[Path]:
    """Member checkpoint paths of an ensemble manifest (checked, not loaded)."""
    import json

    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"not a readable ensemble manifest ({exc})", path) from None
    if not isinstance(meta, dict) or meta.get("format") != ENSEMBLE_FORMAT:
        raise FileFormatError(f"not an ensemble manifest (no 'format': '{ENSEMBLE_FORMAT}')", path)
    if meta.get("version") != ENSEMBLE_VERSION:
        raise FileFormatError(f"ensemble manifest version {meta.get('version')} is not supported", path)
    members = meta.get("members") or []
    if len(members) < 2:
        raise FileFormatError("an ensemble needs at least two members", path)
    return [path.parent / m for m in members]
