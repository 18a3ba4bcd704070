"""Files the ledger writes are readable by its own user only, whatever the umask.

Folders the ledger creates are 0700 and its files 0600. SQLite creates a database's
``-wal`` and ``-shm`` files with the database file's own mode, so a database file made
0600 before SQLite opens it keeps its companions private too.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
#: The companions SQLite writes next to a database in WAL mode.
SQLITE_SUFFIXES = ("-wal", "-shm", "-journal")


def private_dir(path: str | Path, *, tighten: bool = True) -> Path:
    """Create ``path`` (and missing parents) as 0700; with ``tighten``, make an existing
    ``path`` 0700 too (the data directory).

    An existing folder is tightened only when this user owns it and it is not a shared
    sticky folder such as /tmp: a data directory pointed at one must not lock others out.
    """
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    for created in missing:
        with contextlib.suppress(OSError):
            os.chmod(created, DIR_MODE)
    if tighten:
        _tighten(path, DIR_MODE)
    return path


def private_file(path: str | Path) -> Path:
    """Make sure ``path`` exists as a 0600 file (and its folder as ``private_dir``).

    Call before a library (SQLite) opens the file, so it is never readable by others, even
    for a moment. Existing SQLite companions are tightened as well.

    An existing file is never opened here, only its mode changed: closing any descriptor
    of a file drops every POSIX lock this process holds on it, so opening a second SQLite
    connection in a process that has one would silently release the first one's locks.
    Another process closing its connection would then take itself for the last one and
    delete the WAL under the first (its later commits lost, "disk I/O error" for the next
    connection; ``tests/test_files_locks.py``).
    """
    path = Path(path)
    private_dir(path.parent, tighten=False)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    _tighten(path, FILE_MODE)
    for suffix in SQLITE_SUFFIXES:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            _tighten(companion, FILE_MODE)
    return path


def write_private(path: str | Path, text: str) -> Path:
    """Write ``text`` to a file created 0600 (replacing what was there)."""
    path = Path(path)
    private_dir(path.parent, tighten=False)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    _tighten(path, FILE_MODE)
    return path


def _tighten(path: Path, mode: int) -> None:
    try:
        info = path.stat()
    except OSError:
        return
    if info.st_uid != os.getuid() or (stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX):
        return
    if stat.S_IMODE(info.st_mode) != mode:
        with contextlib.suppress(OSError):
            os.chmod(path, mode)
