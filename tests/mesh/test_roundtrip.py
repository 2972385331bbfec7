"""Round trips store <-> VTU/PVD <-> XDMF <-> pyvista <-> meshio keep everything exactly."""

from __future__ import annotations

import numpy as np
import pytest

import sim.mesh as sm
from sim.errors import FileFormatError, MeshError
from sim.mesh import Mesh, Trajectory
from tests.conftest import mixed_2d_mesh, mixed_3d_mesh, particle_trajectory, trajectory_2d


def _read_back(path) -> Mesh | Trajectory:
    obj = sm.read(path)
    if isinstance(obj, sm.Store):
        with obj:
            (name,) = obj.names()
            return obj.read(name)
    return obj


def _quadratic_mesh() -> Mesh:
    pts = np.array([[0, 0], [2, 0], [0, 2], [1, 0], [1, 1], [0, 1.0]])
    return Mesh(pts, {"triangle6": [[0, 1, 2, 3, 4, 5]]}, point_data={"u": np.arange(6.0)})


def _moving_mesh_trajectory() -> Trajectory:
    base = mixed_3d_mesh()
    steps = 3
    shift = np.arange(steps)[:, None, None] * np.array([0.1, 0.0, 0.0])
    return Trajectory(base, np.array([0.0, 0.5, 1.25]), positions=base.points[None] + shift,
                      point_fields={"d": np.ones((steps, base.num_points, 3))})


def _float32_particles() -> Trajectory:
    """Reference configuration in float64, positions stored in float32 (as the MPM solver does)."""
    t = particle_trajectory()
    return Trajectory(t.mesh, t.times, t.point_fields, positions=t.positions.astype(np.float32), dt=t.dt)


TRAJECTORIES = {
    "mixed2d": trajectory_2d,
    "particles": particle_trajectory,
    "particles_f32": _float32_particles,
    "moving3d": _moving_mesh_trajectory,
}


@pytest.mark.parametrize("kind", list(TRAJECTORIES))
@pytest.mark.parametrize("suffix", [".h5", ".pvd", ".xdmf"])
def test_trajectory_round_trip_is_exact(tmp_path, kind, suffix):
    traj = TRAJECTORIES[kind]()
    path = tmp_path / f"series{suffix}"
    sm.write(traj, path)
    back = _read_back(path)
    assert isinstance(back, Trajectory)
    assert back.equals(traj), f"{kind} through {suffix} changed"


@pytest.mark.parametrize("make", [mixed_2d_mesh, mixed_3d_mesh, _quadratic_mesh])
@pytest.mark.parametrize("suffix", [".h5", ".vtu", ".xdmf"])
def test_mesh_round_trip_is_exact(tmp_path, make, suffix):
    mesh = make()
    path = tmp_path / f"mesh{suffix}"
    sm.write(mesh, path)
    back = _read_back(path)
    if isinstance(back, Trajectory):  # XDMF holds a series; a mesh is its single step
        back = back.frame(0)
    assert back.equals(mesh)


def test_chain_store_pvd_xdmf_pyvista_store(tmp_path):
    traj = trajectory_2d()
    sm.write(traj, tmp_path / "a.h5")
    sm.write(_read_back(tmp_path / "a.h5"), tmp_path / "b.pvd")
    sm.write(_read_back(tmp_path / "b.pvd"), tmp_path / "c.xdmf")
    from_xdmf = _read_back(tmp_path / "c.xdmf")
    frames = [Mesh.from_pyvista(from_xdmf.frame(t).to_pyvista()) for t in range(traj.num_steps)]
    assert all(frames[t].equals(traj.frame(t)) for t in range(traj.num_steps))
    sm.write(from_xdmf, tmp_path / "d.h5")
    assert _read_back(tmp_path / "d.h5").equals(traj)


@pytest.mark.parametrize("make", [mixed_2d_mesh, mixed_3d_mesh])
def test_pyvista_and_meshio_conversions_are_exact(make):
    mesh = make()
    assert Mesh.from_pyvista(mesh.to_pyvista()).equals(mesh)
    back = Mesh.from_meshio(mesh.to_meshio())
    assert back.equals(mesh)


def test_pvd_is_readable_by_vtk_with_times_and_arrays(tmp_path):
    import pyvista as pv
    from vtkmodules.vtkIOXML import vtkXMLUnstructuredGridReader

    traj = trajectory_2d(steps=4)
    sm.write(traj, tmp_path / "flow.pvd")
    reader = pv.PVDReader(tmp_path / "flow.pvd")
    assert reader.time_values == pytest.approx(traj.times.tolist())
    for i, t in enumerate(reader.time_values):
        reader.set_active_time_value(t)
        grid = reader.read()[0]
        assert grid.n_cells == 3
        np.testing.assert_array_equal(grid.point_data["pressure"], traj.point_fields["pressure"][i])
    # and VTK's own XML reader on a step file
    step = sorted((tmp_path / "flow").glob("*.vtu"))[2]
    r = vtkXMLUnstructuredGridReader()
    r.SetFileName(str(step))
    r.Update()
    out = r.GetOutput()
    names = {out.GetPointData().GetArrayName(i) for i in range(out.GetPointData().GetNumberOfArrays())}
    assert {"velocity", "pressure", "temperature", "node_type"} <= names
    assert out.GetNumberOfCells() == 3


def test_xdmf_is_readable_by_vtk_xdmf_reader(tmp_path):
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline as Pipeline
    from vtkmodules.vtkIOXdmf2 import vtkXdmfReader

    traj = trajectory_2d(steps=4)
    sm.write(traj, tmp_path / "flow.xdmf")
    r = vtkXdmfReader()
    r.SetFileName(str(tmp_path / "flow.xdmf"))
    r.UpdateInformation()
    times = r.GetOutputInformation(0).Get(Pipeline.TIME_STEPS())
    assert list(times) == pytest.approx(traj.times.tolist())
    r.UpdateTimeStep(times[2])
    out = r.GetOutputDataObject(0)
    assert out.GetNumberOfCells() == 3 and out.GetNumberOfPoints() == 6
    np.testing.assert_allclose(vtk_to_numpy(out.GetPointData().GetArray("pressure")), traj.point_fields["pressure"][2])


def test_series_writer_streams_and_cleans_up_on_failure(tmp_path):
    traj = trajectory_2d(steps=3)
    layout = sm.SeriesLayout.of(traj)
    with pytest.raises(RuntimeError):
        with sm.PVDWriter(tmp_path / "run.pvd", layout) as w:
            w.write(0.0, {"velocity": traj.point_fields["velocity"][0], "pressure": traj.point_fields["pressure"][0]},
                    {"vorticity": traj.cell_fields["vorticity"][0]})
            raise RuntimeError("the model diverged")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with sm.XDMFWriter(tmp_path / "run.xdmf", layout) as w:
            raise RuntimeError("the model diverged")
    assert list(tmp_path.iterdir()) == []


def test_series_writer_refuses_a_step_that_does_not_fit(tmp_path):
    traj = trajectory_2d(steps=2)
    with sm.PVDWriter(tmp_path / "run.pvd", sm.SeriesLayout.of(traj)) as w:
        with pytest.raises(FileFormatError, match="carries fields"):
            w.write(0.0, {"velocity": traj.point_fields["velocity"][0]})
        with pytest.raises(MeshError, match=r"point field 'pressure' has shape \(5,\)"):
            w.write(0.0, {"velocity": traj.point_fields["velocity"][0], "pressure": np.zeros(5)},
                    {"vorticity": np.zeros(3)})
