"""`sim export`: the one-step map of mesh and particle models as ONNX and torch.export files.

Each exported file is run on graphs it was not traced on (a channel-with-cylinder mesh at two
resolutions, particle windows of two sizes) and compared with the model's own one-step map in
sim (the API's rollout, the simulator's update, the particle step), within 1e-4 relative to the
output's largest magnitude. Unsupported families, bad checkpoints and failed exports are one
error line and leave nothing under the output name.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sim.cli import main
from sim.errors import SimError
from sim.export import RealSpectralConv, card_path, export, inputs_for
from sim.mesh import Mesh, Store, Trajectory
from sim.models.mesh import MeshSimulator
from sim.train.checkpoint import save_checkpoint

TOL = 1e-4
ONNX_MISSING = "onnxruntime is not installed (pip install 'sim-surrogates[export]'); the ONNX checks are skipped"


def _ort():
    return pytest.importorskip("onnxruntime", reason=ONNX_MISSING)


def rel(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def run_onnx(path: Path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    ort = _ort()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(inputs)
    return session.run(None, inputs)


@pytest.fixture(scope="module")
def cylinder_meshes():
    """The channel with a cylinder (DFG benchmark geometry) at two resolutions."""
    from solvers.cfd.geometry import channel_mesh

    coarse, fine = channel_mesh(size=0.12), channel_mesh(size=0.08)
    assert fine.num_points > coarse.num_points + 20
    return coarse, fine


def flow_state(mesh: Mesh, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x, y = mesh.points[:, 0], mesh.points[:, 1]
    u = 1.5 * 4 * y * (0.41 - y) / 0.41**2 + 0.05 * rng.standard_normal(len(x))
    return {"velocity": np.stack([u, 0.05 * np.sin(6 * x)], 1).astype(np.float32),
            "pressure": (0.3 * (2.2 - x) + 0.01 * rng.standard_normal(len(x))).astype(np.float32)}


@pytest.fixture(scope="module")
def flow_model(tmp_path_factory):
    """A freshly initialised tiny MeshGraphNet of cylinder flow (velocity, pressure), with
    normalisers from flow-like states so that its inputs are in their usual range."""
    from solvers.cfd.geometry import channel_mesh
    from sim.graph import mesh_graph

    torch.manual_seed(0)
    sim = MeshSimulator("meshgraphnet", {"latent": 16, "steps": 2}, ["velocity", "pressure"], [2, 1], 3)
    mesh = channel_mesh(size=0.1)
    g = mesh_graph(mesh)
    for seed in range(3):
        s = flow_state(mesh, seed)
        state = torch.from_numpy(np.concatenate([s["velocity"], s["pressure"][:, None]], 1))
        sim.node_normalizer.accumulate(sim.node_features(state, g.node_type))
        sim.output_normalizer.accumulate(0.01 * torch.randn(len(state), 3))
    sim.edge_normalizer.accumulate(g.edge_attr)
    path = tmp_path_factory.mktemp("flow") / "checkpoint.pt"
    save_checkpoint(path, sim.eval())
    return path


def mesh_reference(checkpoint: Path, mesh: Mesh, state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The update and next state of the model in sim: the simulator's update and one step of the
    API's rollout (boundary nodes held at their values)."""
    import sim
    from sim.graph import mesh_graph

    surrogate = sim.load(checkpoint)
    model = surrogate.simulator
    g = mesh_graph(mesh)
    x = torch.from_numpy(surrogate.state_from(state, mesh.num_points, "state"))
    with torch.no_grad():
        update = model.update(x, model.step_inputs(g)).numpy()
    traj = surrogate.rollout(Mesh(mesh.points, mesh.cells, point_data=state, node_type=mesh.node_type), 1, dt=1.0)
    nxt = np.concatenate([traj.point_fields[f][-1].reshape(mesh.num_points, -1) for f in surrogate.fields], 1)
    return update, nxt


# ----------------------------------------------------------------------------- mesh models
def test_onnx_mesh_model_matches_sim_on_cylinder_meshes_of_two_sizes(flow_model, cylinder_meshes, tmp_path, capsys):
    _ort()
    out = tmp_path / "flow.onnx"
    assert main(["export", str(flow_model), str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and f"wrote {card_path(out)}" in printed and "largest relative" in printed
    for i, mesh in enumerate(cylinder_meshes):  # neither is the graph it was traced on
        state = flow_state(mesh, 10 + i)
        inputs = inputs_for(flow_model, mesh, state)
        assert list(inputs) == ["state", "node_type", "edge_index", "edge_attr"]
        update, nxt = run_onnx(out, inputs)
        want_update, want_next = mesh_reference(flow_model, mesh, state)
        assert rel(update, want_update) < TOL and rel(nxt, want_next) < TOL
        assert np.abs(want_update).max() > 1e-4  # the model does move the state
        fixed = ~np.isin(mesh.node_type, [0, 5])  # inflow, walls, cylinder: the caller imposes them
        assert fixed.any() and np.array_equal(nxt[fixed], inputs["state"][fixed])


def test_model_card_says_what_the_file_takes(flow_model, tmp_path):
    ort = _ort()
    out = tmp_path / "m.onnx"
    result = export(flow_model, out)
    card = json.loads(card_path(out).read_text())
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [(t["name"], t["dtype"]) for t in card["inputs"]] == [
        (i.name, {"tensor(float)": "float32", "tensor(int64)": "int64"}[i.type]) for i in session.get_inputs()]
    assert [t["name"] for t in card["outputs"]] == [o.name for o in session.get_outputs()] == ["update", "next_state"]
    shapes = {t["name"]: t["shape"] for t in card["inputs"]}
    assert shapes == {"state": ["num_nodes", 3], "node_type": ["num_nodes"], "edge_index": [2, "num_edges"],
                      "edge_attr": ["num_edges", 3]}
    assert card["constants"]["fields"] == {"velocity": 2, "pressure": 1}
    assert card["constants"]["predicted_node_types"] == ["interior", "outflow"]
    assert card["checked"]["graphs"] == result.checks and result.max_difference < TOL
    assert len({c["sizes"]["num_nodes"] for c in result.checks}) == 2  # checked on two graph sizes
    assert all(t["about"] for t in card["inputs"] + card["outputs"])


def test_pt2_export_loads_and_matches(flow_model, cylinder_meshes, tmp_path):
    out = tmp_path / "flow.pt2"
    assert main(["export", str(flow_model), str(out)]) == 0
    program = torch.export.load(str(out))
    mesh = cylinder_meshes[1]
    state = flow_state(mesh, 3)
    inputs = inputs_for(flow_model, mesh, state)
    with torch.no_grad():
        update, nxt = program.module()(*[torch.from_numpy(v) for v in inputs.values()])
    want_update, want_next = mesh_reference(flow_model, mesh, state)
    assert rel(update, want_update) < TOL and rel(nxt, want_next) < TOL
    with zipfile.ZipFile(out) as z:  # weights as raw bytes and JSON: no pickled object in the archive
        for info in z.infolist():
            assert not info.filename.endswith((".pt", ".pkl")) or info.file_size == 0, info.filename
    assert json.loads(card_path(out).read_text())["kind"].startswith("torch.export")


def test_conditioned_model_with_history_from_a_trajectory(trained, cylinder_meshes, tmp_path):
    """The trained mesh model of the family fixture sees two frames and a trajectory parameter."""
    import sim

    ckpt, _ = trained["mesh"]
    out = tmp_path / "diffusion.pt2"
    export(ckpt, out)
    mesh = cylinder_meshes[0]
    rng = np.random.default_rng(0)
    frames = rng.random((3, mesh.num_points)).astype(np.float32)
    traj = Trajectory(mesh, np.array([0.0, 0.1, 0.2]), point_fields={"u": frames}, params={"kappa": 0.05})
    inputs = inputs_for(ckpt, traj)
    assert list(inputs) == ["state", "node_type", "edge_index", "edge_attr", "scalars", "past"]
    np.testing.assert_array_equal(inputs["past"][:, 0, 0], frames[0])
    np.testing.assert_array_equal(inputs["scalars"], np.array([0.05], np.float32))
    with torch.no_grad():
        _, nxt = torch.export.load(str(out)).module()(*[torch.from_numpy(v) for v in inputs.values()])
    want = sim.load(ckpt).rollout(Trajectory(mesh, traj.times[:2], point_fields={"u": frames[:2]},
                                             params=traj.params), 1).point_fields["u"][-1]
    assert rel(nxt[:, 0], want) < TOL
    other = inputs_for(ckpt, traj, params={"kappa": 0.1})
    with torch.no_grad():
        _, moved = torch.export.load(str(out)).module()(*[torch.from_numpy(v) for v in other.values()])
    assert not torch.equal(moved, nxt)  # the parameter is an input, not a constant of the file


def test_graph_transformer_with_host_built_masks(cylinder_meshes, tmp_path):
    """Two-hop masks and a global token are built on the host: they are inputs of the file."""
    _ort()
    torch.manual_seed(1)
    model = MeshSimulator("graph_transformer", {"dim": 16, "layers": 2, "heads": 2, "k_hop": 2, "global_tokens": 1,
                                                "coord_dim": 2}, ["velocity", "pressure"], [2, 1], 3)
    for norm, width in ((model.node_normalizer, 12), (model.edge_normalizer, 3), (model.output_normalizer, 3)):
        norm.accumulate(0.5 * torch.randn(64, width) + 0.1)
    ckpt = save_checkpoint(tmp_path / "gt.pt", model.eval())
    out = tmp_path / "gt.onnx"
    export(ckpt, out)
    for i, mesh in enumerate(cylinder_meshes):
        state = flow_state(mesh, i)
        inputs = inputs_for(ckpt, mesh, state)
        assert list(inputs) == ["state", "node_type", "edge_index", "edge_attr", "mesh_pos", "attention_mask_0"]
        assert inputs["attention_mask_0"].max() == mesh.num_points  # the global token's index
        update, nxt = run_onnx(out, inputs)
        want_update, want_next = mesh_reference(ckpt, mesh, state)
        assert rel(update, want_update) < TOL and rel(nxt, want_next) < TOL


# ----------------------------------------------------------------------------- particle models
def particle_windows(ckpt: Path, store: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two windows (H, n, d) of a stored trajectory, on the model's sparse subset and half of it."""
    import sim

    model = sim.load(ckpt).model
    with Store(store) as s:
        name = s.names()[0]
        pos = np.asarray(s.read(name).positions, dtype=np.float32)
    h = model.config["history"]
    sparse = model.sparse_indices(pos[0], name)
    a = pos[2:2 + h][:, sparse]
    b = pos[4:4 + h][:, sparse[: len(sparse) // 2]]
    return [(a, np.zeros(a.shape[1], np.int64)), (b, np.zeros(b.shape[1], np.int64))]


def particle_reference(ckpt: Path, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Acceleration and next position of the particle model in sim (its own radius graph and grid)."""
    import sim
    from sim.data.particles import semi_implicit_euler

    model = sim.load(ckpt).model
    history = torch.from_numpy(np.ascontiguousarray(window.transpose(1, 0, 2)))
    acc = model.predict_acceleration(history, torch.zeros(history.shape[0], dtype=torch.long))
    nxt = torch.minimum(torch.maximum(semi_implicit_euler(history, acc, model.dt), model.bounds[:, 0]),
                        model.bounds[:, 1])
    return acc.numpy(), nxt.numpy()


@pytest.mark.parametrize("kind", ["onnx", "pt2"])
def test_giorom_export_matches_on_particle_windows_of_two_sizes(trained, kind, tmp_path):
    if kind == "onnx":
        _ort()
    ckpt, store = trained["particle"]
    out = tmp_path / f"giorom.{kind}"
    assert main(["export", str(ckpt), str(out)]) == 0
    windows = particle_windows(ckpt, store)
    assert windows[0][0].shape[1] != windows[1][0].shape[1]
    for window, types in windows:
        inputs = inputs_for(ckpt, window, particle_type=types)
        assert list(inputs) == ["history", "particle_type", "edge_index", "edge_attr", "grid_edges"]
        if kind == "onnx":
            acc, nxt = run_onnx(out, inputs)
        else:
            with torch.no_grad():
                acc, nxt = torch.export.load(str(out)).module()(*[torch.from_numpy(v) for v in inputs.values()])
        want_acc, want_next = particle_reference(ckpt, window)
        assert rel(acc, want_acc) < TOL and rel(nxt, want_next) < TOL
        assert np.abs(want_acc).max() > 0
    card = json.loads(card_path(out).read_text())
    assert card["family"] == "particle" and card["network"] == "giorom"
    assert card["constants"]["dt"] == pytest.approx(sim_dt(ckpt))


def sim_dt(ckpt: Path) -> float:
    import sim

    return float(sim.load(ckpt).model.dt)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_real_spectral_conv_is_the_fourier_layer(dim):
    """The ONNX twin of the FNO layer (no complex tensors) computes what the layer computes."""
    from sim.nn.fno import SpectralConv

    torch.manual_seed(dim)
    conv = SpectralConv(4, 3, dim)
    x = torch.randn((2, 4) + (6,) * dim)
    with torch.no_grad():
        want = conv(x)
        got = RealSpectralConv(conv)(x)
    assert rel(got, want) < 1e-5 and want.abs().max() > 0


# ----------------------------------------------------------------------------- model changes for export
def test_masks_and_grid_edges_given_are_bitwise_the_ones_built():
    """The keyword arguments added for export (the transformer's masks, GIOROM's grid edges)
    leave the networks' outputs unchanged, bit for bit."""
    from sim.models.networks.graph_transformer import GraphTransformer
    from sim.models.particle.giorom import GIOROM
    from sim.nn.attention import segment_softmax

    torch.manual_seed(0)
    n = 40
    ei = torch.unique(torch.randint(0, n, (2, 160)), dim=1)
    ei = ei[:, ei[0] != ei[1]]
    gt = GraphTransformer(5, 3, 2, dim=16, layers=2, heads=2, k_hop=2, global_tokens=1).eval()
    x = torch.randn(n, 5)
    with torch.no_grad():
        assert torch.equal(gt(x, ei), gt(x, ei, masks=gt.masks(ei, n)))
        # the attention's messages are flattened (a dynamic pair count), as reshape(pairs, -1) did
        att, h = gt.blocks[0].attn, torch.randn(n, 16)
        q, k, v = att.qkv(h).view(n, 3, att.heads, att.head_dim).unbind(1)
        send, recv = ei
        alpha = segment_softmax(torch.linalg.vecdot(q[recv], k[send]) / att.head_dim**0.5, recv, n)
        msg = (v[send] * alpha.unsqueeze(-1)).reshape(len(send), -1)
        assert torch.equal(att(h, ei), att.out(h.new_zeros((n, 16)).index_add_(0, recv, msg)))
    net = GIOROM(6, 3, 2, latent=8, mp_before=1, mp_after=1, grid=6, grid_channels=4, modes=2,
                 processor_layers=1).eval()
    pos = torch.rand(n, 2)
    _, p2g = net.grid_edges(pos, None, 1)
    feats, attr = torch.randn(n, 6), torch.randn(ei.shape[1], 3)
    with torch.no_grad():
        assert torch.equal(net(feats, ei, attr, pos=pos), net(feats, ei, attr, pos=pos, grid_edges=p2g))


# ----------------------------------------------------------------------------- refusals
def only_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sim: error: "), captured.err
    return lines[0]


def assert_nothing_written(folder: Path, keep: tuple[str, ...] = ()) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(keep)  # no file, card or hidden part file


@pytest.mark.parametrize("family", ["steady", "mmgp", "prose"])
def test_families_without_a_one_step_graph_map_are_refused(trained, family, tmp_path, capsys):
    ckpt, _ = trained[family]
    out = tmp_path / "out"
    out.mkdir()
    assert main(["export", str(ckpt), str(out / "m.onnx")]) == 2
    line = only_error_line(capsys)
    assert str(ckpt) in line and f"does not apply to {family} models" in line
    assert_nothing_written(out)


def test_missing_garbage_and_misnamed_inputs_are_one_error(flow_model, tmp_path, capsys):
    from sim.train.checkpoint import save_ensemble

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    ensemble = save_ensemble(tmp_path / "ensemble.json", [flow_model, flow_model])
    out = tmp_path / "out"
    out.mkdir()
    cases = [([str(tmp_path / "missing.pt"), str(out / "m.pt2")], "no such model file"),
             ([str(ensemble), str(out / "m.pt2")], "export each member checkpoint"),
             ([str(garbage), str(out / "m.pt2")], "not a readable sim checkpoint"),
             ([str(flow_model), str(out / "m.tflite")], "give OUT.onnx"),
             ([str(flow_model), str(out)], "is a folder")]
    for args, message in cases:
        assert main(["export", *args]) == 2
        assert message in only_error_line(capsys)
    assert_nothing_written(out)


def test_a_failed_export_leaves_the_previous_file_alone(tmp_path, capsys):
    """A model the tracer cannot follow (a plugin that branches on values) is one error naming
    why; the file that was there before stays as it was."""
    torch.manual_seed(0)
    model = MeshSimulator("meshgraphnet", {"latent": 8, "steps": 1, "plugins": [{"name": "sheaf_diffusion"}]},
                          ["u"], [1], 3)
    ckpt = save_checkpoint(tmp_path / "sheaf.pt", model.eval())
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.pt2").write_text("previous export")
    assert main(["export", str(ckpt), str(out / "m.pt2")]) == 2
    line = only_error_line(capsys)
    assert "cannot be exported to PT2" in line and "depends on the values" in line
    assert_nothing_written(out, keep=("m.pt2",))
    assert (out / "m.pt2").read_text() == "previous export"


def test_an_export_that_does_not_reproduce_the_model_is_not_written(flow_model, tmp_path, monkeypatch, capsys):
    import sim.export as ex

    monkeypatch.setattr(ex, "TOLERANCE", -1.0)  # no file can pass: the check must refuse it
    out = tmp_path / "out"
    out.mkdir()
    assert main(["export", str(flow_model), str(out / "m.pt2")]) == 2
    assert "does not reproduce" in only_error_line(capsys)
    assert_nothing_written(out)


def test_onnx_without_the_export_packages_says_how_to_install_them(flow_model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(SimError, match=r"sim-surrogates\[export\]"):
        export(flow_model, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_inputs_for_refuses_what_does_not_fit(flow_model, cylinder_meshes):
    mesh = cylinder_meshes[0]
    with pytest.raises(SimError, match="no field"):
        inputs_for(flow_model, mesh, {"velocity": np.zeros((mesh.num_points, 2))})
    with pytest.raises(SimError, match="expects"):
        inputs_for(flow_model, mesh, np.zeros((mesh.num_points, 2)))
    with pytest.raises(SimError, match="Mesh or Trajectory"):
        inputs_for(flow_model, np.zeros((3, 2)), np.zeros((3, 3)))


def test_static_node_inputs_are_an_input_of_the_file(tmp_path):
    """A model that reads a source density at every node takes it as ``static`` from the mesh."""
    import sim
    from tests.train.diffusion_data import square_mesh

    torch.manual_seed(0)
    model = MeshSimulator("meshgraphnet", {"latent": 16, "steps": 2}, ["u"], [1], 3, node_inputs=["source"])
    model.node_normalizer.accumulate(torch.cat([torch.rand(40, 1), torch.eye(9)[torch.randint(0, 9, (40,))],
                                                torch.rand(40, 1)], -1))
    model.edge_normalizer.accumulate(torch.randn(40, 3))
    model.output_normalizer.accumulate(0.01 * torch.randn(40, 1))
    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(ckpt, model.eval())
    out = tmp_path / "source.pt2"
    export(ckpt, out)
    assert json.loads(card_path(out).read_text())["constants"]["node_inputs"] == ["source"]
    base = square_mesh(9)
    rng = np.random.default_rng(0)
    u, source = rng.random(base.num_points).astype(np.float32), rng.random(base.num_points).astype(np.float32)
    mesh = Mesh(base.points, base.cells, point_data={"u": u, "source": source}, node_type=base.node_type)
    inputs = inputs_for(ckpt, mesh)
    assert list(inputs) == ["state", "node_type", "edge_index", "edge_attr", "static"]
    np.testing.assert_array_equal(inputs["static"][:, 0], source)
    program = torch.export.load(str(out)).module()
    with torch.no_grad():
        _, nxt = program(*[torch.from_numpy(v) for v in inputs.values()])
    want = sim.load(ckpt).rollout(mesh, 1, dt=1.0).point_fields["u"][-1]
    assert rel(nxt[:, 0], want) < TOL
    inputs["static"] = 3 * inputs["static"]
    with torch.no_grad():
        _, moved = program(*[torch.from_numpy(v) for v in inputs.values()])
    assert not torch.equal(moved, nxt)
    with pytest.raises(SimError, match=r"has no point data \['source'\]"):
        inputs_for(ckpt, Mesh(base.points, base.cells, point_data={"u": u}, node_type=base.node_type))
