"""A generator that announces its worker's pid and then works for a long time (for killing its parent)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sim.mesh import Trajectory


def generate(params: dict, seed: int) -> Trajectory:
    (Path(params["pids"]) / str(os.getpid())).touch()
    time.sleep(float(params["seconds"]))
    raise RuntimeError("the slow generator outlived its test")
