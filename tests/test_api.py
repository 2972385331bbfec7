"""The Python API: sim.load for every saved kind, rollout/predict equal the engine, streaming,
ensembles with mean and std, clear errors for queries that do not fit, thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import pyvista as pv
import sympy as sp

import sim
import sim.mesh as sm
from sim.errors import FileFormatError, SimError
from sim.mesh import Mesh, NodeType, Store
from sim.rollout import rollout
from sim.families import train, train_ensemble
from sim.train import Config, load_model
from tests.train.diffusion_data import diffusion_store


def _cfg(tmp_path, data, out="run", steps=40, seed=0):
    return Config.from_dict({
        "model": {"network_args": {"latent": 16, "steps": 2}, "fields": ["u"], "noise_std": 0.001},
        "data": {"train": str(data), "batch_size": 2},
        "optim": {"lr": 3e-3, "lr_final": 3e-4},
        "train": {"steps": steps, "out": str(tmp_path / out), "log_every": 10, "normalizer_accumulation_steps": 20,
                  "seed": seed},
    })


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    data = diffusion_store(tmp / "diff.h5")
    train(_cfg(tmp, data), progress=False)
    with Store(data) as s:
        traj = s.read(s.names()[0])
    return tmp / "run" / "checkpoint.pt", traj, data


def test_load_gives_a_mesh_surrogate_whose_rollout_equals_the_engine(trained):
    ckpt, traj, _ = trained
    surrogate = sim.load(ckpt)
    assert surrogate.family == "mesh" and surrogate.describe()["fields"] == {"u": 1}
    out = surrogate.rollout(traj, 6)
    model, _ = load_model(ckpt)
    ref = traj.point_fields["u"][..., None].astype(np.float32)
    direct = rollout(model, [traj.mesh], [ref[0]], 6, traj.dt, reference=[ref[:7]])
    assert out.num_steps == 7 and out.dt == pytest.approx(traj.dt)
    np.testing.assert_allclose(out.point_fields["u"][-1], direct.final[0][:, 0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.point_fields["u"][0], traj.point_fields["u"][0], atol=1e-7)
    # prescribed (wall) nodes follow the trajectory's own later steps
    wall = traj.mesh.node_type == NodeType.WALL
    np.testing.assert_allclose(out.point_fields["u"][:, wall], traj.point_fields["u"][:7, wall], atol=1e-7)


def test_set_compile_rolls_out_through_torch_compile_with_the_same_result(trained, monkeypatch):
    import torch

    ckpt, traj, _ = trained
    compiled = []

    def fake_compile(fn, **kwargs):  # records what would be compiled; runs it as it is (compiling takes minutes)
        compiled.append(getattr(fn, "__name__", type(fn).__name__))
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    eager = sim.load(ckpt).rollout(traj, 4)
    assert compiled == []
    surrogate = sim.load(ckpt).set_compile()
    assert surrogate.describe()["compiled"] is True
    out = surrogate.rollout(traj, 4)
    assert compiled == ["predict_update"]
    np.testing.assert_array_equal(out.point_fields["u"], eager.point_fields["u"])
    assert sim.load(ckpt).describe()["compiled"] is False and not surrogate.set_compile(False).compiled


def test_bf16_rollouts_run_the_network_in_bfloat16_and_stay_close_to_fp32(trained, monkeypatch):
    import torch

    ckpt, traj, _ = trained
    ref = sim.load(ckpt).rollout(traj, 6)
    surrogate = sim.load(ckpt).set_precision("bf16")
    assert surrogate.describe()["precision"] == "bf16"
    seen = []
    real_linear = torch.nn.functional.linear

    def linear(x, w, b=None):  # the dtype the network's products run in
        out = real_linear(x, w, b)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.functional, "linear", linear)
    half = surrogate.rollout(traj, 6)
    monkeypatch.undo()
    assert seen and set(seen) == {torch.bfloat16}
    assert half.point_fields["u"].dtype == np.float32
    a, b, start = ref.point_fields["u"][-1], half.point_fields["u"][-1], traj.point_fields["u"][0]
    diff = np.linalg.norm(b - a) / np.linalg.norm(a - start)
    assert 0 < diff < 0.05  # bfloat16 changes the result, by a small part of the rollout's change
    with pytest.raises(SimError, match="precision must be one of fp32, bf16"):
        surrogate.set_precision("int4")
    np.testing.assert_array_equal(surrogate.set_precision("fp32").rollout(traj, 6).point_fields["u"],
                                  ref.point_fields["u"])


def test_a_parameter_sweep_runs_as_one_batch_and_equals_one_rollout_per_query(tmp_path):
    data = diffusion_store(tmp_path / "kappa.h5", kappas=[0.04, 0.12])
    cfg = _cfg(tmp_path, data, steps=30)
    cfg.model.scalars = ["kappa"]
    train(cfg, progress=False)
    surrogate = sim.load(tmp_path / "run" / "checkpoint.pt")
    with Store(data) as s:
        traj = s.read(s.names()[0])
    queries = [{"kappa": 0.04}, {"kappa": 0.08}, {"kappa": 0.12}]
    calls = []
    real = surrogate.simulator.predict_update

    def counted(state, *args):
        calls.append(state.shape[0])
        return real(state, *args)

    surrogate.simulator.predict_update = counted
    swept = surrogate.sweep(traj, 5, queries)
    del surrogate.simulator.predict_update
    n = traj.mesh.num_points
    assert calls == [3 * n] * 5  # one batched call per step for the three queries
    assert len(swept) == 3
    for q, out in zip(queries, swept):
        alone = surrogate.rollout(traj, 5, params=q)
        np.testing.assert_allclose(out.point_fields["u"], alone.point_fields["u"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(swept[0].point_fields["u"][-1], swept[2].point_fields["u"][-1])
    with pytest.raises(SimError, match="non-empty list of dicts"):
        surrogate.sweep(traj, 5, [])
    with pytest.raises(SimError, match="takes no parameter"):
        surrogate.sweep(traj, 5, [{"kappa": 0.1, "nu": 1.0}])


def test_rollout_streams_the_same_steps_it_returns(trained, tmp_path):
    ckpt, traj, _ = trained
    out = sim.load(ckpt).rollout(traj, 4, out=tmp_path / "r.pvd")
    series = sm.read(tmp_path / "r.pvd")
    np.testing.assert_allclose(series.point_fields["u"], out.point_fields["u"], atol=1e-7)
    np.testing.assert_allclose(series.times, out.times)


def test_predict_is_the_first_rollout_step_on_the_callers_mesh(trained):
    ckpt, traj, _ = trained
    surrogate = sim.load(ckpt)
    mesh = Mesh(traj.mesh.points, traj.mesh.cells, point_data={"u": traj.point_fields["u"][3]},
                node_type=traj.mesh.node_type)
    grid = surrogate.predict(mesh)
    assert isinstance(grid, pv.UnstructuredGrid) and grid.n_points == mesh.num_points
    step = surrogate.rollout(mesh, 1, dt=0.1)
    np.testing.assert_allclose(grid.point_data["u"], step.point_fields["u"][-1], atol=1e-7)
    assert not np.allclose(grid.point_data["u"], mesh.point_data["u"])  # it moved


def test_queries_that_do_not_fit_the_model_are_clear_errors(trained):
    ckpt, traj, _ = trained
    surrogate = sim.load(ckpt)
    m = traj.mesh
    with pytest.raises(SimError, match=r"no field\(s\) \['u'\] the model needs"):
        surrogate.predict(Mesh(m.points, m.cells, point_data={"T": np.zeros(m.num_points)}, node_type=m.node_type))
    with pytest.raises(SimError, match=r"field 'u' has shape \(49, 3\); the model expects \(49,\)"):
        surrogate.predict(_with(m, u=np.zeros((m.num_points, 3))))
    with pytest.raises(SimError, match="trained on 2D meshes; this mesh is 3D"):
        pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
        surrogate.predict(Mesh(pts, {"tetra": [[0, 1, 2, 3]]}, point_data={"u": np.zeros(4)},
                               node_type=np.zeros(4, np.int32)))
    nt = m.node_type.copy()
    nt[0] = 42
    with pytest.raises(SimError, match=r"unknown node type value\(s\) \[42\]"):
        surrogate.predict(Mesh(m.points, m.cells, point_data={"u": np.zeros(m.num_points)}, node_type=nt))
    with pytest.raises(SimError, match="the mesh has no node types"):
        surrogate.predict(Mesh(m.points, m.cells, point_data={"u": np.zeros(m.num_points)}))
    with pytest.raises(SimError, match=r"takes no parameter\(s\) \[.reynolds.\]"):
        surrogate.predict(_with(m, u=np.zeros(m.num_points)), reynolds=100.0)


def _with(mesh: Mesh, **fields) -> Mesh:
    return Mesh(mesh.points, mesh.cells, point_data=fields, node_type=mesh.node_type)


def test_concurrent_queries_equal_serial_ones(trained):
    ckpt, traj, _ = trained
    surrogate = sim.load(ckpt)
    queries = [_with(traj.mesh, u=traj.point_fields["u"][t]) for t in range(8)]
    serial = [surrogate.predict(q).point_data["u"].copy() for q in queries]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def worker(ids: list[int]) -> None:
        try:
            for i in ids:
                results[i] = surrogate.predict(queries[i]).point_data["u"].copy()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=([i, i + 4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(8):
        np.testing.assert_array_equal(results[i], serial[i])


def test_ensemble_gives_mean_and_std_of_its_members(trained, tmp_path):
    _, traj, data = trained
    summary = train_ensemble(_cfg(tmp_path, data, out="ens", steps=20), members=3, progress=False)
    ens = sim.load(summary["checkpoint"])
    assert ens.family == "mesh" and ens.describe()["members"] == 3  # the family, whatever the file
    out = ens.rollout(traj, 3, out=tmp_path / "e.xdmf")
    members = [sim.load(tmp_path / "ens" / f"member_{i}" / "checkpoint.pt").rollout(traj, 3) for i in range(3)]
    stack = np.stack([m.point_fields["u"] for m in members])
    np.testing.assert_allclose(out.point_fields["u"], stack.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.point_fields["u_std"], stack.std(0), rtol=1e-5, atol=1e-7)
    assert out.point_fields["u_std"][-1].max() > 0  # different seeds, different predictions
    assert sm.read(tmp_path / "e.xdmf").point_fields.keys() == {"u", "u_std"}
    grid = ens.predict(_with(traj.mesh, u=traj.point_fields["u"][0]))
    assert {"u", "u_std"} <= set(grid.point_data)
    # the CLI rolls the manifest's members together through the one loop (a composite stepper)
    from sim.cli import main

    with sm.Store(data) as store:
        name = store.names()[0]
        first = store.read(name)
    assert main(["rollout", summary["checkpoint"], str(data), "--entry", name, "--steps", "3",
                 "--out", str(tmp_path / "cli")]) == 0
    series = sm.read(tmp_path / "cli" / f"{name}.pvd")
    assert {"u", "u_std", "u_truth", "u_error"} <= set(series.point_fields)
    api = ens.rollout(first, 3)
    np.testing.assert_allclose(series.point_fields["u"], api.point_fields["u"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(series.point_fields["u_std"], api.point_fields["u_std"], rtol=1e-5, atol=1e-6)


def test_mmgp_file_loads_as_a_surrogate_with_std(tmp_path):
    from tests.models.test_mmgp import bumped_plate, field_of

    from sim.models.mmgp import MMGP

    rng = np.random.default_rng(1)
    params = [(rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.7), rng.uniform(1.0, 2.0)) for _ in range(8)]
    meshes = [bumped_plate(b, w, size=0.2) for b, w, _ in params]
    model = MMGP(shape_modes=4, field_modes=4, n_restarts=0, n_draws=32)
    model.fit(meshes[:7], {"load": np.array([p[2] for p in params[:7]])},
              {"u": [field_of(m, p[2]) for m, p in zip(meshes[:7], params[:7])]})
    model.save(tmp_path / "m.npz")
    surrogate = sim.load(tmp_path / "m.npz")
    assert surrogate.family == "mmgp" and surrogate.describe()["scalars_in"] == ["load"]
    grid = surrogate.predict(meshes[7], load=1.5)
    direct = model.predict(meshes[7], {"load": 1.5})
    np.testing.assert_allclose(grid.point_data["u"], direct["fields"]["u"], rtol=1e-6, atol=1e-9)
    above = meshes[7].points[:, 1] > 0.05  # the field is 0 on the bottom (y = 0) for every sample
    assert (np.linalg.norm(grid.point_data["u_std"], axis=1)[above] > 0).all()
    with pytest.raises(SimError, match=r"missing input scalar\(s\) \['load'\]"):
        surrogate.predict(meshes[7])
    with pytest.raises(SimError, match="not time-stepping models"):
        surrogate.rollout(meshes[7], 3)
    with pytest.raises(SimError, match="float32 only"):
        surrogate.set_precision("bf16")
    with pytest.raises(SimError, match="set_compile applies to mesh and particle models"):
        surrogate.set_compile()


def test_load_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(FileFormatError, match="no such model file"):
        sim.load(tmp_path / "missing.pt")
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FileFormatError, match="not a readable sim checkpoint"):
        sim.load(tmp_path / "x.pt")
    (tmp_path / "e.json").write_text('{"format": "sim.ensemble", "version": 1, "members": ["a.pt"]}')
    with pytest.raises(FileFormatError, match="at least two members"):
        sim.load(tmp_path / "e.json")


def test_particle_surrogate_rolls_out_dense_points_and_any_queries(tmp_path, monkeypatch):
    """GIOROM through sim.load: the rollout of all particles equals the particle engine's, and
    unseen query points of the reference configuration are decoded too."""
    from tests.data.mpm_store import mpm_store
    from tests.train.test_particle_training import _config

    from sim.rollout.particles import particle_rollout

    data = mpm_store(tmp_path / "jelly.h5", material="jelly", frames=14)
    train(_config(tmp_path, data, steps=20), progress=False)
    surrogate = sim.load(tmp_path / "run" / "checkpoint.pt")
    assert surrogate.family == "particle" and surrogate.describe()["dense_decoder"]
    with Store(data) as s:
        traj = s.read(s.names()[0])
    h = surrogate.history
    out = surrogate.rollout(traj, 3, out=tmp_path / "p.pvd")
    model, _ = load_model(tmp_path / "run" / "checkpoint.pt")
    pos = traj.positions.astype(np.float32)
    direct = particle_rollout(model, [pos[:h]], 3, rest=[pos[0]])
    assert out.num_steps == 4 and out.positions.shape == (4, traj.mesh.num_points, 2)
    np.testing.assert_allclose(out.positions[-1], direct.final[0], atol=1e-6)
    np.testing.assert_allclose(sm.read(tmp_path / "p.pvd").positions, out.positions, atol=1e-6)
    queries = pos[0][:10] + 0.003  # points that are not particles
    dense = surrogate.rollout(traj, 3, queries=queries)
    assert dense.positions.shape == (4, 10, 2) and np.isfinite(dense.positions).all()
    with pytest.raises(SimError, match="the model needs 6 frames to start"):
        surrogate.rollout(sm.Trajectory(traj.mesh, traj.times[:3], positions=traj.positions[:3]), 2)
    half = surrogate.set_precision("bf16").rollout(traj, 3)  # bfloat16 network: close, not equal
    moved = np.linalg.norm(out.positions[-1] - pos[h - 1])
    assert 0 < np.linalg.norm(half.positions[-1] - out.positions[-1]) < 0.05 * moved
    assert surrogate.describe()["precision"] == "bf16" and half.positions.dtype == out.positions.dtype
    import torch

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled.append(fn) or fn)  # records, runs eagerly
    again = surrogate.set_precision("fp32").set_compile().rollout(traj, 3)
    assert compiled == [surrogate.model.network] and surrogate.describe()["compiled"] is True
    np.testing.assert_array_equal(again.positions, out.positions)


def test_prose_surrogate_predicts_the_future_and_equations(tmp_path):
    from tests.models.test_prose import TINY

    from sim.models.prose import PROSE
    from sim.train.checkpoint import save_checkpoint

    torch_model = PROSE(**TINY)
    save_checkpoint(tmp_path / "p.pt", torch_model)
    surrogate = sim.load(tmp_path / "p.pt")
    assert surrogate.family == "prose"
    t = np.linspace(0, 2, 64)
    window = np.stack([np.sin(t), np.cos(t), 0.5 * t], 1)
    future, exprs = surrogate.predict((t, window), symbols=["x1", "-x0", "0.5"], fuse_tol=None)
    q = t[-1] + (t[1] - t[0]) * np.arange(1, 129)
    np.testing.assert_allclose(future.times, q)
    direct, _ = torch_model.query(t, window, q, symbols=["x1", "-x0", "0.5"])
    np.testing.assert_allclose(future.point_fields["state"][:, 0], direct, rtol=1e-5, atol=1e-6)
    assert future.params["prediction"] == "decoder"
    assert exprs is None or len(exprs) == 3  # an untrained model may not produce a parsable system
    with pytest.raises(SimError, match="the equation guess has 2 components; the window has 3"):
        surrogate.predict((t, window), symbols=["x1", "x0"])
    # equations that reproduce the window give the future by integration (x0' = x1, x1' = -x0, x2' = 0.5)
    x0, x1 = sp.symbols("x0 x1")
    surrogate.model.query = lambda *a, **k: (direct, [x1, -x0, sp.Float(0.5)])
    fused, _ = surrogate.predict((t, window))
    assert fused.params["prediction"] == "equations"
    truth = np.stack([np.sin(q), np.cos(q), 0.5 * q], 1)
    np.testing.assert_allclose(fused.point_fields["state"][:, 0], truth, atol=1e-3)
    assert surrogate.predict((t, window), fuse_tol=None)[0].params["prediction"] == "decoder"


def test_evaluate_reports_what_sim_eval_does(trained, tmp_path, capsys):
    from sim.cli import main

    ckpt, _, data = trained
    res = sim.evaluate(ckpt, data, steps=5)
    with Store(data) as s:
        assert set(res["entries"]) == set(s.names())
    assert main(["eval", str(ckpt), str(data), "--steps", "5", "--json", str(tmp_path / "e.json")]) == 0
    import json

    assert json.loads((tmp_path / "e.json").read_text()) == res  # the same rollouts, the same numbers
