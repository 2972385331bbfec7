"""Test generators allowed the way an installed package allows its own: an entry point.

A ``*.dist-info`` folder with ``entry_points.txt`` on ``sys.path`` is all
``importlib.metadata`` needs, so the tests exercise the real allow-list (and spawned
generation workers, which inherit ``sys.path``, see the same entry points)."""

from __future__ import annotations

from pathlib import Path

TEST_GENERATORS = {
    "sim.generators": {"toy": "tests.solvers.toy_generator:generate",
                       "slow": "tests.solvers.slow_generator:generate"},
    "sim.dataset_statistics": {"toy_statistics": "tests.solvers.toy_generator:statistics"},
}


def entry_point_site(site: Path, groups: dict[str, dict[str, str]]) -> Path:
    """A folder that, on ``sys.path``, holds an installed distribution with these entry points."""
    dist = site / "sim_test_generators-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sim-test-generators\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in eps.items()) + "\n"
        for group, eps in groups.items()))
    return site
