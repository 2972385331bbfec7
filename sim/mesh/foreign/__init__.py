"""Readers of other projects' public dataset formats, streamed into the sim store.

- ``deepmind``: DeepMind's MeshGraphNets datasets, ``<split>.tfrecord`` + ``meta.json``
  (:mod:`sim.mesh.foreign.deepmind`);
- ``lagrangebench``: LagrangeBench's particle datasets, ``<split>.h5`` + ``metadata.json``
  (:mod:`sim.mesh.foreign.lagrangebench`);
- ``plaid``: PLAID datasets (``pyplaid``'s per-sample CGNS layout), a folder of steady samples
  (:mod:`sim.mesh.foreign.plaid`); :func:`export` writes steady samples back out as one.

``sim convert IN OUT.h5`` finds the format from the file (and ``--from`` names it);
:func:`convert` writes the store one trajectory at a time through
:class:`~sim.mesh.StoreWriter`, so a multi-GB file never sits in memory and a failed
conversion leaves no output. In Python, :func:`open_dataset` yields ``(name, Trajectory)``
one at a time::

    from sim.mesh.foreign import open_dataset
    with open_dataset("cylinder_flow/train.tfrecord") as data:
        for name, traj in data:
            ...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sim.errors import FileFormatError

FORMATS = {"deepmind": "DeepMind MeshGraphNets dataset", "lagrangebench": "LagrangeBench dataset",
           "plaid": "PLAID dataset"}
#: Formats sim writes steady samples out to (``sim convert STORE.h5 OUT --to FORMAT``).
TARGETS = {"plaid": "PLAID dataset"}


def detect(path: str | os.PathLike) -> str | None:
    """``"deepmind"``, ``"lagrangebench"``, ``"plaid"`` (a folder) or None, from the file itself
    (cheap: a header, or a folder's layout)."""
    path = Path(path)
    if path.is_dir():
        from sim.mesh.foreign.plaid import looks_like_plaid

        return "plaid" if looks_like_plaid(path) else None
    if not path.is_file():
        return None
    suffix = path.suffix.lower()
    if suffix in (".tfrecord", ".tfrecords"):
        return "deepmind"
    if suffix in (".h5", ".hdf5"):
        from sim.mesh.foreign.lagrangebench import looks_like_lagrangebench

        return "lagrangebench" if looks_like_lagrangebench(path) else None
    from sim.mesh.foreign.tfrecord import looks_like_tfrecord

    return "deepmind" if looks_like_tfrecord(path) else None


class _Dataset:
    """A foreign dataset opened for streaming: iterate for ``(name, Trajectory)``."""

    def __init__(self, reader: Any):
        self.reader = reader
        self.format: str = reader.format
        self.path: Path = reader.path
        self.metadata: dict[str, Any] = reader.metadata

    def __iter__(self):
        return iter(self.reader)

    def close(self) -> None:
        close = getattr(self.reader, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "_Dataset":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dataset(path: str | os.PathLike, fmt: str | None = None) -> _Dataset:
    """Open ``path`` as the foreign format ``fmt`` (found from the file when None)."""
    path = Path(path)
    if not path.exists():
        raise FileFormatError("no such file", path)
    fmt = fmt or detect(path)
    if fmt == "deepmind":
        from sim.mesh.foreign.deepmind import DeepMindDataset

        return _Dataset(DeepMindDataset(path))
    if fmt == "lagrangebench":
        from sim.mesh.foreign.lagrangebench import LagrangeBenchDataset

        return _Dataset(LagrangeBenchDataset(path))
    if fmt == "plaid":
        from sim.mesh.foreign.plaid import PlaidDataset

        return _Dataset(PlaidDataset(path))
    if fmt is None:
        raise FileFormatError(f"is not a dataset of another project sim reads ({', '.join(FORMATS.values())})", path)
    raise FileFormatError(f"unknown dataset format {fmt!r} (known: {', '.join(FORMATS)})", path)


def convert(src: str | os.PathLike, dst: str | os.PathLike, fmt: str | None = None,
            progress: bool = False) -> int:
    """Write the foreign dataset ``src`` into the new store ``dst``, one trajectory at a time;
    returns the number of entries. Nothing appears under ``dst`` unless every one converts."""
    from tqdm import tqdm

    from sim.mesh.store import StoreWriter

    dst = Path(dst)
    if dst.suffix.lower() not in (".h5", ".hdf5"):
        raise FileFormatError(f"a dataset of another project converts into a sim store: give an .h5 output (then "
                              f"`sim convert {dst.stem}.h5 {dst.name} --entry NAME` for one trajectory)", dst)
    with open_dataset(src, fmt) as data:
        count = 0
        with StoreWriter(dst, metadata=data.metadata) as out:
            total = len(data.reader) if hasattr(data.reader, "__len__") else None
            bar = tqdm(data, total=total, desc=Path(src).name, unit="trajectory",
                       disable=None if progress else True)
            for name, obj in bar:
                out.append(obj, name=name)
                count += 1
    return count


def detect_target(path: str | os.PathLike) -> str | None:
    """The format an output path asks for by its name (a folder ``NAME.plaid``), or None."""
    from sim.mesh.foreign.plaid import PLAID_SUFFIX

    return "plaid" if Path(path).suffix.lower() == PLAID_SUFFIX else None


def export(src: str | os.PathLike, dst: str | os.PathLike, fmt: str, progress: bool = False) -> int:
    """Write the steady samples of the store ``src`` as a dataset of format ``fmt`` at ``dst``;
    returns the number of samples. Nothing appears under ``dst`` unless every one is written."""
    if fmt == "plaid":
        from sim.mesh.foreign.plaid import write_plaid

        return write_plaid(src, dst, progress)
    raise FileFormatError(f"unknown output format {fmt!r} (known: {', '.join(TARGETS)})", dst)
