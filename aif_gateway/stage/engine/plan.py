"""Planning a stage: which files to skip, and how to cut the rest into units of work.

Pure functions, no I/O. Units of work:
- ``Range(entry, start, end)``: a piece of a file larger than ``part_size``;
- ``Ranges(entry, ranges)``: all the missing pieces of such a file, copied in order by one
  worker (``sequential`` plans: copies between local page-cache filesystems, where a file's
  ranges gain nothing from running at once, while in order they make its digests as they go
  and spare the re-read);
- ``Whole(entry)``: a file of its own (above ``SMALL_FILE``, up to ``part_size``);
- ``Batch(entries)``: small files, all local or all S3, copied one after another by one worker
  thread, so a tree of many tiny files is not dominated by one thread hop per file;
- ``Finalize(entry)``: verify and place a range-split file whose ranges all landed before.
Large files come first so that small files fill the tail and workers finish together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..options import MiB
from ..sources import Entry
from ..state.journal import DoneRecord, PartialFile

__all__ = [
    "BATCH_FILES",
    "Batch",
    "Finalize",
    "Plan",
    "Range",
    "Ranges",
    "SMALL_FILE",
    "Unit",
    "Whole",
    "plan_transfer",
    "split_ranges",
    "unchanged",
]

SMALL_FILE = 1 * MiB
BATCH_FILES = 64
BATCH_BYTES = 16 * MiB


@dataclass(frozen=True)
class Range:
    entry: Entry
    start: int
    end: int


@dataclass(frozen=True)
class Ranges:
    entry: Entry
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Whole:
    entry: Entry


@dataclass(frozen=True)
class Batch:
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Finalize:
    entry: Entry


Unit = Range | Ranges | Whole | Batch | Finalize


@dataclass
class SplitFile:
    """A range-split file in this stage: the ranges it has and how many it still needs."""

    entry: Entry
    part_size: int
    done: dict[int, tuple[int, str]]  # start -> (end, xxh3), resumed or finished this run
    remaining: int
    fresh: bool  # no usable partial file: create it before the first range


@dataclass
class Plan:
    """The units in the order workers take them, the range-split files by relative path, and the
    bytes of those files that an earlier run already copied."""

    units: list[Unit] = field(default_factory=list)
    split: dict[str, SplitFile] = field(default_factory=dict)
    resumed_bytes: int = 0

    @property
    def bytes_to_move(self) -> int:
        return (
            sum(s.entry.size for s in self.split.values())
            - self.resumed_bytes
            + sum(u.entry.size for u in self.units if isinstance(u, Whole))
            + sum(e.size for u in self.units if isinstance(u, Batch) for e in u.entries)
        )


def split_ranges(size: int, part_size: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` pieces of ``part_size`` bytes (the last one shorter) of a file of ``size``."""
    return [(start, min(start + part_size, size)) for start in range(0, size, part_size)]


def unchanged(entry: Entry, record: DoneRecord | None, dest_stat: tuple[int, int] | None) -> bool:
    """The destination still holds the verified copy of this very source version."""
    return (
        record is not None
        and dest_stat is not None
        and record.source_id == entry.source_id
        and record.size == entry.size
        and dest_stat == (entry.size, record.dest_mtime_ns)
    )


def plan_transfer(
    entries: list[Entry], partial: dict[str, PartialFile], part_size: int, *, sequential: bool = False
) -> Plan:
    """``partial``: resumable state of range-split files whose partial file is still intact;
    ``sequential``: one ``Ranges`` unit per split file instead of a ``Range`` per piece."""
    plan = Plan()
    ranges: list[Unit] = []
    wholes: list[Unit] = []
    batches: list[Unit] = []
    filling: dict[bool, tuple[list[Entry], int]] = {}  # from_s3 -> (the batch being filled, its bytes)
    for entry in entries:
        if entry.size > part_size:
            state = partial.get(entry.rel_path)
            usable = state is not None and state.matches(entry.source_id, entry.size, part_size)
            pieces = split_ranges(entry.size, part_size)
            valid = set(pieces)
            done = {s: v for s, v in state.ranges.items() if (s, v[0]) in valid} if usable and state is not None else {}
            todo = [(s, e) for s, e in pieces if s not in done]
            plan.split[entry.rel_path] = SplitFile(entry, part_size, done, len(todo), fresh=not usable)
            plan.resumed_bytes += sum(end - start for start, (end, _) in done.items())
            if todo and sequential:
                ranges.append(Ranges(entry, tuple(todo)))
            elif todo:
                ranges.extend(Range(entry, s, e) for s, e in todo)
            else:
                ranges.append(Finalize(entry))
        elif entry.size > SMALL_FILE:
            wholes.append(Whole(entry))
        else:
            batch, batch_bytes = filling.get(entry.from_s3, ([], 0))
            batch.append(entry)
            batch_bytes += entry.size
            if len(batch) >= BATCH_FILES or batch_bytes >= BATCH_BYTES:
                batches.append(Batch(tuple(batch)))
                batch, batch_bytes = [], 0
            filling[entry.from_s3] = (batch, batch_bytes)
    batches.extend(Batch(tuple(batch)) for batch, _ in filling.values() if batch)
    wholes.sort(key=lambda u: -u.entry.size)  # type: ignore[union-attr]
    plan.units = ranges + wholes + batches
    return plan
