"""Reading S3 objects into files.

The fast path (``client.SignedS3``) runs on the stage's worker threads, one thread hop per unit
of work: ``fetch_batch`` reads small objects one after the other, each whole into the thread's
buffer, checks it and writes it straight to its final name (as ``fscopy.copy_small`` does for
local files); ``fetch_whole`` and ``fetch_range`` stream one GET into a partial file at its
offset, hashing it on the way (see ``client.http``). Its Python fallback, ``fetch_botocore``,
is botocore's ``get_object`` on the event loop, used under ``AIF_STAGE_S3_GET=botocore``, for
endpoints with a path and for keys a URL library could rewrite. Every GET carries ``If-Match``
with the listed ETag, so an object replaced mid-stage fails (HTTP 412) instead of mixing two
versions; a body shorter or longer than asked is retried like a dropped connection.
``fetch_*`` with a ``ctx`` and no ``await`` run on worker threads; ``fetch_botocore`` and
``head_checksums`` on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...client import FileError, SignedS3, TruncatedBody, s3_errors, usable_key, with_retries, with_retries_sync
from ..client_failures import parse_s3_url, s3_error
from ..errors import StageError, from_os_error
from ..sources import Entry
from . import fscopy
from .verify import ContentHasher, algorithms_for, check, expectations, method

__all__ = [
    "S3Context",
    "fast_for",
    "fetch_batch",
    "fetch_botocore",
    "fetch_range",
    "fetch_whole",
    "head_checksums",
    "head_checksums_sync",
]

_BOTOCORE_READ = 1 << 20
_CHECKSUM_FIELDS = {
    "ChecksumCRC64NVME": "CRC64NVME",
    "ChecksumCRC32C": "CRC32C",
    "ChecksumCRC32": "CRC32",
    "ChecksumSHA256": "SHA256",
    "ChecksumSHA1": "SHA1",
}


@dataclass
class S3Context:
    client: Any
    pool: Executor
    retries: int
    on_retry: Callable[[], object]  # thread-safe; what it returns is ignored
    on_bytes: Callable[[int], None]  # progress (event loop only); negative when a failed attempt's bytes are taken back
    fast: SignedS3 | None = None
    stop: threading.Event = field(default_factory=threading.Event)  # set when the stage stops: no more retries


def fast_for(ctx: S3Context, entry: Entry) -> SignedS3 | None:
    """The fast reader when it can read ``entry``, else None (botocore reads it)."""
    return ctx.fast if ctx.fast is not None and usable_key(parse_s3_url(entry.url)[1]) else None


def _if_match(entry: Entry) -> str | None:
    return f'"{entry.etag}"' if entry.etag else None


def _retrying(ctx: S3Context, entry: Entry, call: Callable[[], Any], doing: str = "reading the source") -> Any:
    try:
        return with_retries_sync(call, ctx.retries, ctx.on_retry, ctx.stop)
    except s3_errors() as exc:
        raise s3_error(exc, entry.url, doing) from None


# --- the fast path: worker threads ------------------------------------------------------------


def fetch_batch(
    ctx: S3Context, entries: list[Entry], dest_dir: str
) -> tuple[list[tuple[Entry, fscopy.Placed, str]], StageError | None]:
    """Small objects one after the other on this thread; stops at the first failure."""
    done: list[tuple[Entry, fscopy.Placed, str]] = []
    for entry in entries:
        try:
            placed, how = _fetch_small(ctx, entry, f"{dest_dir}/{entry.rel_path}")
        except StageError as exc:
            return done, exc
        done.append((entry, placed, how))
    return done, None


def _fetch_small(ctx: S3Context, entry: Entry, dest: str) -> tuple[fscopy.Placed, str]:
    assert ctx.fast is not None
    fast = ctx.fast
    bucket, key = parse_s3_url(entry.url)
    view = fscopy.thread_buffer()[: entry.size]

    def attempt() -> str | None:
        with fast.get(bucket, key, if_match=_if_match(entry)) as response:
            if response.length != entry.size:
                raise TruncatedBody(f"{entry.url}: {response.length} bytes, listed with {entry.size}")
            response.read_into(view)
            return response.headers.get("x-amz-server-side-encryption")

    sse = _retrying(ctx, entry, attempt)
    expect = expectations(entry, sse=sse)
    hasher = ContentHasher(algorithms_for(expect))
    hasher.update(view)
    check(expect, hasher.digests(), entry)
    return fscopy.Placed(entry.rel_path, hasher.xxh3_hex(), fscopy.write_fresh(dest, view, 0o666)), method(
        expect, entry
    )


def _to_file(
    ctx: S3Context, entry: Entry, fd: int, dest: Path, start: int, end: int, *, ranged: bool, algorithms: set[str]
) -> tuple[ContentHasher, str | None]:
    """One GET of bytes [start, end) (``ranged``) or of the whole object into ``fd`` at ``start``."""
    assert ctx.fast is not None
    fast = ctx.fast
    bucket, key = parse_s3_url(entry.url)
    buffer = fscopy.thread_buffer()

    def attempt() -> tuple[ContentHasher, str | None]:
        hasher = ContentHasher(algorithms)
        with fast.get(
            bucket, key, range_header=f"bytes={start}-{end - 1}" if ranged else None, if_match=_if_match(entry)
        ) as response:
            if response.length != end - start:
                raise TruncatedBody(f"{entry.url}: {response.length} bytes for a request of {end - start}")
            response.to_file(fd, start, end - start, buffer, hasher.update)
            return hasher, response.headers.get("x-amz-server-side-encryption")

    try:
        return _retrying(ctx, entry, attempt)
    except FileError as exc:
        raise from_os_error(exc.error, str(dest), "writing the destination", source=False) from None


def fetch_whole(ctx: S3Context, entry: Entry, partial: Path, dest: Path) -> tuple[fscopy.Placed, str]:
    """An object of its own: into its partial file, checked, renamed into place."""
    try:
        fd = fscopy.open_partial(partial, dest, create=True, readable=True)
        try:
            hasher, sse = _to_file(
                ctx, entry, fd, dest, 0, entry.size, ranged=False, algorithms=algorithms_for(expectations(entry))
            )
        finally:
            os.close(fd)
        expect = expectations(entry, sse=sse)
        check(expect, hasher.digests(), entry)
        mtime = fscopy.place(partial, dest)
    except BaseException:
        fscopy.discard(partial)
        raise
    return fscopy.Placed(entry.rel_path, hasher.xxh3_hex(), mtime), method(expect, entry)


def fetch_range(ctx: S3Context, entry: Entry, partial: Path, dest: Path, start: int, end: int) -> str:
    """Bytes [start, end) into the partial file of a range-split object: their xxh3."""
    fd = fscopy.open_partial(partial, dest, create=False, readable=True)
    try:
        hasher, _ = _to_file(ctx, entry, fd, dest, start, end, ranged=True, algorithms=set())
    finally:
        os.close(fd)
    return hasher.xxh3_hex()


def head_checksums_sync(ctx: S3Context, entry: Entry) -> tuple[str | None, dict[str, str]]:
    assert ctx.fast is not None
    fast = ctx.fast
    bucket, key = parse_s3_url(entry.url)
    headers = _retrying(
        ctx,
        entry,
        lambda: fast.head(bucket, key, if_match=_if_match(entry), checksums=True),
        "reading the source's checksum",
    )
    checksums = {
        name: headers[f"x-amz-checksum-{name.lower()}"]
        for name in _CHECKSUM_FIELDS.values()
        if headers.get(f"x-amz-checksum-{name.lower()}")
    }
    if headers.get("x-amz-checksum-type", "").upper() == "COMPOSITE":
        checksums = {}  # a checksum of part checksums: our ranges are not the uploader's parts
    return headers.get("x-amz-server-side-encryption"), checksums


# --- the Python fallback: botocore on the event loop ------------------------------------------------


async def fetch_botocore(
    ctx: S3Context,
    entry: Entry,
    fd: int,
    dest: Path,
    start: int,
    end: int,
    *,
    ranged: bool,
    algorithms: set[str],
    buffer: bytearray,
) -> tuple[ContentHasher, str | None]:
    """One GET through botocore: the body gathered in ``buffer``, each full buffer hashed and
    written on a worker thread."""
    bucket, key = parse_s3_url(entry.url)
    loop = asyncio.get_running_loop()
    view = memoryview(buffer)

    async def attempt() -> tuple[ContentHasher, str | None]:
        hasher = ContentHasher(algorithms)
        offset = start  # where the buffer's content goes in the file
        fill = 0  # bytes in the buffer

        async def write_buffer() -> None:
            nonlocal offset, fill
            await loop.run_in_executor(ctx.pool, fscopy.write_at, fd, view[:fill], offset, hasher, dest)
            ctx.on_bytes(fill)
            offset, fill = offset + fill, 0

        try:
            read, close, length, sse = await _open_botocore(
                ctx, bucket, key, entry.etag, f"bytes={start}-{end - 1}" if ranged else None
            )
            try:
                if length is not None and length != end - start:
                    raise TruncatedBody(f"{entry.url}: {length} bytes for a request of {end - start}")
                while chunk := await read():
                    piece = memoryview(chunk)
                    while piece:
                        take = min(len(piece), len(view) - fill)
                        view[fill : fill + take] = piece[:take]
                        fill += take
                        piece = piece[take:]
                        if fill == len(view):
                            await write_buffer()
                if fill:
                    await write_buffer()
                if offset != end:
                    raise TruncatedBody(f"{entry.url}: the body ended after {offset - start} of {end - start} bytes")
            finally:
                close()
        except BaseException:
            ctx.on_bytes(start - offset)  # take back this attempt's progress
            raise
        return hasher, sse

    try:
        return await with_retries(attempt, ctx.retries, ctx.on_retry)
    except s3_errors() as exc:
        raise s3_error(exc, entry.url, "reading the source") from None


async def _open_botocore(
    ctx: S3Context, bucket: str, key: str, etag: str | None, range_header: str | None
) -> tuple[Callable[[], Awaitable[bytes]], Callable[[], Any], int | None, str | None]:
    """Start a GET: (read() -> the next piece of the body, b"" at its end; close(); Content-Length;
    ServerSideEncryption)."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if etag:
        kwargs["IfMatch"] = f'"{etag}"'
    if range_header:
        kwargs["Range"] = range_header
    answer = await ctx.client.get_object(**kwargs)
    body = answer["Body"]
    length = answer.get("ContentLength")
    return (
        lambda: body.read(_BOTOCORE_READ),
        body.close,
        int(length) if length is not None else None,
        answer.get("ServerSideEncryption"),
    )


async def head_checksums(ctx: S3Context, entry: Entry) -> tuple[str | None, dict[str, str]]:
    """The object's ServerSideEncryption and its full-object checksums, for the listed version."""
    if fast_for(ctx, entry) is not None:
        return await asyncio.get_running_loop().run_in_executor(ctx.pool, head_checksums_sync, ctx, entry)
    bucket, key = parse_s3_url(entry.url)
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "ChecksumMode": "ENABLED"}
    if entry.etag:
        kwargs["IfMatch"] = f'"{entry.etag}"'
    try:
        head = await with_retries(lambda: ctx.client.head_object(**kwargs), ctx.retries, ctx.on_retry)
    except s3_errors() as exc:
        raise s3_error(exc, entry.url, "reading the source's checksum") from None
    checksums = {name: head[field] for field, name in _CHECKSUM_FIELDS.items() if head.get(field)}
    if head.get("ChecksumType") == "COMPOSITE":
        checksums = {}  # a checksum of part checksums: our ranges are not the uploader's parts
    return head.get("ServerSideEncryption"), checksums
