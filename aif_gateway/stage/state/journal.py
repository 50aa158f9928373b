"""Resumability: an append-only journal of what has landed in a destination.

The journal is ``DEST/.aifstage/journal/log``, one JSON object per line:
- ``{"t": "r", "rel", "src", "size", "part", "s", "e", "x"}``: bytes [s, e) of a range-split
  file (source version ``src``, split at ``part`` bytes) are in its partial file, xxh3 ``x``;
- ``{"t": "d", "rel", "src", "size", "x", "m", "url"}``: the file is verified and in place, its
  xxh3 is ``x`` and the destination file's mtime ``m`` (how a later run sees it is untouched);
- ``{"t": "x", "rel"}``: forget the file's partial state (it failed verification).

Lines are written in groups ("group commit"): the destination filesystem is synced first
(``syncfs``), then the lines are appended and the journal fsync'ed, so a line never claims data
that a machine crash could lose. A range line asks for a prompt flush (at most every
``URGENT_GAP_S``); finished small files wait for the next tick (``FLUSH_INTERVAL_S``). A crash
loses at most the lines of the last interval, and with them only work to redo.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["DoneRecord", "Journal", "JournalState", "PartialFile", "replay", "syncfs"]

FLUSH_INTERVAL_S = 1.0
URGENT_GAP_S = 0.25


class DoneRecord(NamedTuple):
    """A file verified and in place: a ``"d"`` line, and an entry of the manifest."""

    # A tuple, not a frozen dataclass: one per staged file.
    rel: str
    size: int
    source_id: str
    xxh3: str
    dest_mtime_ns: int
    url: str

    def to_json(self) -> dict[str, Any]:
        return {
            "t": "d",
            "rel": self.rel,
            "src": self.source_id,
            "size": self.size,
            "x": self.xxh3,
            "m": self.dest_mtime_ns,
            "url": self.url,
        }

    def to_line(self) -> str:
        """``json.dumps(to_json())`` without spaces, at a fifth of its cost: a stage of many small
        files writes one of these per file."""
        return (
            f'{{"t":"d","rel":{_quote(self.rel)},"src":{_quote(self.source_id)},"size":{self.size:d},'
            f'"x":{_quote(self.xxh3)},"m":{self.dest_mtime_ns:d},"url":{_quote(self.url)}}}\n'
        )

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DoneRecord:
        return cls(raw["rel"], int(raw["size"]), raw["src"], raw["x"], int(raw["m"]), raw.get("url", ""))


@dataclass
class PartialFile:
    """The ranges of a range-split file that are in its partial file: its ``"r"`` lines."""

    source_id: str
    size: int
    part_size: int
    ranges: dict[int, tuple[int, str]] = field(default_factory=dict)  # start -> (end, xxh3)

    def matches(self, source_id: str, size: int, part_size: int) -> bool:
        return (self.source_id, self.size, self.part_size) == (source_id, size, part_size)

    @property
    def bytes_done(self) -> int:
        return sum(end - start for start, (end, _) in self.ranges.items())


@dataclass
class JournalState:
    """What the journal says, by rel: the files ``done``, and the ``partial`` range-split ones."""

    done: dict[str, DoneRecord] = field(default_factory=dict)
    partial: dict[str, PartialFile] = field(default_factory=dict)


def apply(state: JournalState, raw: dict[str, Any]) -> None:
    kind, rel = raw["t"], raw["rel"]
    if kind == "r":
        source_id, size, part = raw["src"], int(raw["size"]), int(raw["part"])
        current = state.partial.get(rel)
        if current is None or not current.matches(source_id, size, part):
            current = state.partial[rel] = PartialFile(source_id, size, part)
        current.ranges[int(raw["s"])] = (int(raw["e"]), raw["x"])
    elif kind == "d":
        state.done[rel] = DoneRecord.from_json(raw)
        state.partial.pop(rel, None)
    elif kind == "x":
        state.partial.pop(rel, None)
        state.done.pop(rel, None)
    else:
        raise ValueError(f"unknown journal record {kind!r}")


def replay(lines: Iterable[str], state: JournalState | None = None) -> JournalState:
    """``state`` (a new one when None) with ``lines`` applied; pure: a torn or foreign line is ignored."""
    state = state if state is not None else JournalState()
    for line in lines:
        try:
            raw = json.loads(line)
            apply(state, raw)
        except (ValueError, KeyError, TypeError):
            continue  # the torn last line of a killed run, or a line this version does not know
    return state


_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(fd: int) -> None:
    """Flush the whole filesystem holding ``fd`` (one call, however many files were written)."""
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Journal:
    """The journal at ``path`` of the destination ``dest_dir`` (the filesystem ``syncfs`` flushes)."""

    def __init__(self, path: Path, dest_dir: Path) -> None:
        self.path = path
        self._dest_dir = dest_dir
        self._fd: int | None = None
        self._dir_fd: int | None = None
        self._pending: list[str] = []
        self._lock = threading.Lock()  # guards _pending
        # Held through a whole flush: a flush still running on a thread (its task was cancelled)
        # must finish before a final flush or close() goes on.
        self._flush_lock = threading.Lock()
        self._urgent: asyncio.Event | None = None

    def read_state(self, state: JournalState | None = None) -> JournalState:
        """``replay`` of the journal's file (none yet: ``state`` as it is)."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                return replay(fh, state)
        except FileNotFoundError:
            return state if state is not None else JournalState()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._dir_fd = os.open(self._dest_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def _add(self, raw: dict[str, Any], urgent: bool) -> None:
        line = json.dumps(raw, separators=(",", ":")) + "\n"
        with self._lock:
            self._pending.append(line)
        if urgent and self._urgent is not None:
            self._urgent.set()

    def add_range(self, rel: str, source_id: str, size: int, part_size: int, start: int, end: int, xxh3: str) -> None:
        self._add(
            {"t": "r", "rel": rel, "src": source_id, "size": size, "part": part_size, "s": start, "e": end, "x": xxh3},
            urgent=True,
        )

    def add_done(self, record: DoneRecord) -> None:
        self.add_done_many([record])

    def add_done_many(self, records: Iterable[DoneRecord]) -> None:
        lines = [record.to_line() for record in records]
        with self._lock:
            self._pending.extend(lines)

    def add_drop(self, rel: str) -> None:
        self._add({"t": "x", "rel": rel}, urgent=True)

    def flush(self) -> None:
        """Make the pending lines durable, after the data they describe (blocking, thread-safe)."""
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
        if not lines or self._fd is None:
            return
        try:
            assert self._dir_fd is not None
            syncfs(self._dir_fd)
            data = "".join(lines).encode()
            while data:
                data = data[os.write(self._fd, data) :]
            os.fsync(self._fd)
        except BaseException:
            with self._lock:
                self._pending[:0] = lines
            raise

    async def run_flusher(self) -> None:
        """A task: flush every FLUSH_INTERVAL_S, or sooner (at most every URGENT_GAP_S) after a range."""
        self._urgent = asyncio.Event()
        while True:
            # asyncio.wait, not wait_for: Python 3.11's wait_for can swallow the cancellation
            # that stops this task when the event fires at the same moment.
            waiter = asyncio.ensure_future(self._urgent.wait())
            try:
                await asyncio.wait({waiter}, timeout=FLUSH_INTERVAL_S)
            finally:
                waiter.cancel()
            self._urgent.clear()
            if self._pending:
                await asyncio.to_thread(self.flush)
            await asyncio.sleep(URGENT_GAP_S)

    def close(self) -> None:
        with self._flush_lock:
            for fd in (self._fd, self._dir_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._dir_fd = None

    def remove(self) -> None:
        """Forget the journal (its content now lives in the manifest)."""
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
