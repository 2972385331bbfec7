"""MMGP: morphing onto the disk, exact P1 transfer of linear fields, POD, GP interpolation and uncertainty."""

from __future__ import annotations

import numpy as np
import pytest

from sim.mesh import Mesh
from sim.models.mmgp import MMGP, POD, NotFittedError, floater_map, p1_mass_matrix, p1_transfer, rbf_morph
from sim.models.mmgp.morphing import boundary_loop
from solvers.meshing import gmsh_elements


def bumped_plate(bump: float, where: float, size: float = 0.12) -> Mesh:
    """Unit plate whose top side carries a smooth bump; meshed independently by gmsh."""
    import gmsh

    gmsh.initialize(["-noenv"], readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        xs = np.linspace(1, 0, 21)
        top = [(x, 1 + bump * np.exp(-((x - where) / 0.15) ** 2)) for x in xs]
        pts = [gmsh.model.occ.addPoint(x, y, 0) for x, y in [(0, 0), (1, 0)] + top]
        lines = [gmsh.model.occ.addLine(pts[0], pts[1]), gmsh.model.occ.addLine(pts[1], pts[2])]
        lines.append(gmsh.model.occ.addSpline(pts[2:]))
        lines.append(gmsh.model.occ.addLine(pts[-1], pts[0]))
        gmsh.model.occ.addPlaneSurface([gmsh.model.occ.addCurveLoop(lines)])
        gmsh.model.occ.synchronize()
        gmsh.option.setNumber("Mesh.MeshSizeMax", size)
        gmsh.model.mesh.generate(2)
        p, tri = gmsh_elements(2)
    finally:
        gmsh.finalize()
    p = p[:, :2]
    return Mesh(p, {"triangle": tri})


def field_of(mesh: Mesh, load: float) -> np.ndarray:
    """A smooth response that depends on the shape through the coordinates and on the load."""
    x, y = mesh.points[:, 0], mesh.points[:, 1]
    return np.stack([load * y * (1 + 0.3 * x), load * np.sin(1.5 * x) * y**2], 1)


@pytest.fixture(scope="module")
def family():
    rng = np.random.default_rng(0)
    params = [(rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.7), rng.uniform(1.0, 2.0)) for _ in range(14)]
    meshes = [bumped_plate(b, w) for b, w, _ in params]
    return meshes, params


def test_floater_map_onto_the_disk_without_folds(family):
    for mesh in family[0][:5]:
        tri = mesh.cells["triangle"]
        u = floater_map(mesh.points, tri, pins=4)
        loop = boundary_loop(tri, mesh.points)
        r = np.linalg.norm(u, axis=1)
        np.testing.assert_allclose(r[loop], 1.0, atol=1e-12)
        interior = np.setdiff1d(np.arange(mesh.num_points), loop)
        assert (r[interior] < 1 - 1e-9).all()
        Mesh(u, {"triangle": tri}).validate()  # no degenerate or inverted triangle
        a = u[tri]
        area = 0.5 * ((a[:, 1, 0] - a[:, 0, 0]) * (a[:, 2, 1] - a[:, 0, 1])
                      - (a[:, 2, 0] - a[:, 0, 0]) * (a[:, 1, 1] - a[:, 0, 1]))
        assert (area > 0).all() and area.sum() == pytest.approx(np.pi, rel=0.05)
        # the plate's corners land at the pinned angles
        corners = [np.argmin(np.linalg.norm(mesh.points - c, axis=1)) for c in [(0, 0), (1, 0), (0, 1)]]
        ang = np.mod(np.arctan2(u[corners, 1], u[corners, 0]), 2 * np.pi)
        np.testing.assert_allclose(ang[:2], [5 * np.pi / 4, 7 * np.pi / 4], atol=1e-9)


def test_p1_transfer_of_a_linear_field_is_exact(family):
    a, b = family[0][0], family[0][1]
    lin = lambda p: 2 * p[:, 0] - 3 * p[:, 1] + 1  # noqa: E731
    op = p1_transfer(a.points, a.cells["triangle"], b.points)
    inside = b.points[:, 1] <= 1.0  # points of b below a's lowest top edge are inside a
    np.testing.assert_allclose((op @ lin(a.points))[inside], lin(b.points)[inside], atol=1e-10)
    assert np.allclose(np.asarray(op.sum(1)).ravel(), 1.0)  # a partition of unity everywhere (clamped too)


def test_morph_cache_gives_the_floater_map_and_its_point_locator_once_per_mesh(family):
    from sim.models.mmgp.morphing import MorphCache
    from sim.models.mmgp.transfer import trifinder

    a, b, c = family[0][:3]
    cache = MorphCache()
    morphed, finder = cache(a.points, a.cells["triangle"], 4)
    np.testing.assert_array_equal(morphed, floater_map(a.points, a.cells["triangle"], pins=4))
    assert not morphed.flags.writeable  # shared between models: nobody may change it in place
    again = cache(a.points.copy(), a.cells["triangle"].copy(), 4)  # equal content, other arrays: a hit
    assert again[0] is morphed and again[1] is finder
    assert cache(a.points, a.cells["triangle"], 3)[0] is not morphed  # the pins are part of the key
    probe = b.points * 0.5 + 0.25
    q = floater_map(b.points, b.cells["triangle"], pins=4) * 0.9
    np.testing.assert_array_equal(finder(q[:, 0], q[:, 1]),
                                  trifinder(morphed, a.cells["triangle"])(q[:, 0], q[:, 1]))
    np.testing.assert_allclose(p1_transfer(morphed, a.cells["triangle"], probe, finder=finder).toarray(),
                               p1_transfer(morphed, a.cells["triangle"], probe).toarray())
    cache = MorphCache(max_nodes=a.num_points + b.num_points + c.num_points - 1)  # room for two of them
    first = cache(a.points, a.cells["triangle"], 4)[0]
    cache(b.points, b.cells["triangle"], 4)
    cache(a.points, a.cells["triangle"], 4)  # a hit makes a the newest again
    cache(c.points, c.cells["triangle"], 4)  # beyond the node budget: the least recently used (b) goes
    assert len(cache) == 2 and cache.nodes == a.num_points + c.num_points
    assert cache(a.points, a.cells["triangle"], 4)[0] is first


def test_mass_matrix_integrates_exactly(family):
    mesh = family[0][2]
    m = p1_mass_matrix(mesh.points, mesh.cells["triangle"])
    ones = np.ones(mesh.num_points)
    e = mesh.points[mesh.cells["triangle"]][:, 1:] - mesh.points[mesh.cells["triangle"]][:, :1]
    area = 0.5 * np.abs(e[:, 0, 0] * e[:, 1, 1] - e[:, 0, 1] * e[:, 1, 0]).sum()
    assert ones @ m @ ones == pytest.approx(area)


def test_pod_with_all_modes_reconstructs_exactly(family):
    mesh = family[0][0]
    rng = np.random.default_rng(1)
    snaps = rng.random((6, mesh.num_points * 2))
    pod = POD(10, p1_mass_matrix(mesh.points, mesh.cells["triangle"]), components=2).fit(snaps)
    assert pod.modes_.shape[1] == 5  # centred snapshots span 5 dimensions
    np.testing.assert_allclose(pod.inverse_transform(pod.transform(snaps)), snaps, atol=1e-10)


def test_rbf_morph_moves_centres_exactly_and_far_points_not_at_all():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    moved = rbf_morph(pts, pts[:2], np.array([[0.1, 0.0], [0.0, -0.2]]), radius=2.0)
    np.testing.assert_allclose(moved[:2], pts[:2] + [[0.1, 0.0], [0.0, -0.2]], atol=1e-12)
    np.testing.assert_allclose(moved[2], pts[2])


@pytest.fixture(scope="module")
def fitted(family):
    meshes, params = family
    train = list(range(12))
    model = MMGP(shape_modes=12, field_modes=12, n_restarts=1, n_draws=64)  # all modes: exact interpolation
    model.fit([meshes[i] for i in train], {"load": np.array([params[i][2] for i in train])},
              {"u": [field_of(meshes[i], params[i][2]) for i in train]},
              {"umax": np.array([field_of(meshes[i], params[i][2])[:, 0].max() for i in train])})
    return model


def test_predict_interpolates_training_samples_and_generalises(family, fitted):
    meshes, params = family
    for i in (0, 5):
        # a training sample comes back as its field seen through the common mesh (P1 there and back)
        res = fitted.predict(meshes[i], {"load": params[i][2]})
        truth = field_of(meshes[i], params[i][2])
        morphed = floater_map(meshes[i].points, meshes[i].cells["triangle"])
        there = p1_transfer(morphed, meshes[i].cells["triangle"], fitted.common_morphed_)
        back = p1_transfer(fitted.common_morphed_, fitted.common_triangles_, morphed)
        seen = back @ (there @ truth)
        assert np.abs(res["fields"]["u"] - seen).max() < 1e-5 * np.abs(truth).max()
    for i in (12, 13):  # unseen shapes
        res = fitted.predict(meshes[i], {"load": params[i][2]})
        truth = field_of(meshes[i], params[i][2])
        rel = np.sqrt(((res["fields"]["u"] - truth) ** 2).mean()) / np.abs(truth).max()
        assert rel < 0.05
        assert res["scalars"]["umax"] == pytest.approx(truth[:, 0].max(), rel=0.05)


def test_std_grows_away_from_the_training_data(family, fitted):
    meshes, params = family
    near = fitted.predict(meshes[3], {"load": params[3][2]})
    far = fitted.predict(meshes[3], {"load": 4.0})  # loads were drawn in [1, 2]
    assert far["fields_std"]["u"].mean() > 3 * near["fields_std"]["u"].mean()
    assert far["scalars_std"]["umax"] > 3 * near["scalars_std"]["umax"]
    q = far["fields_quantiles"]["u"]
    assert q.shape == (2, meshes[3].num_points, 2) and (q[0] <= q[1]).all()


def test_predictive_uncertainty_adds_the_fitted_noise(family, fitted):
    meshes, params = family
    pred = fitted.predict(meshes[12], {"load": params[12][2]})
    lat = fitted.predict(meshes[12], {"load": params[12][2]}, uncertainty="latent")
    np.testing.assert_allclose(pred["fields"]["u"], lat["fields"]["u"])  # same mean
    gp = fitted.output_gps_["umax"]
    factor = fitted._factor("out:umax", {"load": params[12][2]})  # the output scaling's power law
    noise_var = gp.kernel_.k2.noise_level * (gp.y_scale_ * factor) ** 2
    assert pred["scalars_std"]["umax"] ** 2 == pytest.approx(lat["scalars_std"]["umax"] ** 2 + noise_var, rel=1e-9)
    assert pred["fields_std"]["u"].mean() > lat["fields_std"]["u"].mean()
    with pytest.raises(ValueError, match="predictive"):
        fitted.predict(meshes[12], {"load": 1.5}, uncertainty="both")


def test_error_weights_are_the_calibrated_relative_error_per_unit_of_posterior_variance(family, fitted):
    from sklearn.base import clone

    meshes, params = family
    gp = fitted.field_gps_["u"]
    # the calibration: leave-one-out z-scores in closed form, checked by refitting without each sample
    # (the fitted hyperparameters held)
    z2 = []
    y = gp.y_train_
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        loo = clone(gp).set_params(kernel=gp.kernel_, optimizer=None).fit(gp.X_train_[keep], y[keep])
        mean, std = loo.predict(gp.X_train_[i:i + 1], return_std=True)
        z2.append(((y[i] - mean.ravel()) ** 2 / std.ravel() ** 2).mean())
    calib = float(np.mean(z2))
    assert fitted.gp_calibration()["u"] == pytest.approx(calib, rel=1e-6)
    unseen = [12, 13]
    x = fitted.gp_inputs([meshes[i] for i in unseen], {"load": np.array([params[i][2] for i in unseen])})
    w = fitted.gp_error_weights(x)["u"]
    var = np.diag(fitted.gp_covariance(x)["u"])
    assert w.shape == (2,) and np.all(w > 0)
    # a unit of posterior variance, de-calibrated, is the squared relative error of the latent draws
    for j, i in enumerate(unseen):
        lat = fitted.predict(meshes[i], {"load": params[i][2]}, uncertainty="latent", n_draws=4000)
        rel2 = (lat["fields_std"]["u"] ** 2).mean() / (np.linalg.norm(lat["fields"]["u"], axis=1).max()) ** 2
        assert w[j] * var[j] / calib == pytest.approx(rel2, rel=0.15)


def test_save_load_predicts_the_same(tmp_path, family, fitted):
    meshes, params = family
    fitted.save(tmp_path / "m.npz")
    again = MMGP.load(tmp_path / "m.npz")
    a = fitted.predict(meshes[12], {"load": 1.5})
    b = again.predict(meshes[12], {"load": 1.5})
    np.testing.assert_allclose(a["fields"]["u"], b["fields"]["u"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a["fields_std"]["u"], b["fields_std"]["u"], rtol=1e-6, atol=1e-12)
    grid = again.predict_pyvista(meshes[12], {"load": 1.5})
    assert grid.point_data["u"].shape == (meshes[12].num_points, 2) and "u_std" in grid.point_data


def test_unfitted_and_bad_queries_are_clear_errors(family, fitted):
    with pytest.raises(NotFittedError, match="call fit"):
        MMGP().predict(family[0][0], {"load": 1.0})
    with pytest.raises(Exception, match=r"missing input scalar\(s\) \['load'\]"):
        fitted.predict(family[0][0], {})


def test_power_scaling_learns_the_load_law_and_extrapolates_it(family, fitted):
    """The fields are proportional to the load: the fitted exponent is 1 (up to the shapes' spread), and a
    load far outside the training range [1, 2] is predicted as well as one inside it, where the raw GP
    regression (scaling none) cannot extrapolate."""
    meshes, params = family
    assert fitted.scale_names_ == ["load"]
    assert fitted.scale_coefs_["field:u"][1] == pytest.approx(1.0, abs=0.05)
    train = list(range(12))
    raw = MMGP(shape_modes=12, field_modes=12, n_restarts=1, n_draws=8, scaling="none").fit(
        [meshes[i] for i in train], {"load": np.array([params[i][2] for i in train])},
        {"u": [field_of(meshes[i], params[i][2]) for i in train]})

    def err(model, load):
        truth = field_of(meshes[12], load)
        pred = model.predict(meshes[12], {"load": load}, return_std=False)["fields"]["u"]
        return np.sqrt(((pred - truth) ** 2).mean()) / np.abs(truth).max()

    assert err(fitted, 4.0) < 1.5 * err(fitted, 1.5) + 1e-3
    assert err(raw, 4.0) > 3 * err(fitted, 4.0)
    with pytest.raises(Exception, match="must be positive"):
        fitted.predict(meshes[12], {"load": -1.0})
    with pytest.raises(ValueError, match="scaling"):
        MMGP(scaling="log")


def test_stage_errors_attribute_the_error_to_transfer_projection_and_regression(family, fitted):
    meshes, params = family
    # a training sample with every mode kept: the POD adds nothing and the GP interpolates
    seen = fitted.stage_errors(meshes[5], {"load": params[5][2]}, {"u": field_of(meshes[5], params[5][2])})["u"]
    assert seen["projection"] == pytest.approx(seen["transfer"], abs=1e-9)
    assert seen["prediction"] == pytest.approx(seen["projection"], abs=2e-5)
    # an unseen shape: the regression error shows, and equals what predict() gives
    truth = field_of(meshes[13], params[13][2])
    new = fitted.stage_errors(meshes[13], {"load": params[13][2]}, {"u": truth})["u"]
    pred = fitted.predict(meshes[13], {"load": params[13][2]}, return_std=False)["fields"]["u"]
    assert new["prediction"] == pytest.approx(np.sqrt(((pred - truth) ** 2).mean()) / np.abs(truth).max(), rel=1e-9)
    assert new["prediction"] > new["projection"] and new["transfer"] < 0.01


def test_the_mean_training_field_is_kept_unscaled(tmp_path, family, fitted):
    """The plain mean of the training fields on the common support (the mean-field baseline) is the
    unscaled one, also after saving and loading; the POD's mean is of the scaled fields."""
    meshes, params = family
    ops = [fitted._to_common(meshes[i], fitted._morph(meshes[i], i), i) for i in range(12)]
    plain = np.mean([np.asarray(op @ field_of(meshes[i], params[i][2])).ravel() for i, op in enumerate(ops)], 0)
    np.testing.assert_allclose(fitted.field_means_["u"], plain, rtol=1e-12, atol=1e-12)
    assert not np.allclose(fitted.field_pods_["u"].mean_, plain, rtol=1e-3)
    fitted.save(tmp_path / "m.npz")
    np.testing.assert_allclose(MMGP.load(tmp_path / "m.npz").field_means_["u"], plain, rtol=1e-12, atol=1e-12)
