"""DeepMind MeshGraphNets datasets (<split>.tfrecord + meta.json) into the sim store.

The files are written here from the formats' published descriptions, with an encoder of our
own that shares nothing with the reader: the TFRecord framing (length, masked CRC32C of the
length, data, masked CRC32C of the data) and the protobuf wire format of tf.train.Example
(Example.features = 1; Features.feature = 1, a map entry with key = 1 and value = 2;
Feature.bytes_list = 1, float_list = 2; BytesList.value = 1).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.cli import main
from sim.mesh import NodeType, Store, read
from tests.mesh.arrays import assert_same

DT = 0.01


# ----- an encoder of our own, from the published formats
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_example(features: dict[str, bytes | tuple[str, bytes]]) -> bytes:
    """A serialised tf.train.Example; a value is raw bytes (a one-element bytes_list) or
    (``"float_list"``, packed little-endian float32 values)."""
    entries = b""
    for name, value in features.items():
        if isinstance(value, tuple):
            feature = _field(2, _field(1, value[1]))  # Feature.float_list{packed value}
        else:
            feature = _field(1, _field(1, value))  # Feature.bytes_list{value}
        entries += _field(1, _field(1, name.encode()) + _field(2, feature))
    return _field(1, entries)


def _masked(data: bytes) -> int:
    import google_crc32c

    crc = int(google_crc32c.value(data))
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32


def encode_tfrecord(records: list[bytes]) -> bytes:
    out = b""
    for data in records:
        length = struct.pack("<Q", len(data))
        out += length + struct.pack("<I", _masked(length)) + data + struct.pack("<I", _masked(data))
    return out


def test_our_encoder_follows_the_published_crc():
    import google_crc32c

    assert int(google_crc32c.value(b"123456789")) == 0xE3069283  # the CRC-32C check value


# ----- tiny datasets in the published layouts
def channel(nx: int, ny: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A channel [0, 1.6] x [0, 0.41]: points (N, 2) float32, counter-clockwise triangles (M, 3)
    int32, DeepMind node types (N,) int32 (inflow left, outflow right, walls top and bottom)."""
    x, y = np.meshgrid(np.linspace(0, 1.6, nx), np.linspace(0, 0.41, ny), indexing="xy")
    pts = np.column_stack([x.ravel(), y.ravel()]).astype(np.float32)
    tris = []
    for j in range(ny - 1):
        for i in range(nx - 1):
            a, b, c, d = j * nx + i, j * nx + i + 1, (j + 1) * nx + i + 1, (j + 1) * nx + i
            tris += [[a, b, c], [a, c, d]]
    types = np.zeros(len(pts), dtype=np.int32)
    types[(pts[:, 1] == 0) | (pts[:, 1] == np.float32(0.41))] = 6
    types[pts[:, 0] == 0] = 4
    types[pts[:, 0] == np.float32(1.6)] = 5
    return pts, np.array(tris, dtype=np.int32), types


def cylinder_meta(steps: int) -> dict:
    return {"simulator": "comsol", "dt": DT, "collision_radius": None, "trajectory_length": steps,
            "field_names": ["cells", "mesh_pos", "node_type", "velocity", "pressure"],
            "features": {"cells": {"type": "static", "shape": [1, -1, 3], "dtype": "int32"},
                         "mesh_pos": {"type": "static", "shape": [1, -1, 2], "dtype": "float32"},
                         "node_type": {"type": "static", "shape": [1, -1, 1], "dtype": "int32"},
                         "velocity": {"type": "dynamic", "shape": [steps, -1, 2], "dtype": "float32"},
                         "pressure": {"type": "dynamic", "shape": [steps, -1, 1], "dtype": "float32"}}}


def cylinder_dataset(folder: Path, steps: int = 6, sizes=((7, 4), (6, 5)), seed: int = 0) -> tuple[Path, list]:
    """``folder/train.tfrecord`` + ``meta.json`` like cylinder_flow (one record per mesh size);
    returns the path and the arrays written, per record."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records, arrays = [], []
    for nx, ny in sizes:
        pts, tris, types = channel(nx, ny)
        n = len(pts)
        t = np.arange(steps, dtype=np.float32)[:, None]
        velocity = np.stack([np.sin(pts[:, 1] * 7.0 + 0.3 * t), 0.1 * np.cos(pts[:, 0] * 3.0 - 0.2 * t)], -1)
        velocity = (velocity + 0.01 * rng.standard_normal(velocity.shape)).astype(np.float32)
        velocity[:, types == 6] = 0.0
        pressure = rng.standard_normal((steps, n, 1)).astype(np.float32)
        a = {"cells": tris[None], "mesh_pos": pts[None], "node_type": types[None, :, None], "velocity": velocity,
             "pressure": pressure}
        arrays.append(a)
        records.append(encode_example({k: v.tobytes() for k, v in a.items()}))
    (folder / "meta.json").write_text(json.dumps(cylinder_meta(steps)))
    path = folder / "train.tfrecord"
    path.write_bytes(encode_tfrecord(records))
    return path, arrays


def _tet_volume(p: np.ndarray, t) -> float:
    a, b, c, d = p[list(t)]
    return float(np.dot(b - a, np.cross(c - a, d - a)))


def plate(nx: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A thin plate of cubes, each split into 6 positive tetrahedra: points (N, 3) float32, (M, 4) int32."""
    g = np.stack(np.meshgrid(np.arange(nx + 1), np.arange(2), np.arange(2), indexing="ij"), -1).reshape(-1, 3)
    pts = (g * np.array([0.1, 0.1, 0.02])).astype(np.float32)
    index = {tuple(v): i for i, v in enumerate(g)}
    tets = []
    for i in range(nx):
        c = [index[(i + dx, dy, dz)] for dx, dy, dz in
             [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)]]
        for t in ([0, 1, 2, 6], [0, 2, 3, 6], [0, 3, 7, 6], [0, 7, 4, 6], [0, 4, 5, 6], [0, 5, 1, 6]):
            tet = [c[k] for k in t]
            if _tet_volume(pts.astype(np.float64), tet) < 0:
                tet[1], tet[2] = tet[2], tet[1]
            tets.append(tet)
    return pts, np.array(tets, dtype=np.int32)


def plate_dataset(folder: Path, steps: int = 5, flip_first: bool = False) -> tuple[Path, dict]:
    """Like deforming_plate: 3D tetrahedra, world_pos and stress per step, no dt in meta.json."""
    folder.mkdir(parents=True, exist_ok=True)
    pts, tets = plate()
    n = len(pts)
    types = np.zeros(n, dtype=np.int32)
    types[pts[:, 0] == 0] = 3  # handle
    types[pts[:, 0] == pts[:, 0].max()] = 1  # obstacle
    rng = np.random.default_rng(1)
    world = (pts[None] + 0.001 * np.arange(steps)[:, None, None] * rng.random((1, n, 3))).astype(np.float32)
    stress = rng.random((steps, n, 1)).astype(np.float32)
    written = tets.copy()
    if flip_first:
        written[0, [1, 2]] = written[0, [2, 1]]
    a = {"cells": written[None], "mesh_pos": pts[None], "node_type": types[None, :, None], "world_pos": world,
         "stress": stress}
    meta = {"simulator": "sofa", "trajectory_length": steps,
            "field_names": ["cells", "mesh_pos", "node_type", "world_pos", "stress"],
            "features": {"cells": {"type": "static", "shape": [1, -1, 4], "dtype": "int32"},
                         "mesh_pos": {"type": "static", "shape": [1, -1, 3], "dtype": "float32"},
                         "node_type": {"type": "static", "shape": [1, -1, 1], "dtype": "int32"},
                         "world_pos": {"type": "dynamic", "shape": [steps, -1, 3], "dtype": "float32"},
                         "stress": {"type": "dynamic", "shape": [steps, -1, 1], "dtype": "float32"}}}
    (folder / "meta.json").write_text(json.dumps(meta))
    path = folder / "valid.tfrecord"
    path.write_bytes(encode_tfrecord([encode_example({k: v.tobytes() for k, v in a.items()})]))
    return path, {**a, "cells": tets[None]}


# ----- conversions
def test_cylinder_flow_layout_converts_exactly(tmp_path, capsys):
    src, arrays = cylinder_dataset(tmp_path / "cylinder_flow")
    out = tmp_path / "cyl.h5"
    assert main(["convert", str(src), str(out)]) == 0
    assert "2 entries from the deepmind dataset" in capsys.readouterr().out
    with Store(out) as store:
        assert store.names() == ["000000", "000001"]
        assert store.metadata["deepmind_meta"] == json.loads((src.parent / "meta.json").read_text())
        assert store.metadata["source"] == {"format": "deepmind", "file": "train.tfrecord"}
        for name, a in zip(store.names(), arrays):
            traj = store.read(name)
            assert_same(traj.mesh.points, a["mesh_pos"][0])
            assert list(traj.mesh.cells) == ["triangle"]
            assert_same(traj.mesh.cells["triangle"], a["cells"][0].astype(np.int64))
            assert_same(traj.mesh.node_type, a["node_type"][0, :, 0])
            assert set(traj.point_fields) == {"velocity", "pressure"} and not traj.cell_fields
            assert_same(traj.point_fields["velocity"], a["velocity"])
            assert_same(traj.point_fields["pressure"], a["pressure"][..., 0])  # (T, N, 1) -> (T, N)
            assert_same(traj.times, np.arange(6) * DT)
            assert traj.dt == DT and traj.positions is None and traj.params == {}
            assert not traj.mesh.point_data and not traj.mesh.cell_data and not traj.mesh.field_data


def test_node_type_codes_map_to_ours():
    from sim.mesh.foreign.deepmind import NODE_TYPES

    # DeepMind's NodeType: NORMAL 0, OBSTACLE 1, AIRFOIL 2, HANDLE 3, INFLOW 4, OUTFLOW 5, WALL_BOUNDARY 6
    assert NODE_TYPES == {0: NodeType.INTERIOR, 1: NodeType.OBSTACLE, 2: NodeType.AIRFOIL, 3: NodeType.HANDLE,
                          4: NodeType.INFLOW, 5: NodeType.OUTFLOW, 6: NodeType.WALL}
    assert all(int(k) == int(v) for k, v in NODE_TYPES.items())


def test_deforming_plate_layout_gives_a_moving_tetra_mesh(tmp_path):
    src, a = plate_dataset(tmp_path / "deforming_plate")
    out = tmp_path / "plate.h5"
    assert main(["convert", str(src), str(out), "--from", "deepmind"]) == 0
    with Store(out) as store:
        traj = store.read("000000")
        assert "times" in store.metadata  # no dt in meta.json: the times are step numbers, and it says so
    assert_same(traj.mesh.points, a["mesh_pos"][0])
    assert_same(traj.mesh.cells["tetra"], a["cells"][0].astype(np.int64))
    assert_same(traj.mesh.node_type, a["node_type"][0, :, 0])
    assert_same(traj.positions, a["world_pos"])  # world_pos of the mesh's dimension: the moving points
    assert set(traj.point_fields) == {"stress"}
    assert_same(traj.point_fields["stress"], a["stress"][..., 0])
    assert_same(traj.times, np.arange(5, dtype=np.float64))
    assert traj.dt == 1.0


def test_tetrahedra_of_the_other_orientation_are_reordered_and_counted(tmp_path):
    src, a = plate_dataset(tmp_path / "p", flip_first=True)
    out = tmp_path / "plate.h5"
    assert main(["convert", str(src), str(out)]) == 0
    traj = Store(out).read("000000")
    assert_same(traj.mesh.cells["tetra"], a["cells"][0].astype(np.int64))  # the VTK-positive order
    assert traj.params == {"reoriented_cells": 1}


def test_flag_layout_keeps_3d_world_pos_of_a_2d_mesh_as_a_field(tmp_path):
    folder = tmp_path / "flag_simple"
    folder.mkdir()
    pts, tris, _ = channel(4, 3)
    types = np.zeros(len(pts), dtype=np.int32)
    types[:2] = 3
    world = np.random.default_rng(2).random((4, len(pts), 3)).astype(np.float32)
    meta = {"dt": 0.02, "field_names": ["cells", "mesh_pos", "node_type", "world_pos"],
            "features": {"cells": {"type": "static", "shape": [1, -1, 3], "dtype": "int32"},
                         "mesh_pos": {"type": "static", "shape": [1, -1, 2], "dtype": "float32"},
                         "node_type": {"type": "static", "shape": [1, -1, 1], "dtype": "int32"},
                         "world_pos": {"type": "dynamic", "shape": [4, -1, 3], "dtype": "float32"}}}
    (folder / "meta.json").write_text(json.dumps(meta))
    record = encode_example({"cells": tris.tobytes(), "mesh_pos": pts.tobytes(), "node_type": types.tobytes(),
                             "world_pos": world.tobytes()})
    (folder / "train.tfrecord").write_bytes(encode_tfrecord([record]))
    assert main(["convert", str(folder / "train.tfrecord"), str(tmp_path / "flag.h5")]) == 0
    traj = Store(tmp_path / "flag.h5").read("000000")
    assert traj.positions is None and traj.mesh.dim == 2
    assert_same(traj.point_fields["world_pos"], world)


def test_detected_from_the_file_without_its_suffix_and_streamed_in_python(tmp_path):
    from sim.mesh.foreign import detect, open_dataset

    src, arrays = cylinder_dataset(tmp_path / "d", sizes=((5, 3),))
    renamed = src.with_name("train.records")
    src.rename(renamed)
    assert detect(renamed) == "deepmind"
    assert main(["convert", str(renamed), str(tmp_path / "x.h5")]) == 0
    with open_dataset(renamed) as data:
        (name, traj), = list(data)
    assert name == "000000"
    assert_same(traj.point_fields["velocity"], arrays[0]["velocity"])


def test_read_names_the_dataset_and_the_command(tmp_path):
    from sim.errors import FileFormatError

    src, _ = cylinder_dataset(tmp_path / "d", sizes=((5, 3),))
    with pytest.raises(FileFormatError, match=r"DeepMind MeshGraphNets dataset.*sim convert train.tfrecord OUT.h5"):
        read(src)


# ----- bad inputs: one error, exit 2, nothing written
def _corrupt_data_crc(src: Path) -> None:
    raw = bytearray(src.read_bytes())
    raw[-5] ^= 0xFF  # the last data byte of the second record: a pressure value, still a valid Example
    src.write_bytes(bytes(raw))


def _corrupt_length_crc(src: Path) -> None:
    raw = bytearray(src.read_bytes())
    raw[9] ^= 0x01
    src.write_bytes(bytes(raw))


def _truncate(src: Path) -> None:
    src.write_bytes(src.read_bytes()[:-7])


def _meta(change):
    def edit(src: Path) -> None:
        meta_path = src.parent / "meta.json"
        meta = json.loads(meta_path.read_text())
        change(meta)
        meta_path.write_text(json.dumps(meta))
    return edit


def _record(features):
    def write(src: Path) -> None:
        src.write_bytes(encode_tfrecord([encode_example(features)]))
    return write


def _varlen(meta):
    meta["features"]["mesh_pos"]["type"] = "dynamic_varlen"
    meta["features"]["cells"]["type"] = "dynamic_varlen"


@pytest.mark.parametrize("damage, message", [
    (_corrupt_data_crc, "train.tfrecord: record 1 (byte 2908): the CRC of its 3108 data bytes does not match"),
    (_corrupt_length_crc, "record 0 (byte 0): the CRC of its length does not match"),
    (_truncate, "train.tfrecord: truncated: record 1 (byte "),
    (lambda src: (src.parent / "meta.json").unlink(), "train.tfrecord: no meta.json beside it"),
    (_meta(lambda m: m["features"]["pressure"].update(type="sparse")),
     "meta.json: field 'pressure' has the unknown type 'sparse'"),
    (_meta(_varlen), "meta.json: field(s) 'cells', 'mesh_pos' are dynamic_varlen"),
    (_meta(lambda m: m["features"]["velocity"].update(dtype="string")), "field 'velocity' has the unknown dtype"),
    (_meta(lambda m: m["field_names"].remove("pressure")),
     "record 0 (byte 0) holds field(s) ['pressure'] that meta.json does not describe"),
    (_meta(lambda m: m["features"]["velocity"].update(shape=[6, -1, 3])),
     "field 'velocity' holds 336 float32 values, which do not fit the shape [6, -1, 3]"),
    (_record({"mesh_pos": np.zeros((5, 2), np.float32).tobytes()}), "lacks field(s) ['cells', 'node_type'"),
    (_record({k: np.zeros(6, np.int32).tobytes() for k in ("mesh_pos", "node_type", "velocity", "pressure")}
             | {"cells": ("float_list", np.zeros(6, np.float32).tobytes())}),
     "field 'cells' holds a float_list"),
    (lambda src: src.write_bytes(src.read_bytes()[:12 + 3]), "truncated: record 0 (byte 0) declares"),
])
def test_bad_dataset_is_one_error_and_no_output(tmp_path, capsys, damage, message):
    src, _ = cylinder_dataset(tmp_path / "cylinder_flow")
    damage(src)
    out = tmp_path / "out" / "cyl.h5"
    out.parent.mkdir()
    assert main(["convert", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("sim: error: ") and message in err, err
    assert list(out.parent.iterdir()) == []  # no store, not even a temporary file


def test_bad_node_type_and_bad_output_are_one_error(tmp_path, capsys):
    src, arrays = cylinder_dataset(tmp_path / "d", sizes=((5, 3),))
    a = dict(arrays[0])
    a["node_type"] = a["node_type"].copy()
    a["node_type"][0, 0, 0] = 9  # DeepMind's NodeType.SIZE is a count, not a type
    src.write_bytes(encode_tfrecord([encode_example({k: v.tobytes() for k, v in a.items()})]))
    assert main(["convert", str(src), str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err
    assert "record 0 (byte 0): node_type holds [9], not one of DeepMind's node types" in err
    assert main(["convert", str(src), str(tmp_path / "o.pvd")]) == 2
    assert "converts into a sim store: give an .h5 output" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "o.pvd").exists()


# ----- the converted data trains
def test_converted_cylinder_flow_trains_with_our_meshgraphnet_config(tmp_path, capsys):
    from sim.demo import demo_config

    src, _ = cylinder_dataset(tmp_path / "cylinder_flow", steps=5)
    data = tmp_path / "data"
    data.mkdir()
    assert main(["convert", str(src), str(data / "train.h5")]) == 0
    cfg = demo_config(data, tmp_path / "run", train_seconds=60.0, quick=True)  # MeshGraphNet, CPU preset
    cfg["data"] = {"train": str(data / "train.h5"), "batch_size": 1}
    cfg["train"].update(steps=3, log_every=1, normalizer_accumulation_steps=2)
    config = tmp_path / "mgn.yaml"
    config.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["train", str(config)]) == 0
    out = capsys.readouterr().out
    loss = float(next(line for line in out.splitlines() if line.startswith("final_loss:")).split()[1])
    assert np.isfinite(loss)
    assert main(["eval", str(tmp_path / "run" / "checkpoint.pt"), str(data / "train.h5"), "--steps", "3"]) == 0
