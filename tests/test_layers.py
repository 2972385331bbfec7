"""Lower layers never import upward (import-linter contracts in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is part of the dev extra"
    res = subprocess.run([exe], capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout
