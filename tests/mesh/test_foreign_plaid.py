"""PLAID datasets (folders of per-sample CGNS files) into steady samples, and back.

The PLAID datasets are written here from PLAID's published layout with a CGNS/HDF5 writer of
our own that shares nothing with sim's reader or writer: ``infos.yaml``,
``problem_definitions/<name>.yaml`` and ``data/<split>/sample_<id>/meshes/mesh_<i>.cgns``
(PLAID >= 0.2), or ``dataset/samples/...`` with ``problem_definition/problem_infos.yaml`` and
``split.json`` (PLAID 0.1). A CGNS node is an HDF5 group with the attributes ``name``,
``label`` and ``type`` and its value in the dataset ``" data"``, axes reversed. When pyplaid
is installed (``pip install .[plaid]``), it also reads what sim writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from sim.cli import main
from sim.mesh import Mesh, NodeType, Store, StoreWriter, Trajectory, read
from tests.mesh.arrays import assert_same

K = 5  # a K x K grid of points per sample
CODES = {"NODE": 2, "BAR_2": 3, "TRI_3": 5, "QUAD_4": 7, "TETRA_4": 10, "HEXA_8": 17, "HEXA_20": 18, "MIXED": 20}


# ----- a CGNS/HDF5 writer of our own, from the published mapping
def node(parent: h5py.Group, name: str, label: str, value=None) -> h5py.Group:
    g = parent.create_group(name)
    if value is None:
        kind = "MT"
    elif isinstance(value, str):
        kind = "C1"
        g.create_dataset(" data", data=np.frombuffer(value.encode(), dtype=np.int8))
    else:
        a = np.asarray(value)
        kind = {"int32": "I4", "int64": "I8", "float32": "R4", "float64": "R8"}[a.dtype.name]
        g.create_dataset(" data", data=a.T.copy())  # CGNS arrays are Fortran-ordered
    g.attrs["name"], g.attrs["label"], g.attrs["type"] = np.bytes_(name), np.bytes_(label), np.bytes_(kind)
    return g


def time_node(base: h5py.Group, t: float) -> None:
    it = node(base, "Time", "BaseIterativeData_t", np.array([1], np.int32))
    node(it, "IterationValues", "DataArray_t", np.array([1], np.int32))
    node(it, "TimeValues", "DataArray_t", np.array([t]))


def grid(k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Points of a k x k grid on the unit square (x fastest) and its counter-clockwise triangles."""
    g = np.linspace(0.0, 1.0, k)
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    tri = []
    for j in range(k - 1):
        for i in range(k - 1):
            a, b, c, d = j * k + i, j * k + i + 1, (j + 1) * k + i + 1, (j + 1) * k + i
            tri += [[a, b, c], [a, c, d]]
    return pts, np.array(tri)


def sample_arrays(a: float) -> dict:
    """The arrays of one sample, as a PLAID sample holds them (before any conversion)."""
    pts, tri = grid()
    pts = pts * np.array([1.0 + 0.2 * a, 1.0])
    x, y = pts[:, 0], pts[:, 1]
    p = a * x * y + y
    return {"points": pts, "tri": tri, "p": p, "T": (x + a).astype(np.float32), "q": np.arange(len(tri)) * a,
            "a": np.array([a]), "pmax": np.array([p.max()]), "label": "plate",
            "inlet": np.flatnonzero(x == 0) + 1, "wall": (1, K), "top": np.flatnonzero(y == 1) + 1,
            "corner": np.array([1, len(tri)])}


def write_sample_file(path: Path, s: dict, time: float = 0.0, elements: str = "TRI_3", extra=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["name"], f.attrs["label"] = np.bytes_("HDF5 MotherNode"), np.bytes_("Root Node of HDF5 File")
        f.attrs["type"] = np.bytes_("MT")
        f.create_dataset(" hdf5version", data=np.frombuffer(b"HDF5 Version 1.12.1".ljust(33, b"\0"), np.int8))
        node(f, "CGNSLibraryVersion", "CGNSLibraryVersion_t", np.array([4.0], np.float32))
        base = node(f, "Base_2_2", "CGNSBase_t", np.array([2, 2], np.int32))
        time_node(base, time)
        n, m = len(s["points"]), len(s["tri"])
        zone = node(base, "Zone", "Zone_t", np.array([[n, m, 0]]))
        node(zone, "ZoneType", "ZoneType_t", "Unstructured")
        gc = node(zone, "GridCoordinates", "GridCoordinates_t")
        node(gc, "CoordinateX", "DataArray_t", s["points"][:, 0].copy())
        node(gc, "CoordinateY", "DataArray_t", s["points"][:, 1].copy())
        el = node(zone, f"Elements_{elements}", "Elements_t", np.array([CODES[elements], 0], np.int32))
        node(el, "ElementRange", "IndexRange_t", np.array([1, m]))
        node(el, "ElementConnectivity", "DataArray_t", (s["tri"] + 1).reshape(-1))
        zbc = node(zone, "ZoneBC", "ZoneBC_t")
        for name, bctype, key, kind, loc in (("Inlet", "BCInflow", "inlet", "PointList", "Vertex"),
                                             ("Wall", "UserDefined", "wall", "PointRange", "Vertex"),
                                             ("Top", "FamilySpecified", "top", "PointList", "Vertex"),
                                             ("Corner", "UserDefined", "corner", "PointList", "CellCenter")):
            bc = node(zbc, name, "BC_t", bctype)
            node(bc, kind, "IndexArray_t" if kind == "PointList" else "IndexRange_t",
                 np.asarray(s[key], np.int32).reshape(1, -1))
            node(bc, "GridLocation", "GridLocation_t", loc)
        vf = node(zone, "VertexFields", "FlowSolution_t")
        node(vf, "GridLocation", "GridLocation_t", "Vertex")
        for k in ("p", "T"):
            if k in s:
                node(vf, k, "DataArray_t", s[k])
        cf = node(zone, "CellCenterFields", "FlowSolution_t")
        node(cf, "GridLocation", "GridLocation_t", "CellCenter")
        node(cf, "q", "DataArray_t", s["q"])
        glob = node(f, "Global", "CGNSBase_t", np.array([1, 1], np.int32))
        time_node(glob, time)
        for k in ("a", "pmax", "label"):
            if k in s:
                node(glob, k, "DataArray_t", s[k])
        if extra is not None:
            extra(f)


PROBLEM = {"input_features": ["Global/a", "Base_2_2/Zone/GridCoordinates"],
           "output_features": ["Base_2_2/Zone/VertexFields/p", "Global/pmax"],
           "train_split": {"train": "all"}, "test_split": {"test": "all"}}


def plaid_dataset(root: Path, train: int = 4, test: int = 2) -> dict[tuple[str, int], dict]:
    """A PLAID >= 0.2 dataset (storage backend cgns) under ``root``; returns the arrays per (split, id)."""
    arrays = {}
    for split, count, first in (("train", train, 0.5), ("test", test, 0.8)):
        for i in range(count):
            s = sample_arrays(first + 0.3 * i)
            write_sample_file(root / "data" / split / f"sample_{i:09d}" / "meshes" / "mesh_000000000.cgns", s)
            arrays[(split, i)] = s
    (root / "infos.yaml").write_text(yaml.safe_dump({"owner": "us", "license": "cc-by-4.0",
                                                    "num_samples": {"train": train, "test": test},
                                                    "storage_backend": "cgns"}))
    (root / "problem_definitions").mkdir()
    (root / "problem_definitions" / "regression.yaml").write_text(yaml.safe_dump(PROBLEM))
    return arrays


def check_sample(mesh: Mesh, s: dict) -> None:
    assert_same(mesh.points, s["points"])
    assert list(mesh.cells) == ["triangle"]
    assert_same(mesh.cells["triangle"], s["tri"].astype(np.int64))
    assert_same(mesh.point_data["p"], s["p"])
    assert_same(mesh.point_data["T"], s["T"])  # float32 stays float32
    assert_same(mesh.cell_data["q"], s["q"])
    assert_same(mesh.field_data["a"], s["a"])
    assert_same(mesh.field_data["pmax"], s["pmax"])
    assert mesh.field_data["label"] == "plate"
    n = len(s["points"])
    for name, ids in (("Inlet", s["inlet"]), ("Wall", np.arange(1, K + 1)), ("Top", s["top"])):
        mask = np.zeros(n, np.int8)
        mask[ids - 1] = 1
        assert_same(mesh.point_data[f"set:{name}"], mask)
    corner = np.zeros(len(s["tri"]), np.int8)
    corner[s["corner"] - 1] = 1
    assert_same(mesh.cell_data["set:Corner"], corner)
    assert set(mesh.point_data) == {"p", "T", "set:Inlet", "set:Wall", "set:Top"}
    assert set(mesh.cell_data) == {"q", "set:Corner"} and set(mesh.field_data) == {"a", "pmax", "label"}
    # node types: Inlet by its BC type (INFLOW), Wall by its name (WALL wins at the shared corner),
    # Top (FamilySpecified, no such name) none
    want = np.zeros(n, np.int32)
    want[s["inlet"] - 1] = NodeType.INFLOW
    want[:K] = NodeType.WALL
    assert_same(mesh.node_type, want)


def test_plaid_dataset_converts_exactly(tmp_path, capsys):
    arrays = plaid_dataset(tmp_path / "plates")
    out = tmp_path / "plates.h5"
    assert main(["convert", str(tmp_path / "plates"), str(out)]) == 0
    assert "6 entries from the plaid dataset plates" in capsys.readouterr().out
    with Store(out) as store:
        assert store.names() == [f"test_{i:09d}" for i in range(2)] + [f"train_{i:09d}" for i in range(4)]
        for (split, i), s in arrays.items():
            e = store.entry(f"{split}_{i:09d}")
            assert e.kind == "mesh"
            check_sample(e.read(), s)
        meta = store.metadata["plaid"]
    assert meta["layout"] == "cgns"
    assert meta["problem_definitions"] == {"regression": PROBLEM}  # kept as written
    assert meta["infos"]["owner"] == "us" and meta["infos"]["license"] == "cc-by-4.0"
    pb = meta["problems"]["regression"]
    assert pb["inputs"] == {"scalars": ["a"], "point_data": [], "cell_data": [], "mesh": True}
    assert pb["outputs"] == {"scalars": ["pmax"], "point_data": ["p"], "cell_data": [], "mesh": False}
    assert pb["train"] == [f"train_{i:09d}" for i in range(4)] and pb["test"] == [f"test_{i:09d}" for i in range(2)]
    assert meta["splits"] == {"test": pb["test"], "train": pb["train"]}
    assert meta["samples"]["train_000000003"] == {"split": "train", "id": 3}
    assert meta["features"]["Base_2_2/Zone/VertexFields/p"] == "point_data/p"
    assert meta["features"]["Base_2_2/Zone/ZoneBC/Inlet"] == "point_data/set:Inlet"
    assert meta["bc_types"] == {"Inlet": "BCInflow", "Wall": "UserDefined", "Top": "FamilySpecified",
                                "Corner": "UserDefined"}
    assert meta["zone"] == "Base_2_2/Zone" and "times" not in meta


def test_one_split_folder_converts_alone_and_times_are_kept(tmp_path):
    root = tmp_path / "plates"
    arrays = plaid_dataset(root, train=2, test=1)
    s = arrays[("test", 0)]
    write_sample_file(root / "data" / "test" / "sample_000000000" / "meshes" / "mesh_000000000.cgns", s, time=2.5)
    assert main(["convert", str(root / "data" / "test"), str(tmp_path / "test.h5"), "--from", "plaid"]) == 0
    with Store(tmp_path / "test.h5") as store:
        assert store.names() == ["test_000000000"]
        check_sample(store.read("test_000000000"), s)
        assert store.metadata["split"] == "test" and store.metadata["source"]["split"] == "test"
        assert store.metadata["plaid"]["times"] == {"test_000000000": 2.5}
        assert store.metadata["plaid"]["problems"]["regression"]["train"] == []  # not in this split


def test_plaid_0_1_layout_with_split_file_and_scalars_csv(tmp_path):
    root = tmp_path / "old"
    arrays = {}
    for i in range(3):
        s = sample_arrays(0.5 + 0.25 * i)
        scalars = {k: s.pop(k) for k in ("a", "pmax")}
        s.pop("label")
        folder = root / "dataset" / "samples" / f"sample_{i:09d}"
        write_sample_file(folder / "meshes" / "mesh_000000000.cgns", s)
        (folder / "scalars.csv").write_text("a,pmax\n" + ",".join(repr(float(v[0])) for v in scalars.values()) + "\n")
        arrays[i] = {**s, **scalars}
    (root / "dataset" / "infos.yaml").write_text(yaml.safe_dump({"legal": {"owner": "us", "license": "mit"}}))
    (root / "problem_definition").mkdir()
    (root / "problem_definition" / "problem_infos.yaml").write_text(yaml.safe_dump(
        {"task": "regression", "input_scalars": ["a"], "output_scalars": ["pmax"], "output_fields": ["p"]}))
    (root / "problem_definition" / "split.json").write_text(json.dumps({"train": [0, 2], "test": [1]}))
    assert main(["convert", str(root), str(tmp_path / "old.h5")]) == 0
    with Store(tmp_path / "old.h5") as store:
        assert store.names() == [f"sample_{i:09d}" for i in range(3)]
        for i, s in arrays.items():
            m = store.read(f"sample_{i:09d}")
            assert_same(m.field_data["a"], s["a"])
            assert_same(m.field_data["pmax"], s["pmax"])
            assert_same(m.point_data["p"], s["p"])
            assert_same(m.points, s["points"])
        meta = store.metadata["plaid"]
    assert meta["layout"] == "legacy" and meta["splits"] == {"train": ["sample_000000000", "sample_000000002"],
                                                             "test": ["sample_000000001"]}
    pb = meta["problems"]["problem_definition"]
    assert pb["inputs"]["scalars"] == ["a"] and pb["outputs"]["scalars"] == ["pmax"]
    assert pb["outputs"]["point_data"] == ["p"] and pb["train"] == meta["splits"]["train"]


def steady_store(path: Path) -> Path:
    """Our own steady samples with everything a store entry can hold that PLAID has no place for."""
    from tests.train.diffusion_data import square_mesh

    base = square_mesh(5)
    rng = np.random.default_rng(0)
    with StoreWriter(path, metadata={"recipe": "mine", "split": "train", "note": [1, 2]}) as w:
        for i in range(3):
            pts = base.points * (1 + 0.1 * i)
            n, m = len(pts), base.num_cells
            w.append(Mesh(pts, base.cells, point_data={
                "u": rng.random((n, 2)), "stress": rng.random((n, 2, 2)).astype(np.float32),
                "flag": rng.random(n) > 0.5, "count": rng.integers(0, 100, n).astype(np.int16),
                "set:left": (pts[:, 0] == 0).astype(np.uint8)},
                cell_data={"area": rng.random(m), "set:first": (np.arange(m) < 3).astype(np.int8)},
                field_data={"a": np.array([0.5 + i]), "pair": np.array([1, 2], np.int32), "family": "square",
                            "m": np.arange(6.0).reshape(2, 3)},
                node_type=base.node_type.astype(np.int64) * (1 + (np.arange(n) % 2))), name=f"case-{i}")
    return path


def test_our_steady_samples_round_trip_through_plaid_exactly(tmp_path, capsys):
    src = steady_store(tmp_path / "train.h5")
    out = tmp_path / "mine.plaid"
    assert main(["convert", str(src), str(out)]) == 0  # a folder named .plaid asks for PLAID
    assert "3 samples as a plaid dataset" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["data", "infos.yaml", "problem_definitions", "sim_store.json"]
    assert sorted(p.name for p in (out / "data" / "train").iterdir()) == [f"sample_{i:09d}" for i in range(3)]
    infos = yaml.safe_load((out / "infos.yaml").read_text())
    assert infos == {"owner": "unknown", "license": "unknown", "num_samples": {"train": 3}, "storage_backend": "cgns"}
    pb = yaml.safe_load((out / "problem_definitions" / "sim.yaml").read_text())
    assert pb["input_features"] == ["Global/a"]
    assert "Base_2_2/Zone/VertexFields/u_0" in pb["output_features"] and pb["train_split"] == {"train": "all"}
    back = tmp_path / "back.h5"
    assert main(["convert", str(out), str(back)]) == 0
    with Store(src) as a, Store(back) as b:
        assert b.names() == a.names()
        for name in a.names():
            assert b.read(name).equals(a.read(name)), name
        assert {k: v for k, v in b.metadata.items() if k not in ("source", "plaid")} == a.metadata
    # a second export replaces the first as a whole
    assert main(["convert", str(back), str(tmp_path / "other"), "--to", "plaid"]) == 0
    assert main(["convert", str(back), str(out)]) == 0


def test_a_converted_plaid_dataset_goes_back_to_the_same_plaid_paths(tmp_path):
    plaid_dataset(tmp_path / "plates")
    assert main(["convert", str(tmp_path / "plates"), str(tmp_path / "a.h5")]) == 0
    assert main(["convert", str(tmp_path / "a.h5"), str(tmp_path / "again"), "--to", "plaid"]) == 0
    again = tmp_path / "again"
    assert yaml.safe_load((again / "problem_definitions" / "regression.yaml").read_text()) == PROBLEM
    assert sorted(p.name for p in (again / "data").iterdir()) == ["test", "train"]
    with h5py.File(again / "data" / "train" / "sample_000000001" / "meshes" / "mesh_000000000.cgns", "r") as f:
        for path in ("Base_2_2/Zone/VertexFields/p", "Base_2_2/Zone/ZoneBC/Inlet/PointList", "Global/pmax"):
            assert " data" in f[path], path
        assert "node_type_WALL" not in f["Base_2_2/Zone/ZoneBC"]  # the tags already give the node types
    (again / "sim_store.json").unlink()  # what any PLAID tool reads: the same samples, without sim's record
    assert main(["convert", str(again), str(tmp_path / "b.h5")]) == 0
    with Store(tmp_path / "a.h5") as a, Store(tmp_path / "b.h5") as b:
        assert a.names() == b.names()
        for name in a.names():
            assert b.read(name).equals(a.read(name)), name


def test_pyplaid_reads_what_sim_writes(tmp_path):
    pytest.importorskip("plaid.storage", reason="pyplaid is not installed (pip install .[plaid])")
    from plaid.storage import load_problem_definitions_from_disk
    from plaid.storage.cgns.reader import init_datasetdict_from_disk

    src = steady_store(tmp_path / "train.h5")
    out = tmp_path / "mine.plaid"
    assert main(["convert", str(src), str(out)]) == 0
    datasets = init_datasetdict_from_disk(out)
    assert list(datasets) == ["train"] and len(datasets["train"]) == 3
    assert set(load_problem_definitions_from_disk(out)) == {"sim"}
    with Store(src) as store:
        for i, name in enumerate(store.names()):
            mesh, sample = store.read(name), datasets["train"][i]
            assert sample.get_all_time_values() == [0.0]
            np.testing.assert_array_equal(sample.get_nodes(), mesh.points)
            np.testing.assert_array_equal(sample.get_elements()["TRI_3"], mesh.cells["triangle"])
            np.testing.assert_array_equal(sample.get_field("u_1"), mesh.point_data["u"][:, 1])
            np.testing.assert_array_equal(sample.get_field("area", location="CellCenter"), mesh.cell_data["area"])
            assert sample.get_global("a") == mesh.field_data["a"][0]
            np.testing.assert_array_equal(sample.get_nodal_tags()["left"],
                                          np.flatnonzero(mesh.point_data["set:left"]))


def test_converted_plaid_dataset_fits_mmgp_and_trains_a_steady_model(tmp_path):
    from sim.models.mmgp import MMGP

    plaid_dataset(tmp_path / "plates", train=6, test=1)
    assert main(["convert", str(tmp_path / "plates" / "data" / "train"), str(tmp_path / "train.h5")]) == 0
    with Store(tmp_path / "train.h5") as store:
        pb = store.metadata["plaid"]["problems"]["regression"]
        first = store.read(store.names()[2])
    fields, scalars, outputs = pb["outputs"]["point_data"], pb["inputs"]["scalars"], pb["outputs"]["scalars"]
    configs = {
        "mmgp": {"family": "mmgp", "fields": fields, "scalars": scalars,
                 "family_args": {"shape_modes": 2, "field_modes": 2, "morph": False, "n_restarts": 0,
                                 "n_draws": 10, "output_scalars": outputs}},
        "steady": {"family": "steady", "network_args": {"latent": 16, "steps": 2}, "fields": fields,
                   "scalars": scalars},
    }
    for name, model in configs.items():
        cfg = {"model": model, "data": {"train": str(tmp_path / "train.h5")}, "optim": {"lr": 1e-3},
               "train": {"steps": 3, "out": str(tmp_path / name), "log_every": 1, "checkpoint_every": 1000,
                         "normalizer_accumulation_steps": 2}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        assert main(["train", str(tmp_path / f"{name}.yaml")]) == 0, name
    assert (tmp_path / "steady" / "checkpoint.pt").exists()
    model = MMGP.load(tmp_path / "mmgp" / "model.npz")
    pred = model.predict(first, {"a": float(first.field_data["a"][0])}, return_std=False)
    truth = first.point_data["p"]
    assert np.sqrt(np.mean((pred["fields"]["p"].reshape(-1) - truth) ** 2)) < 0.05 * np.abs(truth).max()
    assert abs(pred["scalars"]["pmax"] - first.field_data["pmax"][0]) < 0.05 * first.field_data["pmax"][0]


def _drop(root: Path, path: str) -> None:
    f = root / "data" / "train" / "sample_000000001" / "meshes" / "mesh_000000000.cgns"
    with h5py.File(f, "a") as h:
        del h[path]


def _second_time_step(root: Path) -> None:
    s = sample_arrays(0.5)
    write_sample_file(root / "data" / "train" / "sample_000000000" / "meshes" / "mesh_000000001.cgns", s, time=1.0)


def _element_type(name: str):
    def make(root: Path) -> None:
        s = sample_arrays(0.5)
        write_sample_file(root / "data" / "train" / "sample_000000000" / "meshes" / "mesh_000000000.cgns", s,
                          elements=name)
    return make


def _two_zones(root: Path) -> None:
    f = root / "data" / "train" / "sample_000000000" / "meshes" / "mesh_000000000.cgns"
    with h5py.File(f, "a") as h:
        h.copy(h["Base_2_2/Zone"], h["Base_2_2"], "Zone2")


def _stray_node(root: Path) -> None:
    f = root / "data" / "test" / "sample_000000001" / "meshes" / "mesh_000000000.cgns"
    with h5py.File(f, "a") as h:
        node(h["Base_2_2/Zone"], "Extra", "ZoneSubRegion_t")


def _problem(update: dict):
    def make(root: Path) -> None:
        (root / "problem_definitions" / "regression.yaml").write_text(yaml.safe_dump({**PROBLEM, **update}))
    return make


@pytest.mark.parametrize("breakage, words", [
    (lambda r: (r / "problem_definitions" / "regression.yaml").unlink(), "has no problem definition"),
    (lambda r: _drop(r, "Base_2_2/Zone/VertexFields/p"), "sample_000000001"),
    (lambda r: _drop(r, "Global/a"), "field_data/a"),
    (_element_type("HEXA_20"), "HEXA_20 elements, which the store cannot hold"),
    (_element_type("MIXED"), "MIXED elements"),
    (_second_time_step, "holds 2 time steps"),
    (_two_zones, "2 zones"),
    (_stray_node, "ZoneSubRegion_t"),
    (_problem({"output_features": ["Base_2_2/Zone/VertexFields/pressure"]}), "VertexFields/pressure"),
    (_problem({"input_features": []}), "'input_features' must be a non-empty list"),
    (lambda r: (r / "infos.yaml").write_text(yaml.safe_dump({"owner": "x", "license": "y",
                                                             "storage_backend": "hf_datasets"})), "'hf_datasets'"),
])
def test_a_broken_plaid_dataset_is_one_error_and_no_output(tmp_path, capsys, breakage, words):
    root = tmp_path / "plates"
    plaid_dataset(root, train=2, test=2)
    breakage(root)
    out = tmp_path / "out.h5"
    assert main(["convert", str(root), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("sim: error: ") and str(root) in err, err
    assert words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plates"]  # no store, no temporary file


def test_only_steady_samples_go_out_and_a_foreign_folder_is_never_replaced(tmp_path, capsys):
    steady = steady_store(tmp_path / "train.h5")
    with StoreWriter(tmp_path / "traj.h5") as w:
        m = Mesh(np.zeros((3, 2)) + np.eye(3, 2), {"triangle": np.array([[0, 1, 2]])})
        w.append(Trajectory(m, np.array([0.0, 1.0]), point_fields={"u": np.zeros((2, 3))}))
    assert main(["convert", str(tmp_path / "traj.h5"), str(tmp_path / "t.plaid")]) == 2
    assert "is a trajectory" in capsys.readouterr().err
    mine = tmp_path / "documents"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    assert main(["convert", str(steady), str(mine), "--to", "plaid"]) == 2
    assert "is not a PLAID dataset that sim wrote" in capsys.readouterr().err
    assert (mine / "keep.txt").read_text() == "mine" and sorted(p.name for p in mine.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["documents", "train.h5", "traj.h5"]


def test_read_points_at_sim_convert(tmp_path):
    plaid_dataset(tmp_path / "plates", train=1, test=1)
    with pytest.raises(Exception, match="PLAID dataset.*sim convert plates OUT.h5"):
        read(tmp_path / "plates")
