"""Own meshes in, as a new user brings them: every mesh and series format VTK and ParaView write
(serial, partitioned, multi-block, VTKHDF, PVD with several parts per step, file series, XDMF)
reads back equal; 2D meshes at z = 0 are 2D; node types come from named groups; the API takes
pyvista and meshio objects and files, and its errors name the mesh, not the model."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import pyvista as pv
import vtk

import sim
import sim.mesh as sm
from sim.cli import main
from sim.errors import FileFormatError, SimError
from sim.mesh import Mesh, NodeType, Store, Trajectory
from sim.mesh.adapters import drop_zero_z
from tests.gmsh_shapes import plate_with_hole

# --------------------------------------------------------------------------- meshes to write


def _tri_grid(nx: int = 9, ny: int = 5, z: float = 0.0) -> pv.UnstructuredGrid:
    """A triangulated 2 x 1 rectangle at height ``z`` with point and cell arrays of several kinds."""
    x, y = np.meshgrid(np.linspace(0.0, 2.0, nx), np.linspace(0.0, 1.0, ny))
    pts = np.column_stack([x.ravel(), y.ravel(), np.full(x.size, z)])
    tris = []
    for j in range(ny - 1):
        for i in range(nx - 1):
            a = j * nx + i
            tris += [[a, a + 1, a + nx + 1], [a, a + nx + 1, a + nx]]
    tris = np.array(tris)
    grid = pv.UnstructuredGrid(np.hstack([np.full((len(tris), 1), 3), tris]).ravel(),
                               np.full(len(tris), pv.CellType.TRIANGLE, np.uint8), pts)
    grid.point_data["p"] = pts[:, 0] * 10.0 + pts[:, 1]
    grid.point_data["vel"] = np.column_stack([pts[:, 1], -pts[:, 0]]).astype(np.float32)
    grid.point_data["tag"] = np.where(pts[:, 0] == 0.0, 3, np.where(pts[:, 0] == 2.0, 5, 0)).astype(np.int32)
    grid.cell_data["c"] = np.arange(len(tris), dtype=np.float64) * 0.5
    return grid


def _poly(grid: pv.UnstructuredGrid) -> pv.PolyData:
    conn = grid.cell_connectivity.reshape(-1, 3)
    poly = pv.PolyData(np.asarray(grid.points), np.hstack([np.full((len(conn), 1), 3), conn]).ravel())
    for k in grid.point_data:
        poly.point_data[k] = grid.point_data[k]
    for k in grid.cell_data:
        poly.cell_data[k] = grid.cell_data[k]
    return poly


def _image(dims=(5, 4, 3)) -> pv.ImageData:
    img = pv.ImageData(dimensions=dims, spacing=(0.5, 1.0, 2.0), origin=(1.0, -1.0, 0.0))
    img.point_data["q"] = np.arange(img.n_points, dtype=np.float64) ** 1.5
    img.cell_data["k"] = np.arange(img.n_cells, dtype=np.int32) * 7
    return img


def _pieces(grid: pv.DataSet, n: int) -> list[pv.UnstructuredGrid]:
    """``grid`` cut into ``n`` pieces by cell centre (each piece keeps its boundary points, as a
    partitioned dataset does)."""
    centres = np.asarray(grid.cell_centers().points)[:, 0]
    order = np.argsort(centres, kind="stable")
    out = []
    for ids in np.array_split(order, n):
        piece = grid.extract_cells(np.sort(ids))
        for arrays in (piece.point_data, piece.cell_data):
            for k in [k for k in arrays if k.startswith("vtkOriginal")]:
                arrays.remove(k)
        out.append(piece)
    return out


def _write(writer: type, data, path: Path, **settings) -> Path:
    w = writer()
    if isinstance(data, vtk.vtkAlgorithm):
        w.SetInputConnection(data.GetOutputPort())
    else:
        w.SetInputData(data)
    w.SetFileName(str(path))
    for name, value in settings.items():
        getattr(w, name)(value)
    assert w.Write() == 1
    return path


# --------------------------------------------------------------------------- checks


def _cells_of(grid: pv.UnstructuredGrid) -> list[np.ndarray]:
    offsets, conn = np.asarray(grid.cell_offsets), np.asarray(grid.cell_connectivity)
    return [conn[offsets[i]:offsets[i + 1]] for i in range(grid.n_cells)]


def assert_same_mesh(mesh: Mesh, grid: pv.DataSet, dim: int, extra_point: tuple = (), extra_cell: tuple = ()) -> None:
    """``mesh`` (read back) holds exactly ``grid``'s points, cells and arrays, in any order: every
    point once at its coordinates with its values, every cell once on the same points with its values."""
    ref = grid if isinstance(grid, pv.UnstructuredGrid) else grid.cast_to_unstructured_grid()
    assert mesh.dim == dim, (mesh.dim, dim)
    ref_pts = np.asarray(ref.points)
    if dim == 2:
        assert not ref_pts[:, 2].any()
    ours = np.pad(mesh.points, ((0, 0), (0, 3 - dim)))
    index = {tuple(p): i for i, p in enumerate(ref_pts.tolist())}
    assert len(index) == ref.n_points == mesh.num_points
    perm = np.array([index[tuple(p)] for p in ours.tolist()])  # our point i is the reference's perm[i]
    assert sorted(perm.tolist()) == list(range(ref.n_points))
    names = {k for k in ref.point_data if k != "node_type"}
    assert set(mesh.point_data) == names | set(extra_point), (sorted(mesh.point_data), sorted(names))
    for k in names:
        np.testing.assert_array_equal(mesh.point_data[k], np.asarray(ref.point_data[k])[perm])
        assert mesh.point_data[k].dtype == np.asarray(ref.point_data[k]).dtype
    if "node_type" in ref.point_data:
        np.testing.assert_array_equal(mesh.node_type, np.asarray(ref.point_data["node_type"])[perm])
    ref_cells = {frozenset(c.tolist()): i for i, c in enumerate(_cells_of(ref))}
    assert len(ref_cells) == ref.n_cells == mesh.num_cells
    cnames = set(ref.cell_data)
    assert set(mesh.cell_data) == cnames | set(extra_cell), (sorted(mesh.cell_data), sorted(cnames))
    seen = []
    for name, sl in mesh.cell_blocks():
        for j, conn in zip(range(sl.start, sl.stop), mesh.cells[name]):
            i = ref_cells[frozenset(perm[conn].tolist())]
            seen.append(i)
            for k in cnames:
                np.testing.assert_array_equal(mesh.cell_data[k][j], np.asarray(ref.cell_data[k])[i])
    assert sorted(seen) == list(range(ref.n_cells))


# --------------------------------------------------------------------------- serial files


SERIAL = {
    ".vtu": lambda: _tri_grid(),
    ".vtk": lambda: _tri_grid(),
    ".vtp": lambda: _poly(_tri_grid()),
    ".vts": lambda: _image().cast_to_structured_grid(),
    ".vtr": lambda: _image().cast_to_rectilinear_grid(),
    ".vti": lambda: _image(),
}


@pytest.mark.parametrize("suffix", list(SERIAL))
def test_serial_vtk_files_written_by_pyvista_read_back_equal(tmp_path, suffix):
    data = SERIAL[suffix]()
    data.save(tmp_path / f"m{suffix}")
    mesh = sm.read(tmp_path / f"m{suffix}")
    assert isinstance(mesh, Mesh)
    assert_same_mesh(mesh, data, dim=2 if suffix in (".vtu", ".vtk", ".vtp") else 3)
    if suffix in (".vts", ".vtr", ".vti"):  # voxels and structured cells are positive hexahedra
        assert list(mesh.cells) == ["hexahedron"]


def test_a_flat_image_is_a_2d_quad_mesh(tmp_path):
    img = _image((5, 4, 1))
    img.origin = (1.0, -1.0, 0.0)
    img.save(tmp_path / "flat.vti")
    mesh = sm.read(tmp_path / "flat.vti")
    assert_same_mesh(mesh, img, dim=2)
    assert list(mesh.cells) == ["quad"]


def test_vtkhdf_mesh_reads_back_equal(tmp_path):
    grid = _tri_grid()
    grid.save(tmp_path / "m.vtkhdf")
    assert_same_mesh(sm.read(tmp_path / "m.vtkhdf"), grid, dim=2)
    # VTK's HDF format under an HDF5 name is not taken for a store
    (tmp_path / "m.vtkhdf").rename(tmp_path / "m.h5")
    assert_same_mesh(sm.read(tmp_path / "m.h5"), grid, dim=2)


# --------------------------------------------------------------------------- partitioned files


@pytest.mark.parametrize("ghosts", [0, 1])
def test_pvtu_pieces_are_one_merged_mesh(tmp_path, ghosts):
    grid = _tri_grid()
    piece = vtk.vtkExtractUnstructuredGridPiece()
    piece.SetInputData(grid)
    _write(vtk.vtkXMLPUnstructuredGridWriter, piece, tmp_path / "m.pvtu", SetNumberOfPieces=3, SetStartPiece=0,
           SetEndPiece=2, SetGhostLevel=ghosts)
    assert len(list(tmp_path.glob("m_*.vtu"))) == 3
    if ghosts:  # the pieces hold copies of their neighbours' cells, marked as ghosts
        assert "vtkGhostType" in pv.read(tmp_path / "m_1.vtu").cell_data
    assert_same_mesh(sm.read(tmp_path / "m.pvtu"), grid, dim=2)
    # one piece alone is a .vtu like any other
    assert sm.read(tmp_path / "m_0.vtu").num_cells < grid.n_cells


def test_pvtp_pieces_are_one_merged_mesh(tmp_path):
    poly = _poly(_tri_grid())
    piece = vtk.vtkExtractPolyDataPiece()
    piece.SetInputData(poly)
    _write(vtk.vtkXMLPPolyDataWriter, piece, tmp_path / "s.pvtp", SetNumberOfPieces=2, SetStartPiece=0,
           SetEndPiece=1)
    assert_same_mesh(sm.read(tmp_path / "s.pvtp"), poly, dim=2)


def _extent_source(full):
    """A source that hands out the sub-extents a parallel writer asks for (as a parallel run
    holds them), so each piece file is its own part of the grid."""
    from vtkmodules.util.vtkAlgorithm import VTKPythonAlgorithmBase
    from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline as Pipeline

    class Source(VTKPythonAlgorithmBase):
        def __init__(self):
            super().__init__(nInputPorts=0, nOutputPorts=1, outputType=full.GetClassName())

        def RequestInformation(self, request, inputs, outputs):
            info = outputs.GetInformationObject(0)
            info.Set(Pipeline.WHOLE_EXTENT(), full.GetExtent(), 6)
            info.Set(vtk.vtkAlgorithm.CAN_PRODUCE_SUB_EXTENT(), 1)
            return 1

        def RequestData(self, request, inputs, outputs):
            ext = outputs.GetInformationObject(0).Get(Pipeline.UPDATE_EXTENT())
            if isinstance(full, vtk.vtkImageData):
                cut = vtk.vtkExtractVOI()
            elif isinstance(full, vtk.vtkRectilinearGrid):
                cut = vtk.vtkExtractRectilinearGrid()
            else:
                cut = vtk.vtkExtractGrid()
            cut.SetInputData(full)
            cut.SetVOI(ext)
            cut.Update()
            vtk.vtkDataObject.GetData(outputs).ShallowCopy(cut.GetOutput())
            return 1

    return Source()


@pytest.mark.parametrize("suffix, writer, make", [
    (".pvti", vtk.vtkXMLPImageDataWriter, lambda: _image()),
    (".pvtr", vtk.vtkXMLPRectilinearGridWriter, lambda: _image().cast_to_rectilinear_grid()),
    (".pvts", vtk.vtkXMLPStructuredGridWriter, lambda: _image().cast_to_structured_grid()),
])
def test_partitioned_structured_grids_are_one_merged_mesh(tmp_path, suffix, writer, make):
    full = make()
    _write(writer, _extent_source(full), tmp_path / f"g{suffix}", SetNumberOfPieces=3, SetStartPiece=0,
           SetEndPiece=2)
    extents = {p.get("Extent") for p in ET.parse(tmp_path / f"g{suffix}").getroot().iter("Piece")}
    assert len(extents) == 3  # really three parts of the grid, sharing their interface points
    assert_same_mesh(sm.read(tmp_path / f"g{suffix}"), full, dim=3)


def test_legacy_pvtk_pieces_are_one_merged_mesh(tmp_path):
    grid = _tri_grid()
    piece = vtk.vtkExtractUnstructuredGridPiece()
    piece.SetInputData(grid)
    w = vtk.vtkPDataSetWriter()
    w.SetInputConnection(piece.GetOutputPort())
    w.SetFileName(str(tmp_path / "m.pvtk"))
    w.SetNumberOfPieces(2)
    assert w.Write() == 1
    assert_same_mesh(sm.read(tmp_path / "m.pvtk"), grid, dim=2)


# --------------------------------------------------------------------------- multi-block files


def test_vtm_blocks_are_joined_and_their_names_become_groups(tmp_path):
    grid = _tri_grid()
    left, right = _pieces(grid, 2)
    pv.MultiBlock({"left": left, "right": right}).save(tmp_path / "m.vtm")
    mesh = sm.read(tmp_path / "m.vtm")
    assert_same_mesh(mesh, grid, dim=2, extra_point=("set:left", "set:right"), extra_cell=("set:left", "set:right"))
    assert mesh.cell_data["set:left"].sum() == left.n_cells and mesh.cell_data["set:right"].sum() == right.n_cells
    # the interface points belong to both blocks
    shared = (mesh.point_data["set:left"] == 1) & (mesh.point_data["set:right"] == 1)
    assert shared.sum() == left.n_points + right.n_points - grid.n_points > 0
    types = sm.node_types_from_groups(tmp_path / "m.vtm", {"left": "inflow", "right": "outflow"})
    assert (types[shared] == NodeType.OUTFLOW).all()  # the last group listed wins
    assert (types[mesh.point_data["set:left"] == 1] != NodeType.INTERIOR).all()


def test_partitioned_dataset_and_collection_files(tmp_path):
    grid = _tri_grid()
    pieces = _pieces(grid, 3)
    pv.PartitionedDataSet(pieces).save(tmp_path / "m.vtpd")
    assert_same_mesh(sm.read(tmp_path / "m.vtpd"), grid, dim=2)  # anonymous partitions: no groups
    collection = vtk.vtkPartitionedDataSetCollection()
    for i, name in enumerate(["west", "middle", "east"]):
        part = vtk.vtkPartitionedDataSet()
        part.SetPartition(0, pieces[i])
        collection.SetPartitionedDataSet(i, part)
        collection.GetMetaData(i).Set(vtk.vtkCompositeDataSet.NAME(), name)
    _write(vtk.vtkXMLPartitionedDataSetCollectionWriter, collection, tmp_path / "m.vtpc")
    groups = ("set:west", "set:middle", "set:east")
    mesh = sm.read(tmp_path / "m.vtpc")
    assert_same_mesh(mesh, grid, dim=2, extra_point=groups, extra_cell=groups)
    assert [int(mesh.cell_data[g].sum()) for g in groups] == [p.n_cells for p in pieces]


def test_blocks_that_are_not_pieces_of_one_mesh_are_one_error(tmp_path):
    left, right = _pieces(_tri_grid(), 2)
    right.point_data.remove("p")
    pv.MultiBlock({"a": left, "b": right}).save(tmp_path / "m.vtm")
    with pytest.raises(SimError, match=r"not pieces of one mesh.*only in .*point_data 'p'") as err:
        sm.read(tmp_path / "m.vtm")
    assert err.value.path == str(tmp_path / "m.vtm")
    # pieces that disagree on a shared point's value
    left, right = _pieces(_tri_grid(), 2)
    right.point_data["p"] = right.point_data["p"] + 1.0
    pv.MultiBlock({"a": left, "b": right}).save(tmp_path / "n.vtm")
    with pytest.raises(SimError, match=r"do not agree on point_data 'p' at \d+ shared point"):
        sm.read(tmp_path / "n.vtm")


def test_a_missing_or_cut_piece_is_an_error_naming_the_piece(tmp_path, capsys):
    piece = vtk.vtkExtractUnstructuredGridPiece()
    piece.SetInputData(_tri_grid())
    _write(vtk.vtkXMLPUnstructuredGridWriter, piece, tmp_path / "m.pvtu", SetNumberOfPieces=2, SetStartPiece=0,
           SetEndPiece=1)
    data = (tmp_path / "m_1.vtu").read_bytes()
    (tmp_path / "m_1.vtu").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError) as err:
        sm.read(tmp_path / "m.pvtu")
    assert err.value.path == str(tmp_path / "m_1.vtu")
    (tmp_path / "m_1.vtu").unlink()
    assert main(["data", "info", str(tmp_path / "m.pvtu")]) == 2
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and out.startswith("sim: error: ") and "m_1.vtu: no such file" in out
    # a multi-block file that names itself
    (tmp_path / "loop.vtm").write_text('<VTKFile type="vtkMultiBlockDataSet"><vtkMultiBlockDataSet>'
                                       '<DataSet index="0" file="loop.vtm"/></vtkMultiBlockDataSet></VTKFile>')
    with pytest.raises(FileFormatError, match="a loop"):
        sm.read(tmp_path / "loop.vtm")


# --------------------------------------------------------------------------- series


def _step_grid(t: float) -> pv.UnstructuredGrid:
    grid = _tri_grid()
    grid.point_data["p"] = grid.point_data["p"] * (1.0 + t)  # changes in time; the rest is static
    return grid


def test_paraview_pvd_with_several_parts_per_step_is_one_trajectory(tmp_path):
    times = [0.0, 0.25, 0.75]
    (tmp_path / "run").mkdir()
    entries = []
    for s, t in enumerate(times):
        for part, piece in enumerate(_pieces(_step_grid(t), 2)):
            name = f"run/run_{s}_{part}.vtu"
            piece.save(tmp_path / name)
            entries.append(f'<DataSet timestep="{t}" group="" part="{part}" file="{name}"/>')
    (tmp_path / "run.pvd").write_text('<?xml version="1.0"?>\n<VTKFile type="Collection" version="0.1">'
                                      f'<Collection>{"".join(entries)}</Collection></VTKFile>')
    traj = sm.read(tmp_path / "run.pvd")
    assert isinstance(traj, Trajectory) and traj.times.tolist() == times
    assert list(traj.point_fields) == ["p"] and traj.mesh.dim == 2
    for s, t in enumerate(times):
        assert_same_mesh(traj.frame(s), _step_grid(t), dim=2)


def test_pvd_of_multiblock_steps_and_a_file_series(tmp_path):
    times = [0.0, 0.5, 1.0]
    index, files = [], []
    for s, t in enumerate(times):
        left, right = _pieces(_step_grid(t), 2)
        pv.MultiBlock({"left": left, "right": right}).save(tmp_path / f"b_{s}.vtm")
        index.append(f'<DataSet timestep="{t}" part="0" file="b_{s}.vtm"/>')
        _step_grid(t).save(tmp_path / f"f_{s}.vtu")
        files.append({"name": f"f_{s}.vtu", "time": t})
    (tmp_path / "b.pvd").write_text('<VTKFile type="Collection"><Collection>' + "".join(index) +
                                    "</Collection></VTKFile>")
    traj = sm.read(tmp_path / "b.pvd")
    groups = ("set:left", "set:right")
    for s, t in enumerate(times):
        assert_same_mesh(traj.frame(s), _step_grid(t), dim=2, extra_point=groups, extra_cell=groups)
    (tmp_path / "f.vtu.series").write_text(json.dumps({"file-series-version": "1.0", "files": files}))
    series = sm.read(tmp_path / "f.vtu.series")
    assert series.times.tolist() == times and list(series.point_fields) == ["p"]
    for s, t in enumerate(times):
        assert_same_mesh(series.frame(s), _step_grid(t), dim=2)
    files.append({"name": "f_0.vtu", "time": 0.5})
    (tmp_path / "bad.series").write_text(json.dumps({"files": files}))
    with pytest.raises(FileFormatError, match="time 0.5 appears twice"):
        sm.read(tmp_path / "bad.series")


def _temporal_source(times: list[float], z: float = 0.0, lift: float = 0.0):
    """A VTK source with time steps (what ParaView hands its writers), for the writers that save
    every step themselves; ``lift`` moves the points out of the plane after the first step."""
    from vtkmodules.util.vtkAlgorithm import VTKPythonAlgorithmBase
    from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline as Pipeline

    class Source(VTKPythonAlgorithmBase):
        def __init__(self):
            super().__init__(nInputPorts=0, nOutputPorts=1, outputType="vtkUnstructuredGrid")

        def RequestInformation(self, request, inputs, outputs):
            info = outputs.GetInformationObject(0)
            info.Set(Pipeline.TIME_STEPS(), times, len(times))
            info.Set(Pipeline.TIME_RANGE(), [times[0], times[-1]], 2)
            return 1

        def RequestData(self, request, inputs, outputs):
            info = outputs.GetInformationObject(0)
            t = info.Get(Pipeline.UPDATE_TIME_STEP()) if info.Has(Pipeline.UPDATE_TIME_STEP()) else times[0]
            grid = _step_grid(t)
            grid.points[:, 2] = z + (lift * t)
            vtk.vtkUnstructuredGrid.GetData(outputs).ShallowCopy(grid)
            return 1

    return Source()


def test_temporal_vtkhdf_and_paraview_xdmf_are_trajectories(tmp_path):
    times = [0.0, 0.5, 1.0]
    _write(vtk.vtkHDFWriter, _temporal_source(times), tmp_path / "t.vtkhdf", SetWriteAllTimeSteps=True)
    _write(vtk.vtkXdmfWriter, _temporal_source(times), tmp_path / "t.xmf", SetWriteAllTimeSteps=True)
    for name in ("t.vtkhdf", "t.xmf"):
        traj = sm.read(tmp_path / name)
        assert isinstance(traj, Trajectory) and traj.times.tolist() == times, name
        assert traj.mesh.dim == 2 and "p" in traj.point_fields and "vel" in traj.mesh.point_data, name
        for s, t in enumerate(times):
            frame = traj.frame(s)
            frame.point_data.pop("vtkOriginalPointIds", None)  # what some writers add
            assert_same_mesh(frame, _step_grid(t), dim=2)
    # points that leave the plane later: the whole series stays 3D
    _write(vtk.vtkHDFWriter, _temporal_source(times, lift=0.1), tmp_path / "lift.vtkhdf", SetWriteAllTimeSteps=True)
    lifted = sm.read(tmp_path / "lift.vtkhdf")
    assert lifted.mesh.dim == 3 and lifted.positions is not None and lifted.positions[-1, 0, 2] == pytest.approx(0.1)


def test_info_and_convert_take_every_new_format(tmp_path, capsys):
    piece = vtk.vtkExtractUnstructuredGridPiece()
    piece.SetInputData(_tri_grid())
    _write(vtk.vtkXMLPUnstructuredGridWriter, piece, tmp_path / "m.pvtu", SetNumberOfPieces=2, SetStartPiece=0,
           SetEndPiece=1)
    assert main(["data", "info", str(tmp_path / "m.pvtu")]) == 0
    assert f"points: {_tri_grid().n_points} x 2D" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "m.pvtu"), str(tmp_path / "m.h5")]) == 0
    with Store(tmp_path / "m.h5") as s:
        assert_same_mesh(s.read(s.names()[0]), _tri_grid(), dim=2)


# --------------------------------------------------------------------------- dimension


def test_only_an_exactly_zero_z_makes_a_foreign_mesh_2d(tmp_path):
    import meshio

    _tri_grid(z=0.0).save(tmp_path / "flat.vtu")
    _tri_grid(z=0.5).save(tmp_path / "lifted.vtu")
    assert sm.read(tmp_path / "flat.vtu").dim == 2
    assert sm.read(tmp_path / "lifted.vtu").dim == 3  # a constant nonzero z is a position in 3D
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]])
    assert Mesh.from_meshio(meshio.Mesh(pts, [("triangle", [[0, 1, 2]])])).dim == 2
    assert Mesh.from_meshio(meshio.Mesh(pts + [0, 0, 1e-12], [("triangle", [[0, 1, 2]])])).dim == 3
    meshio.write(tmp_path / "m.xdmf", meshio.Mesh(pts, [("triangle", [[0, 1, 2]])]))
    assert sm.read(tmp_path / "m.xdmf").dim == 2  # another program's XDMF
    # our own files say their dimension: a 3D mesh at z = 0 stays 3D through them
    ours = Mesh(pts, {"triangle": np.array([[0, 1, 2]])})
    for suffix in (".vtu", ".xdmf", ".h5"):
        sm.write(ours, tmp_path / f"ours{suffix}")
        back = sm.read(tmp_path / f"ours{suffix}")
        if isinstance(back, Store):
            with back:
                back = back.read(back.names()[0])
        back = back.frame(0) if isinstance(back, Trajectory) else back
        assert back.dim == 3, suffix
    # a file that cannot say it (gmsh) gives it back 2D, and the write is not refused for that
    sm.write(ours, tmp_path / "ours.msh")
    assert sm.read(tmp_path / "ours.msh").dim == 2
    tets = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]]), {"tetra": np.array([[0, 1, 2, 3]])})
    assert drop_zero_z(tets) is tets


def _gmsh_channel(path: Path) -> Path:
    """A 2D channel with a cylinder, meshed by gmsh with named physical groups."""
    with plate_with_hole(2.0, 1.0, 0.5, 0.5, 0.15) as gmsh:
        by_place = {}
        for _, tag in gmsh.model.getEntities(1):
            x, y, _ = gmsh.model.occ.getCenterOfMass(1, tag)
            place = "inlet" if x < 1e-9 else "outlet" if x > 2 - 1e-9 else "walls" if y < 1e-9 or y > 1 - 1e-9 \
                else "cylinder"
            by_place.setdefault(place, []).append(tag)
        for place, tags in by_place.items():
            gmsh.model.addPhysicalGroup(1, tags, name=place)
        gmsh.model.addPhysicalGroup(2, [s for _, s in gmsh.model.getEntities(2)], name="fluid")
        gmsh.option.setNumber("Mesh.MeshSizeMax", 0.15)
        gmsh.model.mesh.generate(2)
        gmsh.write(str(path))
    return path


GROUPS = {"inlet": "inflow", "outlet": "outflow", "walls": "wall", "cylinder": "wall"}


def test_gmsh_2d_mesh_is_2d_and_its_physical_groups_give_node_types(tmp_path):
    msh = _gmsh_channel(tmp_path / "channel.msh")
    mesh = sm.read(msh)
    assert mesh.dim == 2 and mesh.points.shape[1] == 2
    types = sm.node_types_from_groups(msh, GROUPS)
    x, y = mesh.points[:, 0], mesh.points[:, 1]
    on_cylinder = np.isclose(np.hypot(x - 0.5, y - 0.5), 0.15)
    assert types.dtype == np.int32 and types.shape == (mesh.num_points,)
    assert (types[on_cylinder] == NodeType.WALL).all()
    assert (types[(x == 0) & (y > 0) & (y < 1)] == NodeType.INFLOW).all()
    assert (types[(x == 2) & (y > 0) & (y < 1)] == NodeType.OUTFLOW).all()
    assert (types[(x == 0) & ((y == 0) | (y == 1))] == NodeType.WALL).all()  # corners: walls listed later
    inner = (x > 0) & (x < 2) & (y > 0) & (y < 1) & ~on_cylinder
    assert (types[inner] == NodeType.INTERIOR).all()
    # corners follow the order: inflow listed last wins there
    order = {"walls": "wall", "inlet": "inflow"}
    assert (sm.node_types_from_groups(mesh, order)[(x == 0) & (y == 0)] == NodeType.INFLOW).all()
    # a tag array by value: the gmsh physical tag of the inlet
    tag = int(mesh.field_data["inlet"][0])
    np.testing.assert_array_equal(sm.node_types_from_groups(mesh, {f"gmsh:physical={tag}": "inflow"}) == 4,
                                  sm.node_types_from_groups(mesh, {"inlet": "inflow"}) == 4)


def test_unknown_groups_and_types_are_one_error_listing_what_exists(tmp_path):
    msh = _gmsh_channel(tmp_path / "channel.msh")
    with pytest.raises(SimError) as err:
        sm.node_types_from_groups(msh, {"inlet": "inflow", "outflow": "outflow"})
    text = str(err.value)
    assert err.value.path == str(msh) and "no group(s) ['outflow']" in text
    assert all(g in text for g in ("inlet", "outlet", "walls", "cylinder", "fluid", "gmsh:physical="))
    with pytest.raises(SimError, match=r"unknown node type 'inflw' \(types: interior, obstacle, .*wall, fixed\)"):
        sm.node_types_from_groups(msh, {"inlet": "inflw"})
    grid = _tri_grid()
    types = sm.node_types_from_groups(grid, {"tag=3": "inflow", "tag=5": "outflow"})  # a VTK tag array
    np.testing.assert_array_equal(types, np.select([grid.point_data["tag"] == 3, grid.point_data["tag"] == 5],
                                                   [4, 5], 0))


def test_convert_node_types_option(tmp_path, capsys):
    msh = _gmsh_channel(tmp_path / "channel.msh")
    spec = ",".join(f"{k}={v}" for k, v in GROUPS.items())
    assert main(["convert", str(msh), str(tmp_path / "channel.vtu"), "--node-types", spec]) == 0
    out = sm.read(tmp_path / "channel.vtu")
    np.testing.assert_array_equal(out.node_type, sm.node_types_from_groups(msh, GROUPS))
    assert out.dim == 2 and "set:inlet" in out.cell_data  # the groups stay
    capsys.readouterr()
    for bad, said in (("inlet=inflow,outlett=outflow", "no group(s) ['outlett']"),
                      ("inlet=sideways", "unknown node type 'sideways'"), ("inlet", "takes NAME=TYPE")):
        assert main(["convert", str(msh), str(tmp_path / "bad.vtu"), "--node-types", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("sim: error: ") and said in err, err
        assert not (tmp_path / "bad.vtu").exists()


# --------------------------------------------------------------------------- the API boundary


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A one-frame mesh model, a steady graph model and an MMGP on the unit square (2D)."""
    from tests.families_data import _config, _steady_samples
    from tests.train.diffusion_data import diffusion_store

    tmp = tmp_path_factory.mktemp("own")
    data = diffusion_store(tmp / "d.h5", trajectories=2, steps=6)
    steady = _steady_samples(tmp / "steady.h5", 4, 0)
    tiny = {"latent": 16, "steps": 2}
    configs = {
        "mesh": _config(tmp, "mesh", {"network_args": tiny, "fields": ["u"]}, {"train": str(data)}),
        "steady": _config(tmp, "steady", {"family": "steady", "network_args": tiny, "fields": ["u"],
                                          "scalars": ["a"]}, {"train": str(steady)}),
        "mmgp": _config(tmp, "mmgp", {"family": "mmgp", "fields": ["u"], "scalars": ["a"],
                                      "family_args": {"shape_modes": 2, "field_modes": 2, "morph": False,
                                                      "n_restarts": 0, "n_draws": 10}}, {"train": str(steady)}),
    }
    out = {}
    for name, cfg in configs.items():
        assert main(["train", str(cfg)]) == 0, name
        out[name] = tmp / name / ("model.npz" if name == "mmgp" else "checkpoint.pt")
    with Store(data) as s:
        out["traj"] = s.read(s.names()[0])
    with Store(steady) as s:
        out["sample"] = s.read(s.names()[0])
    return out


def _foreign_grid(mesh: Mesh, z: float = 0.0, **point_data) -> pv.UnstructuredGrid:
    """``mesh`` as another program hands it over: 3D points, no sim metadata."""
    pts = np.column_stack([mesh.points, np.full(mesh.num_points, z)])
    tri = mesh.cells["triangle"]
    grid = pv.UnstructuredGrid(np.hstack([np.full((len(tri), 1), 3), tri]).ravel(),
                               np.full(len(tri), pv.CellType.TRIANGLE, np.uint8), pts)
    for k, v in point_data.items():
        grid.point_data[k] = v
    return grid


def test_predict_and_rollout_take_pyvista_meshio_and_files(models, tmp_path):
    import meshio

    traj = models["traj"]
    m = traj.mesh
    u0 = traj.point_fields["u"][0]
    surrogate = sim.load(models["mesh"])
    ours = surrogate.predict(Mesh(m.points, m.cells, point_data={"u": u0}, node_type=m.node_type))
    grid = _foreign_grid(m, u=u0, node_type=m.node_type)
    grid.save(tmp_path / "state.vtu")
    as_meshio = meshio.Mesh(np.asarray(grid.points), [("triangle", m.cells["triangle"])],
                            point_data={"u": u0, "node_type": m.node_type})
    for query in (grid, as_meshio, tmp_path / "state.vtu", str(tmp_path / "state.vtu")):
        np.testing.assert_array_equal(surrogate.predict(query).point_data["u"], ours.point_data["u"])
    rolled = surrogate.rollout(grid, 3, dt=0.1)
    np.testing.assert_array_equal(rolled.point_fields["u"], surrogate.rollout(
        Mesh(m.points, m.cells, point_data={"u": u0}, node_type=m.node_type), 3, dt=0.1).point_fields["u"])
    with pytest.raises(SimError, match="must be a sim.mesh.Mesh or Trajectory, a pyvista or VTK dataset"):
        surrogate.predict([1, 2, 3])
    sample = models["sample"]
    _foreign_grid(sample, node_type=sample.node_type).save(tmp_path / "sample.vtu")
    for name in ("steady", "mmgp"):
        s = sim.load(models[name])
        ref = s.predict(Mesh(sample.points, sample.cells, node_type=sample.node_type), a=1.2)
        for query in (_foreign_grid(sample, node_type=sample.node_type), tmp_path / "sample.vtu"):
            np.testing.assert_allclose(s.predict(query, a=1.2).point_data["u"], ref.point_data["u"], rtol=1e-6)


def test_mesh_errors_name_the_mesh_not_the_checkpoint(models, tmp_path, capsys):
    m = models["traj"].mesh
    u0 = models["traj"].point_fields["u"][0]
    lifted = tmp_path / "lifted.vtu"  # at z = 0.5: a 3D mesh for a 2D model
    _foreign_grid(m, z=0.5, u=u0, node_type=m.node_type).save(lifted)
    untyped = tmp_path / "untyped.vtu"
    _foreign_grid(m, u=u0).save(untyped)
    for name in ("mesh", "steady", "mmgp"):
        surrogate = sim.load(models[name])
        scalars = {} if name == "mesh" else {"a": 1.0}
        with pytest.raises(SimError, match="this mesh is 3D") as err:
            surrogate.predict(lifted, **scalars)
        assert err.value.path == str(lifted), name
        with pytest.raises(SimError, match="this mesh is 3D") as err:  # an object: no file to name, not the model
            surrogate.predict(_foreign_grid(m, z=0.5, u=u0, node_type=m.node_type), **scalars)
        assert err.value.path is None, name
    # a problem the model finds while working on the mesh names the mesh too
    other = tmp_path / "other.vtu"  # MMGP without morphing needs the training connectivity
    _foreign_grid(m, node_type=m.node_type).save(other)
    with pytest.raises(SimError, match="does not share the common connectivity") as err:
        sim.load(models["mmgp"]).predict(other, a=1.0)
    assert err.value.path == str(other)
    surrogate = sim.load(models["mesh"])
    with pytest.raises(SimError, match="the mesh has no node types") as err:
        surrogate.rollout(untyped, 2, dt=0.1)
    assert err.value.path == str(untyped)
    with pytest.raises(SimError, match=r"has no field\(s\) \['u'\]") as err:
        surrogate.predict(Mesh(m.points, m.cells, node_type=m.node_type))
    assert err.value.path is None
    for name, bad in (("mesh", untyped), ("mmgp", lifted), ("steady", lifted)):
        params = [] if name == "mesh" else ["--param", "a=1.0"]
        assert main(["predict", str(models[name]), str(bad), "--out", str(tmp_path / "o.vtu"), *params]) == 2
        err_text = capsys.readouterr().err
        assert err_text.count("\n") == 1 and err_text.startswith(f"sim: error: {bad}: "), err_text
        assert str(models[name]) not in err_text
        assert not (tmp_path / "o.vtu").exists()
