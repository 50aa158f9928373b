"""Who may write into an upload's shared data file, across threads, processes and nodes.

Each upload has a lock file, ``uploads/<id>/slots``, whose byte ``n`` stands for part ``n``'s
range of the data file. A writer holds byte ``n`` from the moment it starts writing the part
until the part's record is published, and takes it without waiting: a second writer of the same
part (a client's retry racing the original) finds it taken and writes its bytes to a part file
of its own, so two bodies never mix in one range. Complete holds bytes 1..MAX_PART_NUMBER,
waiting a bounded time for writers still busy, so that nobody writes into the file it renames
into place; a writer arriving later finds its byte taken and never touches that file.

``fcntl`` record locks are what parallel filesystems honour cluster-wide, but they belong to a
*process*: threads of one process never exclude each other, and closing any descriptor of the
file drops every lock the process holds on it. So an in-process table comes first: per lock
file, one shared descriptor (closed when its last user leaves), the part numbers this process
holds, and how many Completes of this process want the whole file.

Every function here blocks.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .base import MAX_PARTS

__all__ = ["WritersBusy", "hold_part", "no_writers", "release_part"]

_RETRY_S = 0.01  # how often a waiting Complete tries again for writers of other processes
_BUSY = (errno.EACCES, errno.EAGAIN)


class WritersBusy(Exception):
    """Writers kept a part of the upload for longer than a Complete may wait."""


@dataclass
class _LockFile:
    fd: int
    users: int = 0
    held: set[int] = field(default_factory=set)  # part numbers held by this process
    closers: int = 0  # Completes of this process holding or waiting for the whole file


_table = threading.Condition()
_files: dict[Path, _LockFile] = {}


def _reset_after_fork() -> None:
    # Record locks are not inherited, and the thread that held the table may not exist here.
    global _table
    _table = threading.Condition()
    _files.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def _open(path: Path) -> _LockFile:
    """This process's entry for ``path`` (call under ``_table``); FileNotFoundError once the
    upload's directory is gone."""
    entry = _files.get(path)
    if entry is None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        entry = _files[path] = _LockFile(fd)
    entry.users += 1
    return entry


def _leave(path: Path, entry: _LockFile) -> None:
    entry.users -= 1
    if entry.users == 0:
        del _files[path]
        os.close(entry.fd)  # nothing of this process is locked on it any more


def _try_lock(fd: int, start: int, length: int) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start, os.SEEK_SET)
        return True
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        raise


def hold_part(path: Path, part_number: int) -> bool:
    """Take part ``part_number``'s byte of the lock file ``path``, without waiting.

    False when another writer or a Complete has it (here or in any process): write elsewhere.
    """
    with _table:
        entry = _open(path)
        if not entry.closers and part_number not in entry.held and _try_lock(entry.fd, part_number, 1):
            entry.held.add(part_number)
            return True
        _leave(path, entry)
        return False


def release_part(path: Path, part_number: int) -> None:
    """Give back part ``part_number``'s byte of ``path``, taken with ``hold_part``."""
    with _table:
        entry = _files[path]
        fcntl.lockf(entry.fd, fcntl.LOCK_UN, 1, part_number, os.SEEK_SET)
        entry.held.discard(part_number)
        _leave(path, entry)
        _table.notify_all()


@contextmanager
def no_writers(path: Path, wait_s: float) -> Iterator[None]:
    """Hold every part's byte of ``path`` while the block runs, after waiting up to ``wait_s``
    for the writers holding some (``WritersBusy`` if they keep them longer). A missing upload
    directory has no writers to exclude."""
    deadline = time.monotonic() + wait_s
    with _table:
        try:
            entry = _open(path)
        except FileNotFoundError:
            entry = None
        if entry is not None:
            entry.closers += 1  # this process starts no new writer from now on
    if entry is None:
        yield
        return
    try:
        with _table:
            if not _table.wait_for(lambda: not entry.held, max(deadline - time.monotonic(), 0)):
                raise WritersBusy(path)
        while not _try_lock(entry.fd, 1, MAX_PARTS):
            if time.monotonic() >= deadline:
                raise WritersBusy(path)
            time.sleep(_RETRY_S)
        try:
            yield
        finally:
            with _table:
                if entry.closers == 1:  # another Complete of this process still counts on it
                    fcntl.lockf(entry.fd, fcntl.LOCK_UN, MAX_PARTS, 1, os.SEEK_SET)
    finally:
        with _table:
            entry.closers -= 1
            _leave(path, entry)
            _table.notify_all()
