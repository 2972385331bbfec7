"""`sim rollout --view` serves what it wrote; `sim view` warns before it serves beyond this machine."""

from __future__ import annotations

import pytest

from tests.view.conftest import free_port as _free_port
from tests.view.conftest import serve as _serve
from tests.view.conftest import stop as _stop

pytest.importorskip("trame", reason="the viewer's packages are missing: pip install '.[view]'")


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
