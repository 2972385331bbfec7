"""`sim demo` writes a series that VTK's readers open with every step and array."""

from __future__ import annotations

import numpy as np
import pytest

import sim.mesh as sm
from sim.cli import main
from sim.mesh import NodeType


def test_demo_writes_a_pvd_series_vtk_opens(tmp_path):
    import pyvista as pv
    from vtkmodules.vtkIOXML import vtkXMLUnstructuredGridReader

    assert main(["demo", "--out", str(tmp_path), "--steps", "6"]) == 0
    reader = pv.PVDReader(tmp_path / "demo.pvd")
    assert len(reader.time_values) == 6
    steps = sorted((tmp_path / "demo").glob("*.vtu"))
    assert len(steps) == 6
    r = vtkXMLUnstructuredGridReader()
    r.SetFileName(str(steps[-1]))
    r.Update()
    pd = r.GetOutput().GetPointData()
    assert {pd.GetArrayName(i) for i in range(pd.GetNumberOfArrays())} >= {"concentration", "velocity", "node_type"}
    store = sm.read(tmp_path / "demo.h5")
    with store:
        traj = store.read("channel")
    assert traj.num_steps == 6 and 1500 <= traj.mesh.num_points <= 2500
    nt = traj.mesh.node_type
    assert {NodeType.INFLOW, NodeType.OUTFLOW, NodeType.WALL, NodeType.OBSTACLE} <= set(np.unique(nt).tolist())
    assert sm.read(tmp_path / "demo.xdmf").equals(traj)
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_demo_mesh_is_valid_and_counter_clockwise():
    from solvers.cfd.geometry import channel_mesh
    from sim.mesh.validate import signed_measures

    mesh = channel_mesh().validate()
    area, _, oriented = signed_measures(mesh.points, "triangle", mesh.cells["triangle"])
    assert oriented and (area > 0).all()
    assert area.sum() == pytest.approx(2.2 * 0.41 - np.pi * 0.05**2, rel=2e-3)  # polygonal circle
