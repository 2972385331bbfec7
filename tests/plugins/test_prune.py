"""Meta pruning: the metanetwork is equivariant to hidden-neuron permutations, its gates anneal
to the hard cut from the magnitude criterion's, the least-squares refit of the outgoing weights
keeps the function when nothing is cut and recovers most of a cut, and `sim prune` writes a
smaller, loadable checkpoint."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from sim.data.windows import MeshStepDataset
from sim.families import train
from sim.plugins import PluginError, get_plugin
from sim.plugins.diagnostics import valid_rollout_error, validation_starts
from sim.plugins.pruning import (
    MetaNetwork,
    hidden_groups,
    magnitude_scores,
    prune_model,
)
from sim.plugins.pruning.meta import (
    _pruned_copy,
    activation_grams,
    gated_refit,
    magnitude_prior,
    neuron_features,
    refit_outputs,
    topk_gates,
)
from sim.train import Config, load_model
from tests.train.diffusion_data import diffusion_store


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("prune")
    tr = diffusion_store(d / "t.h5", trajectories=4, steps=10, seed=3)
    va = diffusion_store(d / "v.h5", trajectories=2, steps=10, seed=13)
    cfg = Config.from_dict({
        "model": {"network_args": {"latent": 16, "steps": 2}, "fields": ["u"]},
        "data": {"train": str(tr), "valid": str(va), "batch_size": 2},
        "optim": {"lr": 3e-3, "lr_final": 3e-4},
        "train": {"steps": 300, "out": str(d / "run"), "log_every": 100, "checkpoint_every": 10_000,
                  "normalizer_accumulation_steps": 20, "seed": 3}})
    train(cfg, progress=False)
    return d / "run" / "checkpoint.pt", tr, va


def _valid(va, steps=5):
    return validation_starts(load_model(va.parent / "run" / "checkpoint.pt")[0], va, steps)


def test_metanetwork_is_equivariant_to_hidden_neuron_permutations(trained):
    ckpt, tr, _ = trained
    model, _ = load_model(ckpt)
    groups = hidden_groups(model.network)
    assert len(groups) == 2 * (2 + 2 * 2 + 1)  # 2 hidden layers in each of 7 MLPs
    sample = MeshStepDataset(tr, ["u"])[0]
    with torch.no_grad():
        before = model.update(sample.state, model.step_inputs(sample))
    feats = neuron_features(groups, [torch.rand(g.width) for g in groups])
    torch.manual_seed(0)
    meta = MetaNetwork(feats[0].shape[1])
    with torch.no_grad():
        meta.out.weight.normal_()  # non-trivial output (it starts constant)
        scores = meta(groups, feats)
        # permute the neurons of one hidden layer that has neighbours on both sides in the graph
        k = 1 + 2 * 2  # processor.0.edge_mlp, hidden layer 1 (its MLP's second)
        g = groups[k]
        p = torch.randperm(g.width, generator=torch.Generator().manual_seed(1))
        g.lin_in.weight.copy_(g.lin_in.weight[p])
        g.lin_in.bias.copy_(g.lin_in.bias[p])
        g.lin_out.weight.copy_(g.lin_out.weight[:, p])
        feats[k] = feats[k][p]
        after = model.update(sample.state, model.step_inputs(sample))
        permuted = meta(groups, feats)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)  # the same function
    torch.testing.assert_close(permuted[k], scores[k][p])
    for j in (k - 1, k + 1, 0):
        torch.testing.assert_close(permuted[j], scores[j], rtol=1e-5, atol=1e-6)
    assert scores[k].std() > 0


def test_both_cuts_give_half_width_models_that_the_refit_keeps_close_to_the_original(trained):
    ckpt, tr, va = trained
    vs = _valid(va)
    ds = MeshStepDataset(tr, ["u"])
    errors = {}
    for method in ("magnitude", "meta"):
        for n in (0, 8):
            model, _ = load_model(ckpt)
            res = prune_model(model, ds, 0.5, method=method, meta_steps=40, finetune_steps=0, refit_samples=n, seed=0)
            with torch.no_grad():
                errors[method, n] = float(valid_rollout_error(res.model, vs, 5))
            assert res.hidden_after == 8 and res.params_after < 0.5 * res.params_before
            assert [g.width for g in hidden_groups(res.model.network)] == [8] * 14
            assert len(res.meta_losses) == (40 if method == "meta" else 0)
    for method in ("magnitude", "meta"):  # refitting the outgoing weights recovers most of what the cut lost
        assert errors[method, 8] < 0.2 * errors[method, 0], errors
    # magnitude scores are the weight-norm products
    g = hidden_groups(load_model(ckpt)[0].network)[0]
    torch.testing.assert_close(magnitude_scores([g])[0], g.lin_in.weight.norm(dim=1) * g.lin_out.weight.norm(dim=0))
    assert get_plugin("meta_pruning", "pruning").factory is prune_model
    with pytest.raises(PluginError, match=r"sparsity must be in \(0, 1\)"):
        prune_model(load_model(ckpt)[0], ds, 1.0)


def test_sim_prune_writes_a_smaller_checkpoint_that_loads_and_runs(tmp_path, trained, capsys):
    from sim.cli import main

    ckpt, tr, va = trained
    out = tmp_path / "pruned.pt"
    assert main(["prune", str(ckpt), str(tr), "--out", str(out), "--meta-steps", "20", "--finetune-steps", "20",
                 "--valid-steps", "5"]) == 0
    text = capsys.readouterr().out
    assert "hidden width 16 -> 8" in text and "validation rollout error" in text and "x) on" in text
    model, payload = load_model(out)
    assert model.network.config["mlp_hidden"] == 8
    assert payload["train"]["pruned"]["speedup"] > 0 and payload["train"]["pruned"]["valid_error_after"] > 0
    with torch.no_grad():
        assert torch.isfinite(valid_rollout_error(model, _valid(va), 5))
    # bad input: one readable error, nothing written
    bad = tmp_path / "bad.pt"
    assert main(["prune", str(ckpt), str(tr), "--out", str(bad), "--sparsity", "1.5"]) != 0
    assert "--sparsity must be in (0, 1)" in capsys.readouterr().err and not bad.exists()
    assert main(["prune", str(ckpt), str(tr), "--out", str(tmp_path / "p.onnx")]) != 0
    assert "OUT.pt" in capsys.readouterr().err
    json.dumps(payload["train"]["pruned"])  # plain data


def test_topk_gates_anneal_to_the_hard_cut_and_start_from_the_magnitude_criterion(trained):
    z = torch.randn(40, generator=torch.Generator().manual_seed(0))
    k = 13
    top = set(torch.topk(z, k).indices.tolist())
    hard = topk_gates(z, k, 1e-4)
    assert set(torch.nonzero(hard > 0.5).flatten().tolist()) == top  # exactly the top k pass
    assert torch.all((hard < 1e-3) | (hard > 1 - 1e-3))
    warm = topk_gates(z, k, 1.0)
    assert 0.05 < float(warm.min()) and float(warm.max()) < 0.95  # early on every neuron gets a gradient
    zg = z.clone().requires_grad_(True)
    topk_gates(zg, k, 1.0).sum().backward()
    assert torch.all(zg.grad > 0)
    assert torch.equal(topk_gates(z, 40, 0.01), torch.ones(40))
    # the metanetwork's correction starts at zero: its first cut is the magnitude criterion's
    ckpt, _, _ = trained
    groups = hidden_groups(load_model(ckpt)[0].network)
    feats = neuron_features(groups, [torch.rand(g.width) for g in groups])
    out = MetaNetwork(feats[0].shape[1])(groups, feats)
    for g, o, m, mag in zip(groups, out, magnitude_prior(groups), magnitude_scores(groups)):
        assert torch.equal(o, torch.zeros(g.width, 2))
        assert torch.equal(torch.topk(m, 8).indices.sort().values, torch.topk(mag, 8).indices.sort().values)


def test_refit_reproduces_the_unpruned_layers_and_cuts_the_pruning_error(trained):
    ckpt, tr, va = trained
    model, _ = load_model(ckpt)
    groups = hidden_groups(model.network)
    ds = MeshStepDataset(tr, ["u"])
    grams = activation_grams(model, groups, [ds[i] for i in range(4)])
    assert all(torch.allclose(g, g.T) for g in grams)
    # keeping every neuron, the least-squares refit leaves the function unchanged
    twin = copy.deepcopy(model)
    refit_outputs(groups, hidden_groups(twin.network), [torch.arange(g.width) for g in groups], grams, ridge=1e-9)
    with torch.no_grad():
        for smp in (ds[0], ds[5]):
            torch.testing.assert_close(twin.update(smp.state, twin.step_inputs(smp)),
                                       model.update(smp.state, model.step_inputs(smp)), rtol=1e-3, atol=1e-4)
    # at 0/1 gates the differentiable refit of the metanetwork's training is the refit after the cut
    k, g = 1, groups[1]
    full = torch.cat([g.lin_out.weight.detach().double().T, g.lin_out.bias.detach().double()[None]])
    gate = torch.zeros(g.width)
    gate[:8] = 1.0
    w, b = gated_refit(grams[k], full, gate)
    keep = [torch.arange(8)] * len(groups)
    small = _pruned_copy(model, groups, keep, [None] * len(groups), 8)
    refit_outputs(groups, hidden_groups(small.network), keep, grams)
    assert groups[k + 1].mlp != groups[k].mlp  # its outgoing layer is its MLP's output: all rows refitted
    torch.testing.assert_close(w[:8].T, hidden_groups(small.network)[k].lin_out.weight, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b, hidden_groups(small.network)[k].lin_out.bias, rtol=1e-4, atol=1e-5)
    assert float(w[8:].abs().max()) < 1e-6
    # pruned by the magnitude criterion, the refit model's rollout error is a fraction of the sliced one's
    vs = _valid(va)
    errs = {}
    for n in (0, 8):
        res = prune_model(load_model(ckpt)[0], ds, 0.5, method="magnitude", finetune_steps=0, refit_samples=n)
        with torch.no_grad():
            errs[n] = float(valid_rollout_error(res.model, vs, 5))
    assert errs[8] < 0.2 * errs[0], errs
