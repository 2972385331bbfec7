"""Step-by-step reading (sim.mesh.frames) gives the same frames as reading the whole series."""

from __future__ import annotations

import numpy as np
import pytest

from sim.errors import SimError
from sim.mesh import Store, StoreWriter, read, write, write_pvd, write_xdmf
from sim.mesh.frames import open_frames


def _same_frame(frame, traj, i):
    np.testing.assert_allclose(frame.points, traj.mesh.points if traj.positions is None else traj.positions[i],
                               rtol=1e-6)
    for k, v in traj.point_fields.items():
        np.testing.assert_allclose(frame.point_data[k], v[i], rtol=1e-6, err_msg=k)
    assert frame.dim == traj.mesh.dim


@pytest.mark.parametrize("fmt", ["pvd", "xdmf", "store"])
def test_frames_equal_the_series(tmp_path, traj, fmt):
    if fmt == "pvd":
        path = write_pvd(traj, tmp_path / "roll.pvd")
    elif fmt == "xdmf":
        path = write_xdmf(traj, tmp_path / "roll.xdmf")
    else:
        path = tmp_path / "roll.h5"
        with StoreWriter(path) as w:
            w.append(traj, "case_0")
    whole = read(path)
    if isinstance(whole, Store):
        with whole:
            whole = whole.read("case_0")
    np.testing.assert_allclose(whole.point_fields["velocity"], traj.point_fields["velocity"], rtol=1e-6)
    with open_frames(path) as frames:
        assert len(frames) == traj.num_steps
        np.testing.assert_allclose(frames.times, traj.times)
        for i in (0, 5, traj.num_steps - 1, 5):  # out of order and again (the cache)
            _same_frame(frames.frame(i), whole, i)
        with pytest.raises(IndexError):
            frames.frame(traj.num_steps)


def test_a_moving_particle_set_moves(tmp_path, traj):
    from sim.mesh import Mesh, Trajectory

    rng = np.random.default_rng(0)
    pos = rng.random((4, 50, 2))
    parts = Trajectory(Mesh(pos[0]), np.arange(4.0), {"speed": rng.random((4, 50))}, positions=pos)
    path = write_pvd(parts, tmp_path / "p.pvd")
    with open_frames(path) as frames:
        _same_frame(frames.frame(3), parts, 3)
        assert not frames.frame(3).cells


def test_a_single_mesh_is_one_frame(tmp_path, traj):
    path = tmp_path / "m.vtu"
    write(traj.mesh, path)
    with open_frames(path) as frames:
        assert len(frames) == 1 and frames.frame(0).num_points == traj.mesh.num_points


def test_store_entry_choice(tmp_path, traj):
    path = tmp_path / "two.h5"
    with StoreWriter(path) as w:
        w.append(traj, "a")
        w.append(traj, "b")
    with pytest.raises(SimError, match="holds 2 entries; choose one with --entry"):
        open_frames(path)
    with pytest.raises(SimError, match="no entry 'c'"):
        open_frames(path, "c")
    with open_frames(path, "b") as frames:
        assert frames.label.endswith(":b") and len(frames) == traj.num_steps
    with pytest.raises(SimError, match="not one"):
        open_frames(write_pvd(traj, tmp_path / "r.pvd"), "a")
    with pytest.raises(SimError, match="no such file"):
        open_frames(tmp_path / "missing.pvd")


def test_a_missing_step_file_is_named_when_reached(tmp_path, traj):
    path = write_pvd(traj, tmp_path / "roll.pvd")
    step_file = sorted((tmp_path / "roll").glob("*.vtu"))[4]
    step_file.unlink()
    with open_frames(path) as frames:
        frames.frame(3)  # the others still read
        with pytest.raises(SimError, match=step_file.name):
            frames.frame(4)
