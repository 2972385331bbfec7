"""CPU threads: how many a process may use, and setting torch's and the BLAS libraries' counts.

torch sizes its thread pool from the machine's cores, not from what this process may use: in a
container limited to 2 CPUs of a 64-core host, or beside another job on a 2-core machine, its
default oversubscribes the cores (steps ten times slower were measured). ``sim`` therefore sets
the count itself: the CPUs this process may run on (its affinity mask), capped by a cgroup CPU
quota when one is set, or what ``--threads`` says.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cgroup_quota(root: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by a cgroup quota (v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``), None when there is none."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else float(quota) / float(period)
    except (OSError, ValueError):
        pass
    try:
        quota = float((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = float((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus(cgroup_root: str | os.PathLike = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup quota (at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    quota = cgroup_quota(cgroup_root)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def set_threads(threads: int | None = None) -> int:
    """Use ``threads`` CPU threads (default: an OMP_NUM_THREADS the user set, else
    :func:`available_cpus`) in torch and the BLAS libraries; returns the count. Environment
    variables reach libraries loaded later and child processes; a loaded torch is set directly."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else available_cpus()
    for var in ENV_VARS:
        os.environ[var] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    return threads
