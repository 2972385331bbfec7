"""The `sim` command: conversions of foreign files, info, and one-line errors with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import sim.mesh as sm
from sim.cli import main
from tests.conftest import trajectory_2d
from tests.gmsh_shapes import plate_with_hole


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run the real command in a subprocess (what a user sees: stdout, stderr, exit code)."""
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, timeout=600)


def _gmsh_msh(path):
    """A mesh written by gmsh itself: a square with a hole, physical groups for the boundary."""
    with plate_with_hole(1.0, 1.0, 0.5, 0.5, 0.2) as gmsh:
        curves = [c for _, c in gmsh.model.getEntities(1)]
        gmsh.model.addPhysicalGroup(2, [s for _, s in gmsh.model.getEntities(2)], name="domain")
        gmsh.model.addPhysicalGroup(1, curves, name="boundary")
        gmsh.option.setNumber("Mesh.MeshSizeMax", 0.1)
        gmsh.model.mesh.generate(2)
        gmsh.write(str(path))


def test_convert_gmsh_msh_keeps_cells_and_data(tmp_path):
    import meshio

    msh = tmp_path / "plate.msh"
    _gmsh_msh(msh)
    ref = meshio.read(msh)
    res = run_cli("convert", str(msh), str(tmp_path / "plate.vtu"))
    assert res.returncode == 0, res.stderr
    out = sm.read(tmp_path / "plate.vtu")
    n_tri = sum(len(b.data) for b in ref.cells if b.type == "triangle")
    n_line = sum(len(b.data) for b in ref.cells if b.type == "line")
    assert len(out.cells["triangle"]) == n_tri > 50
    assert len(out.cells["line"]) == n_line > 10
    # gmsh physical tags and the named sets survive as cell data
    assert "gmsh:physical" in out.cell_data and "set:boundary" in out.cell_data
    assert int(out.cell_data["set:boundary"].sum()) == n_line
    # a planar gmsh mesh (z = 0 everywhere) is taken as 2D, with the same x, y
    assert not ref.points[:, 2].any() and out.dim == 2
    np.testing.assert_array_equal(out.points, ref.points[:, :2])


def test_convert_pyvista_written_vtu_to_store_and_back(tmp_path):
    import pyvista as pv

    grid = pv.ImageData(dimensions=(4, 3, 2)).cast_to_unstructured_grid()  # voxels
    grid.point_data["T"] = np.arange(grid.n_points, dtype=np.float64)
    grid.cell_data["k"] = np.arange(grid.n_cells, dtype=np.int32)
    grid.save(tmp_path / "foreign.vtu")
    assert run_cli("convert", str(tmp_path / "foreign.vtu"), str(tmp_path / "s.h5")).returncode == 0
    assert run_cli("convert", str(tmp_path / "s.h5"), str(tmp_path / "back.vtu")).returncode == 0
    back = pv.read(tmp_path / "back.vtu")
    assert back.n_cells == grid.n_cells and set(back.celltypes) == {pv.CellType.HEXAHEDRON}
    np.testing.assert_array_equal(back.point_data["T"], grid.point_data["T"])
    np.testing.assert_array_equal(back.cell_data["k"], grid.cell_data["k"])
    # voxel -> hexahedron reordering keeps every cell's volume positive and equal
    assert np.allclose(back.compute_cell_sizes()["Volume"], grid.compute_cell_sizes()["Volume"])


def test_convert_store_to_pvd_and_xdmf(tmp_path):
    traj = trajectory_2d()
    sm.write(traj, tmp_path / "t.h5")
    for out in ("t.pvd", "t.xdmf"):
        res = run_cli("convert", str(tmp_path / "t.h5"), str(tmp_path / out))
        assert res.returncode == 0, res.stderr
        assert sm.read(tmp_path / out).equals(traj)


def test_store_with_many_entries_needs_a_choice(tmp_path, capsys):
    with sm.StoreWriter(tmp_path / "m.h5") as w:
        w.append(trajectory_2d(), name="a")
        w.append(trajectory_2d(3), name="b")
    assert main(["convert", str(tmp_path / "m.h5"), str(tmp_path / "o.pvd")]) == 2
    assert "choose one with --entry" in capsys.readouterr().err
    assert not (tmp_path / "o.pvd").exists()
    assert main(["convert", str(tmp_path / "m.h5"), str(tmp_path / "o.pvd"), "--entry", "b"]) == 0
    assert sm.read(tmp_path / "o.pvd").num_steps == 3
    assert main(["convert", str(tmp_path / "m.h5"), str(tmp_path / "all.xdmf"), "--all"]) == 0
    assert (tmp_path / "all_a.xdmf").exists() and (tmp_path / "all_b.xdmf").exists()


def test_data_info_on_store_and_series(tmp_path):
    with sm.StoreWriter(tmp_path / "m.h5") as w:
        w.append(trajectory_2d(), name="a")
    res = run_cli("data", "info", str(tmp_path / "m.h5"))
    assert res.returncode == 0, res.stderr
    assert "1 entries" in res.stdout and "velocity(2,)" in res.stdout
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("a ")][0]
    assert line.split()[1:5] == ["trajectory", "5", "6", "3"]
    sm.write(trajectory_2d(), tmp_path / "t.pvd")
    res = run_cli("data", "info", str(tmp_path / "t.pvd"))
    assert "trajectory, 5 steps" in res.stdout and "point field velocity: shape (5, 6, 2)" in res.stdout
    assert "inflow 2" in res.stdout


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ["data", "info", "{d}/missing.h5"], "missing.h5: no such file"),
        ("text", ["data", "info", "{d}/bad.h5"], "bad.h5: not an HDF5 file"),
        ("text", ["convert", "{d}/bad.h5", "{d}/out.vtu"], "bad.h5: not an HDF5 file"),
        ("nan", ["convert", "{d}/nan.vtu", "{d}/out.h5"], "NaN or infinite coordinates"),
        ("inverted", ["convert", "{d}/inv.vtu", "{d}/out.pvd"], "inverted tetra"),
        ("text", ["convert", "{d}/bad.h5", "{d}/out.unknownext"], "bad.h5: not an HDF5 file"),
        ("good", ["convert", "{d}/good.vtu", "{d}/out.unknownext"], "unknown output format"),
    ],
)
def test_errors_are_one_line_and_leave_no_output(tmp_path, setup, args, message):
    import pyvista as pv

    if setup == "text":
        (tmp_path / "bad.h5").write_text("not hdf5")
    elif setup == "nan":
        pts = np.array([[0, 0, 0], [1, 0, 0], [0, np.nan, 0.0]])
        pv.UnstructuredGrid(np.array([3, 0, 1, 2]), np.array([pv.CellType.TRIANGLE]), pts).save(tmp_path / "nan.vtu")
    elif setup == "inverted":
        pts = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1.0]])  # swapped: negative volume
        pv.UnstructuredGrid(np.array([4, 0, 1, 2, 3]), np.array([pv.CellType.TETRA]), pts).save(tmp_path / "inv.vtu")
    elif setup == "good":
        sm.write(trajectory_2d().frame(0), tmp_path / "good.vtu")
    before = set(tmp_path.iterdir())
    res = run_cli(*[a.format(d=tmp_path) for a in args])
    assert res.returncode == 2
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sim: error: ") and message in err, err
    assert "Traceback" not in res.stderr
    assert set(tmp_path.iterdir()) == before  # nothing written, not even a temporary file


def test_lossy_format_is_refused_not_silently_truncated(tmp_path):
    sm.write(trajectory_2d().frame(0), tmp_path / "m.vtu")
    res = run_cli("convert", str(tmp_path / "m.vtu"), str(tmp_path / "m.stl"))
    assert res.returncode == 2 and "the stl format cannot hold" in res.stderr
    assert not (tmp_path / "m.stl").exists()


def test_convert_mpm_store_to_a_point_cloud_series(tmp_path):
    """Particles (no cells) become a PVD series whose steps carry one vertex per particle."""
    import pyvista as pv

    from solvers.mpm import generate

    traj = generate({"material": "water", "frames": 5, "n_grid": 32}, 1)
    sm.write(traj, tmp_path / "w.h5")
    res = run_cli("convert", str(tmp_path / "w.h5"), str(tmp_path / "w.pvd"))
    assert res.returncode == 0, res.stderr
    reader = pv.PVDReader(tmp_path / "w.pvd")
    assert len(reader.time_values) == 5
    reader.set_active_time_value(reader.time_values[-1])
    grid = reader.read()[0]
    assert grid.n_cells == grid.n_points == traj.mesh.num_points
    assert set(grid.celltypes) == {pv.CellType.VERTEX}
    np.testing.assert_allclose(grid.points[:, :2], traj.positions[-1], rtol=1e-6)
    assert sm.read(tmp_path / "w.pvd").equals(traj)
