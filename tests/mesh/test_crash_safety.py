"""A finished result is never corrupted: not by a run killed with SIGKILL, not by an exception
midway, not by a full disk. Readers refuse empty and cut files instead of returning nothing."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

import sim.mesh as sm
import sim.mesh.atomic as atomic
import sim.mesh.vtk as vtk
from sim.cli import main
from sim.errors import FileFormatError, SimError
from tests.conftest import trajectory_2d
from tests.train.diffusion_data import diffusion_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mesh_model(tmp_path_factory):
    """A tiny trained mesh model, its store, and another store with the same entry names but
    other values (so a second rollout writes different bytes)."""
    tmp = tmp_path_factory.mktemp("crash")
    data = diffusion_store(tmp / "diff.h5", trajectories=3, steps=8)
    other = diffusion_store(tmp / "other.h5", trajectories=3, steps=8, seed=1)
    cfg = {"model": {"family": "mesh", "network_args": {"latent": 16, "steps": 2}, "fields": ["u"]},
           "data": {"train": str(data), "valid": str(data), "valid_rollout_steps": 3},
           "optim": {"lr": 1e-3},
           "train": {"steps": 2, "out": str(tmp / "model"), "log_every": 1, "checkpoint_every": 1000,
                     "normalizer_accumulation_steps": 2}}
    (tmp / "mesh.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp / "mesh.yaml")]) == 0
    return tmp / "model" / "checkpoint.pt", data, other


def _snapshot(folder: Path) -> dict[str, str]:
    """Hash of every file under ``folder`` outside hidden (staging) entries."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def _debris(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".part-" in p.name or ".old-" in p.name]


def _finished_rollout(ckpt: Path, data: Path, out: Path) -> dict[str, str]:
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file\n")  # never touched by a rollout
    assert main(["rollout", str(ckpt), str(data), "--out", str(out), "--all"]) == 0
    files = _snapshot(out)
    assert {"000000.pvd", "000001.pvd", "000002.pvd", "notes.txt"} <= set(files)
    return files


SLOW_ROLLOUT = """
import sys, time
import sim.mesh.vtk as vtk
write = vtk.PVDWriter.write
def slow(self, *args, **kwargs):
    write(self, *args, **kwargs)
    time.sleep(float(sys.argv[1]))
vtk.PVDWriter.write = slow
from sim.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_kill_9_during_a_rollout_leaves_the_previous_rollout_byte_identical(mesh_model, tmp_path, capsys):
    ckpt, data, other = mesh_model
    out = tmp_path / "out"
    before = _finished_rollout(ckpt, data, out)
    first = sm.read(out / "000000.pvd")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_ROLLOUT, "0.5", "rollout", str(ckpt), str(other),
                             "--out", str(out), "--all"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            stages = list(out.glob(".*.part-*"))
            # entry 000000 finished in the staging folder, entry 000001 half written
            if any((s / "000000.pvd").exists() and any(s.rglob("000001_*.vtu")) for s in stages):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the slowed rollout ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _snapshot(out) == before  # every file of the finished rollout, byte for byte
    assert sm.read(out / "000000.pvd").equals(first)
    assert _debris(out)  # the killed run's staging folder is still there ...
    capsys.readouterr()
    assert main(["rollout", str(ckpt), str(other), "--out", str(out), "--all"]) == 0
    assert not _debris(out)  # ... until the next writer in the folder removes it
    written = [Path(line.split(" ", 1)[1]) for line in capsys.readouterr().out.splitlines()
               if line.startswith("wrote ")]
    assert sorted(written) == [out / f"00000{i}.pvd" for i in range(3)]  # the final paths
    after = _snapshot(out)
    assert after["notes.txt"] == before["notes.txt"]
    assert after["000000.pvd"] == before["000000.pvd"]  # same times and file names ...
    assert after["000000/000000_000003.vtu"] != before["000000/000000_000003.vtu"]  # ... other values
    assert not sm.read(out / "000000.pvd").equals(first)


@pytest.mark.parametrize("fmt", ["pvd", "xdmf"])
def test_an_exception_midway_leaves_the_previous_rollout_and_no_debris(mesh_model, tmp_path, monkeypatch, fmt):
    ckpt, data, other = mesh_model
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file\n")
    assert main(["rollout", str(ckpt), str(data), "--out", str(out), "--all", "--format", fmt]) == 0
    before = _snapshot(out)
    first = sm.read(out / f"000000.{fmt}")
    writer = vtk.PVDWriter if fmt == "pvd" else sm.XDMFWriter
    write = writer.write

    def failing(self, t, *args, **kwargs):  # entry 000001 fails at its fourth step
        if self.path.name.startswith("000001") and t > 0.35:
            raise RuntimeError("the node went down")
        write(self, t, *args, **kwargs)

    monkeypatch.setattr(writer, "write", failing)
    with pytest.raises(RuntimeError, match="node went down"):
        main(["rollout", str(ckpt), str(other), "--out", str(out), "--all", "--format", fmt])
    assert _snapshot(out) == before
    assert sm.read(out / f"000000.{fmt}").equals(first)
    assert not _debris(out)


def test_a_full_disk_during_a_rollout_is_one_error_naming_the_final_file(mesh_model, tmp_path, monkeypatch, capsys):
    ckpt, data, other = mesh_model
    out = tmp_path / "out"
    before = _finished_rollout(ckpt, data, out)
    write = vtk._write_xml_grid

    def full_disk(grid, path):
        if path.name == "000001_000002.vtu":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(grid, path)

    monkeypatch.setattr(vtk, "_write_xml_grid", full_disk)
    capsys.readouterr()
    assert main(["rollout", str(ckpt), str(other), "--out", str(out), "--all"]) == 2
    err = capsys.readouterr().err
    assert f"{out / '000001' / '000001_000002.vtu'}: cannot be written (No space left on device)" in err
    assert _snapshot(out) == before
    assert not _debris(out)


def _write_series(path: Path, steps: int = 4) -> dict[str, str]:
    sm.write(trajectory_2d(steps), path)
    return _snapshot(path.parent)


@pytest.mark.parametrize("failure", ["empty file", "ENOSPC"])
def test_a_full_disk_during_a_vtk_write_is_an_error_naming_the_file(tmp_path, monkeypatch, failure):
    """VTK reports a full disk only through an error code and writes a cut file; either way the
    write is an error naming the final file, the previous one stays, nothing is left over."""
    mesh = trajectory_2d().frame(0)
    sm.write(mesh, tmp_path / "mesh.vtu")
    series = _write_series(tmp_path / "s" / "flow.pvd")
    old = (tmp_path / "mesh.vtu").read_bytes()

    def full_disk(grid, path):
        if failure == "ENOSPC":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        Path(path).write_bytes(b"")

    monkeypatch.setattr(vtk, "_write_xml_grid", full_disk)
    message = "No space left on device" if failure == "ENOSPC" else "not complete"
    with pytest.raises(SimError, match=message) as err:
        sm.write(mesh, tmp_path / "mesh.vtu")
    assert err.value.path == str(tmp_path / "mesh.vtu")
    assert (tmp_path / "mesh.vtu").read_bytes() == old
    with pytest.raises(SimError, match=message) as err:
        sm.write(trajectory_2d(3), tmp_path / "s" / "flow.pvd")
    assert err.value.path == str(tmp_path / "s" / "flow" / "flow_000000.vtu")
    assert _snapshot(tmp_path / "s") == series
    assert not _debris(tmp_path)


def test_a_vtk_write_to_a_device_that_is_full_is_an_error(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    grid = trajectory_2d().frame(0).to_pyvista()
    with pytest.raises(SimError, match="No space left on device") as err:
        vtk._save_grid(grid, Path("/dev/full"), tmp_path / "mesh.vtu")
    assert err.value.path == str(tmp_path / "mesh.vtu")


@pytest.mark.parametrize("suffix", [".pvd", ".xdmf"])
@pytest.mark.parametrize("failure", ["empty file", "ENOSPC"])
def test_a_full_disk_during_the_index_write_keeps_the_previous_series(tmp_path, monkeypatch, suffix, failure):
    path = tmp_path / f"flow{suffix}"
    before = _write_series(path)

    def full_disk(self, file, *args, **kwargs):
        if failure == "ENOSPC":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        Path(file).write_bytes(b"")

    monkeypatch.setattr(ET.ElementTree, "write", full_disk)
    with pytest.raises(SimError, match="No space left on device" if failure == "ENOSPC" else "not complete") as err:
        sm.write(trajectory_2d(3), path)
    assert err.value.path == str(path)
    assert _snapshot(tmp_path) == before
    assert not _debris(tmp_path)
    monkeypatch.undo()
    assert sm.read(path).equals(trajectory_2d(4))


def test_a_series_written_over_another_replaces_it_whole(tmp_path):
    """A shorter series over a longer one leaves none of the longer one's step files."""
    path = tmp_path / "flow.pvd"
    sm.write(trajectory_2d(5), path)
    sm.write(trajectory_2d(2), path)
    assert sorted(p.name for p in (tmp_path / "flow").iterdir()) == ["flow_000000.vtu", "flow_000001.vtu"]
    assert sm.read(path).equals(trajectory_2d(2))
    assert not _debris(tmp_path)


def test_a_failed_swap_puts_the_previous_files_back(tmp_path, monkeypatch):
    path = tmp_path / "flow.pvd"
    before = _write_series(path)
    replace, refused = os.replace, []

    def refuse_the_index(src, dst):  # the new index may not come in; the old one may go back
        if Path(dst) == path and not refused:
            refused.append(src)
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", refuse_the_index)
    with pytest.raises(SimError, match="Permission denied") as err:
        sm.write(trajectory_2d(3), path)
    assert err.value.path == str(path)
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before
    assert not _debris(tmp_path)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_stale_undoes_a_swap_killed_midway_and_spares_live_writers(tmp_path):
    """A writer killed after its new step folder came in but before its index did: the next
    writer in the folder puts the previous series back (never the old index over new steps)."""
    path = tmp_path / "flow.pvd"
    before = _write_series(path)
    dead, host = _dead_pid(), atomic._HOST
    os.replace(path, tmp_path / f".flow.pvd.old-{dead}-{host}-ab12")
    os.replace(tmp_path / "flow", tmp_path / f".flow.old-{dead}-{host}-ab12")
    sm.write(trajectory_2d(2), tmp_path / "elsewhere" / "flow.pvd")
    os.replace(tmp_path / "elsewhere" / "flow", tmp_path / "flow")  # the new steps came in, the index did not
    shutil.rmtree(tmp_path / "elsewhere")
    (tmp_path / f".flow.pvd.part-{dead}-{host}-xyz").mkdir()  # its staging folder
    live = tmp_path / f".other.pvd.part-{os.getpid()}-{host}-abc"
    remote = tmp_path / f".other.pvd.part-{dead}-elsewhere-abc"
    live.mkdir()
    remote.mkdir()
    atomic.clean_stale(tmp_path)
    assert _snapshot(tmp_path) == before
    assert sm.read(path).equals(trajectory_2d(4))
    assert sorted(p.name for p in _debris(tmp_path)) == sorted([live.name, remote.name])


def test_clean_stale_finishes_a_swap_killed_before_it_deleted_the_old_files(tmp_path):
    path = tmp_path / "flow.pvd"
    _write_series(path, steps=4)
    dead, host = _dead_pid(), atomic._HOST
    os.replace(path, tmp_path / f".flow.pvd.old-{dead}-{host}-cd34")
    os.replace(tmp_path / "flow", tmp_path / f".flow.old-{dead}-{host}-cd34")
    sm.write(trajectory_2d(2), tmp_path / "elsewhere" / "flow.pvd")
    for name in ("flow", "flow.pvd"):  # the new series came in completely
        os.replace(tmp_path / "elsewhere" / name, tmp_path / name)
    (tmp_path / "elsewhere").rmdir()
    after = _snapshot(tmp_path)
    atomic.clean_stale(tmp_path)
    assert _snapshot(tmp_path) == after and not _debris(tmp_path)


@pytest.mark.parametrize("content", [b"", b"garbage\x00\x01 not xml", "cut"])
def test_an_empty_or_broken_vtu_is_a_read_error_naming_the_file(tmp_path, content):
    good = tmp_path / "good.vtu"
    sm.write(trajectory_2d().frame(0), good)
    if content == "cut":  # cut inside the appended data, which VTK itself reads as an empty mesh
        data = good.read_bytes()
        content = data[: data.index(b"</AppendedData>") - 20]
    bad = tmp_path / "bad.vtu"
    bad.write_bytes(content)
    with pytest.raises(FileFormatError) as err:
        sm.read(bad)
    assert err.value.path == str(bad)


def test_a_series_with_an_empty_step_file_is_a_read_error_naming_the_step(tmp_path):
    _write_series(tmp_path / "flow.pvd")
    step = tmp_path / "flow" / "flow_000002.vtu"
    step.write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty") as err:
        sm.read(tmp_path / "flow.pvd")
    assert err.value.path == str(step)


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".off", ".msh", ".stl"])
def test_an_empty_meshio_file_is_a_read_error(tmp_path, suffix):
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    with pytest.raises(FileFormatError, match="0 bytes") as err:
        sm.read(empty)
    assert err.value.path == str(empty)


# Cuts that used to come back as an empty mesh, a bare ValueError or meshio's sys.exit (its .off
# reader never returns from a cut file, so it is not here).
@pytest.mark.parametrize("suffix, cut_at", [(".ply", 8), (".ply", 100), (".obj", 8), (".msh", 8), (".vtk", 100)])
def test_a_cut_mesh_file_is_a_read_error(tmp_path, suffix, cut_at):
    mesh = trajectory_2d().frame(0)
    full = tmp_path / f"tri{suffix}"
    sm.write(sm.Mesh(np.pad(mesh.points, ((0, 0), (0, 1))), {"triangle": mesh.cells["triangle"]}), full)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[:cut_at])
    with pytest.raises(FileFormatError) as err:
        sm.read(cut)
    assert err.value.path == str(cut)
