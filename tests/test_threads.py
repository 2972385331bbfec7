"""Thread counts: the CPUs a process may use (affinity, cgroup quota) and `sim --threads`."""

from __future__ import annotations

import os

import pytest
import torch

from sim.cli import main
from sim.threads import ENV_VARS, available_cpus, cgroup_quota, set_threads


def test_cgroup_quota_v2_v1_and_none(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("200000")
    (v1 / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_quota(tmp_path / "v1") == 2.0
    (v1 / "cpu.cfs_quota_us").write_text("-1")
    assert cgroup_quota(tmp_path / "v1") is None
    assert cgroup_quota(tmp_path / "nothing") is None


def test_available_cpus_follows_affinity_and_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path / "nothing") == affinity
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: one thread
    assert available_cpus(tmp_path) == 1


@pytest.fixture
def restore_threads(monkeypatch):
    before = torch.get_num_threads()
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    yield
    torch.set_num_threads(before)


def test_set_threads_sets_torch_and_the_environment(restore_threads, monkeypatch):
    assert set_threads(1) == 1 and torch.get_num_threads() == 1
    assert all(os.environ[v] == "1" for v in ENV_VARS)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert set_threads() == 2 and torch.get_num_threads() == 2  # a count the user set is kept
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert set_threads() == available_cpus()


@pytest.mark.parametrize("argv", [["--threads", "1", "families"], ["families", "--threads", "1"],
                                  ["plugins", "list", "--threads", "1"]])
def test_sim_takes_threads_before_or_after_the_command(restore_threads, argv, capsys):
    assert main(argv) == 0
    assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    capsys.readouterr()
    assert main(["families", "--threads", "0"]) != 0
    assert "--threads" in capsys.readouterr().err
