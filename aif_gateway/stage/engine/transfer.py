"""The copy engine behind ``stage in`` (and ``stage out`` to a path): plan, copy in parallel,
verify, place, mark complete.

Flow: lock ``DEST/.aifstage`` and drop its completion marker; read the previous manifest and
the journal; skip files whose verified copy is still in place (same source version, same
destination size and mtime); plan the rest (plan.py); check free space; run ``jobs`` workers
over the units, each unit one hop to a worker thread: small files and small objects in
batches (local ones by ``fsio.engine.copy_small_files`` in C), larger files read, hashed and written through a
small buffer, S3 objects and ranges fetched by ``s3get`` (from worker threads); what copies
an entry is an object, ``local_copy.LocalFiles`` or ``s3_copy.S3Objects``, with one method per
kind of unit. Between
local page-cache filesystems (``sources.on_local_fs``) the work is CPU-bound: at most one worker
per core, and a large file's ranges go in order to one worker, which makes its digests on the
way. Each file is written to ``.aifstage/partial/``, verified (verify.py) and renamed into
place (small files, checked before they are written, go straight to their name: see
``fscopy.copy_small``); the journal records ranges and finished files as they land; at the end
the filesystem is synced, then the manifest and, last, ``complete.json`` are written.

Memory bound: buffers of ``fscopy.BUFFER_SIZE`` (8 MiB): one per worker thread (``jobs + 1``)
and, where botocore reads S3 (its Python version of the fast path), one per worker coroutine (``jobs``):
at most ``(2 x jobs + 1) x 8 MiB`` (264 MiB at the default 16 jobs); per S3 connection a
64 KiB head buffer and a 1 MiB pipe (kernel memory); and the listing (a few hundred bytes per
file).

The first failure stops the stage: workers finish the unit in hand and take no more; what
landed stays recorded in the journal for the next run. Cancellation (SIGINT/SIGTERM in the CLI)
does the same and never writes the completion marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import StageError
from ..options import StageOptions, format_size
from ..progress import Progress, Report
from ..sources import Entry, Source, fingerprint, list_entries, on_local_fs, parse_source
from ..state.completion import read_manifest, write_complete, write_manifest
from ..state.journal import DoneRecord, Journal, JournalState, syncfs
from ..state.statedir import StageDir
from . import fscopy
from .copier import Copier, LazyBuffer
from .local_copy import LocalFiles
from .plan import Batch, Finalize, Plan, Range, Ranges, Unit, Whole, plan_transfer, unchanged
from .verify import XXH3, ContentHasher, Expectation, algorithms_for, check, expectations, method

__all__ = ["Stager", "run_stage", "stage_in"]


async def stage_in(
    specs: list[str], dest: Path, options: StageOptions, *, entries: list[Entry] | None = None
) -> Report:
    report = Report("in", list(specs), str(dest))
    return await run_stage(specs, Path(dest), options, report, entries=entries)


async def run_stage(
    specs: list[str], dest: Path, options: StageOptions, report: Report, *, entries: list[Entry] | None = None
) -> Report:
    """``stage_in`` with a caller-made Report, so an interrupted run still has its counts."""
    started = time.monotonic()
    dest = Path(os.path.abspath(dest))  # noqa: ASYNC240 (getcwd, no filesystem wait)
    report.destination = str(dest)
    report.path = str(dest)

    def count_retry() -> None:
        report.retries += 1

    try:
        sources = [parse_source(spec) for spec in specs]
        _refuse_dest_inside_source(sources, dest)
        if entries is None:
            entries = await list_entries(sources, options, count_retry)
        await Stager(entries, dest, options, report, count_retry).run(specs, sources)
        report.ok = True
        return report
    except StageError as exc:
        report.errors.append(str(exc))
        exc.report = report
        raise
    finally:
        report.finish(started)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _memory_speed(sources: list[Source], dest: Path) -> bool:
    """Whether every source path and the destination are on local page-cache filesystems
    (``sources.on_local_fs``); False for S3 and manifests (their files may be anywhere)."""
    paths = [source.local_path() for source in sources]
    if any(path is None for path in paths):
        return False
    return all(on_local_fs(path) for path in [*paths, str(dest)] if path is not None)


def _refuse_dest_inside_source(sources: list[Source], dest: Path) -> None:
    """A destination inside a source directory would be copied into itself on the next run."""
    real_dest = os.path.realpath(dest) + os.sep
    for source in sources:
        path = source.local_path()
        if path is None:
            continue
        root = os.path.realpath(path)
        if os.path.isdir(root) and real_dest.startswith(root.rstrip(os.sep) + os.sep):
            raise StageError(
                "usage", f"the destination {dest} is inside the source {source}: choose a --to outside it", str(dest)
            )


class Stager:
    def __init__(
        self, entries: list[Entry], dest: Path, options: StageOptions, report: Report, count_retry: Any
    ) -> None:
        self.entries = entries
        self.dest = dest
        self.options = options
        self.report = report
        self.count_retry = count_retry
        self.sd = StageDir(dest)
        self.journal = Journal(self.sd.journal_path, dest)
        self.records: dict[str, DoneRecord] = {}
        self.verified: Counter[str] = Counter()
        self.error: Exception | None = None  # the first failure; it stops the workers
        self.plan = Plan()
        self.progress: Progress | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.files = LocalFiles(self)
        self.s3: Any = None  # s3_copy.S3Objects when some source is on S3 (it has stop())
        self._stale_partials: list[str] = []
        self.local = False  # every source and the destination on local page-cache filesystems

    async def thread(self, fn: Any, *args: Any) -> Any:
        assert self.pool is not None
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def run(self, specs: list[str], sources: list[Source]) -> None:
        self.pool = ThreadPoolExecutor(self.options.jobs + 1, thread_name_prefix="aif-stage")
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self.thread(self.sd.begin)
            self.local = await self.thread(_memory_speed, sources, self.dest)
            todo = await self.thread(self._prepare)
            self.progress = Progress(len(todo), self.plan.bytes_to_move, self.options, self.report.direction)
            await self.thread(self._open_journal)
            tasks = [asyncio.create_task(self.journal.run_flusher()), asyncio.create_task(self.progress.run())]
            try:
                async with contextlib.AsyncExitStack() as stack:
                    s3_entries = [e for e in todo if e.from_s3]
                    if s3_entries:
                        # Imported here: a filesystem-only stage never loads the S3 client.
                        from .s3_copy import open_s3_objects

                        self.s3 = await stack.enter_async_context(open_s3_objects(self, s3_entries))
                    queue: deque[Unit] = deque(self.plan.units)
                    workers = min(self.options.jobs, len(queue)) or 1
                    if self.local:
                        # Copies between page-cache filesystems are CPU work: threads beyond the
                        # cores only contend (see sources.LOCAL_KINDS).
                        workers = min(workers, os.cpu_count() or 1)
                    try:
                        await asyncio.gather(*(self._worker(queue) for _ in range(workers)))
                    finally:
                        if self.s3 is not None:
                            self.s3.stop(now=_cancelling())
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if self.error is not None:
                raise self.error
            await self.thread(self._complete, specs)
        finally:
            self.report.verified = dict(self.verified)
            if self.progress is not None:
                self.progress.close()
            # Threads finish the unit in hand (at most one range or batch each); then what
            # landed is journaled for the next run.
            self.pool.shutdown(wait=True, cancel_futures=True)
            with contextlib.suppress(OSError):
                self.journal.flush()
            self.journal.close()
            self.sd.end()

    # --- before: what is there, what to do --------------------------------------------------

    def _prepare(self) -> list[Entry]:
        state = self.journal.read_state(JournalState(done=read_manifest(self.sd.manifest)))
        known = [e.rel_path for e in self.entries if e.rel_path in state.done]
        stats = fscopy.dest_stats(self.dest, known)
        todo = []
        for entry in self.entries:
            record = state.done.get(entry.rel_path)
            if unchanged(entry, record, stats.get(entry.rel_path)):
                assert record is not None
                self.records[entry.rel_path] = record
                self.report.skipped_files += 1
                self.report.skipped_bytes += entry.size
            else:
                todo.append(entry)
        intact = {
            rel: p for rel, p in state.partial.items() if fscopy.partial_intact(self.sd.partial_path(rel), p.size)
        }
        self.plan = plan_transfer(todo, intact, self.options.part_size, sequential=self.local)
        self.report.skipped_bytes += self.plan.resumed_bytes
        needed, free = self.plan.bytes_to_move, fscopy.free_bytes(self.dest)
        if needed > free:
            raise StageError(
                "no_space",
                f"not enough space in {self.dest}: the stage needs "
                f"{format_size(needed)} more and {format_size(free)} is free; free space or "
                "choose another --to",
                str(self.dest),
            )
        fscopy.make_dirs(self.dest, [e.rel_path for e in todo])
        self._stale_partials = [rel for rel, split in self.plan.split.items() if split.fresh]
        for rel in self._stale_partials:
            split = self.plan.split[rel]
            fscopy.create_partial(self.sd.partial_path(rel), self.dest / rel, split.entry.size)
        return todo

    def _open_journal(self) -> None:
        self.journal.open()
        for rel in self._stale_partials:
            self.journal.add_drop(rel)  # a fresh partial file: earlier ranges of it are gone

    # --- during: the workers ----------------------------------------------------------------

    async def _worker(self, queue: deque[Unit]) -> None:
        buffer = LazyBuffer()
        while queue and self.error is None:
            unit = queue.popleft()
            try:
                await self._run_unit(unit, buffer)
            except Exception as exc:  # StageError, or a bug: either way the others stop too
                if self.error is None:
                    self.error = exc
                if self.s3 is not None:
                    self.s3.stop(now=False)
                return

    def _reader(self, entry: Entry) -> Copier:
        """What copies ``entry``: LocalFiles or S3Objects (a batch is all one or all the other)."""
        return self.s3 if entry.from_s3 else self.files

    async def _run_unit(self, unit: Unit, buffer: LazyBuffer) -> None:
        if isinstance(unit, Batch):
            await self._reader(unit.entries[0]).copy_batch(list(unit.entries), buffer)
        elif isinstance(unit, Whole):
            await self._reader(unit.entry).copy_whole(unit.entry, buffer)
        elif isinstance(unit, Range):
            await self._range(unit, buffer)
        elif isinstance(unit, Ranges):
            await self._ranges(unit, buffer)
        elif isinstance(unit, Finalize):
            await self._finalize(unit.entry)

    def placed(
        self,
        entry: Entry,
        placed: fscopy.Placed,
        expect: tuple[Expectation, ...] | list[Expectation],
        *,
        moved: bool = True,
        progress_bytes: int,
    ) -> None:
        self.placed_many([(entry, placed, method(list(expect), entry))], moved=moved, progress_bytes=progress_bytes)

    def placed_many(
        self, done: list[tuple[Entry, fscopy.Placed, str]], *, moved: bool = True, progress_bytes: int
    ) -> None:
        """Record files now verified and in place: one call per batch, since for a tree of small
        files this bookkeeping on the loop's thread is most of the per-file cost.
        ``progress_bytes``: what the progress display has not been told about yet."""
        records = []
        for entry, placed, how in done:
            record = DoneRecord(
                entry.rel_path, entry.size, entry.source_id, placed.xxh3, placed.dest_mtime_ns, entry.url
            )
            self.records[entry.rel_path] = record
            records.append(record)
            self.verified[how] += 1
        self.journal.add_done_many(records)
        self.report.files += len(done)
        if moved:
            self.report.bytes += sum(entry.size for entry, _, _ in done)
        assert self.progress is not None
        self.progress.add(progress_bytes, files=len(done))

    async def _ranges(self, unit: Ranges, buffer: LazyBuffer) -> None:
        """A split local file's missing ranges, in order; when none came from an earlier run,
        the file's digests are made on the way and ``_finalize`` need not read it again."""
        split = self.plan.split[unit.entry.rel_path]
        whole = ContentHasher(algorithms_for(expectations(unit.entry))) if not split.done else None
        for start, end in unit.ranges:
            if self.error is not None:
                return  # another worker failed: stop between ranges (what landed is journaled)
            await self._range(Range(unit.entry, start, end), buffer, whole)

    async def _range(self, unit: Range, buffer: LazyBuffer, whole: ContentHasher | None = None) -> None:
        entry = unit.entry
        try:
            xxh3 = await self._reader(entry).copy_range(entry, unit.start, unit.end, buffer, whole)
        except StageError as exc:
            if exc.kind == "verify":
                self._drop(entry)  # the source changed: its partial file mixes two versions
            raise
        self.report.bytes += unit.end - unit.start
        split = self.plan.split[entry.rel_path]
        split.done[unit.start] = (unit.end, xxh3)
        self.journal.add_range(entry.rel_path, entry.source_id, entry.size, split.part_size, unit.start, unit.end, xxh3)
        split.remaining -= 1
        if split.remaining == 0:
            await self._finalize(entry, whole)

    def _drop(self, entry: Entry) -> None:
        fscopy.discard(self.sd.partial_path(entry.rel_path))
        self.journal.add_drop(entry.rel_path)

    async def _finalize(self, entry: Entry, whole: ContentHasher | None = None) -> None:
        """Re-read a range-split file once (unless ``whole`` already holds the digests of all its
        bytes, copied in order in this run), compare, and move it into place."""
        split = self.plan.split[entry.rel_path]
        partial, dest = self.sd.partial_path(entry.rel_path), self.dest / entry.rel_path
        expect = await self._reader(entry).final_expectations(entry)
        if whole is not None:
            digests, bad = whole.digests(), None
        else:
            digests, bad = await self.thread(
                fscopy.reread, partial, dest, entry.size, split.done, algorithms_for(expect)
            )
        try:
            if bad is not None:
                raise StageError(
                    "verify",
                    f"{dest}: bytes from offset {bad} read back differently than they were "
                    "written (a failing disk, or another writer); the copy was discarded: re-run",
                    str(dest),
                )
            check(expect, digests, entry)
        except StageError:
            self._drop(entry)
            raise
        mtime = await self.thread(fscopy.place, partial, dest)
        self.placed(
            entry, fscopy.Placed(entry.rel_path, digests[XXH3].hex(), mtime), expect, moved=False, progress_bytes=0
        )

    # --- after: durable, then complete ------------------------------------------------------

    def _complete(self, specs: list[str]) -> None:
        # Data first, then the manifest, then (last) the marker: a crash anywhere in between
        # leaves a stage that does not look complete.
        fd = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            syncfs(fd)
        finally:
            os.close(fd)
        records = [self.records[e.rel_path] for e in self.entries]
        manifest_sha256 = write_manifest(self.sd, records)
        write_complete(
            self.sd,
            sources=list(specs),
            fingerprint=fingerprint(self.entries),
            files=len(records),
            total_bytes=sum(r.size for r in records),
            manifest_sha256=manifest_sha256,
        )
        self.journal.remove()
        with os.scandir(self.sd.partial_dir) as it:
            for leftover in it:  # partial files of sources this stage no longer has
                fscopy.discard(Path(leftover.path))
