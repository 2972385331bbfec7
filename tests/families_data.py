"""Tiny trained models of every family on tiny generated data, shared by the tests through the
session fixture ``trained`` (tests/conftest.py): family name -> (checkpoint, data store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from sim.cli import main
from sim.mesh import Mesh, StoreWriter
from tests.data.mpm_store import mpm_store
from tests.train.diffusion_data import diffusion_store, square_mesh

STEPS = 6


def _config(tmp: Path, name: str, model: dict, data: dict, optim: dict | None = None) -> Path:
    cfg = {"model": model, "data": data, "optim": optim or {"lr": 1e-3},
           "train": {"steps": STEPS, "out": str(tmp / name), "log_every": 2, "checkpoint_every": 1000,
                     "normalizer_accumulation_steps": 3}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _steady_samples(path: Path, count: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    mesh = square_mesh(6)
    x, y = mesh.points[:, 0], mesh.points[:, 1]
    with StoreWriter(path) as w:
        for _ in range(count):
            a = rng.uniform(0.5, 2.0)
            w.append(Mesh(mesh.points, mesh.cells, point_data={"u": np.stack([a * x * y, a * y], 1)},
                          field_data={"a": np.array([a])}, node_type=mesh.node_type))
    return path


def _ode_store(path: Path, count: int, seed: int) -> Path:
    from solvers import Rejected
    from solvers.odes.generate import generate

    with StoreWriter(path) as w:
        s = seed
        while len(w.names()) < count:
            try:
                w.append(generate({"systems": ["lorenz", "thomas"], "num_points": 48, "t_end": 1.5}, s))
            except Rejected:
                pass
            s += 1
    return path


def train_every_family(tmp: Path) -> dict[str, tuple[Path, Path]]:
    """One trained model per family under ``tmp``: name -> (checkpoint, data store)."""
    mesh_data = diffusion_store(tmp / "diff.h5", trajectories=3, steps=8, kappas=[0.02, 0.1, 0.05])
    particles = mpm_store(tmp / "water.h5", trajectories=2, frames=12)
    steady = _steady_samples(tmp / "steady.h5", 6, 0)
    odes = _ode_store(tmp / "ode.h5", 6, 0)
    tiny_net = {"latent": 16, "steps": 2}
    configs = {
        "mesh": _config(tmp, "mesh", {"family": "mesh", "network_args": tiny_net, "fields": ["u"],
                                      "scalars": ["kappa"], "history": 2},
                        {"train": str(mesh_data), "valid": str(mesh_data), "valid_rollout_steps": 3}),
        "particle": _config(tmp, "particle", {"family": "particle", "network": "giorom", "noise_std": 1e-6,
                                              "network_args": {"latent": 16, "mp_before": 1, "mp_after": 1, "grid": 8,
                                                               "grid_channels": 8, "modes": 3,
                                                               "processor_layers": 1},
                                              "family_args": {"sample_ratio": 0.5, "decoder": {"neighbors": 4}}},
                            {"train": str(particles), "dense_queries": 32}),
        "steady": _config(tmp, "steady", {"family": "steady", "network_args": tiny_net, "fields": ["u"],
                                          "scalars": ["a"]}, {"train": str(steady)}),
        "mmgp": _config(tmp, "mmgp", {"family": "mmgp", "fields": ["u"], "scalars": ["a"],
                                      "family_args": {"shape_modes": 2, "field_modes": 2, "morph": False,
                                                      "n_restarts": 0, "n_draws": 10}},
                        {"train": str(steady)}),
        "prose": _config(tmp, "prose", {"family": "prose", "network": "prose",
                                        "network_args": {"width": 32, "heads": 2, "ffn": 64, "data_layers": 1,
                                                         "symbol_layers": 1, "fusion_layers": 1,
                                                         "data_decoder_layers": 1, "symbol_decoder_layers": 1,
                                                         "time_frequencies": 4},
                                        "family_args": {"input_points": 24}},
                         {"train": str(odes), "batch_size": 3},
                         {"name": "adamw", "lr": 1e-3, "schedule": "inverse_sqrt", "warmup_steps": 3}),
    }
    data = {"mesh": mesh_data, "particle": particles, "steady": steady, "mmgp": steady, "prose": odes}
    out = {}
    for name, cfg in configs.items():
        assert main(["train", str(cfg)]) == 0, name
        ckpt = tmp / name / ("model.npz" if name == "mmgp" else "checkpoint.pt")
        assert ckpt.exists(), name
        out[name] = (ckpt, data[name])
    return out
