"""Fixtures of the recipe tests: the test generators, registered through an entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.solvers.registered import TEST_GENERATORS, entry_point_site


@pytest.fixture
def generator_site(tmp_path_factory) -> Path:
    """The test generators' distribution folder (not yet on ``sys.path``)."""
    return entry_point_site(tmp_path_factory.mktemp("site"), TEST_GENERATORS)


@pytest.fixture
def test_generators(generator_site, monkeypatch) -> Path:
    """The test generators registered for this test."""
    monkeypatch.syspath_prepend(str(generator_site))
    return generator_site
