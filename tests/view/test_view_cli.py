"""`sim rollout --view` serves what it wrote; `sim view` warns before it serves beyond this machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("trame", reason="the viewer's packages are missing: pip install '.[view]'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(args: list[str], log: Path, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Run a sim command that ends by serving the viewer; return it once the page answers."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["OMP_NUM_THREADS"] = "1"
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    port = args[args.index("--port") + 1]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            out.close()
            pytest.fail(f"sim {args[0]} exited ({proc.returncode}): {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                return proc, r.read().decode("utf-8", "replace")
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"sim {args[0]} did not serve in {timeout:.0f} s: {log.read_text()}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_rollout_view_serves_the_series_it_wrote(trained, tmp_path):
    ckpt, data = trained["mesh"]
    out = tmp_path / "out"
    proc, page = _serve(["rollout", str(ckpt), str(data), "--out", str(out), "--steps", "3", "--view",
                         "--port", str(_free_port())], tmp_path / "log.txt")
    try:
        assert "<html" in page.lower()
        log = (tmp_path / "log.txt").read_text()
        series = sorted(out.glob("*.pvd"))
        assert series and f"serving {series[0]}" in log
    finally:
        _stop(proc)


def test_serving_beyond_this_machine_warns(tmp_path):
    from sim.mesh import write_pvd
    from tests.view.conftest import rollout

    series = write_pvd(rollout(3), tmp_path / "r.pvd")
    proc, _ = _serve(["view", str(series), "--host", "0.0.0.0", "--port", str(_free_port())], tmp_path / "log.txt")
    _stop(proc)
    log = (tmp_path / "log.txt").read_text()
    assert "warning: serving on 0.0.0.0" in log and "no login" in log
    proc, _ = _serve(["view", str(series), "--port", str(_free_port())], tmp_path / "log2.txt")
    _stop(proc)
    assert "warning" not in (tmp_path / "log2.txt").read_text()
