"""Shared helpers of the benchmark scripts: machine description, JSON output, tables."""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _commit() -> str:
    """The commit of the code this process runs, with ``+dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=ROOT, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=ROOT, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+dirty" if dirty else "")


COMMIT = _commit()  # read when the benchmark starts: the code measured, whatever is committed meanwhile


def machine() -> dict[str, Any]:
    import os

    import torch

    commit = COMMIT
    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "git_commit": commit}


def peak_mem_mb() -> float:
    """Peak resident memory of this process (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def report(name: str, results: dict[str, Any], json_path: str | None, seeds: list[int] | None = None,
           train_cpu_hours: float | None = None) -> None:
    """Print the results and write them as JSON with what was measured and where: ``commit``
    (the code), ``date``, ``machine``, the training ``seeds`` and ``train_cpu_hours``."""
    import datetime

    info = machine()
    results = {**results, **info, "benchmark": name, "commit": info["git_commit"],
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "seeds": seeds, "train_cpu_hours": train_cpu_hours}
    width = max(len(k) for k in results)
    print(f"\n{name}")
    for k, v in results.items():
        shown = f"{v:.6g}" if isinstance(v, float) else str(v)
        print(f"  {k:<{width}}  {shown}")
    if json_path:
        p = Path(json_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(results, indent=2))
        print(f"wrote {p}")
