"""The HDF5 store: lazy access, appending, and clear errors for files it cannot read."""

from __future__ import annotations

import io
import json

import h5py
import numpy as np
import pytest

from sim.errors import FileFormatError, MeshError
from sim.mesh import Mesh, Store, StoreWriter, Trajectory
from sim.mesh.store import SCHEMA_VERSION
from tests.conftest import mixed_2d_mesh, trajectory_2d


class CountingFile(io.RawIOBase):
    """A read-only file that counts the bytes h5py pulls through it."""

    def __init__(self, path):
        self._f = open(path, "rb")
        self.bytes_read = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        return self._f.seek(offset, whence)

    def tell(self):
        return self._f.tell()

    def readinto(self, buffer):
        n = self._f.readinto(buffer)
        self.bytes_read += n or 0
        return n

    def close(self):
        self._f.close()
        super().close()


def _big_trajectory(seed: int, steps: int = 10, n: int = 20000) -> Trajectory:
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2))
    # random data does not compress: each trajectory costs ~steps * n * 4 bytes on disk
    return Trajectory(Mesh(pts), np.arange(steps) * 0.1,
                      point_fields={"u": rng.random((steps, n), dtype=np.float32)})


def test_reading_one_trajectory_does_not_read_the_others(tmp_path):
    path = tmp_path / "big.h5"
    with StoreWriter(path) as w:
        for i in range(8):
            w.append(_big_trajectory(i))
    size = path.stat().st_size
    one = size / 8
    f = CountingFile(path)
    store = Store(f)
    opened = f.bytes_read
    names = store.names()
    traj = store.read(names[7])
    np.testing.assert_array_equal(traj.point_fields["u"], _big_trajectory(7).point_fields["u"])
    read = f.bytes_read
    store.close()
    assert opened < 0.05 * one, f"opening read {opened} bytes"
    assert read < 1.5 * one, f"reading one of 8 trajectories read {read} of {size} bytes"
    # and one step of one field is a small fraction of a trajectory
    f2 = CountingFile(path)
    with Store(f2) as store:
        before = f2.bytes_read
        store.entry(names[3]).point_fields["u"][5]
        assert f2.bytes_read - before < 0.5 * one  # time-major chunks of a few steps


def test_append_one_at_a_time_and_resume(tmp_path):
    path = tmp_path / "gen.h5"
    with StoreWriter(path, metadata={"recipe": "x"}) as w:
        w.append(trajectory_2d(), name="a")
    with StoreWriter(path, append=True) as w:
        w.append(trajectory_2d(3), name="b")
        w.append(mixed_2d_mesh(), name="sample")
    with Store(path) as s:
        assert s.names() == ["a", "b", "sample"]
        assert s.metadata == {"recipe": "x"}
        assert s.read("b").num_steps == 3
        assert isinstance(s.read("sample"), Mesh) and s.read("sample").equals(mixed_2d_mesh())
        info = s.info()
        assert [e["num_steps"] for e in info["entries"]] == [5, 3, 0]
        assert info["entries"][0]["fields"]["point_fields/velocity"]["shape"] == [5, 6, 2]


def test_failed_append_leaves_no_entry_and_duplicate_names_are_refused(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path) as w:
        w.append(trajectory_2d(), name="a")
        with pytest.raises(FileFormatError, match="entry 'a' exists already"):
            w.append(trajectory_2d(), name="a")
        bad = trajectory_2d()
        bad.point_fields["bad/name"] = bad.point_fields.pop("velocity")
        with pytest.raises(MeshError, match="contains '/'"):
            w.append(bad, name="b")
    with Store(path) as s:
        assert s.names() == ["a"]


def test_interrupted_entry_is_refused_with_its_name(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path) as w:
        w.append(trajectory_2d(), name="a")
    with h5py.File(path, "a") as f:  # simulate a writer killed mid-entry
        f["entries/a"].attrs["complete"] = False
    with Store(path) as s, pytest.raises(FileFormatError, match="entry 'a' was not completely written"):
        s.read("a")


def test_failed_new_store_leaves_no_file(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError):
        with StoreWriter(path) as w:
            w.append(trajectory_2d())
            raise RuntimeError("solver crashed")
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match=r"nope\.h5: no such file"):
        Store(tmp_path / "nope.h5")


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.h5"
    p.write_text("hello")
    with pytest.raises(FileFormatError, match=r"x\.h5: not an HDF5 file"):
        Store(p)


def test_truncated_file(tmp_path):
    p = tmp_path / "t.h5"
    with StoreWriter(p) as w:
        w.append(_big_trajectory(0, steps=4, n=2000))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="truncated"):
        Store(p)


def test_foreign_hdf5(tmp_path):
    p = tmp_path / "foreign.h5"
    with h5py.File(p, "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(FileFormatError, match="an HDF5 file but not a sim store"):
        Store(p)


def test_unknown_schema_version(tmp_path):
    p = tmp_path / "future.h5"
    with StoreWriter(p) as w:
        w.append(trajectory_2d())
    with h5py.File(p, "a") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(FileFormatError, match=f"schema version {SCHEMA_VERSION + 1} is not supported"):
        Store(p)


def test_unknown_entry_lists_the_known_ones(tmp_path):
    p = tmp_path / "s.h5"
    with StoreWriter(p) as w:
        w.append(trajectory_2d(), name="run-1")
    with Store(p) as s, pytest.raises(FileFormatError, match=r"no entry 'run-2'.*run-1"):
        s.read("run-2")


def test_schema_document_matches_the_writer(tmp_path):
    """A store written by plain h5py from docs/store_schema.md opens as a store."""
    p = tmp_path / "by_hand.h5"
    with h5py.File(p, "w") as f:
        f.attrs["sim_format"] = "sim.store"
        f.attrs["schema_version"] = 1
        f.attrs["metadata"] = json.dumps({"source": "hand"})
        g = f.create_group("entries/case0")
        g.attrs.update(kind="trajectory", complete=True, num_points=3, num_cells=1, num_steps=2,
                       cell_types=json.dumps(["triangle"]), dt=0.5, params=json.dumps({"re": 10}))
        g["points"] = np.array([[0, 0], [1, 0], [0, 1.0]])
        g["cells/triangle"] = np.array([[0, 1, 2]])
        g["node_type"] = np.array([0, 6, 6], dtype=np.int32)
        g["times"] = np.array([0.0, 0.5])
        g["point_fields/u"] = np.ones((2, 3, 2))
    with Store(p) as s:
        traj = s.read("case0")
    assert traj.dt == 0.5 and traj.params == {"re": 10} and traj.point_fields["u"].shape == (2, 3, 2)
    assert traj.mesh.node_type.tolist() == [0, 6, 6]
