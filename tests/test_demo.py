"""`sim demo` runs the whole loop (solver data, training, rollout) and writes what it promises."""

from __future__ import annotations

import numpy as np

import sim.mesh as sm
from sim.cli import main


def test_quick_demo_writes_a_pvd_series_vtk_opens(tmp_path):
    import pyvista as pv
    from vtkmodules.vtkIOXML import vtkXMLUnstructuredGridReader

    assert main(["demo", "--out", str(tmp_path), "--quick", "--train-seconds", "20"]) == 0
    pvd = tmp_path / "rollout" / "000000.pvd"
    reader = pv.PVDReader(pvd)
    assert len(reader.time_values) == 12  # the whole trajectory: initial state + 11 predicted steps
    steps = sorted((tmp_path / "rollout" / "000000").glob("*.vtu"))
    r = vtkXMLUnstructuredGridReader()
    r.SetFileName(str(steps[-1]))
    r.Update()
    pd = r.GetOutput().GetPointData()
    names = {pd.GetArrayName(i) for i in range(pd.GetNumberOfArrays())}
    assert {"velocity", "velocity_truth", "velocity_error", "node_type"} <= names
    series = sm.read(pvd)
    np.testing.assert_allclose(series.point_fields["velocity_error"],
                               series.point_fields["velocity"] - series.point_fields["velocity_truth"], atol=1e-6)
    for png in ("000000_error.png", "000000_step.png", "000000_probe.png"):
        assert (tmp_path / "rollout" / png).stat().st_size > 10_000
    summary = (tmp_path / "summary.txt").read_text()
    assert "all-rollout RMSE" in summary and "shedding frequency" in summary
    # the zoo's pretrained model on a trajectory generated for the demo, at the zoo model's resolution
    zoo = sm.read(tmp_path / "zoo_rollout" / "fresh.pvd")
    # 12 stored steps; the model starts from two frames (history 2): its start and 10 predicted steps
    assert zoo.point_fields["velocity"].shape[:2] == (11, zoo.mesh.num_points) and zoo.mesh.num_points > 1000
    assert (tmp_path / "zoo_rollout" / "fresh_error.png").stat().st_size > 10_000
    lines = summary.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("zoo:cylinder_flow RMSE"))
    model, persistence = ([float(v) for v in lines[at + k][34:].split()] for k in (0, 1))
    assert lines[at + 1].strip().startswith("persistence RMSE")
    assert len(model) == len(persistence) == 3  # steps 1, 10 and all 10: a quick demo does not reach step 50
    assert all(m < p for m, p in zip(model, persistence))  # a pretrained model, 10 steps into its rollout
