"""How the copy engine copies S3 objects: through the fast reader on its worker threads
(``s3get.fetch_batch``, ``fetch_whole``, ``fetch_range``), or botocore's Python fallback on the event
loop (``s3get.fetch_botocore``) for the objects the fast reader cannot read."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from . import fscopy, s3get
from .copier import LazyBuffer, StageRun
from .verify import ContentHasher, Expectation, algorithms_for, check, expectations

if TYPE_CHECKING:
    from ..sources import Entry

__all__ = ["S3Objects", "open_s3_objects"]


@contextlib.asynccontextmanager
async def open_s3_objects(stager: StageRun, entries: list[Entry]) -> AsyncIterator[S3Objects]:
    """The S3 reader for ``entries``: botocore's client only where the fast reader cannot do the work."""
    import asyncio

    from ...client import SignedS3, open_client, usable_key
    from ..client_failures import client_setup, parse_s3_url
    from ..options import fast_s3_reads

    options = stager.options
    async with contextlib.AsyncExitStack() as stack:
        client = None
        fast = SignedS3.from_environment(options, options.jobs + 1) if fast_s3_reads() else None
        with client_setup():
            if fast is None or not all(usable_key(parse_s3_url(e.url)[1]) for e in entries):
                client = await stack.enter_async_context(open_client(options, options.jobs))
            if fast is None and fast_s3_reads():
                assert client is not None
                fast = await SignedS3.create(client, options, options.jobs + 1)
        if fast is not None:
            stack.callback(fast.close)
        loop = asyncio.get_running_loop()
        assert stager.pool is not None and stager.progress is not None
        yield S3Objects(
            stager,
            s3get.S3Context(
                client,
                stager.pool,
                options.retries,
                lambda: loop.call_soon_threadsafe(stager.count_retry),
                stager.progress.add,
                fast,
            ),
        )


class S3Objects:
    def __init__(self, stager: StageRun, ctx: s3get.S3Context) -> None:
        self.stager = stager
        self.ctx = ctx

    def stop(self, *, now: bool) -> None:
        """Threads still retrying give up at once; ``now``: those still reading stop too."""
        self.ctx.stop.set()
        if now and self.ctx.fast is not None:
            self.ctx.fast.abort()

    async def _fast(self, entry: Entry) -> bool:
        """Whether the fast reader reads ``entry`` (its credentials renewed if they need to be)."""
        if s3get.fast_for(self.ctx, entry) is None:
            return False
        assert self.ctx.fast is not None
        await self.ctx.fast.refresh()
        return True

    async def copy_batch(self, entries: list[Entry], buffer: LazyBuffer) -> None:
        """Small objects: those the fast reader can fetch in one thread hop for the batch, the
        others one by one through botocore."""
        stager = self.stager
        fast = [e for e in entries if s3get.fast_for(self.ctx, e) is not None]
        if fast:
            assert self.ctx.fast is not None
            await self.ctx.fast.refresh()
            done, error = await stager.thread(s3get.fetch_batch, self.ctx, fast, str(stager.dest))
            stager.placed_many(done, progress_bytes=sum(entry.size for entry, _, _ in done))
            if error is not None:
                raise error
        for entry in entries:
            if s3get.fast_for(self.ctx, entry) is None:
                await self.copy_whole(entry, buffer)

    async def copy_whole(self, entry: Entry, buffer: LazyBuffer) -> None:
        stager = self.stager
        partial, dest = stager.sd.partial_path(entry.rel_path), stager.dest / entry.rel_path
        if await self._fast(entry):
            placed, how = await stager.thread(s3get.fetch_whole, self.ctx, entry, partial, dest)
            stager.placed_many([(entry, placed, how)], progress_bytes=entry.size)
            return
        wanted = algorithms_for(expectations(entry))
        fd = await stager.thread(lambda: fscopy.open_partial(partial, dest, create=True))
        try:
            try:
                hasher, sse = await s3get.fetch_botocore(
                    self.ctx, entry, fd, dest, 0, entry.size, ranged=False, algorithms=wanted, buffer=buffer.get()
                )
            finally:
                os.close(fd)
            expect = expectations(entry, sse=sse)
            check(expect, hasher.digests(), entry)
            mtime = await stager.thread(fscopy.place, partial, dest)
        except BaseException:
            fscopy.discard(partial)
            raise
        # fetch_botocore told the progress display about the bytes as they came.
        stager.placed(entry, fscopy.Placed(entry.rel_path, hasher.xxh3_hex(), mtime), expect, progress_bytes=0)

    async def copy_range(
        self, entry: Entry, start: int, end: int, buffer: LazyBuffer, whole: ContentHasher | None
    ) -> str:
        stager = self.stager
        partial, dest = stager.sd.partial_path(entry.rel_path), stager.dest / entry.rel_path
        if await self._fast(entry):
            xxh3: str = await stager.thread(s3get.fetch_range, self.ctx, entry, partial, dest, start, end)
            assert stager.progress is not None
            stager.progress.add(end - start)
            return xxh3
        fd = await stager.thread(lambda: fscopy.open_partial(partial, dest, create=False))
        try:
            hasher, _ = await s3get.fetch_botocore(
                self.ctx, entry, fd, dest, start, end, ranged=True, algorithms=set(), buffer=buffer.get()
            )
        finally:
            os.close(fd)
        return hasher.xxh3_hex()

    async def final_expectations(self, entry: Entry) -> list[Expectation]:
        """With the object's ServerSideEncryption and full-object checksums, read for the listed version."""
        sse, checksums = await s3get.head_checksums(self.ctx, entry)
        return expectations(entry, sse=sse, s3_checksums=checksums)
