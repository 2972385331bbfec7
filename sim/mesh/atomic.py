"""Crash-safe writes: a failed, interrupted or killed writer never leaves a half file under a
final name, and never damages what was there before.

Everything is written under a private hidden name beside its destination,
``.<name>.part-<pid>-<host>-<random>``, and renamed into place only when complete (a rename
within a folder is atomic):

- :func:`atomic_path` / :class:`AtomicFile`: one file.
- :func:`swap_in`: files and folders that belong together (a ``.pvd`` index and its step
  folder), replaced as one: the previous ones are moved aside, the new ones moved in, and
  only then the previous ones deleted, so an index never names files of another run.
- :func:`staged_dir`: everything a command writes into a folder, swapped in when all of it
  is done.
- :func:`clean_stale`: what a killed writer left behind (its staging copies, or a
  replacement it was in the middle of) is removed or undone by the next writer in the folder.

A failing write (disk full, no permission) is a :class:`~sim.errors.SimError` naming the
file it was for.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path

from sim.errors import FileFormatError, SimError

# Index files name the files of their series; they go aside first and come in last.
INDEX_SUFFIXES = (".pvd", ".xdmf", ".xmf")

# The host is part of the owner so that a folder shared between machines is never cleaned of
# the staging files of a process that runs elsewhere (its pid means nothing here).
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:16] or "host"
_DEBRIS = re.compile(r"^\.(?P<name>.+)\.(?P<kind>part|old)-(?P<pid>\d+)-(?P<host>[A-Za-z0-9]+)-(?P<token>\w+)", re.ASCII)


def _owner() -> str:
    """``<pid>-<host>`` of the calling process (asked each time: forked workers have their own pid)."""
    return f"{os.getpid()}-{_HOST}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_error(path: str | os.PathLike, exc: OSError) -> SimError:
    """The one-line error of a write that the system refused (disk full, no permission),
    attributed to the file it was for rather than to a temporary name."""
    return SimError(f"cannot be written ({exc.strerror or exc})", path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class AtomicFile:
    """A temporary file beside ``path`` (same suffix) that :meth:`commit` renames onto ``path``.

    :meth:`discard` removes it; ``path`` is untouched until the commit.
    """

    def __init__(self, path: str | os.PathLike):
        self.final = Path(path)
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.final.name}.part-{_owner()}-", suffix=self.final.suffix,
                                       dir=self.final.parent)
        except OSError as exc:
            raise write_error(self.final, exc) from None
        os.close(fd)
        self.tmp = Path(tmp)
        os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode

    def commit(self) -> None:
        try:
            os.replace(self.tmp, self.final)
        except OSError as exc:
            self.discard()
            raise write_error(self.final, exc) from None

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    An OSError in the block (the temporary file could not be written) becomes a SimError
    naming ``path``; the temporary file is removed either way.
    """
    f = AtomicFile(path)
    try:
        yield f.tmp
    except OSError as exc:
        f.discard()
        raise write_error(f.final, exc) from None
    except BaseException:
        f.discard()
        raise
    f.commit()


def write_xml(root: ET.Element, tmp: Path, final: Path) -> None:
    """Write an XML index to ``tmp`` and parse it back, so that an index cut short (a full
    disk that the writer did not report) is an error naming ``final`` before it is renamed there."""
    try:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        raise write_error(final, exc) from None
    try:
        ET.parse(tmp)  # a cut XML file never parses: its root element is not closed
    except (ET.ParseError, OSError) as exc:
        raise FileFormatError(f"the index written was not complete ({exc})", final) from None


def staging_dir(final: str | os.PathLike) -> Path:
    """A new private folder beside ``final`` for the parts of what will become ``final``."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{final.name}.part-{_owner()}-", dir=final.parent))
    except OSError as exc:
        raise write_error(final, exc) from None


def swap_in(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Move each staged file or folder onto its final path, replacing what is there as one.

    ``pairs`` are (staged, final), data before the index files that name it (a step folder
    before its ``.pvd``). What is at the final paths is moved aside first, indexes first, then
    the new items are moved in, data first, and only then the previous ones are deleted: at
    no moment does an index name files of another run. If a move fails, the new items are
    taken back out and the previous ones restored; a process killed midway is repaired the
    same way by the next :func:`clean_stale` of the folder (the moved-aside names share a token).
    """
    token = secrets.token_hex(4)
    aside: list[tuple[Path, Path]] = []  # (final, the previous item moved aside)
    moved: list[tuple[Path, Path]] = []  # (staged, final) moved in
    current = pairs[-1][1] if pairs else None
    try:
        for _, final in reversed(pairs):
            current = final
            if final.exists() or final.is_symlink():
                old = final.with_name(f".{final.name}.old-{_owner()}-{token}")
                os.replace(final, old)
                aside.append((final, old))
        for staged, final in pairs:
            current = final
            os.replace(staged, final)
            moved.append((staged, final))
    except BaseException as exc:
        for staged, final in reversed(moved):
            with contextlib.suppress(OSError):
                os.replace(final, staged)
        for final, old in reversed(aside):
            with contextlib.suppress(OSError):
                os.replace(old, final)
        if isinstance(exc, OSError):
            raise write_error(current, exc) from None
        raise
    for _, old in aside:
        _remove(old)


def _alive(pid: int) -> bool:
    if os.name != "posix":  # no harmless probe there (os.kill(pid, 0) sends Ctrl-C): keep its files
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_stale(folder: str | os.PathLike) -> None:
    """Remove the staging files and folders in ``folder`` whose writer (a process of this
    machine) no longer runs, and finish or undo a :func:`swap_in` it was killed in the middle
    of: when all the moved-aside items' final names are filled the swap had finished and the
    previous items go; otherwise what had come in goes and the previous items are put back.
    Called when a writer starts in a folder, so a killed run costs neither disk space nor the
    previous result."""
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    swaps: dict[str, list[tuple[Path, Path]]] = {}
    for name in names:
        m = _DEBRIS.match(name)
        if m is None or m["host"] != _HOST or _alive(int(m["pid"])):
            continue
        if m["kind"] == "part":
            _remove(folder / name)
        else:
            swaps.setdefault(f"{m['pid']}-{m['token']}", []).append((folder / m["name"], folder / name))
    for aside in swaps.values():
        if all(final.exists() for final, _ in aside):
            for _, old in aside:
                _remove(old)
        else:
            for final, old in aside:
                _remove(final)
                with contextlib.suppress(OSError):  # tried again by the next writer; never blocks this one
                    os.replace(old, final)


def _staged_order(path: Path) -> tuple[bool, str]:
    return path.suffix.lower() in INDEX_SUFFIXES, path.name


@contextlib.contextmanager
def staged_dir(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a private folder inside ``folder`` to write into; when the block succeeds, each
    item made there is moved into ``folder`` in one :func:`swap_in` (indexes last), replacing
    the item of the same name. Nothing else in ``folder`` is touched, so it may hold other
    files (the current directory). When the block fails or the process is killed, ``folder``
    is as it was; the staging folder is removed (or, after a kill, by the next writer there).
    """
    folder = Path(folder)
    made = [d for d in (folder, *folder.parents) if not d.exists()]  # what a failure must not leave
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(folder, exc) from None
    clean_stale(folder)
    stage = staging_dir(folder / (folder.resolve().name or "out"))
    done = False
    try:
        yield stage
        items = sorted((p for p in stage.iterdir() if not _DEBRIS.match(p.name)), key=_staged_order)
        swap_in([(p, folder / p.name) for p in items])
        done = True
    except SimError as exc:
        raise _attributed(exc, stage, folder) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not done:  # a failed first run into a new folder leaves no empty folder behind
            for d in made:
                with contextlib.suppress(OSError):
                    d.rmdir()


def _attributed(exc: SimError, stage: Path, folder: Path) -> SimError:
    """``exc`` naming the file in ``folder`` that a file in the staging folder was to become."""
    if exc.path is None or not Path(exc.path).is_relative_to(stage):
        return exc
    return type(exc)(exc.message, folder / Path(exc.path).relative_to(stage))
