"""Per-key mutual exclusion across threads, processes and nodes.

How: one lock file per bucket (``locks`` in its state directory, the gateway's, 0600); a key maps to one byte of it at
offset ``xxh3_64(key) % 2**20``, locked with ``fcntl.lockf`` (F_SETLKW record locks). Record locks
are what parallel filesystems honour cluster-wide (GPFS, Lustre mounted with ``-o flock``, NFSv4);
``flock`` is node-local on GPFS, so it is not used. Two keys may share a slot: they then simply
serialise, which is harmless.

Record locks belong to a *process*, so two threads of one worker would both "hold" the same
byte; an in-process ``threading.Lock`` per slot therefore comes first. They are also all
dropped when the process closes *any* descriptor of the file, so each process opens each lock
file once and keeps that descriptor for its lifetime.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import xxhash

from ..fsio.creds import as_gateway

__all__ = ["LOCK_FILE", "key_lock", "lock_slot"]

# The lock file's name in a bucket's state directory.
LOCK_FILE = "locks"
# One-byte slots in the lock file; keys that share a slot merely serialise.
SLOTS = 2**20

_table_lock = threading.Lock()
_lock_fds: dict[Path, int] = {}
# (lock file, slot) -> [thread lock, number of threads holding or waiting for it]
_slot_locks: dict[tuple[Path, int], list[Any]] = {}


def _reset_after_fork() -> None:
    # Thread locks copied by fork() may be held by threads that do not exist in the child.
    # The descriptors stay valid (record locks are not inherited, which is what we want).
    global _table_lock
    _table_lock = threading.Lock()
    _slot_locks.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def lock_slot(key: str) -> int:
    """The byte offset that stands for ``key`` in the lock file."""
    return xxhash.xxh3_64_intdigest(key.encode("utf-8", "surrogateescape")) % SLOTS


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _lock_fd(lock_file: Path) -> int:
    """This process's descriptor of ``lock_file``, reopened if the file was replaced.

    A deleted and re-created bucket has a new lock file; locking the old, unlinked one would
    exclude nobody, hence the stat. Checking with ``stat`` rather than opening the path again
    matters: closing a second descriptor of the file would release every record lock this
    process holds on it. For the same reason a replaced descriptor is never closed (one leaked
    descriptor per re-created bucket).
    """
    with _table_lock, as_gateway():
        fd = _lock_fds.get(lock_file)
        if fd is None or not _same_file(fd, lock_file):
            # O_NOFOLLOW: the state directory is the gateway's, but never follow a link there.
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            _lock_fds[lock_file] = fd
        return fd


def _acquire_thread_lock(ident: tuple[Path, int]) -> threading.Lock:
    with _table_lock:
        entry = _slot_locks.setdefault(ident, [threading.Lock(), 0])
        entry[1] += 1
    lock: threading.Lock = entry[0]
    lock.acquire()
    return lock


def _release_thread_lock(ident: tuple[Path, int]) -> None:
    with _table_lock:
        entry = _slot_locks[ident]
        entry[0].release()
        entry[1] -= 1
        if entry[1] == 0:
            del _slot_locks[ident]


def _lockf_blocking(fd: int, slot: int) -> None:
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, slot, os.SEEK_SET)
            return
        except OSError as exc:
            # The kernel's deadlock detection works per process, but our waits are per thread:
            # thread A of P1 holding slot x while thread B of P1 waits for P2, which waits for x,
            # looks like a cycle though A will release. Back off and retry.
            if exc.errno not in (errno.EDEADLK, errno.EINTR):
                raise
            time.sleep(0.005)


@contextmanager
def key_lock(state_dir: Path, key: str) -> Iterator[None]:
    """Hold ``key``'s lock for the body: around every check-then-publish of ``key`` (conditional
    writes, in-place metadata changes, deletes). Blocking: use it from a worker thread, never on
    the event loop."""
    lock_file = Path(state_dir) / LOCK_FILE
    slot = lock_slot(key)
    ident = (lock_file, slot)
    try:
        fd: int | None = _lock_fd(lock_file)
    except PermissionError:
        # Not the gateway: a job writing the tree directly (aif_gateway.ckpt) as its own user.
        # The lock file is the gateway's alone (anyone able to lock it could stall every
        # publish of the bucket), so such a writer publishes as any program writing the tree
        # does: by one rename, excluding only its own threads.
        fd = None
    _acquire_thread_lock(ident)
    try:
        if fd is None:
            yield
            return
        _lockf_blocking(fd, slot)
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, slot, os.SEEK_SET)
    finally:
        _release_thread_lock(ident)
