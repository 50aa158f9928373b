"""Filesystem work done as a given POSIX user, one thread at a time.

The gateway runs as root and serves many users; the kernel, not the gateway, must decide what
each may touch (modes, POSIX ACLs, default ACLs, setgid directories, quotas; on Lustre and GPFS
as on ext4). Linux keeps credentials per thread and checks file access against the thread's
fsuid, fsgid and supplementary groups, so a request's filesystem calls run in a thread that
holds the user's ids for exactly that long: ``acting_as(ids)`` switches the calling thread
(raw syscalls in the engine, because glibc's ``setgroups`` would change every thread of the
process) and switches back on the way out. Switching fsuid away from 0 also drops the
filesystem capabilities (CAP_DAC_OVERRIDE, CAP_FOWNER...) from the thread, so root's
overrides do not leak into a user's request.

The gateway's own state (locks, records it must trust) is touched with the process's ids:
``as_gateway()``, nestable inside ``acting_as``. A descriptor keeps the rights it was opened
with, so threads that only read or write open descriptors (the native I/O pools, sendfile,
socket receivers) never need a switch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from .engine import restore_thread_creds, set_thread_creds

__all__ = ["GATEWAY", "PosixIds", "acting_as", "as_gateway", "current_ids"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PosixIds:
    """A user's ids as the kernel checks them: fsuid, fsgid and supplementary groups."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()

    def __str__(self) -> str:
        return f"uid={self.uid} gid={self.gid} groups={','.join(map(str, self.groups)) or '-'}"


# The process's own ids.
GATEWAY = PosixIds(os.geteuid(), os.getegid(), tuple(os.getgroups()))

# What the calling thread holds now: None while it has the process's own ids.
_held = threading.local()


def current_ids() -> PosixIds:
    """The ids the calling thread acts with now (``GATEWAY`` outside any ``acting_as``)."""
    return getattr(_held, "ids", None) or GATEWAY


def _switch(ids: PosixIds | None) -> None:
    try:
        if ids is None or ids == GATEWAY:
            restore_thread_creds()
            _held.ids = None
        else:
            set_thread_creds(ids.uid, ids.gid, ids.groups)
            _held.ids = ids
    except BaseException:
        # A thread whose credentials are unknown must not run anything else: it could act for
        # the next request with the previous one's rights, or with root's.
        log.critical("could not switch a thread's credentials; stopping the worker", exc_info=True)
        os._exit(70)


@contextmanager
def acting_as(ids: PosixIds | None) -> Iterator[None]:
    """Run the body with ``ids`` (None: the process's own) on this thread."""
    before = getattr(_held, "ids", None)
    target = None if ids == GATEWAY else ids
    if target == before:
        yield
        return
    _switch(target)
    try:
        yield
    finally:
        _switch(before)


def as_gateway() -> AbstractContextManager[None]:
    """The process's own ids for the body: for the gateway's internal state, never user data."""
    return acting_as(None)
