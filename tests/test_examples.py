"""Every example runs in its quick mode and writes the files it promises (ParaView series, pictures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import sim.mesh as sm

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, out: Path) -> str:
    res = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--quick", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_cylinder_flow_example(tmp_path):
    run_example("cylinder_flow.py", tmp_path)
    for model in ("meshgraphnet", "graph_transformer"):
        series = sm.read(tmp_path / f"{model}.pvd")
        assert series.num_steps == 12 and series.point_fields["velocity"].shape[-1] == 2
        assert (tmp_path / f"{model}_step.png").stat().st_size > 10_000
    assert (tmp_path / "error.png").stat().st_size > 10_000


def test_elasticity_mmgp_example(tmp_path):
    out = run_example("elasticity_mmgp.py", tmp_path)
    for case in ("in_distribution", "out_of_distribution_wedge"):
        mesh = sm.read(tmp_path / f"{case}.vtu")
        assert {"u", "u_std", "von_mises", "von_mises_std", "von_mises_truth"} <= set(mesh.point_data)
        assert (tmp_path / f"{case}.png").stat().st_size > 10_000
    assert "RRMSE" in out


def test_mpm_giorom_example(tmp_path):
    out = run_example("mpm_giorom.py", tmp_path)
    particles, dense = sm.read(tmp_path / "particles.pvd"), sm.read(tmp_path / "dense_queries.pvd")
    assert dense.mesh.num_points == 4 * particles.mesh.num_points and dense.num_steps == particles.num_steps
    assert dense.positions is not None and (tmp_path / "frames.png").stat().st_size > 10_000
    assert "query points" in out


def test_ode_prose_example(tmp_path):
    run_example("ode_prose.py", tmp_path)
    text = (tmp_path / "equations.txt").read_text()
    assert {"lorenz", "thomas", "rossler"} <= {line.split()[0] for line in text.splitlines() if "relative" in line}
    assert len(list(tmp_path.glob("*_0*.png"))) == 3


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_every_example_has_a_quick_mode_and_a_docstring(name):
    text = (ROOT / "examples" / name).read_text()
    assert text.startswith('"""') and "--quick" in text
