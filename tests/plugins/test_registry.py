"""The plugin registry: every entry describes itself; unknown names teach; entry points extend it."""

from __future__ import annotations

import sys

import pytest

from sim.plugins import KINDS, PluginError, available_plugins, build_plugin, get_plugin, registry


def test_builtin_plugins_describe_themselves():
    specs = {s.name: s for s in available_plugins()}
    assert {"sheaf_diffusion": "layer", "dagnn": "layer", "virtual_nodes": "layer", "virgo": "init",
            "hop_influence": "diagnostic", "local_lipschitz": "diagnostic", "equivariant_polynomials": "feature",
            "graphlet_orbits": "feature", "random_spatial_network": "generator", "spen": "layer",
            "mip_hypernet": "conditioning", "harmful_samples": "diagnostic", "meta_pruning": "pruning",
            "kecor": "selection", "random": "selection", "variance": "selection", "coreset_augment": "training",
            "self_tuning": "training"}.items() <= {
        n: s.kind for n, s in specs.items()}.items()
    for s in specs.values():
        assert s.kind in KINDS and s.paper and s.summary and "\n" not in s.summary
        assert any(c.isdigit() for c in s.paper), f"{s.name}: the paper reference has no year"
    assert set(KINDS) == {"layer", "feature", "conditioning", "init", "diagnostic", "pruning", "selection",
                          "generator", "training"}


def test_unknown_names_list_the_known_ones():
    with pytest.raises(PluginError, match=r"unknown layer plugin 'sheaf'; known layer plugins: dagnn, "
                                          r"sheaf_diffusion, spen, virtual_nodes"):
        get_plugin("sheaf", "layer")
    with pytest.raises(PluginError, match=r"unknown init plugin 'dagnn' \(it is a layer plugin\); known init "
                                          r"plugins: virgo"):
        get_plugin("dagnn", "init")
    with pytest.raises(PluginError, match="unknown plugin kind 'layers'"):
        available_plugins("layers")


def test_bad_parameters_name_the_plugin():
    with pytest.raises(PluginError, match=r"layer plugin 'dagnn': .*'hopz'"):
        build_plugin({"name": "dagnn", "hopz": 3}, "layer", channels=8)
    with pytest.raises(PluginError, match="needs a 'name'"):
        build_plugin({"hops": 3}, "layer", channels=8)
    assert build_plugin({"name": "dagnn", "hops": 3}, "layer", channels=8).hops == 3


def test_entry_point_group_adds_a_third_party_plugin(tmp_path, monkeypatch):
    """A package that declares `[project.entry-points."sim.plugins"]` is found without importing it."""
    pkg = tmp_path / "thirdparty_sim_plugin.py"
    pkg.write_text(
        "from sim.plugins import PluginSpec\n"
        "def make(channels):\n    return channels * 2\n"
        "SPEC = PluginSpec('doubler', 'layer', paper='Nobody 2024, A test', summary='doubles', factory=make)\n")
    dist = tmp_path / "thirdparty_sim_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-sim-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[sim.plugins]\ndoubler = thirdparty_sim_plugin:SPEC\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry.reload_entry_points()
        assert get_plugin("doubler").paper == "Nobody 2024, A test"
        assert build_plugin("doubler", "layer", channels=4) == 8
        assert "doubler" in [s.name for s in available_plugins("layer")]
    finally:
        registry._PLUGINS.pop("doubler", None)
        sys.modules.pop("thirdparty_sim_plugin", None)


def test_broken_entry_point_is_one_readable_error(tmp_path, monkeypatch):
    dist = tmp_path / "broken_sim_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-sim-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[sim.plugins]\nbroken = no_such_module_xyz:THING\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(PluginError, match="entry point 'broken'.*failed to load"):
            registry.reload_entry_points()
    finally:
        registry._entry_points_loaded = False


def test_cli_lists_plugins(capsys):
    from sim.cli import main

    assert main(["plugins", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("sheaf_diffusion", "dagnn", "virtual_nodes", "virgo", "hop_influence", "local_lipschitz"):
        assert name in out
    assert "Bodnar et al. 2022" in out
    selection = out[out.index("selection:"):]
    for name in ("kecor", "random", "variance"):  # the active-learning strategies, with their papers
        assert f"  {name} " in selection
    assert "Kernel Coding Rate Maximization for Active 3D Object Detection" in selection
    training = out[out.index("training:"):]
    for name, paper in (("coreset_augment", "Data-Efficient Augmentation"), ("self_tuning", "Self-Tuning Networks")):
        assert f"  {name} " in training and paper in training
