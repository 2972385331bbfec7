"""Atomic file writes: a failed or interrupted write never leaves a half file under the final name."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFile:
    """A temporary file beside ``path`` (same suffix) that :meth:`commit` renames onto ``path``.

    :meth:`discard` removes it; ``path`` is untouched until the commit.
    """

    def __init__(self, path: str | os.PathLike):
        self.final = Path(path)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.final.name}.", suffix=f".part{self.final.suffix}",
                                   dir=self.final.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode

    def commit(self) -> None:
        os.replace(self.tmp, self.final)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    f = AtomicFile(path)
    try:
        yield f.tmp
        f.commit()
    except BaseException:
        f.discard()
        raise


@contextlib.contextmanager
def atomic_files(paths: list[Path]) -> Iterator[list[Path]]:
    """Like :func:`atomic_path` for files that refer to each other by name (``.xdmf`` + ``.h5``).

    Yields paths with the final *names* inside a private temporary directory beside the
    targets; on success they are renamed onto the final paths in the given order (put the
    index file last, so it never points at a missing data file).
    """
    parent = paths[0].parent
    parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{paths[0].name}.", suffix=".part", dir=parent))
    try:
        staged = [tmpdir / p.name for p in paths]
        yield staged
        for src, dst in zip(staged, paths):
            os.replace(src, dst)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
