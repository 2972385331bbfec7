"""A loss that turns NaN/inf says why: broken training data (file, entry, field) or a diverged model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from sim.errors import SimError
from sim.families import train
from sim.mesh import NodeType, StoreWriter, Trajectory
from sim.train import Config
from sim.train.trainer import non_finite_loss
from tests.train.diffusion_data import diffusion_store, square_mesh


def _config(tmp_path, data, **optim) -> Config:
    return Config.from_dict({
        "model": {"network_args": {"latent": 8, "steps": 1}, "fields": ["u"]},
        "data": {"train": str(data), "batch_size": 1},
        "optim": {"lr": 1e-3, **optim},
        "train": {"steps": 8, "out": str(tmp_path / "run"), "log_every": 8, "tensorboard": False},
    })


def test_nan_in_the_training_data_names_file_entry_and_field(tmp_path):
    mesh = square_mesh(5)
    interior = int(np.flatnonzero(mesh.node_type == NodeType.INTERIOR)[0])
    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "nan.h5") as w:
        for i in range(2):
            u = rng.random((5, mesh.num_points)).astype(np.float32)
            if i == 1:
                u[3, interior] = np.nan
            w.append(Trajectory(mesh, np.arange(5) * 0.1, point_fields={"u": u}))
    with pytest.raises(SimError) as err:
        train(_config(tmp_path, tmp_path / "nan.h5"), progress=False)  # 8 steps of 1: every sample once
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'nan.h5'}: entry '000001' (frame ")
    assert ("(frame 2): field 'target'" in msg) or ("(frame 3): field 'state'" in msg), msg
    assert "NaN or infinite" in msg and "lr" not in msg
    assert not (tmp_path / "run").exists()  # nothing logged or saved yet: nothing left behind


def test_finite_data_and_a_huge_learning_rate_is_a_diverged_model(tmp_path):
    data = diffusion_store(tmp_path / "diff.h5", trajectories=2, steps=5)
    with pytest.raises(SimError, match=r"while the 1 samples of its batch are finite: the model diverged; lower "
                                       r"optim\.lr \(now 1e\+08\)"):
        train(_config(tmp_path, data, lr=1e8, lr_final=1e8, schedule="constant"), progress=False)


@dataclass
class _Series:
    name: str
    state: np.ndarray


def test_samples_without_graphs_name_their_entry_or_index(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"")  # the configuration only needs the file to exist
    cfg = _config(tmp_path, tmp_path / "x.h5")
    good, bad = _Series("a", np.zeros(3)), _Series("b", np.array([0.0, np.inf, 1.0]))
    err = non_finite_loss(float("nan"), 7, [good, bad], [0, 1], cfg)
    assert str(err).endswith("entry 'b': field 'state' of the training sample holds NaN or infinite values, so the "
                             "training loss became nan at step 7; fix or remove the entry (no learning rate fixes the "
                             "data)")
    err = non_finite_loss(float("inf"), 3, [{"x": np.ones(2)}, {"x": np.array([np.nan])}], [1], cfg)
    assert "training sample 1: field 'x'" in str(err) and str(err).startswith(str(tmp_path / "x.h5"))
    assert "model diverged" in str(non_finite_loss(float("nan"), 3, [good], [0], cfg))
