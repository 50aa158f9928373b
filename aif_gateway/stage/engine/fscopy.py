"""The blocking filesystem half of staging: functions that run on the stage's worker threads.

Each call does a whole unit of work (a file, a batch of small files, a range) so that the event
loop pays one thread hop per unit, not per system call; reads and writes go through one
per-thread buffer of ``BUFFER_SIZE`` bytes, and hashing (python-xxhash, the native engine)
releases the GIL, so ``jobs`` threads copy in parallel.

Small files are read whole and written straight to their final name (most in batches by
``fsio.engine.copy_small_files``, in C without the GIL); larger ones, and the ranges of
range-split files, go through a partial file that is renamed into place once checked.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import xxhash

from ...fsio import engine
from ...fsio.fullio import pread_full, pwrite_all
from ..errors import StageError, from_os_error
from ..options import MiB
from ..sources import Entry
from .verify import ContentHasher, Expectation, check

__all__ = [
    "BUFFER_SIZE",
    "FileJob",
    "Placed",
    "copy_batch",
    "copy_file",
    "copy_range",
    "create_partial",
    "dest_stats",
    "discard",
    "free_bytes",
    "make_dirs",
    "open_partial",
    "partial_intact",
    "place",
    "reread",
    "thread_buffer",
    "write_at",
    "write_fresh",
]

# The size of each worker thread's buffer (``thread_buffer``) and of each botocore reader's.
BUFFER_SIZE = 8 * MiB
COPY_CHUNK = 256 * 1024  # local copies: read, hash and write through the CPU's cache
_REREAD_STRIPE = 1 * MiB
_REREAD_THREADS = 4
_tls = threading.local()


def thread_buffer() -> memoryview:
    """This thread's buffer of ``BUFFER_SIZE`` bytes, allocated on first use."""
    buf = getattr(_tls, "buffer", None)
    if buf is None:
        buf = _tls.buffer = memoryview(bytearray(BUFFER_SIZE))
    return buf


class Placed(NamedTuple):
    """A file now in place: its relative path, xxh3 (hex) and destination mtime."""

    rel: str
    xxh3: str
    dest_mtime_ns: int


@dataclass(frozen=True)
class FileJob:
    """A file for ``copy_file``: its entry, partial file, final path and what it must match."""

    entry: Entry
    partial: Path
    dest: Path
    expect: tuple[Expectation, ...]


def _changed(entry: Entry, why: str) -> StageError:
    return StageError(
        "verify",
        f"{entry.url} changed while it was being staged ({why}); the copy was "
        "discarded: re-run to stage the new version",
        entry.url,
    )


def _check_source(fd: int, entry: Entry, read: int) -> None:
    st = os.fstat(fd)
    if read != entry.size or st.st_size != entry.size:
        raise _changed(entry, f"listed with {entry.size} bytes, now {max(read, st.st_size)}")
    if st.st_mtime_ns != entry.mtime_ns:
        raise _changed(entry, "its mtime moved")


def _open_source(entry: Entry) -> int:
    try:
        return os.open(entry.url, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise from_os_error(exc, entry.url, "opening the source", source=True) from None


def open_partial(partial: Path, dest: Path, *, create: bool, readable: bool = False, mode: int = 0o666) -> int:
    """A descriptor on ``partial``, the file ``dest`` is written as (created empty when ``create``)."""
    flags = (os.O_RDWR if readable else os.O_WRONLY) | os.O_CLOEXEC | ((os.O_CREAT | os.O_TRUNC) if create else 0)
    try:
        return os.open(partial, flags, mode)
    except OSError as exc:
        raise from_os_error(exc, str(dest), "creating the destination file", source=False) from None


def discard(partial: Path) -> None:
    """Remove a partial file, if there is one."""
    try:
        partial.unlink()
    except FileNotFoundError:
        pass


def place(partial: Path, dest: Path) -> int:
    """Rename the finished partial file into place; its mtime (what later runs compare)."""
    try:
        os.rename(partial, dest)
        return os.stat(dest, follow_symlinks=False).st_mtime_ns
    except OSError as exc:
        raise from_os_error(exc, str(dest), "moving the finished file into place", source=False) from None


def write_at(fd: int, view: memoryview, offset: int, hasher: ContentHasher | None, dest: Path) -> None:
    """Hash and pwrite ``view`` at ``offset`` (the S3 reader's buffers)."""
    if hasher is not None:
        hasher.update(view)
    try:
        pwrite_all(fd, view, offset)
    except OSError as exc:
        raise from_os_error(exc, str(dest), "writing the destination", source=False) from None


def copy_file(job: FileJob) -> Placed:
    """Copy a larger filesystem file, read, hashed and written through a small buffer, into its
    partial file; check it, rename it into place."""
    entry = job.entry
    try:
        src = _open_source(entry)
        try:
            mode = stat.S_IMODE(os.fstat(src).st_mode) | 0o600
            dst = open_partial(job.partial, job.dest, create=True, mode=mode)
            try:
                hasher = ContentHasher({e.algorithm for e in job.expect})
                _copy_through(src, dst, 0, entry.size, [hasher.update], entry, job.dest)
                _check_source(src, entry, entry.size + _read_past(src, entry))
            finally:
                os.close(dst)
        finally:
            os.close(src)
        check(job.expect, hasher.digests(), entry)
    except BaseException:
        discard(job.partial)
        raise
    return Placed(entry.rel_path, hasher.xxh3_hex(), place(job.partial, job.dest))


def _copy_through(
    src: int, dst: int, start: int, end: int, hashers: list[Callable[[memoryview], None]], entry: Entry, dest: Path
) -> None:
    """Bytes [start, end) of the source into the destination at the same offset, each piece
    hashed on its way through a buffer small enough to stay in the CPU's cache: one read, one
    write and one hash per byte (the kernel's copy_file_range and a hash of each side cost
    two thirds more, measured on tmpfs). A source that ends early has changed."""
    buf = thread_buffer()[:COPY_CHUNK]
    offset = start
    while offset < end:
        view = buf[: min(len(buf), end - offset)]
        n = _source_read(src, view, offset, entry)
        if n == 0:
            raise _changed(entry, f"it ends at {offset}, listed with {entry.size} bytes")
        piece = view[:n]
        for update in hashers:
            update(piece)
        try:
            pwrite_all(dst, piece, offset)
        except OSError as exc:
            raise from_os_error(exc, str(dest), "writing the destination", source=False) from None
        offset += n


def _read_past(src: int, entry: Entry) -> int:
    """How many bytes the source now has past its listed size (0 or 1: only whether it grew)."""
    return _source_read(src, thread_buffer()[:1], entry.size, entry)


def _source_read(fd: int, view: memoryview, offset: int, entry: Entry) -> int:
    try:
        return pread_full(fd, view, offset)
    except OSError as exc:
        raise from_os_error(exc, entry.url, "reading the source", source=True) from None


def copy_batch(
    entries: list[Entry], dest_dir: str, expects: list[tuple[Expectation, ...]]
) -> tuple[list[Placed], StageError | None]:
    """Small files one after the other on this thread; stops at the first failure. Files
    checked only against themselves (no manifest checksum: nearly always) go to
    ``fsio.engine.copy_small_files`` together; the others through ``copy_small``. Returns the
    files placed and the failure, if any."""
    placed: list[Placed] = []
    start = 0
    while start < len(entries):
        end = start
        while end < len(entries) and not expects[end]:
            end += 1
        if end == start:
            try:
                placed.append(copy_small(entries[start], f"{dest_dir}/{entries[start].rel_path}", expects[start]))
            except StageError as exc:
                return placed, exc
            start += 1
            continue
        run = entries[start:end]
        dests = [f"{dest_dir}/{e.rel_path}" for e in run]
        hashes, mtimes, failure = engine.copy_small_files(
            [e.url for e in run], dests, [e.size for e in run], [e.mtime_ns for e in run]
        )
        placed.extend(Placed(e.rel_path, format(h, "016x"), m) for e, h, m in zip(run, hashes, mtimes))
        if failure is not None:
            index, code, step = failure
            return placed, _small_copy_error(run[index], dests[index], code, step)
        start = end
    return placed, None


def _small_copy_error(entry: Entry, dest: str, code: int, step: str) -> StageError:
    if step == "changed":
        return _changed(entry, "its size or mtime differ from the listing")
    source = step in ("open_source", "read_source")
    path = entry.url if source else dest
    doing = {
        "open_source": "opening the source",
        "read_source": "reading the source",
        "create_dest": "creating the destination file",
        "write_dest": "writing the destination",
    }[step]
    return from_os_error(OSError(code, os.strerror(code), path), path, doing, source=source)


def copy_small(entry: Entry, dest: str, expect: tuple[Expectation, ...]) -> Placed:
    """Read a small file in one call, hash and check it, then write it straight to its final name.

    No partial file and rename: for many small files those two system calls would cost as much
    as the copy. A file is recorded (journal, manifest) only once it is whole, a failed write
    removes it, and the stage as a whole counts only with complete.json; a fresh inode is always
    created (O_EXCL), so a hard link or symlink at the destination is replaced, never written through.
    """
    view = thread_buffer()[: entry.size + 1]  # one byte more than listed: notices a grown file
    src = _open_source(entry)
    try:
        try:
            n = os.preadv(src, [view], 0)
            while n < len(view) and n != entry.size:  # short of the listed size: read on
                more = os.preadv(src, [view[n:]], n)
                if more == 0:
                    break
                n += more
            st = os.fstat(src)
        except OSError as exc:
            raise from_os_error(exc, entry.url, "reading the source", source=True) from None
    finally:
        os.close(src)
    if n != entry.size or st.st_size != entry.size or st.st_mtime_ns != entry.mtime_ns:
        raise _changed(entry, "its size or mtime differ from the listing")
    data = view[:n]
    hasher = ContentHasher({e.algorithm for e in expect})
    hasher.update(data)
    check(expect, hasher.digests(), entry)
    return Placed(entry.rel_path, hasher.xxh3_hex(), write_fresh(dest, data, stat.S_IMODE(st.st_mode) | 0o600))


def write_fresh(dest: str, data: memoryview, mode: int) -> int:
    """Write ``data`` as a new file at ``dest`` (see ``copy_small``; small S3 objects too); its mtime."""
    dst = _create_fresh(dest, mode)
    try:
        pwrite_all(dst, data, 0)
        mtime = os.fstat(dst).st_mtime_ns
    except OSError as exc:
        os.close(dst)
        discard(Path(dest))
        raise from_os_error(exc, dest, "writing the destination", source=False) from None
    os.close(dst)
    return mtime


def _create_fresh(path: str, mode: int) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        try:
            return os.open(path, flags, mode)
        except FileExistsError:
            os.unlink(path)  # an older copy, or a link: replace it rather than write through it
            return os.open(path, flags, mode)
    except OSError as exc:
        raise from_os_error(exc, path, "creating the destination file", source=False) from None


def create_partial(partial: Path, dest: Path, size: int) -> None:
    """Create the partial file of a range-split file, at its full ``size``."""
    fd = open_partial(partial, dest, create=True)
    try:
        os.ftruncate(fd, size)
    except OSError as exc:
        raise from_os_error(exc, str(dest), "creating the destination file", source=False) from None
    finally:
        os.close(fd)


def partial_intact(partial: Path, size: int) -> bool:
    """Whether a range-split file's partial file is still there, at its full ``size``."""
    try:
        return os.stat(partial).st_size == size
    except FileNotFoundError:
        return False


def copy_range(
    entry: Entry, partial: Path, dest: Path, start: int, end: int, whole: ContentHasher | None = None
) -> str:
    """Copy bytes [start, end) of a filesystem file into its partial file; the xxh3 of those
    bytes as they were read (``reread`` compares the copy with it). ``whole``, when given, is
    fed the same bytes: ranges copied in order make the file's digests without a re-read."""
    src = _open_source(entry)
    try:
        dst = open_partial(partial, dest, create=False)
        try:
            hasher = xxhash.xxh3_64()
            _copy_through(
                src, dst, start, end, [hasher.update] if whole is None else [hasher.update, whole.update], entry, dest
            )
            st = os.fstat(src)
            if st.st_size != entry.size or st.st_mtime_ns != entry.mtime_ns:
                raise _changed(entry, "its size or mtime moved")
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return hasher.hexdigest()


def reread(
    partial: Path, dest: Path, size: int, ranges: dict[int, tuple[int, str]], algorithms: set[str]
) -> tuple[dict[str, bytes], int | None]:
    """Read a range-split file back once: its digests, and the start of the first range whose
    content no longer hashes to what was written (None when all match)."""
    buf = thread_buffer()
    hasher = ContentHasher(algorithms)
    bad = None
    try:
        fd = os.open(partial, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise from_os_error(exc, str(dest), "re-reading the staged file", source=False) from None
    try:
        for start in sorted(ranges):
            end, expected = ranges[start]
            part_hash = xxhash.xxh3_64()
            offset = start
            while offset < end:
                view = buf[: min(len(buf), end - offset)]
                n = engine.pread_striped(fd, view, offset, _REREAD_STRIPE, _REREAD_THREADS)
                if n == 0:
                    break
                hasher.update(view[:n])
                part_hash.update(view[:n])
                offset += n
            if bad is None and (offset != end or part_hash.hexdigest() != expected):
                bad = start
        if os.fstat(fd).st_size != size:
            bad = bad if bad is not None else 0
    except OSError as exc:
        raise from_os_error(exc, str(dest), "re-reading the staged file", source=False) from None
    finally:
        os.close(fd)
    return hasher.digests(), bad


def make_dirs(dest: Path, rels: list[str]) -> None:
    """Create the parent directories of ``rels`` under ``dest``."""
    parents = sorted({rel.rsplit("/", 1)[0] for rel in rels if "/" in rel})
    for parent in parents:
        path = dest / parent
        try:
            os.makedirs(path, exist_ok=True)
        except FileExistsError:
            raise StageError(
                "transfer", f"cannot create the directory {path}: a file is in the way", str(path)
            ) from None
        except OSError as exc:
            raise from_os_error(exc, str(path), "creating directories", source=False) from None


def dest_stats(dest: Path, rels: list[str]) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of those destination files that exist as regular files."""
    found = {}
    for rel in rels:
        try:
            st = os.stat(dest / rel, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found[rel] = (st.st_size, st.st_mtime_ns)
    return found


def free_bytes(path: Path) -> int:
    """Bytes free for this user on the filesystem of ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
