"""A small rollout series (prediction, truth and error of a velocity, and a pressure), and
running a `sim` command that ends by serving the viewer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sim.mesh import Trajectory
from tests.channel import channel


def rollout(steps: int = 12) -> Trajectory:
    """A travelling wave (the truth) and a prediction whose error grows linearly with the step."""
    mesh = channel()
    p = mesh.points
    truth = np.stack([np.stack([np.sin(2 * p[:, 0] - 0.3 * k), np.cos(3 * p[:, 1] + 0.2 * k)], 1)
                      for k in range(steps)])
    pred = truth + 0.05 * np.arange(steps)[:, None, None] * np.sin(p[:, :1])[None]
    return Trajectory(mesh, np.arange(steps) * 0.1, {"velocity": pred, "velocity_truth": truth,
                                                     "velocity_error": pred - truth, "pressure": 2 * truth[..., :1]})


@pytest.fixture
def traj() -> Trajectory:
    return rollout()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(args: list[str], log: Path, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Run a sim command that ends by serving the viewer (``--port`` among ``args``), with no
    display; return the process once the page answers, and the page."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["OMP_NUM_THREADS"] = "1"
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    out.close()  # the child holds its own copy
    port = args[args.index("--port") + 1]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sim {args[0]} exited ({proc.returncode}): {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                return proc, r.read().decode("utf-8", "replace")
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"sim {args[0]} did not serve in {timeout:.0f} s: {log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
