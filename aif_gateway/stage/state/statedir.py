"""A destination's own state: ``DEST/.aifstage/`` and the lock that gives one stager at a time.

Layout: ``lock`` (fcntl lock of the running stager), ``journal/log`` (journal.py),
``partial/<xxh3-128 of rel>`` (files being written: flat, so no directory tree has to be
made twice; a finished file is renamed from here into place), ``manifest.json`` and
``complete.json`` (completion.py). ``StageDir.begin()`` creates it, takes the lock and drops
the completion marker; ``end()`` lets go.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import xxhash

from ..errors import StageError, from_os_error

__all__ = ["STATE_DIR", "StageDir", "write_atomically"]

STATE_DIR = ".aifstage"  # the stage's own state under the destination; no source may land there


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, rename over ``path``, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StageDir:
    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.state = dest / STATE_DIR
        self.partial_dir = self.state / "partial"
        self.journal_path = self.state / "journal" / "log"
        self.manifest = self.state / "manifest.json"
        self.complete = self.state / "complete.json"
        self.lock_path = self.state / "lock"
        self._lock_fd: int | None = None

    def partial_path(self, rel: str) -> Path:
        return self.partial_dir / xxhash.xxh3_128_hexdigest(rel.encode("utf-8", "surrogateescape"))

    def begin(self) -> None:
        """Create the state directories, take the lock, and remove any completion marker."""
        try:
            self.partial_dir.mkdir(parents=True, exist_ok=True)
            self.journal_path.parent.mkdir(exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise from_os_error(exc, str(self.dest), "creating the destination", source=False) from None
        try:
            # fcntl (POSIX) locks: honoured across nodes on Lustre and GPFS, dropped when the
            # holder dies, so a SIGKILLed stager never blocks the next one.
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise StageError(
                    "usage",
                    f"another process is staging into {self.dest}; wait for it or choose another --to",
                    str(self.dest),
                ) from None
            raise from_os_error(exc, str(self.lock_path), "locking the destination", source=False) from None
        self._lock_fd = fd
        try:
            self.complete.unlink()
            fsync_dir(self.state)
        except FileNotFoundError:
            pass

    def end(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
