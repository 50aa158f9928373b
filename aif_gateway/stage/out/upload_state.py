"""Resuming ``stage out``: a record of each multipart upload in flight, kept across runs.

Where: ``$XDG_CACHE_HOME/aif-gateway/stage-out/<sha256 of endpoint, destination, source
realpath>/`` (``~/.cache`` without XDG_CACHE_HOME; ``$TMPDIR/aif-gateway-<uid>/`` when that cannot be
made, e.g. a batch user without a home directory), not under the source: a stage out must work
from a read-only tree (a finished job's results, a snapshot), and state inside the tree would be
uploaded with it. Cluster home directories are shared, so a re-run on another node finds the
record; where the record is missing, the re-run only starts that upload over.

Layout: ``lock`` (fcntl lock: one stage out per source and destination at a time) and
``uploads/<xxh3-128 of key>``, one per multipart upload in flight: a first line
``{"key", "upload_id", "size", "mtime_ns", "part_size"}`` written atomically before any part is
sent, then one line ``{"n", "etag", "size"}`` appended per part the server acknowledged. Part
lines are not fsync'ed: one lost in a machine crash (or torn: ignored) only means that part is
sent again. The directory is removed when its last record is dropped.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from ..engine.plan import split_ranges
from ..errors import StageError, from_os_error
from ..state.statedir import write_atomically

__all__ = ["UploadRecord", "UploadState", "parse_record", "resumable_parts", "state_dir"]


@dataclass
class UploadRecord:
    """One multipart upload in flight: the key, its upload id, the source file's size and mtime_ns
    when it started, its part size, and the parts the server acknowledged."""

    key: str
    upload_id: str
    size: int
    mtime_ns: int
    part_size: int
    parts: dict[int, tuple[str, int]] = field(default_factory=dict)  # number -> (etag, size)

    def header_line(self) -> str:
        return (
            json.dumps(
                {
                    "key": self.key,
                    "upload_id": self.upload_id,
                    "size": self.size,
                    "mtime_ns": self.mtime_ns,
                    "part_size": self.part_size,
                },
                separators=(",", ":"),
            )
            + "\n"
        )


def part_line(number: int, etag: str, size: int) -> str:
    return json.dumps({"n": number, "etag": etag.strip('"'), "size": size}, separators=(",", ":")) + "\n"


def parse_record(lines: Iterable[str]) -> UploadRecord | None:
    """The record in a file's lines (pure); None when its header is unreadable. Bad part lines (the
    torn last line of a killed run) are ignored; a part recorded twice keeps its last line."""
    it = iter(lines)
    try:
        raw: Any = json.loads(next(it))
        record = UploadRecord(
            str(raw["key"]), str(raw["upload_id"]), int(raw["size"]), int(raw["mtime_ns"]), int(raw["part_size"])
        )
    except (StopIteration, ValueError, KeyError, TypeError):
        return None
    for line in it:
        try:
            raw = json.loads(line)
            record.parts[int(raw["n"])] = (str(raw["etag"]), int(raw["size"]))
        except (ValueError, KeyError, TypeError):
            continue
    return record


def resumable_parts(
    record: UploadRecord, size: int, mtime_ns: int, listed: dict[int, tuple[str, int]] | None
) -> dict[int, str] | None:
    """Which parts (number -> ETag) of a recorded upload a re-run keeps (pure): those the server
    lists (``listed``: its ListParts, number -> (etag, size); None: no such upload) with the ETag
    and size the record holds and the size the split gives them. None, start over: the file is
    not the recorded version (size, mtime_ns), or the upload is gone."""
    if listed is None or (record.size, record.mtime_ns) != (size, mtime_ns):
        return None
    pieces = split_ranges(size, record.part_size)
    keep = {}
    for number, (etag, part_size) in record.parts.items():
        if not 1 <= number <= len(pieces):
            continue
        start, end = pieces[number - 1]
        server = listed.get(number)
        if server is not None and server[0].strip('"') == etag and server[1] == part_size == end - start:
            keep[number] = etag
    return keep


def state_dir(endpoint: str | None, dest: str, src: Path) -> Path:
    """The state directory of a stage out of ``src`` to ``dest`` at ``endpoint`` (see the module docstring)."""
    ident = json.dumps([endpoint or "", dest, os.path.realpath(src)])
    return _state_base() / hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()


def _state_base() -> Path:
    """``$XDG_CACHE_HOME`` (or ``~/.cache``)``/aif-gateway/stage-out`` where it can be made; else
    a private directory of this user in the temp directory. Batch users often have no home
    directory on the node (a Slurm stage-out runs as the job's user through ``runuser``), and a
    stage out must not fail for want of a place to keep its resume records."""
    cache = os.environ.get("XDG_CACHE_HOME", "")
    preferred = (Path(cache) if os.path.isabs(cache) else Path.home() / ".cache") / "aif-gateway" / "stage-out"
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK | os.X_OK):
            return preferred
    except OSError:
        pass
    private = Path(tempfile.gettempdir()) / f"aif-gateway-{os.getuid()}"
    try:
        private.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(private)
    except OSError:
        return preferred  # neither can be made: open() reports the preferred one
    # Shared /tmp: use it only if it is really ours (not a name someone else planted, nor a link).
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return preferred
    return private / "stage-out"


class UploadState:
    """The state directory at ``path``, locked from ``open()`` to ``close()``. Every method blocks:
    call them from a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.uploads = path / "uploads"
        self.lock_path = path / "lock"
        self._lock_fd: int | None = None

    def _file(self, key: str) -> Path:
        return self.uploads / xxhash.xxh3_128_hexdigest(key.encode("utf-8", "surrogateescape"))

    def open(self) -> None:
        """Create and lock the directory; StageError when another stage out holds it."""
        while True:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                continue  # an ending run removed the emptied directory just now
            except OSError as exc:
                raise self._cannot(exc) from None
            try:
                # fcntl locks: dropped when the holder dies, so a killed stage never blocks the next.
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise StageError(
                        "usage",
                        "another stage out of the same source to the same destination "
                        f"is running (state {self.path}); wait for it",
                        str(self.path),
                    ) from None
                raise from_os_error(exc, str(self.lock_path), "locking the stage-out state", source=False) from None
            # close() unlinks the lock of an emptied state: a lock taken on that unlinked file is
            # no lock, so take it again on the file the path names now.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._lock_fd = fd
        try:
            self.uploads.mkdir(exist_ok=True)
        except OSError as exc:
            self.close()
            raise self._cannot(exc) from None

    def _cannot(self, exc: OSError) -> StageError:
        return from_os_error(
            exc, str(self.path), "creating the stage-out state (XDG_CACHE_HOME names where it goes)", source=False
        )

    def records(self) -> dict[str, UploadRecord]:
        """The uploads in flight, by key."""
        found = {}
        for path in self.uploads.iterdir():
            try:
                with open(path, encoding="utf-8", errors="surrogateescape") as fh:
                    record = parse_record(fh)
            except OSError:
                continue
            if record is None:
                path.unlink(missing_ok=True)  # no upload id to resume or abort: nothing to keep
            else:
                found[record.key] = record
        return found

    def start(self, record: UploadRecord) -> None:
        """Record a new upload (its header line only)."""
        # Durable before any part is sent: without it, a crash would leave an upload no run can find.
        write_atomically(self._file(record.key), record.header_line().encode("utf-8", "surrogateescape"))

    def add_part(self, key: str, number: int, etag: str, size: int) -> None:
        """Record a part the server acknowledged."""
        fd = os.open(self._file(key), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            os.write(fd, part_line(number, etag, size).encode())
        finally:
            os.close(fd)

    def drop(self, key: str) -> None:
        """Forget the upload of ``key``."""
        self._file(key).unlink(missing_ok=True)

    def close(self) -> None:
        """Unlock, first removing the directory when no upload is left in it."""
        if self._lock_fd is None:
            return
        try:
            # Emptied: remove it while still holding the lock (see open()), so finished stages
            # leave nothing behind in the cache directory.
            if not any(self.uploads.iterdir()):
                self.lock_path.unlink(missing_ok=True)
                self.uploads.rmdir()
                self.path.rmdir()
        except OSError:
            pass  # another run created its lock meanwhile, or the directory is not ours to clean
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None
