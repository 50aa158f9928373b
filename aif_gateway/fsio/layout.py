"""Layout policy: how to write an object of a given size on a given filesystem. Pure: no I/O.

The numbers and why
- I/O size: a whole number of stripes (Lustre) or blocks (GPFS, others), 4 MiB by default, at
  least 1 MiB (fewer, larger requests keep a parallel filesystem's servers streaming) and at
  most 16 MiB (the gateway holds several such buffers per request in flight). A small object
  gets a request no larger than itself rounded up to the unit.
- Lustre: below 1 GiB an object stays on one OST (extra stripes cost an extra object and lock
  per OST for no gain at that size); from 1 GiB, one stripe per GiB up to the OST count, in
  stripes of at least 4 MiB, so large transfers spread over many servers. When the size is
  unknown, a PFL composite layout widens as the file grows: 1 stripe to 64 MiB, 4 stripes to
  8 GiB, then every OST. A small object gets no layout of its own (so no ``lfs`` runs) unless
  the directory's default is wider than one stripe; nor does anything on a single-OST system.
- GPFS: from 4 blocks up, reserve the object's blocks ahead of the writes (fewer allocation
  rounds, contiguous blocks); smaller objects fit in a few blocks and gain nothing.
- ext4: from 32 MiB, reserve ahead too, keeping the file's size (fallocate with KEEP_SIZE).
  Measured with ``perf/prealloc_write.py`` (README, "Filesystems"; perf/RESULTS.md): buffered
  writes after it took about a third less CPU in the writer and ran faster, because ext4 then
  allocates no blocks inside write(); with fsync the two were level. tmpfs (more CPU) and XFS
  (no gain) get nothing.
- Either way the declared size only caps the reservation: blocks are reserved in windows
  ahead of the bytes actually written (``reserve.Reservation``), never for a claim alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fsinfo import FsInfo
from .lustre import Component, Layout

__all__ = [
    "GiB",
    "IO_MAX",
    "IO_MIN",
    "KiB",
    "MiB",
    "WritePlan",
    "io_size",
    "lustre_layout",
    "plan_write",
    "preallocation",
]

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

IO_MIN = 1 * MiB
IO_PREFERRED = 4 * MiB
IO_MAX = 16 * MiB

SINGLE_STRIPE_BELOW = 1 * GiB
BYTES_PER_STRIPE = 1 * GiB
LARGE_STRIPE_SIZE = 4 * MiB
# The widening layout for objects of unknown size: (end of component, stripe count).
UNKNOWN_SIZE_PFL = ((64 * MiB, 1), (8 * GiB, 4), (None, -1))
GPFS_PREALLOCATE_FROM_BLOCKS = 4
EXT4_PREALLOCATE_FROM = 32 * MiB


@dataclass(frozen=True)
class WritePlan:
    """How to write one object. ``io_size``: the size of each read or write request; ``lustre``:
    the layout to give a new file (None: keep the directory's default); ``preallocate``: the most
    bytes to reserve (0: none), as the bytes arrive (``reserve``)."""

    io_size: int
    lustre: Layout | None = None
    preallocate: int = 0


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


def _io_unit(fs: FsInfo) -> int:
    if fs.kind == "lustre" and fs.stripe_size:
        return fs.stripe_size
    return max(fs.block_size, 1)


def io_size(fs: FsInfo, size: int | None) -> int:
    """The plan's ``io_size`` for an object of ``size`` bytes (None: unknown)."""
    unit = _io_unit(fs)
    if unit >= IO_MAX:
        return IO_MAX  # a huge stripe or block: the largest request we allow, a fraction of one
    want = IO_PREFERRED if size is None else min(IO_PREFERRED, max(size, 1))
    chosen = _round_up(max(want, IO_MIN), unit)
    return chosen if chosen <= IO_MAX else IO_MAX // unit * unit


def _stripe_count(fs: FsInfo, wanted: int) -> int:
    return min(wanted, fs.ost_count) if fs.ost_count else wanted


def lustre_layout(fs: FsInfo, size: int | None) -> Layout | None:
    """The plan's ``lustre`` layout for an object of ``size`` bytes (None: unknown)."""
    if fs.kind != "lustre" or fs.ost_count == 1:
        return None  # one OST: there is nothing to spread over
    if size is None:
        return Layout(
            tuple(
                Component(end, count if count == -1 else _stripe_count(fs, count), fs.stripe_size)
                for end, count in UNKNOWN_SIZE_PFL
            )
        )
    if size < SINGLE_STRIPE_BELOW:
        if fs.stripe_count is None or fs.stripe_count == 1:
            return None  # already one stripe, or a default we could not read: leave it be
        return Layout((Component(None, 1, fs.stripe_size),))
    count = _stripe_count(fs, _round_up(size, BYTES_PER_STRIPE) // BYTES_PER_STRIPE)
    stripe_size = max(fs.stripe_size or 0, LARGE_STRIPE_SIZE)
    return Layout((Component(None, count, stripe_size),))


def preallocation(fs: FsInfo, size: int | None) -> int:
    """The plan's ``preallocate`` for an object of ``size`` bytes (None: unknown)."""
    if size is None:
        return 0
    if fs.kind == "gpfs":
        return size if size >= GPFS_PREALLOCATE_FROM_BLOCKS * fs.block_size else 0
    if fs.kind == "ext4":
        return size if size >= EXT4_PREALLOCATE_FROM else 0
    return 0


def plan_write(fs: FsInfo, size: int | None) -> WritePlan:
    """How to write an object of ``size`` bytes (None when unknown) on ``fs``."""
    return WritePlan(io_size(fs, size), lustre_layout(fs, size), preallocation(fs, size))
