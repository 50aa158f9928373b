"""Reserving a file's blocks as its bytes arrive, never on a declared length alone.

Reserving blocks before writing them pays on ext4 and GPFS (``layout.preallocation``), but a
client's declared length is only a claim: reserving all of it at once let a PUT that declared
250 MB and sent 10 bytes hold 250 MB of a shared disk for as long as it stalled, and a few such
requests filled the disk for everyone. So a ``Reservation`` reserves ahead of the bytes
actually written, in windows: never more ahead than has already been written (doubling from
the first write), never more than ``RESERVE_WINDOW`` ahead, never past the declared size. A
client must send a byte for every byte reserved; an honest one still gets its file laid out
in large contiguous pieces (``perf/prealloc_write.py`` measures windows against the whole).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

__all__ = ["FIRST_STEP", "RESERVE_WINDOW", "Reservation"]

log = logging.getLogger("aif_gateway.fsio")

MiB = 1 << 20
# The most reserved ahead of the bytes written. Measured on ext4 with perf/prealloc_write.py
# (perf/RESULTS.md): windows of this size keep the CPU saving of reserving the whole file.
RESERVE_WINDOW = 64 * MiB
# Read from a socket before the first reservation: nothing is reserved before a byte arrives.
FIRST_STEP = 1 * MiB

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_warned: set[str] = set()

ReserveFn = Callable[[int, int, int], object]


class Reservation:
    """The blocks of ``[start, start + limit)`` of ``fd``, reserved window by window.

    ``reserve(fd, offset, length)`` reserves a range (raises OSError); ``what`` names it in the
    log. The methods block. ENOSPC and EDQUOT raise (the bytes would not fit either); any other
    failure (no fallocate here) is logged once as a warning and the file is written without
    reservations.
    """

    def __init__(self, fd: int, start: int, limit: int, reserve: ReserveFn, what: str) -> None:
        self.fd = fd
        self.start = start
        self.limit = limit
        self.reserved = 0  # bytes from ``start`` reserved so far
        self._reserve = reserve
        self._what = what
        self._working = True

    def _extend(self, target: int) -> None:
        target = min(target, self.limit)
        if target <= self.reserved or not self._working:
            return
        try:
            self._reserve(self.fd, self.start + self.reserved, target - self.reserved)
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise
            self._working = False
            level = logging.DEBUG if self._what in _warned else logging.WARNING
            _warned.add(self._what)
            log.log(level, f"{self._what} failed; writing without it", extra={"error": str(exc)})
            return
        self.reserved = target

    def cover(self, end: int) -> None:
        """The bytes up to ``end`` (an offset from ``start``) are in hand, written or about to be:
        reserve through them and a window beyond."""
        if end > self.reserved:
            self._extend(end + min(end, RESERVE_WINDOW))

    def receive_step(self, written: int) -> int:
        """How many bytes to read from a socket before calling ``cover`` again (the rest of the
        window, or ``FIRST_STEP`` before there is one)."""
        if not self._working:
            return self.limit  # nothing to extend: no reason to stop
        return max(self.reserved - written, FIRST_STEP)

    def reserve_all(self) -> None:
        """The whole ``limit`` at once, for lengths that are not a client's claim (a copy of an
        existing object, a local writer's own file)."""
        self._extend(self.limit)
