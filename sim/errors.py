"""Exception types raised by ``sim``.

Every error that a user can cause (a bad file, a mesh that is not a mesh, a query that does
not fit a model) is a :class:`SimError`. Its message is one readable sentence that names the
file (when there is one) and the problem; the ``sim`` command prints it on one line and
exits non-zero instead of showing a traceback.
"""

from __future__ import annotations

import os


class SimError(Exception):
    """Base class of every user-facing error raised by ``sim``.

    Args:
        message: what is wrong, as a sentence without the file name.
        path: the file the problem is in, if any; it is put in front of the message.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)

    def with_path(self, path: str | os.PathLike) -> "SimError":
        """The same error, attributed to ``path`` (used when a check runs before the file is known)."""
        if self.path is not None:
            return self
        return type(self)(self.message, path)


class MeshError(SimError, ValueError):
    """A mesh or trajectory is invalid: bad coordinates, cells, array shapes or dtypes."""


class FileFormatError(SimError):
    """A file is missing, truncated, foreign, of an unknown schema version or an unsupported format."""
