"""Pretrained models shipped with the package: ``zoo:<name>`` wherever a model file is taken
(``sim.load("zoo:mpm_water_2d")``, ``sim eval zoo:cylinder_flow DATA.h5``), listed by
``sim zoo list``. Nothing is downloaded: every entry is a file inside the installed package.

Each entry is a folder ``sim/zoo/models/<name>/`` holding the model file, ``entry.yaml`` (what
``sim zoo list`` shows: family, the recipe, size and seed of its data, training CPU-hours, the
measured metrics and the command that reproduces it) and ``card.md`` (the model card). An
entry is named after the recipe it was trained on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.errors import SimError

ZOO_DIR = Path(__file__).resolve().parent / "models"
PREFIX = "zoo:"
REQUIRED = ("name", "family", "model", "recipe", "size", "data_seed", "train_cpu_hours", "metrics", "command")


@dataclass
class ZooEntry:
    """One pretrained model of the zoo (see the module)."""

    name: str
    family: str
    file: Path
    recipe: str
    size: str
    data_seed: int
    train_cpu_hours: float
    metrics: dict[str, Any]
    command: str
    description: str = ""
    baseline: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def card(self) -> Path:
        return self.file.parent / "card.md"

    def row(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "recipe": f"{self.recipe} ({self.size}, seed "
                f"{self.data_seed})", "train_cpu_hours": self.train_cpu_hours, "metrics": self.metrics,
                "file": str(self.file), "size_mb": self.file.stat().st_size / 1e6}


def _read(folder: Path) -> ZooEntry:
    import yaml

    path = folder / "entry.yaml"
    try:
        meta = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SimError(f"the zoo entry is damaged ({exc})", path) from None
    missing = [k for k in REQUIRED if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise SimError(f"the zoo entry lacks {', '.join(missing)}", path)
    file = folder / str(meta["model"])
    if not file.exists():
        raise SimError(f"the zoo entry's model file {meta['model']} is missing (an incomplete install?)", path)
    known = set(REQUIRED) | {"description", "baseline"}
    if not isinstance(meta["metrics"], dict):
        raise SimError(f"the zoo entry's metrics must be a mapping of name to value, got {meta['metrics']!r}", path)
    try:
        data_seed, hours = int(meta["data_seed"]), float(meta["train_cpu_hours"])
    except (TypeError, ValueError):
        raise SimError(f"the zoo entry's data_seed ({meta['data_seed']!r}) and train_cpu_hours "
                       f"({meta['train_cpu_hours']!r}) must be numbers", path) from None
    return ZooEntry(name=str(meta["name"]), family=str(meta["family"]), file=file, recipe=str(meta["recipe"]),
                    size=str(meta["size"]), data_seed=data_seed, train_cpu_hours=hours, metrics=dict(meta["metrics"]),
                    command=str(meta["command"]), description=str(meta.get("description", "")),
                    baseline=str(meta.get("baseline", "")), extra={k: v for k, v in meta.items() if k not in known})


def entries() -> list[ZooEntry]:
    """Every entry of the zoo, by name (hidden folders are not entries: an entry being built is
    staged in ``.<name>.part-...`` beside its final folder)."""
    if not ZOO_DIR.is_dir():
        return []
    return [_read(d) for d in sorted(ZOO_DIR.iterdir()) if not d.name.startswith(".") and (d / "entry.yaml").exists()]


def entry(name: str) -> ZooEntry:
    """The entry ``name`` (an error listing the others when there is none)."""
    folder = ZOO_DIR / name
    if not name or "/" in name or "\\" in name or name.startswith(".") or not (folder / "entry.yaml").exists():
        names = ", ".join(e.name for e in entries()) or "none"
        raise SimError(f"no zoo model {name!r} (the zoo has: {names}; sim zoo list)")
    return _read(folder)


def is_zoo(path: str | os.PathLike | None) -> bool:
    return isinstance(path, str) and path.startswith(PREFIX)


def resolve(path: str | os.PathLike) -> Path:
    """The file of ``zoo:<name>``; any other path as it is."""
    if is_zoo(path):
        return entry(str(path)[len(PREFIX):]).file
    return Path(path)
