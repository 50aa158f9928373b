"""How the copy engine copies files from a filesystem: batches of small files (in C, see
``fsio.engine.copy_small_files``), whole files and ranges of large ones, all on its worker threads (``fscopy``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import fscopy
from .copier import LazyBuffer, StageRun
from .verify import ContentHasher, Expectation, expectations, method

if TYPE_CHECKING:
    from ..sources import Entry

__all__ = ["LocalFiles"]


class LocalFiles:
    def __init__(self, stager: StageRun) -> None:
        self.stager = stager

    async def copy_batch(self, entries: list[Entry], buffer: LazyBuffer) -> None:
        stager = self.stager
        expects = [tuple(expectations(e)) for e in entries]
        placed, error = await stager.thread(fscopy.copy_batch, entries, str(stager.dest), expects)
        stager.placed_many(
            [(e, p, method(list(x), e)) for e, x, p in zip(entries, expects, placed)],
            progress_bytes=sum(e.size for e in entries[: len(placed)]),
        )
        if error is not None:
            raise error

    async def copy_whole(self, entry: Entry, buffer: LazyBuffer) -> None:
        stager = self.stager
        job = fscopy.FileJob(
            entry, stager.sd.partial_path(entry.rel_path), stager.dest / entry.rel_path, tuple(expectations(entry))
        )
        stager.placed(entry, await stager.thread(fscopy.copy_file, job), job.expect, progress_bytes=entry.size)

    async def copy_range(
        self, entry: Entry, start: int, end: int, buffer: LazyBuffer, whole: ContentHasher | None
    ) -> str:
        stager = self.stager
        partial, dest = stager.sd.partial_path(entry.rel_path), stager.dest / entry.rel_path
        xxh3: str = await stager.thread(fscopy.copy_range, entry, partial, dest, start, end, whole)
        assert stager.progress is not None
        stager.progress.add(end - start)
        return xxh3

    async def final_expectations(self, entry: Entry) -> list[Expectation]:
        return expectations(entry)
