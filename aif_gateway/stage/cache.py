"""The site staging cache: a dataset many jobs ask for is staged once and shared while unchanged.

Layout of ``cache_dir``::

    .lock                 fcntl lock around every decision that evicts or pins (see below)
    <key>/meta.json       sources, fingerprint, size, created, last_used (written under .lock)
    <key>/data/           the staged tree: an ordinary stage destination, resumable, with its own
                          .aifstage/complete.json; a crashed stage-in continues here next time
    <key>/leases/<holder> one file per holder using the entry
    <key>/.lock           fcntl lock held while the entry is being staged
    .evicted-<key>-<tag>  an evicted entry being deleted (renamed away under .lock, deleted after)

The key is sha256 over the canonical sources (absolute real paths, s3 URLs with their endpoint),
each listed file's relative path and source URL, and ``fingerprint(entries)`` (sizes and
ETags/mtimes): a changed object gives a new key, so an entry's content never changes under a
reader. Old entries of a changed dataset simply age out by LRU.

Leases. ``pid-<pid>@<host>`` holders are live while that process exists on this host (the start
time recorded in the lease guards against pid reuse); any other holder (a Slurm job id) is live
until released, which Slurm's teardown does. Because a lost teardown must not pin data forever, a
lease of that kind (and a pid lease from another host, which cannot be checked from here) lapses
``lease_max_age`` seconds after it was taken (default 7 days; ``--lease-max-age``). A lease is
taken under ``.lock`` before the entry is looked at, so no eviction can slip in between.

Locks are POSIX record locks (``fcntl.lockf``), which parallel filesystems honour across nodes
and the kernel releases when the holder dies. They do not exclude two users inside one process,
so an in-process lock pairs with each. The entry lock makes a second stage-in of the same
dataset wait for the first and then find a complete entry: one transfer, not two.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .engine.transfer import stage_in
from .errors import StageError, from_os_error
from .options import StageOptions, format_size
from .progress import Report
from .sources import Entry, alist_sources, fingerprint, parse_source
from .state.completion import stage_status

__all__ = [
    "DEFAULT_LEASE_MAX_AGE_S",
    "cache_entries",
    "default_holder",
    "entry_key",
    "evict",
    "release",
    "stage_in_cached",
]

log = logging.getLogger("aif_gateway.stage")

# When a lease that cannot be checked lapses, in seconds (see "Leases" in the module docstring).
DEFAULT_LEASE_MAX_AGE_S = 7 * 24 * 3600.0

_KEY_RE = re.compile(r"^[0-9a-f]{32}$")
_HOLDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+=-]{0,199}$")
_PID_HOLDER_RE = re.compile(r"^pid-(\d+)@(.+)$")

# fcntl locks belong to the process: a second lockf from this process always succeeds, and
# closing any descriptor of the file drops them. These keep this process's own users in line.
_GLOBAL_LOCK = threading.Lock()
_ENTRY_LOCKS_LOCK = threading.Lock()
_ENTRY_LOCKS_HELD: set[str] = set()

Stager = Callable[..., Awaitable[Any]]


# ---- keys, holders ----------------------------------------------------------------------


def default_holder(pid: int | None = None) -> str:
    """The ``pid-<pid>@<host>`` holder of this process (or of ``pid``): live while it exists."""
    return f"pid-{os.getpid() if pid is None else pid}@{socket.gethostname()}"


def _canonical_source(spec: str, options: StageOptions) -> str:
    """One source as a string that names the same data wherever it is written from."""
    return parse_source(spec).cache_identity(options)


def entry_key(specs: Sequence[str], entries: Sequence[Entry], options: StageOptions) -> str:
    """The key of the entry for ``specs``, listed as ``entries`` (what it covers: the module docstring)."""
    digest = hashlib.sha256()
    for source in sorted(_canonical_source(spec, options) for spec in specs):
        digest.update(json.dumps(["source", source]).encode() + b"\n")
    # The fingerprint covers what is copied (paths, sizes, ETags/mtimes). The URLs say from where
    # and a manifest's checksums what the copy was verified against; a manifest can change
    # either without changing any destination path.
    for e in sorted(entries, key=lambda e: e.rel_path):
        digest.update(json.dumps(["file", e.rel_path, e.url, e.checksum]).encode() + b"\n")
    digest.update(json.dumps(["fingerprint", fingerprint(entries)]).encode())
    return digest.hexdigest()[:32]


def _check_holder(holder: str) -> None:
    if not _HOLDER_RE.match(holder):
        raise StageError(
            "usage",
            f"bad lease holder {holder!r}: use letters, digits and . _ @ : + = - (a Slurm job id, or pid-<pid>@<host>)",
        )


# ---- locks ----------------------------------------------------------------------------------


@contextmanager
def _cache_lock(cache_dir: Path) -> Iterator[None]:
    """The cache-wide lock: every lease taken, every eviction decided, every meta.json written."""
    with _GLOBAL_LOCK:
        fd = os.open(cache_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock


def _try_entry_lock(path: Path) -> int | None:
    name = str(path)
    with _ENTRY_LOCKS_LOCK:
        if name in _ENTRY_LOCKS_HELD:
            return None  # opening and closing the file here would drop our own lock
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return None
            raise
        _ENTRY_LOCKS_HELD.add(name)
        return fd


def _release_entry_lock(path: Path, fd: int) -> None:
    with _ENTRY_LOCKS_LOCK:
        os.close(fd)
        _ENTRY_LOCKS_HELD.discard(str(path))


def _entry_busy(path: Path) -> bool:
    """Whether some process is staging into the entry whose lock file is ``path``."""
    with _ENTRY_LOCKS_LOCK:
        if str(path) in _ENTRY_LOCKS_HELD:
            return True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return True
            raise
        finally:
            os.close(fd)
        return False


async def _acquire_entry_lock(path: Path) -> int:
    # Polled rather than a blocking lockf in a thread: a cancelled wait then leaves no thread
    # behind that would take the lock later and never give it back.
    delay = 0.02
    while True:
        fd = await asyncio.to_thread(_try_entry_lock, path)
        if fd is not None:
            return fd
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


# ---- meta.json, sizes -----------------------------------------------------------------------


def _read_meta(entry: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _write_meta(entry: Path, meta: dict[str, Any]) -> None:
    tmp = entry / f".meta.json.{os.getpid()}.{secrets.token_hex(4)}"
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, entry / "meta.json")


def _du(top: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _entry_size(entry: Path, meta: dict[str, Any] | None) -> int:
    """Bytes an entry counts against the cap: its meta.json size (the planned size while it is
    being staged, the staged size once complete), else what is on disk."""
    if meta is not None and isinstance(meta.get("size"), int):
        return meta["size"]
    return _du(entry)


def _last_used(entry: Path, meta: dict[str, Any] | None) -> float:
    if meta is not None and isinstance(meta.get("last_used"), (int, float)):
        return float(meta["last_used"])
    try:
        return entry.stat().st_mtime
    except OSError:
        return 0.0


def _touch_last_used(cache_dir: Path, entry: Path, **updates: Any) -> None:
    with _cache_lock(cache_dir):
        meta = _read_meta(entry) or {"key": entry.name}
        meta.update(updates)
        meta["last_used"] = time.time()
        _write_meta(entry, meta)


def _entry_dirs(cache_dir: Path) -> list[Path]:
    try:
        names = os.listdir(cache_dir)
    except FileNotFoundError:
        return []
    return [cache_dir / n for n in sorted(names) if _KEY_RE.match(n) and (cache_dir / n).is_dir()]


# ---- leases ---------------------------------------------------------------------------------


def _pid_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lease_live(path: Path, now: float, max_age: float) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    match = _PID_HOLDER_RE.match(path.name)
    if match and match.group(2) == socket.gethostname():
        pid = int(match.group(1))
        if not _pid_alive(pid):
            return False
        try:
            recorded = json.loads(path.read_text()).get("pid_start")
        except (OSError, ValueError, AttributeError):
            recorded = None
        return recorded is None or recorded == _pid_start_time(pid)
    return now - st.st_mtime < max_age


def _leases(entry: Path, now: float, max_age: float) -> list[dict[str, Any]]:
    try:
        names = sorted(os.listdir(entry / "leases"))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.startswith("."):
            continue  # a lease being written (or left half-written by a crash)
        path = entry / "leases" / name
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        out.append({"holder": name, "live": _lease_live(path, now, max_age), "age_s": round(age, 1)})
    return out


def _has_live_lease(entry: Path, now: float, max_age: float) -> bool:
    return any(lease["live"] for lease in _leases(entry, now, max_age))


def _take_lease(cache_dir: Path, key: str, holder: str) -> bool:
    """Create the entry if needed and pin it for ``holder``; True when the lease is new."""
    entry = cache_dir / key
    with _cache_lock(cache_dir):
        (entry / "leases").mkdir(parents=True, exist_ok=True)
        path = entry / "leases" / holder
        existed = path.exists()
        record: dict[str, Any] = {"holder": holder, "taken_at": time.time()}
        match = _PID_HOLDER_RE.match(holder)
        if match and match.group(2) == socket.gethostname():
            record["pid_start"] = _pid_start_time(int(match.group(1)))
        tmp = path.with_name(f".{holder}.{secrets.token_hex(4)}")
        tmp.write_text(json.dumps(record) + "\n")
        os.replace(tmp, path)  # a re-taken lease starts its max age again
        return not existed


def _drop_lease(entry: Path, holder: str) -> bool:
    try:
        (entry / "leases" / holder).unlink()
    except FileNotFoundError:
        return False
    return True


def release(cache_dir: Path, holder: str) -> int:
    """Drop ``holder``'s leases on every entry; the entries it used count as used just now.
    Returns how many leases it dropped."""
    _check_holder(holder)
    cache_dir = Path(cache_dir)
    released = 0
    for entry in _entry_dirs(cache_dir):
        if (entry / "leases" / holder).exists():
            # Last use is the end of the job, not its start: LRU should see it that way.
            _touch_last_used(cache_dir, entry)
            released += _drop_lease(entry, holder)
    return released


# ---- eviction -------------------------------------------------------------------------------


def _remove_trash(cache_dir: Path) -> None:
    try:
        names = os.listdir(cache_dir)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(".evicted-"):
            shutil.rmtree(cache_dir / name, ignore_errors=True)


def _evict_locked(
    cache_dir: Path, need_bytes: int, cache_size: int, *, keep: str | None, max_age: float
) -> tuple[list[str], int, int]:
    """Under the cache lock: evict LRU entries without live leases until ``need_bytes`` fit.

    Returns (keys evicted, bytes used by the remaining entries other than ``keep``, bytes of
    those that are pinned by live leases or a stage-in in progress).
    """
    now = time.time()
    candidates = []
    used = pinned = 0
    for entry in _entry_dirs(cache_dir):
        if entry.name == keep:
            continue
        meta = _read_meta(entry)
        size = _entry_size(entry, meta)
        used += size
        # An entry being staged is in use even when its holder's lease has lapsed (a pid
        # holder named by the caller that is already gone).
        if _has_live_lease(entry, now, max_age) or _entry_busy(entry / ".lock"):
            pinned += size
        else:
            candidates.append((_last_used(entry, meta), entry.name, size))
    evicted = []
    for _last, key, size in sorted(candidates):
        if used + need_bytes <= cache_size:
            break
        # Renamed away now, deleted after the lock is dropped: deleting a large tree can take
        # minutes on a parallel filesystem, and every other stage-in waits on this lock.
        try:
            os.rename(cache_dir / key, cache_dir / f".evicted-{key}-{secrets.token_hex(4)}")
        except OSError as exc:
            log.warning("cannot evict a cache entry", extra={"entry": str(cache_dir / key), "error": exc.strerror})
            continue
        evicted.append(key)
        used -= size
    return evicted, used, pinned


def evict(
    cache_dir: Path, need_bytes: int, cache_size: int, *, lease_max_age: float = DEFAULT_LEASE_MAX_AGE_S
) -> list[str]:
    """Make room for ``need_bytes`` more under ``cache_size``, evicting least recently used,
    unleased entries as far as they allow; returns the keys evicted."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    with _cache_lock(cache_dir):
        evicted, _used, _pinned = _evict_locked(cache_dir, need_bytes, cache_size, keep=None, max_age=lease_max_age)
    _remove_trash(cache_dir)
    return evicted


def _reserve(
    cache_dir: Path, key: str, need_bytes: int, cache_size: int | None, meta: dict[str, Any], max_age: float
) -> list[str]:
    """Evict for a new entry and record its planned size, in one locked step, so that two
    stage-ins of different datasets each count the other's bytes."""
    entry = cache_dir / key
    with _cache_lock(cache_dir):
        evicted: list[str] = []
        if cache_size is not None:
            evicted, used, pinned = _evict_locked(cache_dir, need_bytes, cache_size, keep=key, max_age=max_age)
            if used + need_bytes > cache_size:
                raise StageError(
                    "no_space",
                    f"cache {cache_dir} has no room for {format_size(need_bytes)} ({need_bytes} bytes): "
                    f"{format_size(used)} of its {format_size(cache_size)} cap are held by other entries, "
                    f"{format_size(pinned)} of them leased by jobs or being staged; wait for those jobs, "
                    "release stale leases (aif-gateway stage release) or raise --cache-size",
                    str(cache_dir),
                )
        previous = _read_meta(entry) or {}
        meta = {**meta, "created": previous.get("created", time.time()), "last_used": time.time(), "complete": False}
        _write_meta(entry, meta)
    _remove_trash(cache_dir)
    return evicted


# ---- listing ---------------------------------------------------------------------------------


def cache_entries(cache_dir: Path, *, lease_max_age: float = DEFAULT_LEASE_MAX_AGE_S) -> list[dict[str, Any]]:
    """Every entry, least recently used first (the order eviction takes them in), with its size,
    completeness and leases."""
    cache_dir = Path(cache_dir)
    now = time.time()
    out = []
    for entry in _entry_dirs(cache_dir):
        meta = _read_meta(entry) or {}
        status = stage_status(entry / "data")
        out.append(
            {
                "key": entry.name,
                "path": str(entry / "data"),
                "sources": meta.get("sources", []),
                "size": _entry_size(entry, meta or None),
                "files": meta.get("files"),
                "created": meta.get("created"),
                "last_used": _last_used(entry, meta or None),
                "complete": status is not None and status.get("fingerprint") == meta.get("fingerprint"),
                "leases": _leases(entry, now, lease_max_age),
            }
        )
    out.sort(key=lambda e: (e["last_used"], e["key"]))
    return out


# ---- stage-in ---------------------------------------------------------------------------------


def _link_atomically(link: Path, target: Path) -> None:
    """Point ``link`` at ``target``, replacing an older link without a moment of absence."""
    if link.is_dir() and not link.is_symlink():
        raise StageError("usage", f"{link} is a directory; --link-to needs a path that is free or a symlink", str(link))
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{secrets.token_hex(4)}")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _is_complete(data: Path, fp: str) -> dict[str, Any] | None:
    status = stage_status(data)
    return status if status is not None and status.get("fingerprint") == fp else None


async def stage_in_cached(
    specs: Sequence[str],
    cache_dir: Path,
    options: StageOptions,
    *,
    holder: str,
    cache_size: int | None,
    link_to: Path | None,
    stager: Stager = stage_in,
    lease_max_age: float = DEFAULT_LEASE_MAX_AGE_S,
) -> Report:
    """Stage ``specs`` into their cache entry (or reuse it) and pin it for ``holder``.

    ``report.cache`` is ``{"hit", "key", "path", "evicted"}`` and ``path`` is the entry's data
    dir.
    """
    _check_holder(holder)
    cache_dir = Path(os.path.abspath(cache_dir))  # noqa: ASYNC240 (no I/O) the paths it hands out outlive the cwd
    specs = list(specs)
    started = time.monotonic()
    entries = await alist_sources(specs, options)
    fp = fingerprint(entries)
    key = entry_key(specs, entries, options)
    size = sum(e.size for e in entries)
    if cache_size is not None and size > cache_size:
        raise StageError(
            "no_space",
            f"{' '.join(specs)} is {format_size(size)} ({size} bytes), more than the whole cache "
            f"{cache_dir} may hold ({format_size(cache_size)}, --cache-size); raise --cache-size or "
            "stage without --cache",
            str(cache_dir),
        )
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise from_os_error(exc, str(cache_dir), "creating the cache directory", source=False) from None
    entry = cache_dir / key
    data = entry / "data"
    new_lease = await asyncio.to_thread(_take_lease, cache_dir, key, holder)
    try:
        report = await _fill_entry(
            specs, cache_dir, key, options, entries, fp, size, cache_size, stager, lease_max_age, started
        )
    except BaseException as exc:
        # A lease this call took would otherwise pin a failed entry until max age (a job id)
        # or until this process exits (a pid holder in a long-lived library user).
        if new_lease:
            _drop_lease(entry, holder)
        if isinstance(exc, StageError) and exc.report is not None:
            exc.report.cache = {"hit": False, "key": key, "path": str(data), "evicted": []}
        raise
    if link_to is not None:
        await asyncio.to_thread(_link_atomically, Path(link_to), data)
    return report


async def _fill_entry(
    specs: list[str],
    cache_dir: Path,
    key: str,
    options: StageOptions,
    entries: list[Entry],
    fp: str,
    size: int,
    cache_size: int | None,
    stager: Stager,
    lease_max_age: float,
    started: float,
) -> Report:
    """Under the entry lock: the entry as it is when complete, else staged now."""
    entry = cache_dir / key
    data = entry / "data"
    lock_fd = await _acquire_entry_lock(entry / ".lock")
    try:
        status = await asyncio.to_thread(_is_complete, data, fp)
        if status is not None:
            await asyncio.to_thread(_touch_last_used, cache_dir, entry)
            report = Report(
                "in",
                specs,
                str(data),
                ok=True,
                path=str(data),
                skipped_files=int(status.get("files", 0)),
                skipped_bytes=int(status.get("bytes", 0)),
            )
            report.finish(started)
            report.cache = {"hit": True, "key": key, "path": str(data), "evicted": []}
            return report
        meta = {
            "key": key,
            "sources": specs,
            "canonical_sources": sorted(_canonical_source(s, options) for s in specs),
            "fingerprint": fp,
            "size": size,
            "files": len(entries),
        }
        evicted = await asyncio.to_thread(_reserve, cache_dir, key, size, cache_size, meta, lease_max_age)
        report = await stager(specs, data, options, entries=entries)
        await asyncio.to_thread(_touch_last_used, cache_dir, entry, complete=True)
        report.path = str(data)
        report.cache = {"hit": False, "key": key, "path": str(data), "evicted": evicted}
        return report
    finally:
        await asyncio.to_thread(_release_entry_lock, entry / ".lock", lock_fd)
