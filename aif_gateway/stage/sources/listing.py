"""What a stage copies: the source specs resolved to a flat, sorted list of files.

Public API
- ``Entry(rel_path, size, mtime_ns, etag, checksum, url)``: one file to stage. ``rel_path`` is
  where it lands under the destination; ``etag`` is the S3 ETag (None for filesystem files);
  ``checksum`` an expected digest from a manifest, ``(algorithm, hex)`` with algorithm one of
  ``XXH3_64``, ``SHA256``, ``MD5``; ``url`` is ``s3://bucket/key`` or an absolute path.
  ``source_id`` identifies the version of the source (ETag, else mtime).
- ``list_sources(specs, options) -> list[Entry]`` (callable from inside a running event loop too),
  ``alist_sources(specs, options)`` (its coroutine), ``fingerprint(entries) -> str``.
- ``walk_tree(root, jobs) -> list[(rel, path, stat)]``: the regular files under a directory.
- ``on_local_fs(path)``: on a filesystem of the local page cache (``LOCAL_KINDS``)?
- ``parse_manifest_line(line) -> ManifestLine | None``; ``safe_rel_path(rel, where) -> str``.

Specs: ``s3://bucket/prefix``, a filesystem path, or ``@FILE`` naming a manifest: one source per
line, ``SRC [DEST_REL] [xxh3=HEX|sha256=HEX|md5=HEX|etag=ETAG]``, ``#`` comments, shell quoting;
relative SRCs are relative to the manifest's directory. A directory or prefix is merged into
the destination (like ``rsync SRC/ DEST/``, under DEST_REL when given); a single file or object
lands as ``DEST/NAME`` (or DEST_REL). Two sources providing the same path are a usage error.
Symlinks inside a tree are copied as files when they point at a file inside the tree; others
(directories, targets outside the tree) are skipped and counted in a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shlex
import stat
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import NamedTuple

from ..errors import StageError, from_os_error
from ..options import StageOptions
from ..state.statedir import STATE_DIR

log = logging.getLogger("aif_gateway.stage")

_CHECKSUM_KEYS = {"xxh3": ("XXH3_64", 16), "sha256": ("SHA256", 64), "md5": ("MD5", 32)}
_MAX_WALK_THREADS = 16


class Entry(NamedTuple):
    # A tuple, not a frozen dataclass: made once per file of a tree, at a tenth of the cost.
    rel_path: str
    size: int
    mtime_ns: int
    etag: str | None
    checksum: tuple[str, str] | None
    url: str

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    @property
    def source_id(self) -> str:
        return f"etag:{self.etag}" if self.etag else f"mtime:{self.mtime_ns}"


@dataclass(frozen=True)
class ManifestLine:
    src: str
    dest_rel: str | None
    checksum: tuple[str, str] | None
    etag: str | None


def fingerprint(entries: list[Entry]) -> str:
    """sha256 over the sorted (rel_path, size, ETag or mtime): changes when any source file does."""
    # The bytes of json.dumps([rel_path, size, etag or mtime_ns]) + "\n" per entry (cache keys and
    # completion markers depend on them), formatted directly: a tenth of the cost per file.
    lines = [f"[{_quote(e.rel_path)}, {e.size:d}, {_quote(e.etag) if e.etag else format(e.mtime_ns, 'd')}]\n"
             for e in sorted(entries, key=lambda e: e.rel_path)]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def safe_rel_path(rel: str, where: str) -> str:
    """``rel`` when it is a plain relative path that stays under the destination."""
    parts = rel.split("/")
    if (not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts)
            or parts[0] == STATE_DIR or "\0" in rel):
        raise StageError("usage", f"cannot stage {where}: {rel!r} is not a safe relative path "
                         f"(empty, '.', '..' or '{STATE_DIR}' components)", where)
    return rel


def parse_manifest_line(line: str) -> ManifestLine | None:
    """One manifest line, or None for blanks and comments; ValueError for a malformed one."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        raise ValueError(f"cannot parse {line!r}: {exc}") from None
    if not words:
        return None
    src, rest = words[0], words[1:]
    dest_rel = checksum = etag = None
    for word in rest:
        key, eq, value = word.partition("=")
        if eq and key.lower() in _CHECKSUM_KEYS:
            algorithm, length = _CHECKSUM_KEYS[key.lower()]
            value = value.lower()
            if len(value) != length or any(c not in "0123456789abcdef" for c in value):
                raise ValueError(f"{key}= needs {length} hex digits, not {value!r}")
            checksum = (algorithm, value)
        elif eq and key.lower() == "etag":
            etag = value.strip('"')
        elif dest_rel is None:
            dest_rel = word.strip("/")
        else:
            raise ValueError(f"unexpected {word!r} (expected SRC [DEST_REL] [xxh3=HEX|sha256=HEX|md5=HEX|etag=ETAG])")
    return ManifestLine(src, dest_rel, checksum, etag)


def _read_manifest(spec: str) -> list[ManifestLine]:
    path = Path(spec[1:]).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise from_os_error(exc, str(path), "reading the manifest", source=True) from None
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        try:
            parsed = parse_manifest_line(raw)
        except ValueError as exc:
            raise StageError("usage", f"{path}:{number}: {exc}", str(path)) from None
        if parsed is None:
            continue
        if not parsed.src.startswith("s3://") and not os.path.isabs(parsed.src):
            parsed = ManifestLine(str(path.parent / parsed.src), parsed.dest_rel, parsed.checksum, parsed.etag)
        lines.append(parsed)
    if not lines:
        raise StageError("usage", f"manifest {path} names no sources", str(path))
    return lines


def _join(prefix: str | None, rel: str) -> str:
    return f"{prefix}/{rel}" if prefix else rel


# Filesystems whose data and metadata live in the local page cache (or RAM): work on them waits
# for CPUs, not for a network or a server, so threads beyond the cores only contend (for the
# cores, and for the GIL between system calls: listing 20,000 files on tmpfs takes 3x longer
# with 16 threads than with one).
LOCAL_KINDS = {"tmpfs", "ext4", "xfs", "btrfs", "zfs", "overlay"}


def on_local_fs(path: str) -> bool:
    """Whether ``path`` is on one of LOCAL_KINDS (False when that cannot be told)."""
    from ...fsio.fsinfo import kind_by_statfs

    try:
        return kind_by_statfs(path)[0] in LOCAL_KINDS
    except OSError:
        return False


def walk_tree(root: str, jobs: int) -> list[tuple[str, str, os.stat_result]]:
    """(rel, path, stat) of each regular file under directory ``root``, directories read in parallel."""
    real_root = os.path.realpath(root)
    files: list[tuple[str, str, os.stat_result]] = []
    skipped_links = 0

    def scan(directory: str, rel: str) -> tuple[list[tuple[str, str, os.stat_result]], list[tuple[str, str]], int]:
        found, subdirs, skipped = [], [], 0
        try:
            with os.scandir(directory) as it:
                for item in it:
                    item_rel = _join(rel, item.name)
                    if item.is_dir(follow_symlinks=False):
                        subdirs.append((item.path, item_rel))
                    elif item.is_file(follow_symlinks=False):
                        found.append((item_rel, item.path, item.stat(follow_symlinks=False)))
                    elif item.is_symlink():
                        target = os.path.realpath(item.path)
                        if target.startswith(real_root + os.sep) and os.path.isfile(target):
                            found.append((item_rel, item.path, os.stat(target)))
                        else:
                            skipped += 1
        except OSError as exc:
            raise from_os_error(exc, directory, "listing the source directory", source=True) from None
        return found, subdirs, skipped

    with ThreadPoolExecutor(max(1, min(jobs, _MAX_WALK_THREADS))) as pool:
        pending: set[Future] = {pool.submit(scan, root, "")}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                found, subdirs, skipped = future.result()
                files.extend(found)
                skipped_links += skipped
                pending.update(pool.submit(scan, path, rel) for path, rel in subdirs)
    if skipped_links:
        log.warning("symlinks skipped (directories, or targets outside the source tree)",
                    extra={"source": root, "count": skipped_links})
    return files


def _list_path(src: str, dest_rel: str | None, jobs: int) -> list[Entry]:
    path = os.path.abspath(os.path.expanduser(src))
    try:
        st = os.stat(path)
    except OSError as exc:
        raise from_os_error(exc, path, "looking up the source", source=True) from None
    if stat.S_ISREG(st.st_mode):
        rel = dest_rel or os.path.basename(path)
        return [Entry(rel, st.st_size, st.st_mtime_ns, None, None, path)]
    if not stat.S_ISDIR(st.st_mode):
        raise StageError("usage", f"source is neither a regular file nor a directory: {path}", path)
    prefix = f"{dest_rel}/" if dest_rel else ""
    return [Entry(prefix + rel, s.st_size, s.st_mtime_ns, None, None, p)
            for rel, p, s in walk_tree(path, 1 if on_local_fs(path) else jobs)]


async def _objects(client, fast, bucket: str, prefix: str, options: StageOptions, on_retry):
    """Each object under the prefix: by the fast reader's ListObjectsV2 pages in a worker thread
    (botocore's parsing of a page of 1,000 keys costs a tenth of a second), else by botocore."""
    from ...client import list_objects, with_retries_sync

    if fast is None:
        async for obj in list_objects(client, bucket, prefix, options.retries, on_retry):
            yield obj
        return
    import threading

    loop = asyncio.get_running_loop()
    token: str | None = None
    never = threading.Event()
    while True:
        page, token = await asyncio.to_thread(with_retries_sync, lambda t=token: fast.list_page(bucket, prefix, t),
                                              options.retries, lambda: loop.call_soon_threadsafe(on_retry), never)
        for obj in page:
            yield obj
        if token is None:
            return


async def _list_s3(client, fast, src: str, dest_rel: str | None, options: StageOptions, on_retry) -> list[Entry]:
    from ...client import S3Url, s3_errors, strip_etag
    from ..s3_failures import parse_s3_url, s3_error

    bucket, prefix = parse_s3_url(src)
    entries = []
    try:
        async for obj in _objects(client, fast, bucket, prefix, options, on_retry):
            key: str = obj["Key"]
            if key.endswith("/"):
                continue  # a directory marker
            if not prefix or prefix.endswith("/"):
                rel = _join(dest_rel, key[len(prefix):])
            elif key == prefix:
                rel = dest_rel or key.rsplit("/", 1)[-1]
            elif key.startswith(prefix + "/"):
                rel = _join(dest_rel, key[len(prefix) + 1:])
            else:
                continue  # "data2/x" under the prefix "data"
            mtime_ns = int(obj["LastModified"].timestamp() * 1_000_000_000)
            entries.append(Entry(rel, int(obj["Size"]), mtime_ns, strip_etag(obj.get("ETag")),
                                 None, str(S3Url(bucket, key))))
    except s3_errors() as exc:
        raise s3_error(exc, src, "listing the source") from None
    if not entries:
        raise StageError("source_missing", f"no objects at {src}: check the bucket and prefix", src)
    return entries


async def alist_sources(specs: list[str], options: StageOptions, on_retry=lambda: None) -> list[Entry]:
    lines: list[ManifestLine] = []
    for spec in specs:
        lines.extend(_read_manifest(spec) if spec.startswith("@") else [ManifestLine(spec, None, None, None)])
    if not lines:
        raise StageError("usage", "no sources given")
    s3_lines = [line for line in lines if line.src.startswith("s3://")]
    listed: dict[int, list[Entry]] = {}
    for index, line in enumerate(lines):
        if not line.src.startswith("s3://"):
            listed[index] = await asyncio.to_thread(_list_path, line.src, line.dest_rel, options.jobs)
    if s3_lines:
        # Imported here: a filesystem-only stage does not pay for importing aiobotocore.
        from ...client import SignedS3, open_client
        from ..s3_failures import client_setup

        async with contextlib.AsyncExitStack() as stack:
            client = None  # botocore's, only where the fast reader cannot do the work
            fast = SignedS3.from_environment(options, len(s3_lines))
            if fast is None:
                with client_setup():
                    client = await stack.enter_async_context(open_client(options, options.jobs))
                    fast = await SignedS3.create(client, options, len(s3_lines))
            if fast is not None:
                stack.callback(fast.close)
            results = await asyncio.gather(*(
                _list_s3(client, fast, line.src, line.dest_rel, options, on_retry)
                for line in lines if line.src.startswith("s3://")))
        s3_indexes = [i for i, line in enumerate(lines) if line.src.startswith("s3://")]
        listed.update(zip(s3_indexes, results))
    entries: dict[str, Entry] = {}
    for index, line in enumerate(lines):
        found = listed[index]
        if line.checksum or line.etag:
            found = [_expect(line, found)]
        walked = not line.src.startswith("s3://") and len(found) > 1
        if walked and line.dest_rel:
            safe_rel_path(line.dest_rel, line.src)
        for entry in found:
            # Below a walked directory every name came from readdir: only the first one can be
            # unsafe here (the stage's own state directory); S3 keys and manifest paths can be anything.
            if not walked or entry.rel_path.startswith(STATE_DIR):
                safe_rel_path(entry.rel_path, entry.url)
            if entry.rel_path in entries:
                raise StageError("usage", f"two sources provide {entry.rel_path}: {entries[entry.rel_path].url} "
                                 f"and {entry.url}; give one of them another DEST_REL in a manifest")
            entries[entry.rel_path] = entry
    return sorted(entries.values())  # by rel_path: the tuples' first, unique, item


def _expect(line: ManifestLine, found: list[Entry]) -> Entry:
    """The single file of a manifest line that carries a checksum or ETag, with it attached."""
    if len(found) != 1 or found[0].url.rstrip("/") != _normal(line.src):
        raise StageError("usage", f"a checksum or etag= in a manifest needs a single file or object, "
                         f"but {line.src} names {len(found)} files", line.src)
    entry = found[0]
    if line.etag is not None and entry.etag != line.etag:
        raise StageError("verify", f"{entry.url} changed: the manifest expects ETag {line.etag}, the "
                         f"source has {entry.etag}", entry.url)
    return Entry(entry.rel_path, entry.size, entry.mtime_ns, entry.etag, line.checksum or entry.checksum, entry.url)


def _normal(src: str) -> str:
    return src.rstrip("/") if src.startswith("s3://") else os.path.abspath(os.path.expanduser(src))


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
