"""Bad inputs through every command, configuration section, reader, writer and the API: one table.

Each row is one mistake a user makes. A command-line row must end with exit code 2 and one
line on stderr (``sim: error: ...``) containing the expected text, no traceback (in process,
any other exception fails the test), and the folder unchanged: nothing new under a final
name, no temporary debris, no earlier file touched. An API row must raise one
:class:`~sim.errors.SimError` whose message contains the expected text, with the same folder
check. The rows share the tiny trained models of every family (``trained``) and a folder of
junk files made fresh for each row.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml

from sim.cli import main
from sim.errors import SimError
from sim.mesh import Mesh, Store, StoreWriter, Trajectory, write
from tests.train.diffusion_data import square_mesh

# --- the folder every row starts from --------------------------------------------------------


def _junk(d: Path, ctx: dict[str, Any]) -> None:
    """Files a user points commands at by mistake, and one good file of each kind."""
    (d / "text.h5").write_text("not hdf5")
    (d / "text.vtu").write_text("<VTKFile this is not")
    (d / "empty.vtu").write_bytes(b"")
    (d / "empty.h5").write_bytes(b"")
    (d / "text.pt").write_text("not a checkpoint")
    (d / "text.npz").write_text("not an npz")
    (d / "text.json").write_text("{not json")
    (d / "list.json").write_text("[1, 2]")
    (d / "bad.yaml").write_text("model: [unclosed\n")
    (d / "list.yaml").write_text("- a\n- b\n")
    (d / "bad.pvd").write_text("<VTKFile type='Collection'><Collection>")
    (d / "missing_step.pvd").write_text(
        "<VTKFile type='Collection'><Collection><DataSet timestep='0' file='nope/s0.vtu'/></Collection></VTKFile>")
    (d / "a_file").write_text("I am a file, not a folder")
    with h5py.File(d / "plain.h5", "w") as f:
        f["x"] = np.arange(3)
    with StoreWriter(d / "nothing.h5"):
        pass
    mesh = square_mesh(5)
    write(Mesh(mesh.points, mesh.cells, node_type=mesh.node_type), d / "square.vtu")
    pts3 = np.column_stack([mesh.points, np.zeros(mesh.num_points)])
    write(Mesh(pts3, mesh.cells), d / "square3d.vtu")
    with StoreWriter(d / "static.h5") as w:
        w.append(Mesh(mesh.points, mesh.cells, point_data={"u": mesh.points[:, 0].copy()}, node_type=mesh.node_type))
    with StoreWriter(d / "short.h5") as w:  # one step: nothing to roll out
        w.append(Trajectory(mesh, np.array([0.0]), point_fields={"u": np.zeros((1, mesh.num_points), np.float32)},
                            params={"kappa": 0.1}))
    with StoreWriter(d / "two.h5") as w:
        for _ in range(2):
            w.append(Trajectory(mesh, np.arange(3) * 0.1, point_fields={"u": np.zeros((3, mesh.num_points))}))
    with StoreWriter(d / "nokappa.h5") as w:  # the mesh model is conditioned on kappa
        w.append(Trajectory(mesh, np.arange(4) * 0.1, point_fields={"u": np.zeros((4, mesh.num_points))}))
    with StoreWriter(d / "novelocity.h5") as w:
        w.append(Trajectory(mesh, np.arange(4) * 0.1, point_fields={"p": np.zeros((4, mesh.num_points))},
                            params={"kappa": 0.1}))
    nan = np.zeros((4, mesh.num_points), np.float32)
    nan[2, 3] = np.nan
    with StoreWriter(d / "nan.h5") as w:
        w.append(Trajectory(mesh, np.arange(4) * 0.1, point_fields={"u": nan}, params={"kappa": 0.1}))
    recipe = {"name": "r", "generator": "solvers.diffusion3d:generate", "seed": 1,
              "sizes": {"small": {"splits": {"train": 1}}}}
    (d / "recipe.yaml").write_text(yaml.safe_dump(recipe))


def _yaml(d: Path, name: str, data: Any) -> None:
    (d / name).write_text(yaml.safe_dump(data))


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        elif v is _DROP:
            out.pop(k, None)
        else:
            out[k] = v
    return out


_DROP = object()


def config(over: dict, base: str = "steady") -> Callable[[Path, dict], None]:
    """A setup writing ``c.yaml``: a valid tiny configuration of ``base`` with ``over`` merged in."""

    def setup(d: Path, ctx: dict[str, Any]) -> None:
        family = base
        data = str(ctx[f"{family}_data"])
        cfg = {"model": {"family": family, "fields": ["u"], "network_args": {"latent": 8, "steps": 1}},
               "data": {"train": data}, "train": {"steps": 2, "out": str(d / "run"), "tensorboard": False}}
        if family == "steady":
            cfg["model"]["scalars"] = ["a"]
        _yaml(d, "c.yaml", _merge(cfg, over))

    return setup


def recipe(over: dict) -> Callable[[Path, dict], None]:
    def setup(d: Path, ctx: dict[str, Any]) -> None:
        base = {"name": "r", "generator": "solvers.diffusion3d:generate", "seed": 1,
                "sizes": {"small": {"splits": {"train": 1}}}}
        _yaml(d, "r.yaml", _merge(base, over))

    return setup


def finished_rollout(d: Path, ctx: dict[str, Any]) -> None:
    """An earlier finished rollout in d/out that a failing rollout must leave alone."""
    assert main(["rollout", str(ctx["mesh"]), str(ctx["mesh_data"]), "--out", str(d / "out"), "--steps", "2"]) == 0


# --- the table ---------------------------------------------------------------------------------
# (id, setup or None, argv (CLI) or fn(ctx) (API), text the error must contain)

M, MD = "{mesh}", "{mesh_data}"
CASES: list[tuple[str, Any, Any, str]] = [
    # sim convert
    ("convert-missing-input", None, ["convert", "{d}/missing.vtu", "{d}/o.h5"], "missing.vtu: no such file"),
    ("convert-text-h5", None, ["convert", "{d}/text.h5", "{d}/o.vtu"], "text.h5: not an HDF5 file"),
    ("convert-plain-h5", None, ["convert", "{d}/plain.h5", "{d}/o.vtu"], "plain.h5"),
    ("convert-empty-h5", None, ["convert", "{d}/empty.h5", "{d}/o.vtu"], "empty.h5"),
    ("convert-garbage-vtu", None, ["convert", "{d}/text.vtu", "{d}/o.h5"], "text.vtu"),
    ("convert-empty-vtu", None, ["convert", "{d}/empty.vtu", "{d}/o.h5"], "empty.vtu"),
    ("convert-bad-pvd", None, ["convert", "{d}/bad.pvd", "{d}/o.h5"], "bad.pvd"),
    ("convert-pvd-missing-step", None, ["convert", "{d}/missing_step.pvd", "{d}/o.h5"], "s0.vtu: no such file"),
    ("convert-unknown-input-ext", None, ["convert", "{d}/a_file", "{d}/o.h5"], "a_file"),
    ("convert-unknown-output-ext", None, ["convert", "{d}/square.vtu", "{d}/o.nope"], "unknown output format"),
    ("convert-output-under-a-file", None, ["convert", "{d}/square.vtu", "{d}/a_file/o.vtu"], "a_file"),
    ("convert-store-needs-entry", None, ["convert", "{d}/two.h5", "{d}/o.pvd"], "entries"),
    ("convert-missing-entry", None, ["convert", "{d}/two.h5", "{d}/o.pvd", "--entry", "zz"], "no entry 'zz'"),
    ("convert-entry-dotdot", None, ["convert", "{d}/two.h5", "{d}/o.pvd", "--entry", ".."], "entry name"),
    ("convert-empty-store", None, ["convert", "{d}/nothing.h5", "{d}/o.pvd"], "no entries"),
    ("convert-all-from-a-mesh", None, ["convert", "{d}/square.vtu", "{d}/o.vtu", "--all"], "--all"),
    ("convert-trajectory-to-mesh-format", None, ["convert", "{d}/short.h5", "{d}/o.stl"], "stl"),
    ("convert-to-itself", None, ["convert", "{d}/square.vtu", "{d}/square.vtu"], "same file"),
    # sim data info / generate / merge
    ("info-missing", None, ["data", "info", "{d}/missing.h5"], "no such file"),
    ("info-text-h5", None, ["data", "info", "{d}/text.h5"], "not an HDF5 file"),
    ("info-empty-vtu", None, ["data", "info", "{d}/empty.vtu"], "empty.vtu"),
    ("info-garbage-vtu", None, ["data", "info", "{d}/text.vtu"], "text.vtu"),
    ("info-folder", None, ["data", "info", "{d}"], "folder"),
    ("generate-missing-recipe", None, ["data", "generate", "{d}/none.yaml"], "none.yaml"),
    ("generate-bad-yaml", None, ["data", "generate", "{d}/bad.yaml"], "bad.yaml"),
    ("generate-list-yaml", None, ["data", "generate", "{d}/list.yaml"], "list.yaml"),
    ("generate-no-name", recipe({"name": _DROP}), ["data", "generate", "{d}/r.yaml"], "name"),
    ("generate-unknown-size", None, ["data", "generate", "{d}/recipe.yaml", "--size", "huge"], "huge"),
    ("generate-code-execution", recipe({"generator": "subprocess:call"}), ["data", "generate", "{d}/r.yaml"],
     "subprocess:call"),
    ("generate-os-system", recipe({"generator": "os:system"}), ["data", "generate", "{d}/r.yaml"], "os:system"),
    ("generate-bad-statistics", recipe({"statistics": "shutil:rmtree"}), ["data", "generate", "{d}/r.yaml"],
     "shutil:rmtree"),
    ("generate-not-a-ref", recipe({"generator": "nothing"}), ["data", "generate", "{d}/r.yaml"], "nothing"),
    ("generate-negative-count", recipe({"sizes": {"small": {"splits": {"train": -1}}}}),
     ["data", "generate", "{d}/r.yaml"], "-1"),
    ("generate-bad-shard", None, ["data", "generate", "{d}/recipe.yaml", "--shard", "3/2"], "3/2"),
    ("generate-shard-text", None, ["data", "generate", "{d}/recipe.yaml", "--shard", "x"], "'x'"),
    ("generate-zero-workers", None, ["data", "generate", "{d}/recipe.yaml", "--workers", "0"], "--workers"),
    ("generate-out-is-file", None, ["data", "generate", "{d}/recipe.yaml", "--out", "{d}/a_file"], "a_file"),
    ("merge-missing-folder", None, ["data", "merge", "{d}/nofolder"], "nofolder"),
    ("merge-no-shards", None, ["data", "merge", "{d}"], "shard"),
    # sim train: the file and every configuration section
    ("train-missing-config", None, ["train", "{d}/none.yaml"], "none.yaml"),
    ("train-bad-yaml", None, ["train", "{d}/bad.yaml"], "not valid YAML"),
    ("train-list-yaml", None, ["train", "{d}/list.yaml"], "mapping"),
    ("train-unknown-section", config({"extra": {}}), ["train", "{d}/c.yaml"], "unknown section"),
    ("train-unknown-key", config({"train": {"stpes": 3}}), ["train", "{d}/c.yaml"], "stpes"),
    ("train-lr-zero", config({"optim": {"lr": 0}}), ["train", "{d}/c.yaml"], "optim.lr"),
    ("train-lr-negative", config({"optim": {"lr": -1e-3}}), ["train", "{d}/c.yaml"], "optim.lr"),
    ("train-lr-text", config({"optim": {"lr": "fast"}}), ["train", "{d}/c.yaml"], "optim.lr"),
    ("train-lr-final-zero", config({"optim": {"lr_final": 0}}), ["train", "{d}/c.yaml"], "optim.lr_final"),
    ("train-betas", config({"optim": {"betas": [0.9]}}), ["train", "{d}/c.yaml"], "optim.betas"),
    ("train-optimizer", config({"optim": {"name": "sgd"}}), ["train", "{d}/c.yaml"], "optim.name"),
    ("train-schedule", config({"optim": {"schedule": "linear"}}), ["train", "{d}/c.yaml"], "optim.schedule"),
    ("train-warmup-negative", config({"optim": {"warmup_steps": -2}}), ["train", "{d}/c.yaml"], "warmup_steps"),
    ("train-grad-clip", config({"optim": {"grad_clip": 0}}), ["train", "{d}/c.yaml"], "grad_clip"),
    ("train-steps-text", config({"train": {"steps": "ten"}}), ["train", "{d}/c.yaml"], "train.steps"),
    ("train-steps-zero", config({"train": {"steps": 0}}), ["train", "{d}/c.yaml"], "train.steps"),
    ("train-steps-float", config({"train": {"steps": 2.5}}), ["train", "{d}/c.yaml"], "train.steps"),
    ("train-log-every-zero", config({"train": {"log_every": 0}}), ["train", "{d}/c.yaml"], "train.log_every"),
    ("train-checkpoint-every", config({"train": {"checkpoint_every": 0}}), ["train", "{d}/c.yaml"],
     "checkpoint_every"),
    ("train-valid-every", config({"train": {"valid_every": -1}}), ["train", "{d}/c.yaml"], "valid_every"),
    ("train-max-seconds", config({"train": {"max_seconds": -1}}), ["train", "{d}/c.yaml"], "max_seconds"),
    ("train-clock", config({"train": {"clock": "cpu"}}), ["train", "{d}/c.yaml"], "train.clock"),
    ("train-device", config({"train": {"device": "tpu"}}), ["train", "{d}/c.yaml"], "train.device"),
    ("train-amp-text", config({"train": {"amp": "maybe"}}), ["train", "{d}/c.yaml"], "train.amp"),
    ("train-seed-text", config({"train": {"seed": "x"}}), ["train", "{d}/c.yaml"], "train.seed"),
    ("train-out-is-file", config({"train": {"out": "{d}/a_file"}}), ["train", "{d}/c.yaml"], "a_file"),
    ("train-fields-string", config({"model": {"fields": "velocity"}}), ["train", "{d}/c.yaml"], "model.fields"),
    ("train-fields-missing", config({"model": {"fields": ["nope"]}}), ["train", "{d}/c.yaml"], "nope"),
    ("train-scalar-missing", config({"model": {"scalars": ["zz"]}}), ["train", "{d}/c.yaml"], "zz"),
    ("train-family", config({"model": {"family": "nope"}}), ["train", "{d}/c.yaml"], "nope"),
    ("train-old-key", config({"model": {"simulator": "mesh"}}), ["train", "{d}/c.yaml"], "model.family"),
    ("train-network", config({"model": {"network": "resnet"}}), ["train", "{d}/c.yaml"], "resnet"),
    ("train-network-arg", config({"model": {"network_args": {"widht": 3}}}), ["train", "{d}/c.yaml"], "widht"),
    ("train-noise-negative", config({"model": {"noise_std": -0.1}}), ["train", "{d}/c.yaml"], "noise_std"),
    ("train-history-zero", config({"model": {"history": 0}}), ["train", "{d}/c.yaml"], "model.history"),
    ("train-pushforward", config({"model": {"pushforward": -1}}), ["train", "{d}/c.yaml"], "pushforward"),
    ("train-target", config({"model": {"target": "state"}}), ["train", "{d}/c.yaml"], "model.target"),
    ("train-family-args", config({"model": {"family_args": {"sampling": "grid"}}}, "particle"),
     ["train", "{d}/c.yaml"], "sampling"),
    ("train-mesh-correction", config({"model": {"family_args": {"correction": "smooth"}}}, "mesh"),
     ["train", "{d}/c.yaml"], "correction"),
    ("train-no-data", config({"data": {"train": _DROP}}), ["train", "{d}/c.yaml"], "data.train"),
    ("train-data-missing", config({"data": {"train": "{d}/none.h5"}}), ["train", "{d}/c.yaml"], "none.h5"),
    ("train-valid-missing", config({"data": {"valid": "{d}/none.h5"}}), ["train", "{d}/c.yaml"], "none.h5"),
    ("train-data-text", config({"data": {"train": "{d}/text.h5"}}), ["train", "{d}/c.yaml"], "text.h5"),
    ("train-data-empty-store", config({"data": {"train": "{d}/nothing.h5"}}), ["train", "{d}/c.yaml"],
     "nothing.h5"),
    ("train-batch-zero", config({"data": {"batch_size": 0}}), ["train", "{d}/c.yaml"], "batch_size"),
    ("train-valid-every-no-valid", config({"train": {"valid_every": 5}}), ["train", "{d}/c.yaml"], "data.valid"),
    ("train-mesh-on-static", config({"data": {"train": "{d}/static.h5"}}, "mesh"), ["train", "{d}/c.yaml"],
     "static.h5"),
    ("train-nan-data", config({"data": {"train": "{d}/nan.h5"}, "model": {"scalars": ["kappa"]}}, "mesh"),
     ["train", "{d}/c.yaml"], "nan.h5"),
    ("train-steps-flag", config({}), ["train", "{d}/c.yaml", "--steps", "0"], "--steps"),
    ("train-ensemble-zero", config({}), ["train", "{d}/c.yaml", "--ensemble", "0"], "--ensemble"),
    ("train-resume-nothing", config({}), ["train", "{d}/c.yaml", "--resume"], "checkpoint"),
    # sim rollout / eval
    ("rollout-missing-ckpt", None, ["rollout", "{d}/none.pt", MD, "--out", "{d}/o"], "none.pt"),
    ("rollout-text-ckpt", None, ["rollout", "{d}/text.pt", MD, "--out", "{d}/o"], "text.pt"),
    ("rollout-text-npz", None, ["rollout", "{d}/text.npz", MD, "--out", "{d}/o"], "text.npz"),
    ("rollout-text-json", None, ["rollout", "{d}/text.json", MD, "--out", "{d}/o"], "text.json"),
    ("rollout-list-json", None, ["rollout", "{d}/list.json", MD, "--out", "{d}/o"], "list.json"),
    ("rollout-folder-ckpt", None, ["rollout", "{d}", MD, "--out", "{d}/o"], "folder"),
    ("rollout-missing-data", None, ["rollout", M, "{d}/none.h5", "--out", "{d}/o"], "none.h5"),
    ("rollout-text-data", None, ["rollout", M, "{d}/text.h5", "--out", "{d}/o"], "text.h5"),
    ("rollout-vtu-data", None, ["rollout", M, "{d}/square.vtu", "--out", "{d}/o"], "square.vtu"),
    ("rollout-empty-store", None, ["rollout", M, "{d}/nothing.h5", "--out", "{d}/o"], "no entries"),
    ("rollout-static-entry", None, ["rollout", M, "{d}/static.h5", "--out", "{d}/o"], "static mesh"),
    ("rollout-one-step", None, ["rollout", M, "{d}/short.h5", "--out", "{d}/o"], "step"),
    ("rollout-no-scalar", None, ["rollout", M, "{d}/nokappa.h5", "--out", "{d}/o"], "kappa"),
    ("rollout-no-field", None, ["rollout", M, "{d}/novelocity.h5", "--out", "{d}/o"], "'u'"),
    ("rollout-missing-entry", None, ["rollout", M, MD, "--out", "{d}/o", "--entry", "zz"], "no entry 'zz'"),
    ("rollout-entry-dotdot", None, ["rollout", M, MD, "--out", "{d}/o", "--entry", ".."], "entry name"),
    ("rollout-entry-slash", None, ["rollout", M, MD, "--out", "{d}/o", "--entry", "a/b"], "entry name"),
    ("rollout-entry-empty", None, ["rollout", M, MD, "--out", "{d}/o", "--entry", ""], "entry name"),
    ("rollout-steps-zero", None, ["rollout", M, MD, "--out", "{d}/o", "--steps", "0"], "--steps"),
    ("rollout-steps-negative", None, ["rollout", M, MD, "--out", "{d}/o", "--steps", "-3"], "--steps"),
    ("rollout-steps-text", None, ["rollout", M, MD, "--out", "{d}/o", "--steps", "ten"], "--steps"),
    ("rollout-format", None, ["rollout", M, MD, "--out", "{d}/o", "--format", "vtk"], "--format"),
    ("rollout-out-is-file", None, ["rollout", M, MD, "--out", "{d}/a_file"], "a_file"),
    ("rollout-no-out", None, ["rollout", M, MD], "--out"),
    ("rollout-mesh-model-on-particles", None, ["rollout", M, "{particle_data}", "--out", "{d}/o"], "no point field(s) ['u']"),
    ("rollout-particle-model-on-mesh", None, ["rollout", "{particle}", MD, "--out", "{d}/o"], "particle trajectories"),
    ("rollout-steady-model", None, ["rollout", "{steady}", MD, "--out", "{d}/o"], "steady"),
    ("rollout-mmgp-model", None, ["rollout", "{mmgp}", MD, "--out", "{d}/o"], "mmgp"),
    ("rollout-prose-on-mesh", None, ["rollout", "{prose}", MD, "--out", "{d}/o"], "not an ODE trajectory"),
    ("rollout-blowup-negative", None, ["rollout", M, MD, "--out", "{d}/o", "--blowup-factor", "-1"],
     "--blowup-factor"),
    ("rollout-over-finished-fails", finished_rollout, ["rollout", M, "{d}/nokappa.h5", "--out", "{d}/out"],
     "kappa"),
    ("eval-missing-data", None, ["eval", M, "{d}/none.h5"], "none.h5"),
    ("eval-empty-store", None, ["eval", M, "{d}/nothing.h5"], "no entries"),
    ("eval-steps-zero", None, ["eval", M, MD, "--steps", "0"], "--steps"),
    ("eval-correction-no-velocity", None, ["eval", M, MD, "--correction", "divergence_free"], "velocity"),
    ("eval-correction-particle", None,
     ["eval", "{particle}", "{particle_data}", "--correction", "divergence_free"], "mesh models"),
    ("eval-correction-unknown", None, ["eval", M, MD, "--correction", "smooth"], "smooth"),
    ("eval-precision-steady", None, ["eval", "{steady}", MD, "--precision", "bf16"], "mesh and particle models"),
    ("eval-precision-unknown", None, ["eval", M, MD, "--precision", "int4"], "--precision"),
    ("eval-json-under-file", None, ["eval", M, MD, "--json", "{d}/a_file/m.json"], "a_file"),
    ("eval-steady-on-trajectories", None, ["eval", "{steady}", MD], "diff.h5"),
    ("eval-mmgp-on-trajectories", None, ["eval", "{mmgp}", MD], "diff.h5"),
    ("eval-mesh-without-its-scalar", None, ["eval", M, "{d}/two.h5"], "kappa"),
    # sim predict
    ("predict-missing-mesh", None, ["predict", "{steady}", "{d}/none.vtu", "--out", "{d}/p.vtu"], "none.vtu"),
    ("predict-garbage-mesh", None, ["predict", "{steady}", "{d}/text.vtu", "--out", "{d}/p.vtu"], "text.vtu"),
    ("predict-store", None, ["predict", "{steady}", "{d}/two.h5", "--out", "{d}/p.vtu"], "one mesh"),
    ("predict-param-format", None, ["predict", "{steady}", "{d}/square.vtu", "--param", "a", "--out", "{d}/p.vtu"],
     "NAME=NUMBER"),
    ("predict-param-text", None,
     ["predict", "{steady}", "{d}/square.vtu", "--param", "a=big", "--out", "{d}/p.vtu"], "NAME=NUMBER"),
    ("predict-param-missing", None, ["predict", "{steady}", "{d}/square.vtu", "--out", "{d}/p.vtu"], "'a'"),
    ("predict-param-unknown", None,
     ["predict", "{steady}", "{d}/square.vtu", "--param", "a=1", "--param", "b=2", "--out", "{d}/p.vtu"], "'b'"),
    ("predict-mmgp-param-missing", None, ["predict", "{mmgp}", "{d}/square.vtu", "--out", "{d}/p.vtu"], "'a'"),
    ("predict-3d-mesh", None,
     ["predict", "{steady}", "{d}/square3d.vtu", "--param", "a=1", "--out", "{d}/p.vtu"], "3D"),
    ("predict-out-ext", None,
     ["predict", "{steady}", "{d}/square.vtu", "--param", "a=1", "--out", "{d}/p.nope"], "p.nope"),
    ("predict-particle-model", None, ["predict", "{particle}", "{d}/square.vtu", "--out", "{d}/p.vtu"], "particle"),
    ("predict-mesh-model-no-state", None,
     ["predict", M, "{d}/square.vtu", "--param", "kappa=0.1", "--out", "{d}/p.vtu"], "2 frames"),
    # sim diagnose
    ("diagnose-step-out-of-range", None, ["diagnose", "range", M, MD, "--step", "99"], "outside entry"),
    ("diagnose-missing-entry", None, ["diagnose", "range", M, MD, "--entry", "zz"], "no entry 'zz'"),
    ("diagnose-empty-store", None, ["diagnose", "lipschitz", M, "{d}/nothing.h5"], "no entries"),
    ("diagnose-particle", None, ["diagnose", "range", "{particle}", "{particle_data}"], "particle"),
    ("diagnose-eps-zero", None, ["diagnose", "lipschitz", M, MD, "--step", "1", "--eps", "0"], "--eps"),
    ("diagnose-nodes-zero", None, ["diagnose", "lipschitz", M, MD, "--step", "1", "--nodes", "0"], "--nodes"),
    ("diagnose-hops-zero", None, ["diagnose", "range", M, MD, "--step", "1", "--max-hops", "0"], "--max-hops"),
    ("diagnose-seeds-zero", None, ["diagnose", "range", M, MD, "--step", "1", "--seeds", "0"], "--seeds"),
    ("diagnose-unknown", None, ["diagnose", "spectrum", M, MD], "spectrum"),
    ("diagnose-harmful-particle", None, ["diagnose", "harmful", "{particle}", "{particle_data}"], "particle"),
    ("diagnose-harmful-missing-valid", None, ["diagnose", "harmful", M, MD, "--valid", "{d}/none.h5"], "none.h5"),
    ("diagnose-harmful-lr-zero", None, ["diagnose", "harmful", M, MD, "--valid", MD, "--lr", "0"], "--lr"),
    ("diagnose-harmful-wrong-field", None, ["diagnose", "harmful", M, "{particle_data}", "--valid", MD],
     "no point field(s) ['u']"),
    # sim partition / partitioned rollouts (refused before any rank starts)
    ("partition-missing", None, ["partition", "{d}/none.h5", "--parts", "2", "--halo", "1", "--out", "{d}/p.h5"],
     "none.h5"),
    ("partition-no-halo", None, ["partition", "{d}/square.vtu", "--parts", "2", "--out", "{d}/p.h5"], "--halo"),
    ("partition-too-many-parts", None,
     ["partition", "{d}/square.vtu", "--parts", "1000", "--halo", "1", "--out", "{d}/p.h5"], "1000 parts"),
    ("partition-particle-model", None,
     ["partition", "{d}/square.vtu", "--parts", "2", "--model", "{particle}", "--out", "{d}/p.h5"], "particle"),
    ("rollout-partitions-xdmf", None, ["rollout", M, MD, "--out", "{d}/o", "--partitions", "2", "--format", "xdmf"],
     "xdmf"),
    ("rollout-partitions-particle", None, ["rollout", "{particle}", "{particle_data}", "--out", "{d}/o",
                                           "--partitions", "2"], "mesh model"),
    ("rollout-partition-not-a-partition", None, ["rollout", M, MD, "--out", "{d}/o", "--partition", "{d}/text.h5"],
     "text.h5"),
    # sim view (refused before it serves anything)
    ("view-missing", None, ["view", "{d}/none.pvd"], "no such file"),
    ("view-folder", None, ["view", "{d}"], "is a folder"),
    ("view-text-vtu", None, ["view", "{d}/text.vtu"], "text.vtu"),
    ("view-bad-pvd", None, ["view", "{d}/bad.pvd"], "bad.pvd"),
    ("view-missing-step", None, ["view", "{d}/missing_step.pvd"], "s0.vtu"),
    ("view-empty-store", None, ["view", "{d}/nothing.h5"], "no entries"),
    ("view-two-entries", None, ["view", "{d}/two.h5"], "--entry"),
    ("view-entry-missing", None, ["view", "{d}/two.h5", "--entry", "zz"], "no entry 'zz'"),
    ("view-entry-not-store", None, ["view", "{d}/square.vtu", "--entry", "a"], "not one"),
    ("view-port", None, ["view", "{d}/square.vtu", "--port", "70000"], "--port"),
    ("view-fps", None, ["view", "{d}/square.vtu", "--fps", "0"], "--fps"),
    # the rest of the command line
    ("demo-negative-budget", None, ["demo", "--train-seconds", "-5", "--out", "{d}/demo"], "--train-seconds"),
    ("demo-zero-workers", None, ["demo", "--workers", "0", "--out", "{d}/demo"], "--workers"),
    ("unknown-command", None, ["fly"], "fly"),
    ("plugins-kind", None, ["plugins", "list", "--kind", "widget"], "widget"),
]


def _api_cases() -> list[tuple[str, Any, Any, str]]:
    import sim

    def store_name(name: str) -> Callable[[dict], Any]:
        def fn(ctx: dict) -> Any:
            with StoreWriter(ctx["d"] / "names.h5") as w:
                w.append(Mesh(np.eye(3)[:, :2]), name=name)
        return fn

    def surrogate(key: str) -> Any:
        return sim.load(key)

    return [
        ("api-load-missing", None, lambda c: sim.load(c["d"] / "none.pt"), "none.pt"),
        ("api-load-text", None, lambda c: sim.load(c["d"] / "text.pt"), "text.pt"),
        ("api-load-yaml", None, lambda c: sim.load(c["d"] / "bad.yaml"), "bad.yaml"),
        ("api-evaluate-text-data", None, lambda c: sim.evaluate(c["mesh"], c["d"] / "text.h5"), "text.h5"),
        ("api-evaluate-steps", None, lambda c: sim.evaluate(c["mesh"], c["mesh_data"], steps=0), "steps"),
        ("api-evaluate-entry", None, lambda c: sim.evaluate(c["mesh"], c["mesh_data"], entries=["zz"]), "zz"),
        ("api-evaluate-dotdot", None, lambda c: sim.evaluate(c["mesh"], c["mesh_data"], entries=[".."]),
         "entry name"),
        ("api-predict-missing-param", None, lambda c: surrogate(c["steady"]).predict(
            Mesh(square_mesh(5).points, square_mesh(5).cells)), "'a'"),
        ("api-rollout-wrong-shape", None, lambda c: surrogate(c["mesh"]).rollout(
            Trajectory(square_mesh(5), np.arange(2) * 0.1, point_fields={"u": np.zeros((2, 3))}), 2), "u"),
        ("api-store-name-dotdot", None, store_name(".."), "entry name"),
        ("api-store-name-slash", None, store_name("a/b"), "entry name"),
        ("api-store-name-empty", None, store_name(""), "entry name"),
        ("api-store-name-hidden", None, store_name(".x"), "entry name"),
        ("api-store-open-missing", None, lambda c: Store(c["d"] / "none.h5"), "none.h5"),
        ("api-read-unknown", None, lambda c: __import__("sim.mesh").mesh.read(c["d"] / "a_file"), "a_file"),
        ("api-write-unknown", None, lambda c: write(Mesh(np.eye(3)[:, :2]), c["d"] / "x.nope"), "x.nope"),
        ("api-mesh-bad-cells", None, lambda c: write(Mesh(np.eye(3)[:, :2], {"triangle": [[0, 1, 7]]}),
                                                       c["d"] / "x.vtu"), "refer to point 7"),
        ("api-trajectory-times", None, lambda c: write(Trajectory(
            Mesh(np.eye(3)[:, :2]), np.array([0.0, 0.0]), point_fields={"u": np.zeros((2, 3))}),
            c["d"] / "x.pvd"), "times must increase strictly (step 1: 0.0 after 0.0)"),
        ("api-pvd-suffix", None, lambda c: __import__("sim.mesh").mesh.PVDWriter(
            c["d"] / "x.vtu", __import__("sim.mesh").mesh.SeriesLayout(Mesh(np.eye(3)[:, :2]))), "x.vtu"),
    ]


ALL = CASES + _api_cases()


def _snapshot(d: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            p = Path(root) / name
            st = p.stat()
            out[str(p.relative_to(d))] = (st.st_size, st.st_mtime_ns) if p.is_file() else (-1, 0)
    return out


@pytest.fixture
def ctx(trained, tmp_path) -> dict[str, Any]:
    c: dict[str, Any] = {"d": tmp_path}
    for family, (ckpt, data) in trained.items():
        c[family], c[f"{family}_data"] = ckpt, data
    _junk(tmp_path, c)
    return c


def _fmt(value: Any, ctx: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return value.format(**ctx)
    if isinstance(value, dict):
        return {k: _fmt(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_fmt(v, ctx) for v in value]
    return value


def test_the_table_is_large_and_ids_are_unique():
    ids = [c[0] for c in ALL]
    assert len(ids) == len(set(ids)) and len(ids) >= 100


@pytest.mark.parametrize("case_id, setup, action, message", ALL, ids=[c[0] for c in ALL])
def test_bad_input_is_one_clear_error(ctx, case_id, setup, action, message, capsys):
    d = ctx["d"]
    if setup is not None:
        setup(d, ctx)
        if (d / "c.yaml").exists():  # configuration templates may name {d}
            (d / "c.yaml").write_text(yaml.safe_dump(_fmt(yaml.safe_load((d / "c.yaml").read_text()), ctx)))
    capsys.readouterr()
    before = _snapshot(d)
    if callable(action):
        with pytest.raises(SimError) as info:
            action(ctx)
        text = str(info.value)
    else:
        code = main([a.format(**ctx) for a in action])
        err = capsys.readouterr().err.strip()
        assert code == 2, f"exit {code}, stderr: {err!r}"
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("sim: error: "), err
        text = lines[0]
    assert message.format(**ctx) in text, text
    assert _snapshot(d) == before  # nothing new, nothing half-written, nothing touched
