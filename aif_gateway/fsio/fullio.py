"""Whole reads and writes at an offset: the loops around ``pread``/``pwrite`` that short counts need.

The kernel may move fewer bytes than asked (a signal, Linux's 2 GiB cap per call, a pipe or
network filesystem); every caller that means "all of it" goes through here.
"""

from __future__ import annotations

import os

__all__ = ["pread_full", "pwrite_all"]


def pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    """Write all of ``view`` at ``offset``."""
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def pread_full(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset``; the bytes read: fewer than ``len(view)`` only at the end of the file."""
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            break
        got += n
    return got
