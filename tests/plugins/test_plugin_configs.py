"""Plugins from configuration alone: a model with a layer plugin or `init: virgo` trains a few steps,
its checkpoint rebuilds it, and `sim diagnose` runs on that checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from sim.plugins import PluginError
from sim.families import train
from sim.train import Config, load_model
from sim.train.checkpoint import read_checkpoint
from tests.train.diffusion_data import diffusion_store


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return diffusion_store(tmp_path_factory.mktemp("plugin_data") / "diff.h5", trajectories=2, steps=6)


def _config(tmp_path, data, network="meshgraphnet", **network_args) -> Config:
    args = {"latent": 8, "steps": 2} if network == "meshgraphnet" else {"dim": 8, "layers": 2, "heads": 2}
    return Config.from_dict({
        "model": {"network": network, "network_args": {**args, **network_args}, "fields": ["u"]},
        "data": {"train": str(data), "batch_size": 2},
        "optim": {"lr": 1e-3},
        "train": {"steps": 4, "out": str(tmp_path / "run"), "log_every": 2, "normalizer_accumulation_steps": 2},
    })


CASES = [
    ("meshgraphnet", {"plugins": [{"name": "sheaf_diffusion", "stalk_dim": 2, "maps": "orthogonal", "at": 0}]}),
    ("meshgraphnet", {"plugins": [{"name": "dagnn", "hops": 4}]}),
    ("meshgraphnet", {"plugins": [{"name": "virtual_nodes", "num_virtual": 2}], "init": "virgo"}),
    ("meshgraphnet", {"init": {"name": "virgo", "mean": "forward"}}),
    ("graph_transformer", {"plugins": [{"name": "virtual_nodes", "adaptive": False, "at": "head"}],
                           "init": "virgo"}),
    ("meshgraphnet", {"features": [{"name": "equivariant_polynomials", "degree": 3}, "graphlet_orbits"]}),
    ("graph_transformer", {"features": ["graphlet_orbits"]}),
    ("meshgraphnet", {"plugins": [{"name": "spen", "hops": 1, "at": [1]}]}),
]


@pytest.mark.parametrize("network,extra", CASES)
def test_model_with_plugins_trains_and_its_checkpoint_reloads(tmp_path, data, network, extra):
    cfg = _config(tmp_path, data, network, **extra)
    summary = train(cfg, progress=False)
    assert summary["steps"] == 4 and summary["final_loss"] == summary["final_loss"]  # finite
    model, payload = load_model(tmp_path / "run" / "checkpoint.pt")
    for key, value in extra.items():
        assert model.network.config[key] == value
    state = read_checkpoint(tmp_path / "run" / "checkpoint.pt")["state_dict"]
    if "plugins" in extra:
        assert any(k.startswith("network.plugins.") for k in state)
    # the rebuilt model computes what the trained one computed
    from sim.data.windows import MeshStepDataset

    sample = MeshStepDataset(data, ["u"])[0]
    again, _ = load_model(tmp_path / "run" / "checkpoint.pt")
    args = (sample.state, sample.node_type, sample.edge_index, sample.edge_attr)
    torch.testing.assert_close(model(*args, pos=sample.mesh_pos), again(*args, pos=sample.mesh_pos))


def test_virgo_changes_the_initial_weights_and_nothing_else(tmp_path, data):
    """The init option re-draws linear weights at the start; without it training is bit-identical to before."""
    from sim.families import get_family

    mesh = get_family("mesh")
    plain_cfg, virgo_cfg = _config(tmp_path, data), _config(tmp_path, data, init="virgo")
    ds = mesh.build_dataset(plain_cfg)
    torch.manual_seed(0)
    plain = mesh.build_model(plain_cfg, ds)
    torch.manual_seed(0)
    virgo = mesh.build_model(virgo_cfg, ds)
    p, v = plain.state_dict(), virgo.state_dict()
    changed = [k for k in p if not torch.equal(p[k], v[k])]
    assert changed and all(k.endswith(("weight", "bias")) and "norm" not in k.split(".")[-2] for k in changed)


def test_unknown_plugin_in_a_config_lists_the_known_ones(tmp_path, data):
    cfg = _config(tmp_path, data, plugins=[{"name": "sheaf"}])
    with pytest.raises(PluginError, match="unknown layer plugin 'sheaf'; known layer plugins: dagnn, sheaf_diffusion"):
        train(cfg, progress=False)
    cfg = _config(tmp_path, data, plugins=[{"name": "dagnn", "at": 7}])
    with pytest.raises(PluginError, match="block 7 does not exist"):
        train(cfg, progress=False)


def _trained_checkpoint(tmp_path, data):
    from sim.cli import main

    cfg = _config(tmp_path, data, plugins=[{"name": "dagnn", "hops": 2}]).to_dict()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml")]) == 0
    return tmp_path / "run" / "checkpoint.pt"


def test_cli_diagnose_range(tmp_path, data, capsys):
    from sim.cli import main

    ckpt = _trained_checkpoint(tmp_path, data)
    assert main(["diagnose", "range", str(ckpt), str(data), "--max-hops", "6", "--seeds", "4",
                 "--out", str(tmp_path / "d")]) == 0
    rng = json.loads((tmp_path / "d" / "range.json").read_text())
    assert rng["curve"][0] == 1.0 and len(rng["curve"]) == 7 and rng["max_hops"] == 6
    assert 0 < rng["range_score"] < 6 and (tmp_path / "d" / "range.png").stat().st_size > 5000
    capsys.readouterr()
    assert main(["diagnose", "range", str(ckpt), str(data), "--entry", "nope"]) == 2
    assert "no entry 'nope'" in capsys.readouterr().err


def test_cli_diagnose_lipschitz(tmp_path, data, capsys):
    from sim.cli import main

    ckpt = _trained_checkpoint(tmp_path, data)
    assert main(["diagnose", "lipschitz", str(ckpt), str(data), "--nodes", "2", "--samples", "4", "--eps", "1e-4",
                 "--json", str(tmp_path / "l.json")]) == 0
    lip = json.loads((tmp_path / "l.json").read_text())
    assert lip["upper"] >= lip["lower"] > 0 and len(lip["nodes"]) == 2
    assert "upper bound" in capsys.readouterr().out


def test_feature_plugins_change_the_prediction_and_refuse_export(tmp_path, data):
    """Structural features reach the encoders (the output depends on them), and an export, which
    could not count graphlets inside an ONNX graph, says so instead of writing a file."""
    from sim.errors import SimError
    from sim.export import export

    cfg = _config(tmp_path, data, features=["graphlet_orbits"])
    train(cfg, progress=False)
    model, _ = load_model(tmp_path / "run" / "checkpoint.pt")
    plain = _config(tmp_path / "plain", data)
    train(plain, progress=False)
    plain_model, _ = load_model(tmp_path / "plain" / "run" / "checkpoint.pt")
    ring = torch.tensor([list(range(30)) + [(i + 1) % 30 for i in range(30)],
                         [(i + 1) % 30 for i in range(30)] + list(range(30))])
    chord = torch.cat([ring, torch.tensor([[0, 2], [2, 0]])], dim=1)  # closes the triangle 0-1-2

    def node4(net, edges):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(30, net.config["node_in"], generator=g)
        ea = torch.randn(ring.shape[1], net.config["edge_in"], generator=g)
        ea = torch.cat([ea, torch.ones(edges.shape[1] - ring.shape[1], ea.shape[1])])
        return net(x, edges, ea)[4]

    # two message-passing steps cannot carry the chord's messages to node 4 ...
    torch.testing.assert_close(node4(plain_model.network, ring), node4(plain_model.network, chord))
    # ... but the chord makes node 4 the end of a 4-path 0-2-3-4, which its graphlet counts see
    assert not torch.allclose(node4(model.network, ring), node4(model.network, chord))
    out = tmp_path / "m.onnx"
    with pytest.raises(SimError, match="feature plugins .*graphlet_orbits"):
        export(tmp_path / "run" / "checkpoint.pt", out)
    assert not out.exists()
