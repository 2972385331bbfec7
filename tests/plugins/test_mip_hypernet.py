"""MIP hypernetwork conditioning: magnitude-invariant encoding, residual weights that start at
the base weights, and a mesh model that learns a parameter's effect through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim.families import train
from sim.plugins import PluginError, get_plugin
from sim.plugins.conditioning import HyperLinear, mip_encode
from sim.train import Config, load_model
from tests.train.diffusion_data import diffusion_store


def test_encoding_norm_does_not_depend_on_the_input():
    g = torch.rand(1000, 3, dtype=torch.float64)
    g[0] = 0.0
    g[1] = 1.0
    norms = mip_encode(g).norm(dim=-1)
    torch.testing.assert_close(norms, torch.full_like(norms, 3 ** 0.5))
    # distinct inputs stay distinct (the encoding is injective on [0, 1])
    assert torch.cdist(mip_encode(g[:50]), mip_encode(g[:50])).add(torch.eye(50)).min() > 0


def test_predicted_weights_equal_the_base_weights_at_initialisation():
    torch.manual_seed(0)
    layer = HyperLinear(16, 3, cond_dim=2)
    cond = torch.randn(7, 2) * 5
    w, b = layer.weights(cond)
    torch.testing.assert_close(w, layer.base.weight.expand(7, 3, 16))
    torch.testing.assert_close(b, layer.base.bias.expand(7, 3))
    h = torch.randn(7, 16)
    torch.testing.assert_close(layer(h, cond), layer.base(h))
    # the plain hypernetwork predicts the weights outright: they change with the input, and
    # their size follows the input's magnitude
    plain = HyperLinear(16, 3, cond_dim=2, mip=False)
    small, large = plain.weights(torch.full((1, 2), 0.01), unit=True)[0], plain.weights(torch.full((1, 2), 100.0),
                                                                                         unit=True)[0]
    assert large.norm() > 10 * small.norm()
    # after a training step the MIP weights depend on the conditioning
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    target = torch.randn(7, 3)
    ((layer(h, cond) - target) ** 2).mean().backward()
    opt.step()
    w2 = layer.weights(cond)[0]
    assert (w2[0] - w2[1]).abs().max() > 0


def test_rows_of_a_graph_share_their_weights():
    torch.manual_seed(0)
    layer = HyperLinear(4, 2, cond_dim=1)
    with torch.no_grad():
        layer.head.weight.normal_()
    h = torch.randn(6, 4)
    cond = torch.tensor([[0.0], [0.0], [0.0], [2.0], [2.0], [2.0]])
    out = layer(h, cond)
    w, b = layer.weights(torch.tensor([[0.0], [2.0]]))
    torch.testing.assert_close(out[:3], h[:3] @ w[0].T + b[0])
    torch.testing.assert_close(out[3:], h[3:] @ w[1].T + b[1])
    assert get_plugin("mip_hypernet", "conditioning").factory is HyperLinear
    with pytest.raises(PluginError, match="needs conditioning parameters"):
        HyperLinear(4, 2, cond_dim=0)


KAPPAS = [0.02, 0.14]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return diffusion_store(tmp_path_factory.mktemp("kappa_hyper") / "diff.h5", trajectories=6, kappas=KAPPAS)


def _config(tmp_path, data, scalars, network_args, steps=300):
    return Config.from_dict({
        "model": {"network_args": {"latent": 32, "steps": 2, **network_args}, "fields": ["u"], "scalars": scalars},
        "data": {"train": str(data), "batch_size": 4},
        "optim": {"lr": 3e-3, "lr_final": 3e-4},
        "train": {"steps": steps, "out": str(tmp_path / f"run_{len(scalars)}_{len(network_args)}"), "log_every": 50,
                  "checkpoint_every": 10_000, "normalizer_accumulation_steps": 20},
    })


def test_a_mesh_model_learns_the_parameter_through_the_hypernetwork(tmp_path, data):
    """Half the trajectories diffuse 7x faster: only a model that gets kappa can fit both; here
    kappa reaches the model only through the decoder's predicted weights."""
    losses = {}
    for scalars, args in (([], {}), (["kappa"], {"hypernet": {"name": "mip_hypernet", "hidden": 16}})):
        cfg = _config(tmp_path, data, scalars, args)
        train(cfg, progress=False)
        log = (tmp_path / f"run_{len(scalars)}_{len(args)}" / "metrics.csv").read_text().splitlines()[1:]
        losses[bool(scalars)] = np.mean([float(r.split(",")[1]) for r in log[-2:]])
    assert losses[True] < 0.5 * losses[False], losses
    model, _ = load_model(tmp_path / "run_1_1" / "checkpoint.pt")
    net = model.network
    assert net.config["hypernet"]["name"] == "mip_hypernet" and net.config["cond_dim"] == 1
    assert net.node_encoder[0].in_features == 1 + 9  # u and the node types: kappa is not a node input


def test_hypernetwork_without_scalars_is_refused(tmp_path, data):
    from sim.families import get_family

    cfg = _config(tmp_path, data, [], {"hypernet": "mip_hypernet"})
    mesh = get_family("mesh")
    with pytest.raises(ValueError, match="set model.scalars"):
        mesh.build_model(cfg, mesh.build_dataset(cfg))
