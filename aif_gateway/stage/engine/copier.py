"""What a copier (``LocalFiles``, ``S3Objects``) is, and what it may use of the run that drives it.

``transfer.Stager`` plans the copy and hands each unit to the copier for the entry's kind; the
copiers see the run only through ``StageRun`` (threads to work on, where files go, what to record),
so they import no part of the driver and the driver imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import fscopy
from .verify import ContentHasher, Expectation

if TYPE_CHECKING:
    from ..options import StageOptions
    from ..progress import Progress
    from ..sources import Entry
    from ..state.statedir import StageDir

__all__ = ["Copier", "LazyBuffer", "StageRun"]


class LazyBuffer:
    """A worker's buffer for botocore reads, made on first use (the fast path has its own)."""

    def __init__(self) -> None:
        self._buffer: bytearray | None = None

    def get(self) -> bytearray:
        if self._buffer is None:
            self._buffer = bytearray(fscopy.BUFFER_SIZE)
        return self._buffer


class StageRun(Protocol):
    """The parts of a running stage a copier uses."""

    dest: Path
    sd: StageDir
    options: StageOptions
    pool: ThreadPoolExecutor | None
    progress: Progress | None
    count_retry: Callable[[], object]

    async def thread(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on the run's worker threads."""
        ...

    def placed(
        self,
        entry: Entry,
        placed: fscopy.Placed,
        expect: tuple[Expectation, ...] | list[Expectation],
        *,
        moved: bool = True,
        progress_bytes: int,
    ) -> None:
        """Record one file verified and in place."""
        ...

    def placed_many(
        self, done: list[tuple[Entry, fscopy.Placed, str]], *, moved: bool = True, progress_bytes: int
    ) -> None:
        """Record a batch of files verified and in place."""
        ...


class Copier(Protocol):
    """Copies the entries of one kind: batches of small files, whole files, ranges of large ones."""

    async def copy_batch(self, entries: list[Entry], buffer: LazyBuffer) -> None: ...

    async def copy_whole(self, entry: Entry, buffer: LazyBuffer) -> None: ...

    async def copy_range(
        self, entry: Entry, start: int, end: int, buffer: LazyBuffer, whole: ContentHasher | None
    ) -> str:
        """Copy bytes [start, end) of ``entry``; returns their xxh3 (hex)."""
        ...

    async def final_expectations(self, entry: Entry) -> list[Expectation]:
        """What a file of this kind, once whole, is verified against."""
        ...
