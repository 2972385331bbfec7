"""LagrangeBench datasets (<split>.h5 + metadata.json) into particle stores.

The files are written here with plain h5py from LagrangeBench's published layout: one group
per trajectory (``00000``, ...) with ``position`` (T, N, D) and ``particle_type`` (N,), and
``metadata.json`` beside the split (frames ``dt * write_every`` apart; statistics per frame).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from sim.cli import main
from sim.mesh import Store, read
from tests.mesh.arrays import assert_same

STEPS, PARTICLES = 10, 40


def lb_metadata() -> dict:
    return {"case": "TGV", "solver": "SPH", "dim": 2, "dx": 0.1, "dt": 0.0004, "t_end": 0.4, "viscosity": 0.01,
            "write_every": 100, "sequence_length_train": STEPS, "num_trajs_train": 2, "sequence_length_test": STEPS,
            "num_trajs_test": 1, "num_particles_max": PARTICLES, "periodic_boundary_conditions": [False, False, True],
            "bounds": [[0.0, 1.0], [0.0, 1.0]], "default_connectivity_radius": 0.15,
            "vel_mean": [1e-5, -2e-5], "vel_std": [0.004, 0.005], "acc_mean": [0.0, -1e-6], "acc_std": [3e-4, 4e-4],
            "description": "a tiny TGV-like set"}


def lb_dataset(folder: Path, trajectories: int = 2, seed: int = 0) -> tuple[Path, dict[str, dict]]:
    """``folder/train.h5`` + ``metadata.json``; returns the path and the arrays per group."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    with h5py.File(folder / "train.h5", "w") as f:
        for i in range(trajectories):
            x0 = rng.uniform(0.2, 0.8, (PARTICLES, 2))
            v = rng.normal(0, 0.05, (PARTICLES, 2))
            t = np.arange(STEPS)[:, None, None] * 0.04
            pos = (x0[None] + v[None] * t - 0.5 * np.array([0.0, 1.0]) * t**2).astype(np.float32)
            types = np.zeros(PARTICLES, dtype=np.int32)
            types[:6] = 1  # solid wall particles
            g = f.create_group(f"{i:05d}")
            g.create_dataset("position", data=pos)
            g.create_dataset("particle_type", data=types)
            arrays[f"{i:05d}"] = {"position": pos, "particle_type": types}
    (folder / "metadata.json").write_text(json.dumps(lb_metadata()))
    return folder / "train.h5", arrays


def test_lagrangebench_split_converts_exactly(tmp_path, capsys):
    src, arrays = lb_dataset(tmp_path / "2D_TGV")
    out = tmp_path / "tgv.h5"
    assert main(["convert", str(src), str(out)]) == 0
    assert "2 entries from the lagrangebench dataset train.h5" in capsys.readouterr().out
    meta = lb_metadata()
    dt = meta["dt"] * meta["write_every"]
    with Store(out) as store:
        assert store.names() == ["00000", "00001"]
        assert store.metadata["lagrangebench"] == meta  # every value kept
        stats = store.metadata["statistics"]
        assert stats["dt"] == dt and stats["dim"] == 2
        assert stats["vel_mean"] == [v / dt for v in meta["vel_mean"]]
        assert stats["vel_std"] == [v / dt for v in meta["vel_std"]]
        assert stats["acc_mean"] == [v / dt**2 for v in meta["acc_mean"]]
        assert stats["acc_std"] == [v / dt**2 for v in meta["acc_std"]]
        assert stats["bounds"] == meta["bounds"] and stats["default_connectivity_radius"] == 0.15
        for name, a in arrays.items():
            traj = store.read(name)
            assert_same(traj.positions, a["position"])
            assert_same(traj.mesh.points, a["position"][0])
            assert_same(traj.mesh.point_data["particle_type"], a["particle_type"])
            assert set(traj.mesh.point_data) == {"particle_type"} and not traj.point_fields and not traj.mesh.cells
            assert_same(traj.times, np.arange(STEPS) * dt)
            assert traj.dt == dt
            assert traj.params == {"dim": 2, "bounds": meta["bounds"],
                                   "periodic_boundary_conditions": meta["periodic_boundary_conditions"],
                                   "particle_types": {"0": "fluid", "1": "solid_wall"}}


def test_extra_arrays_and_attributes_are_kept(tmp_path):
    src, arrays = lb_dataset(tmp_path / "d", trajectories=1)
    u = np.random.default_rng(3).random((STEPS, PARTICLES, 2))
    mass = np.arange(PARTICLES, dtype=np.float64)
    with h5py.File(src, "a") as f:
        f["00000"].create_dataset("u", data=u)
        f["00000"].create_dataset("mass", data=mass)
        f["00000"].attrs["seed"] = 7
        f.attrs["version"] = "1.0"
    assert main(["convert", str(src), str(tmp_path / "o.h5"), "--from", "lagrangebench"]) == 0
    with Store(tmp_path / "o.h5") as store:
        traj = store.read("00000")
        assert store.metadata["lagrangebench_file_attrs"] == {"version": "1.0"}
    assert_same(traj.point_fields["u"], u)
    assert_same(traj.mesh.point_data["mass"], mass)
    assert traj.params["attrs"] == {"seed": 7}


def test_converted_store_feeds_and_trains_our_particle_family(tmp_path, capsys):
    from sim.data.particles import ParticleStatistics, ParticleWindowDataset

    src, arrays = lb_dataset(tmp_path / "d")
    out = tmp_path / "tgv.h5"
    assert main(["convert", str(src), str(out)]) == 0
    stats = ParticleStatistics.from_store(out)
    assert stats.dim == 2 and stats.dt == pytest.approx(0.04) and stats.connectivity_radius == 0.15
    ds = ParticleWindowDataset(out)
    item = ds[0]
    assert_same(item.history.numpy(), arrays["00000"]["position"][:6].transpose(1, 0, 2))
    assert_same(item.particle_type.numpy(), arrays["00000"]["particle_type"].astype(np.int64))
    cfg = {"model": {"family": "particle", "network": "giorom", "noise_std": 1e-6,
                     "network_args": {"latent": 16, "mp_before": 1, "mp_after": 1, "grid": 8, "grid_channels": 8,
                                      "modes": 3, "processor_layers": 1},
                     "family_args": {"sample_ratio": 0.5, "decoder": {"neighbors": 4}}},
           "data": {"train": str(out), "dense_queries": 16}, "optim": {"lr": 1e-3},
           "train": {"steps": 2, "out": str(tmp_path / "run"), "log_every": 1, "checkpoint_every": 1000,
                     "normalizer_accumulation_steps": 2}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["train", str(tmp_path / "p.yaml")]) == 0
    loss = float(next(x for x in capsys.readouterr().out.splitlines() if x.startswith("final_loss:")).split()[1])
    assert np.isfinite(loss)


def test_read_names_the_dataset_and_the_command(tmp_path):
    from sim.errors import FileFormatError

    src, _ = lb_dataset(tmp_path / "d", trajectories=1)
    with pytest.raises(FileFormatError, match=r"LagrangeBench dataset.*sim convert train.h5 OUT.h5"):
        read(src)


# ----- bad inputs: one error, exit 2, nothing written
def _edit_meta(change):
    def edit(src: Path) -> None:
        meta = json.loads((src.parent / "metadata.json").read_text())
        change(meta)
        (src.parent / "metadata.json").write_text(json.dumps(meta))
    return edit


def _edit_h5(change):
    def edit(src: Path) -> None:
        with h5py.File(src, "a") as f:
            change(f)
    return edit


@pytest.mark.parametrize("damage, message", [
    (lambda src: (src.parent / "metadata.json").unlink(), "train.h5: no metadata.json beside it"),
    (lambda src: (src.parent / "metadata.json").write_text("{"), "metadata.json: cannot be read as JSON"),
    (_edit_meta(lambda m: m.update(dim=3)), "metadata.json: 'bounds' must be 3 pairs [low, high]"),
    (_edit_h5(lambda f: (f["00001"].pop("position"), f["00001"].create_dataset("position", data=np.zeros((9, 40, 3))))),
     "trajectory '00001': 'position' has shape (9, 40, 3) and dtype float64; expected float (T, N, 2)"),
    (_edit_meta(lambda m: m.pop("dt")), "metadata.json: 'dt' must be a positive number, got None"),
    (_edit_meta(lambda m: m.update(vel_std=[1.0])), "metadata.json: 'vel_std' must be 2 numbers"),
    (_edit_h5(lambda f: f["00001"].pop("particle_type")), "trajectory '00001': has no 'particle_type' dataset"),
    (_edit_h5(lambda f: f["00001"].create_group("extra")), "trajectory '00001': holds the group 'extra'"),
    (_edit_h5(lambda f: f.create_dataset("stray", data=[1])), "'stray' is a dataset at the top level"),
    (_edit_h5(lambda f: f["00001"]["position"].__setitem__((3, 0, 0), np.nan)),
     "trajectory '00001': positions contain NaN or infinite values (first at step 3)"),
])
def test_bad_dataset_is_one_error_and_no_output(tmp_path, capsys, damage, message):
    src, _ = lb_dataset(tmp_path / "d")
    damage(src)
    out = tmp_path / "out" / "tgv.h5"
    out.parent.mkdir()
    assert main(["convert", str(src), str(out), "--from", "lagrangebench"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("sim: error: ") and message in err, err
    assert list(out.parent.iterdir()) == []  # no store, not even a temporary file


def test_a_foreign_format_named_wrongly_is_one_error(tmp_path, capsys):
    src, _ = lb_dataset(tmp_path / "d", trajectories=1)
    assert main(["convert", str(src), str(tmp_path / "o.h5"), "--from", "deepmind"]) == 2
    assert "train.h5: no meta.json beside it" in capsys.readouterr().err
    (tmp_path / "d" / "meta.json").write_text(json.dumps({"features": {"mesh_pos": {
        "type": "static", "shape": [1, -1, 2], "dtype": "float32"}}}))
    assert main(["convert", str(src), str(tmp_path / "o.h5"), "--from", "deepmind"]) == 2
    assert "train.h5: record 0 (byte 0): the CRC of its length does not match" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "o.h5"), "--entry", "00000"]) == 2
    assert "--entry and --all choose entries of a sim store" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()
