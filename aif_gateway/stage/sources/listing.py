"""What a stage copies: the sources resolved to a flat, sorted list of files.

A directory or prefix is merged into the destination (like ``rsync SRC/ DEST/``, under
DEST_REL when a manifest gives one); a single file or object lands as ``DEST/NAME`` (or
DEST_REL). Two sources providing the same path are a usage error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..errors import StageError
from ..options import StageOptions
from ..state.statedir import STATE_DIR
from .entry import Entry, safe_rel_path
from .parse import parse_source
from .s3 import open_s3_listing
from .source import Source, SourceLine

__all__ = ["alist_sources", "list_entries", "list_sources"]


async def alist_sources(
    specs: list[str], options: StageOptions, on_retry: Callable[[], None] = lambda: None
) -> list[Entry]:
    """``list_sources``' coroutine."""
    return await list_entries([parse_source(spec) for spec in specs], options, on_retry)


async def list_entries(
    sources: list[Source], options: StageOptions, on_retry: Callable[[], None] = lambda: None
) -> list[Entry]:
    lines: list[SourceLine] = [line for source in sources for line in source.lines()]
    if not lines:
        raise StageError("usage", "no sources given")
    remote = [index for index, line in enumerate(lines) if line.source.needs_s3]
    listed: dict[int, list[Entry]] = {}
    for index, line in enumerate(lines):
        if not line.source.needs_s3:
            listed[index] = await line.source.list_entries(line.dest_rel, options)
    if remote:
        async with open_s3_listing(options, len(remote), on_retry) as s3:
            results = await asyncio.gather(
                *(lines[index].source.list_entries(lines[index].dest_rel, options, s3) for index in remote)
            )
        listed.update(zip(remote, results))
    entries: dict[str, Entry] = {}
    for index, line in enumerate(lines):
        found = listed[index]
        if line.checksum or line.etag:
            found = [_expect(line, found)]
        walked = line.source.names_from_readdir and len(found) > 1
        if walked and line.dest_rel:
            safe_rel_path(line.dest_rel, str(line.source))
        for entry in found:
            # Below a walked directory every name came from readdir: only the first one can be
            # unsafe here (the stage's own state directory); S3 keys and manifest paths can be anything.
            if not walked or entry.rel_path.startswith(STATE_DIR):
                safe_rel_path(entry.rel_path, entry.url)
            if entry.rel_path in entries:
                raise StageError(
                    "usage",
                    f"two sources provide {entry.rel_path}: {entries[entry.rel_path].url} "
                    f"and {entry.url}; give one of them another DEST_REL in a manifest",
                )
            entries[entry.rel_path] = entry
    return sorted(entries.values())  # by rel_path: the tuples' first, unique, item


def _expect(line: SourceLine, found: list[Entry]) -> Entry:
    """The single file of a manifest line that carries a checksum or ETag, with it attached."""
    if len(found) != 1 or found[0].url.rstrip("/") != line.source.normal():
        raise StageError(
            "usage",
            f"a checksum or etag= in a manifest needs a single file or object, "
            f"but {line.source} names {len(found)} files",
            str(line.source),
        )
    entry = found[0]
    if line.etag is not None and entry.etag != line.etag:
        raise StageError(
            "verify",
            f"{entry.url} changed: the manifest expects ETag {line.etag}, the source has {entry.etag}",
            entry.url,
        )
    return entry._replace(checksum=line.checksum or entry.checksum)


def list_sources(specs: list[str], options: StageOptions) -> list[Entry]:
    """The files the specs name, sorted by destination path.

    Raises StageError: "source_missing" (no such path, bucket, or no objects under a prefix),
    "permission", "usage" (bad manifest, clashing destinations, unsafe keys).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(alist_sources(specs, options))
    # Called from a coroutine: list on a loop of its own in a worker thread (this blocks the
    # caller's loop while listing; ``await alist_sources(...)`` does not).
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, alist_sources(specs, options)).result()
