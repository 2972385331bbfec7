"""What the split readers of other projects' datasets share."""

from __future__ import annotations

import os
from pathlib import Path

from sim.errors import FileFormatError


def split_file(path: str | os.PathLike, example: str) -> Path:
    """``path`` as the file of one split (``example``: such a file's name), or one error saying
    it is missing or a folder."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError("no such file" if not path.exists() else f"is a folder: give one split, e.g. {example}",
                              path)
    return path
