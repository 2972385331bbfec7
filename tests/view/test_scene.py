"""What the viewer draws (sim.view.scene), off screen, without a browser."""

from __future__ import annotations

import numpy as np
import pytest

from sim.mesh import Mesh, Trajectory, write_pvd
from sim.mesh.frames import TrajectoryFrames, open_frames

pytest.importorskip("pyvista")
from sim.view.scene import MAGNITUDE, VALUE, Scene, component_values, fields_of  # noqa: E402


@pytest.fixture
def scene(tmp_path, traj):
    s = Scene(open_frames(write_pvd(traj, tmp_path / "roll.pvd")), window_size=[600, 200])
    yield s
    s.close()


def _drawn(img: np.ndarray) -> float:
    """How much of the picture is not the background."""
    bg = img[0, 0].astype(int)
    return float((np.abs(img.astype(int) - bg).sum(axis=-1) > 30).mean())


def test_compared_fields_and_components(traj):
    fields = fields_of(TrajectoryFrames(traj, "t").frame(0))
    assert set(fields) == {"velocity", "pressure", "node_type", "coordinates"}
    assert fields["velocity"].compared and not fields["pressure"].compared
    assert fields["velocity"].choices == [MAGNITUDE, "x", "y"] and fields["pressure"].choices == [VALUE]
    v = np.array([[3.0, 4.0], [-1.0, 0.0]])
    np.testing.assert_allclose(component_values(v, MAGNITUDE), [5.0, 1.0])
    np.testing.assert_allclose(component_values(v, "y"), [4.0, 0.0])
    with pytest.raises(ValueError):
        component_values(v, "z")
    np.testing.assert_allclose(component_values(np.array([[-2.0], [3.0]]), VALUE), [-2.0, 3.0])  # signed


def test_scan_gives_the_rollout_error_curve_and_fixed_ranges(scene, traj):
    assert scene.compared and scene.panels() == ["prediction", "truth", "error"]
    for i in range(scene.num_steps):
        scene.scan(i)
    assert scene.scan_complete
    err, truth = traj.point_fields["velocity_error"], traj.point_fields["velocity_truth"]
    np.testing.assert_allclose(scene.curves["velocity"].rmse, np.sqrt((err ** 2).mean(axis=(1, 2))), rtol=1e-6)
    np.testing.assert_allclose(scene.curves["velocity"].persistence,
                               np.sqrt(((truth - truth[0]) ** 2).mean(axis=(1, 2))), rtol=1e-6)
    # fixed: prediction and truth share the range over every step; per frame: this step only
    both = np.concatenate([traj.point_fields["velocity"], truth])
    mag = np.linalg.norm(both, axis=-1)
    frame = scene.frames.frame(3)
    np.testing.assert_allclose(scene.colour_range("truth", frame), (mag.min(), mag.max()), rtol=1e-6)
    scene.fixed_range = False
    step = np.linalg.norm(np.concatenate([traj.point_fields["velocity"][3], truth[3]]), axis=-1)
    np.testing.assert_allclose(scene.colour_range("prediction", frame), (step.min(), step.max()), rtol=1e-6)
    scene.set_component("x")  # a signed error component: symmetric about zero
    lo, hi = scene.colour_range("error", frame)
    assert lo == -hi and hi > 0


def test_the_picture_follows_step_field_and_component(scene):
    img0 = scene.image()
    assert _drawn(img0) > 0.1
    scene.show(scene.num_steps - 1)
    img1 = scene.image()
    assert np.abs(img1.astype(int) - img0.astype(int)).mean() > 1.0
    scene.set_field("pressure")
    assert scene.panels() == ["prediction"]
    img2 = scene.image()
    assert np.abs(img2.astype(int) - img1.astype(int)).mean() > 1.0
    assert scene.curve_png() is None  # pressure has no truth
    scene.set_field("velocity")
    scene.scan(0), scene.scan(1)
    png = scene.curve_png()
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no field"):
        scene.set_field("nope")


def _box(n: int = 6) -> Mesh:
    g = np.linspace(0.0, 1.0, n)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    pts = np.c_[x.ravel(), y.ravel(), z.ravel()]
    idx = np.arange(n ** 3).reshape(n, n, n)
    a = idx[:-1, :-1, :-1].ravel()
    hexes = np.stack([a, idx[1:, :-1, :-1].ravel(), idx[1:, 1:, :-1].ravel(), idx[:-1, 1:, :-1].ravel(),
                      idx[:-1, :-1, 1:].ravel(), idx[1:, :-1, 1:].ravel(), idx[1:, 1:, 1:].ravel(),
                      idx[:-1, 1:, 1:].ravel()], axis=1)
    return Mesh(pts, {"hexahedron": hexes})


def test_a_clip_plane_cuts_a_3d_mesh():
    box = _box()
    traj = Trajectory(box, np.arange(2.0), {"u": np.stack([box.points[:, 0], 2 * box.points[:, 0]])})
    s = Scene(TrajectoryFrames(traj, "box"), window_size=[300, 300])
    try:
        full = s._grids[0].n_cells
        s.set_clip("x", 0.5)
        assert 0 < s._grids[0].n_cells < full
        s.set_clip(None)
        assert s._grids[0].n_cells == full
    finally:
        s.close()


def test_a_particle_set_is_drawn_as_points():
    rng = np.random.default_rng(1)
    pos = rng.random((3, 200, 2))
    traj = Trajectory(Mesh(pos[0]), np.arange(3.0), {"speed": rng.random((3, 200))}, positions=pos)
    s = Scene(TrajectoryFrames(traj, "p"), window_size=[300, 300])
    try:
        assert s.points_only and not s.compared
        assert _drawn(s.image()) > 0.01
        s.show(2)
        np.testing.assert_allclose(np.asarray(s._grids[0].points)[:, :2], pos[2], rtol=1e-6)
    finally:
        s.close()
