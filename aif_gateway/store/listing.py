"""ListObjects over a directory tree, walked lazily in binary UTF-8 key order; upload paging.

A directory ``a`` holds keys ``a/...``, which sort after ``a.b`` and before ``a0``, so children
are sorted by ``name + "/"`` for directories and ``name`` for files. Python compares ``str`` by
code point, and UTF-8 preserves code-point order, so plain string comparison *is* binary UTF-8
order (names that are not valid UTF-8 cannot be keys and are skipped).

Every child of a directory sorts entirely before or entirely after each sibling, which lets the
walk prune without reading: a subtree whose keys all sort at or before ``start_after``, that
cannot match the prefix, or that falls inside a common prefix already returned is never opened.
Only the keys returned are ``stat``-ed and described (plus one lookahead entry to make
``is_truncated`` exact, and a marker check per directory entered whose ``dir/`` key is in
range), so a page of 1,000 keys costs about 1,000 stats whatever the size of the tree.

A regular file is an object without a stat, so the walk only collects the page's files; they
are described afterwards, a whole directory's worth at a time (``describe_files``: one call,
one thread, a native loop where there is one). Directory markers and symlinks are resolved one
by one while walking (``info_for``), since whether they are objects decides what comes next.
A file that vanishes between the walk and its description is left out of the page (which may
then hold fewer than ``max_keys`` entries; ``next_marker`` still moves past it).

``page_uploads`` applies the same prefix / delimiter / marker rules to multipart uploads.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from itertools import repeat
from pathlib import Path
from typing import Any

from ..errors import S3Error
from .base import ListPage, ObjectInfo, UploadInfo, UploadsPage
from .paths import INTERNAL_DIR, check_inside

__all__ = ["list_objects", "page_uploads"]

log = logging.getLogger(__name__)

# Supplied by the store: the object at ``path`` (a file, or a directory when ``key`` ends in
# "/"), or None when it is not an object (a plain directory; a file that vanished meanwhile).
InfoFor = Callable[[Path, str, os.stat_result], ObjectInfo | None]
# Supplied by the store: the objects for the regular files ``names`` of ``directory`` (keys
# ``keys``), in order; None for one that is no regular file any more.
DescribeFiles = Callable[[str, list[str], list[str]], list[ObjectInfo | None]]

_FILE, _SYMLINK, _DIR, _RUN = 0, 1, 2, 3

# A key the walk found in range, as (key, kind, directory, name); whether a marker or a
# symlink is really an object is decided lazily. Kind _RUN is several regular files of one
# directory in a row instead: (the directory's key prefix, _RUN, directory, [name, ...]).
_Candidate = tuple[str, int, str, Any]


class _Frame:
    """A directory being walked: its entries' sort names in key order (a name, or name + "/"
    for a directory: unique within a directory), the kind of each, and the next one's index."""

    __slots__ = ("path", "base", "kinds", "sort_names", "next")

    def __init__(self, path: str, base: str, kinds: dict[str, int]) -> None:
        self.path = path
        self.base = base  # the key prefix of everything below this directory: "" or "a/b/"
        self.kinds = kinds
        self.sort_names = sorted(kinds)
        self.next = 0


def _is_utf8(name: str) -> bool:
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # surrogate-escaped bytes from a non-UTF-8 name
        return False
    return True


def _read_kinds(path: str, *, top: bool, after: str = "") -> dict[str, int]:
    """The entries of one directory, sort name to kind. Reads names and d_type only, no stat.

    ``after`` (relative to this directory) drops the entries all of whose keys sort before it
    early, before they cost a dict entry and a place in the sort: a page resumes in the directory
    where the previous one ended, and reads it again in full.
    """
    kinds: dict[str, int] = {}
    try:
        with os.scandir(path) as it:
            for entry in it:
                name = entry.name
                # name < after and not a prefix of it: they differ at a character where name's is
                # smaller, so name, name + "/" and everything below sort before after.
                if after and name < after and not after.startswith(name):
                    continue
                if (top and name == INTERNAL_DIR) or not (name.isascii() or _is_utf8(name)):
                    continue
                try:
                    # Files first: most entries are, and d_type answers without a syscall.
                    if entry.is_file(follow_symlinks=False):
                        kinds[name] = _FILE
                    elif entry.is_dir(follow_symlinks=False):
                        kinds[name + "/"] = _DIR
                    elif entry.is_symlink():
                        kinds[name] = _SYMLINK
                    # FIFOs, sockets and devices are not objects.
                except OSError:
                    continue  # vanished between readdir and the type check
    except PermissionError:
        if top:  # the bucket itself: S3 says so rather than listing nothing
            raise S3Error("AccessDenied", "Access Denied: you may not read the bucket's directory.") from None
        _unreadable(path)
        return {}  # the caller may not read it: nothing below it is listed, as `find` skips it
    except (FileNotFoundError, NotADirectoryError):
        return {}  # removed since its parent was read: nothing below it
    return kinds


_logged_unreadable: set[str] = set()


def _unreadable(path: str) -> None:
    # Once per directory and process: a listing loop must not flood the log.
    if path not in _logged_unreadable and len(_logged_unreadable) < 10_000:
        _logged_unreadable.add(path)
        log.info("listing skips a directory the caller may not read", extra={"path": path})


def _some_file(path: str) -> str | None:
    """The name of some regular file directly in ``path`` (the first readdir offers), or None."""
    try:
        with os.scandir(path) as it:
            for entry in it:
                if entry.is_file(follow_symlinks=False) and _is_utf8(entry.name):
                    return entry.name
    except OSError:
        pass
    return None


class _KeyWalker:
    """Yields candidate keys > ``after`` starting with ``prefix``, in order, lazily.

    The consumer calls :meth:`skip` with a common prefix it has just returned; the walk then
    abandons every directory and entry under it without reading further.

    Without a delimiter every key counts alike, and the consumer keeps ``room`` at the number
    of keys it still takes (None: a delimiter, one candidate at a time). The walk then hands
    over consecutive regular files of a directory as one _RUN of at most ``room``, and once
    ``room`` is 0 (only whether one more key exists is asked) it offers, from a directory whose
    keys are all wanted, the first regular file readdir returns instead of reading and sorting
    the whole directory.
    """

    def __init__(self, bucket_dir: Path, prefix: str, start_after: str) -> None:
        self._bucket_dir = os.fspath(bucket_dir)
        self._real_bucket = os.path.realpath(bucket_dir)
        self._prefix = prefix
        self._after = start_after
        self._skip_prefix = ""
        self.room: int | None = None

    def skip(self, common_prefix: str) -> None:
        self._skip_prefix = common_prefix
        self._after = max(self._after, common_prefix)

    def _skipped(self, key: str) -> bool:
        return bool(self._skip_prefix) and key.startswith(self._skip_prefix)

    def _wants_key(self, key: str) -> bool:
        return key > self._after and key.startswith(self._prefix) and not self._skipped(key)

    def _wants_subtree(self, base: str) -> bool:
        """Whether any key starting with ``base`` (ends in "/") could be wanted."""
        if not (base.startswith(self._prefix) or self._prefix.startswith(base)):
            return False
        # Every key under base sorts before `after` unless `after` itself lies inside base.
        if base < self._after and not self._after.startswith(base):
            return False
        return not self._skipped(base)

    def _first_frame(self) -> _Frame | None:
        """Start at the deepest directory the prefix names, so siblings are never read."""
        path, base = self._bucket_dir, ""
        for part in self._prefix.split("/")[:-1]:
            if (not base and part == INTERNAL_DIR) or part in ("", ".", ".."):
                return None  # no key can live there
            path, base = f"{path}/{part}", f"{base}{part}/"
        if base:
            try:
                if not os.path.isdir(path) or os.path.islink(path):
                    return None
            except OSError:
                return None
            # A symlinked ancestor would lead outside the tree the walk may follow.
            if os.path.realpath(path) != os.path.join(self._real_bucket, base.rstrip("/")):
                return None
        return self._frame(path, base)

    def _frame(self, path: str, base: str) -> _Frame:
        after = self._after[len(base) :] if self._after.startswith(base) else ""
        return _Frame(path, base, _read_kinds(path, top=not base, after=after))

    def __iter__(self) -> Iterator[_Candidate]:
        first = self._first_frame()
        if first is None:
            return
        if first.base and self._wants_key(first.base):  # the prefix names a directory marker
            parent, name = os.path.split(first.path)
            yield first.base, _DIR, parent, name
        stack = [first]
        while stack:
            frame = stack[-1]
            if self._skip_prefix and frame.base.startswith(self._skip_prefix):
                stack.pop()
                continue
            if frame.next == len(frame.sort_names):
                stack.pop()
                continue
            sort_name = frame.sort_names[frame.next]
            frame.next += 1
            kind = frame.kinds[sort_name]
            if kind != _DIR:
                key = frame.base + sort_name
                # _wants_key, inlined: this line runs once per entry of every directory read.
                if (
                    key > self._after
                    and key.startswith(self._prefix)
                    and not (self._skip_prefix and key.startswith(self._skip_prefix))
                ):
                    if kind == _FILE and self.room:
                        yield frame.base, _RUN, frame.path, self._run(frame, sort_name, self.room)
                    else:
                        yield key, kind, frame.path, sort_name
                continue
            name = sort_name[:-1]
            base = frame.base + sort_name
            if not self._wants_subtree(base):
                continue
            if self._wants_key(base):
                yield base, _DIR, frame.path, name  # a directory marker, if it carries one
                if not self._wants_subtree(base):  # the consumer skipped it meanwhile
                    continue
            path = f"{frame.path}/{name}"
            if self.room == 0 and base > self._after and base.startswith(self._prefix):
                some = _some_file(path)
                if some is not None:
                    yield base + some, _FILE, path, some
            stack.append(self._frame(path, base))

    def _run(self, frame: _Frame, first: str, room: int) -> list[str]:
        """``first`` (a wanted regular file) and the regular files right after it in ``frame``,
        ``room`` at most: all > after, as they sort after ``first``, and all wanted while
        they keep the prefix (no delimiter: nothing is skipped)."""
        run = [first]
        names, kinds, at = frame.sort_names, frame.kinds, frame.next
        stop = min(len(names), at + room - 1)
        rest = self._prefix[len(frame.base) :]  # what the names must start with; often ""
        while at < stop and kinds[names[at]] == _FILE and names[at].startswith(rest):
            at += 1
        run.extend(names[frame.next : at])
        frame.next = at
        return run

    def followable_stat(self, path: Path) -> os.stat_result | None:
        """The target's stat for a symlink to a regular file inside the bucket, else None."""
        try:
            real = os.path.realpath(path)
            check_inside(self._real_bucket, real)
            st = os.stat(real)
        except (OSError, S3Error):
            return None
        return st if stat.S_ISREG(st.st_mode) else None


def _common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    idx = key.find(delimiter, len(prefix))
    return None if idx < 0 else key[: idx + len(delimiter)]


class _Resolver:
    """Decides whether a marker or symlink candidate is an object, stat-ing as little as possible."""

    def __init__(self, walker: _KeyWalker, info_for: InfoFor) -> None:
        self._walker = walker
        self._info_for = info_for

    def exists(self, cand: _Candidate) -> bool:
        if cand[1] == _FILE:
            return True  # a regular file is an object; no stat needed to know that
        return self.info(cand) is not None

    def info(self, cand: _Candidate) -> ObjectInfo | None:
        key, kind, directory, name = cand
        path = Path(directory, name)
        try:
            if kind == _SYMLINK:
                st = self._walker.followable_stat(path)
                if st is None:
                    return None
            else:
                st = os.stat(path, follow_symlinks=False)
            return self._info_for(path, key, st)
        except FileNotFoundError:
            return None  # deleted while we listed: simply not there any more


def describe_one_by_one(info_for: InfoFor) -> DescribeFiles:
    """``DescribeFiles`` from an ``InfoFor``: one stat and one call per file."""

    def describe(directory: str, names: list[str], keys: list[str]) -> list[ObjectInfo | None]:
        infos: list[ObjectInfo | None] = []
        for name, key in zip(names, keys):
            path = Path(directory, name)
            try:
                infos.append(info_for(path, key, os.stat(path, follow_symlinks=False)))
            except FileNotFoundError:
                infos.append(None)  # deleted while we listed
        return infos

    return describe


class _PendingFiles:
    """The page's regular files, in order, as runs of one directory each: (directory, names,
    keys). They are described a run at a time once the page is complete."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, list[str], list[str]]] = []

    def add(self, directory: str, names: list[str], keys: list[str]) -> None:
        if self.runs and self.runs[-1][0] == directory:
            self.runs[-1][1].extend(names)
            self.runs[-1][2].extend(keys)
        else:
            self.runs.append((directory, names, keys))

    def describe(self, describe_files: DescribeFiles) -> Iterator[ObjectInfo | None]:
        for directory, names, keys in self.runs:
            yield from describe_files(directory, names, keys)


def list_objects(
    bucket_dir: Path,
    *,
    prefix: str = "",
    delimiter: str = "",
    start_after: str = "",
    max_keys: int = 1000,
    info_for: InfoFor,
    describe_files: DescribeFiles | None = None,
) -> ListPage:
    """One page of ListObjects. Blocking: call it in a thread.

    Keys and common prefixes returned are all > ``start_after``; a common prefix counts once
    toward ``max_keys``; ``next_marker`` is the last key or common prefix returned.
    ``describe_files`` defaults to ``describe_one_by_one(info_for)``.
    """
    if max_keys <= 0:
        return ListPage(objects=[], common_prefixes=[], is_truncated=False, next_marker=None)
    walker = _KeyWalker(bucket_dir, prefix, start_after)
    resolver = _Resolver(walker, info_for)
    pending = _PendingFiles()
    entries: list[ObjectInfo | None] = []  # None: the next pending file
    prefixes: list[str] = []
    count = 0  # entries and prefixes
    last: str | None = None

    def page(truncated: bool) -> ListPage:
        described = pending.describe(describe_files or describe_one_by_one(info_for))
        objects = [entry if entry is not None else next(described) for entry in entries]
        return ListPage(
            [info for info in objects if info is not None], prefixes, is_truncated=truncated, next_marker=last
        )

    if not delimiter:
        walker.room = max_keys
    for cand in walker:
        key, kind = cand[0], cand[1]
        if kind == _RUN:  # regular files, as many as there is room for: all taken
            names = cand[3]
            keys = [key + name for name in names]
            pending.add(cand[2], names, keys)
            entries.extend(repeat(None, len(names)))
            count += len(names)
            last = keys[-1]
            walker.room = max_keys - count
            continue
        if delimiter:
            common = _common_prefix(key, prefix, delimiter)
            if common is not None:
                if not resolver.exists(cand):
                    continue
                walker.skip(common)
                if common <= start_after:
                    continue  # returned on an earlier page, whose marker lies inside it
                if count == max_keys:
                    return page(truncated=True)
                prefixes.append(common)
                count += 1
                last = common
                continue
        if count == max_keys:
            if resolver.exists(cand):
                return page(truncated=True)
            continue
        if kind == _FILE:
            pending.add(cand[2], [cand[3]], [key])
            entries.append(None)
        else:
            info = resolver.info(cand)
            if info is None:
                continue
            entries.append(info)
        count += 1
        last = key
        if not delimiter:
            walker.room = max_keys - count  # at 0 the walk only has to prove one more key exists
    return page(truncated=False)


def page_uploads(
    uploads: list[UploadInfo], prefix: str, delimiter: str, key_marker: str, upload_id_marker: str, max_uploads: int
) -> UploadsPage:
    """ListMultipartUploads paging: by key (binary order), then upload id (= initiation order).

    Without ``upload_id_marker`` only keys after ``key_marker`` count; with it, later uploads of
    ``key_marker`` itself count too. A common prefix counts once toward ``max_uploads``.
    """
    listed: list[UploadInfo] = []
    prefixes: list[str] = []
    next_marker: tuple[str | None, str | None] = (None, None)
    for upload in sorted(uploads, key=lambda u: (u.key, u.upload_id)):
        key = upload.key
        if not key.startswith(prefix) or key < key_marker:
            continue
        if key == key_marker and (not upload_id_marker or upload.upload_id <= upload_id_marker):
            continue
        common = _common_prefix(key, prefix, delimiter)
        if common is not None and (common <= key_marker or (prefixes and prefixes[-1] == common)):
            continue
        if len(listed) + len(prefixes) >= max_uploads:
            return UploadsPage(listed, prefixes, True, *next_marker)
        if common is not None:
            prefixes.append(common)
            next_marker = (common, None)
        else:
            listed.append(upload)
            next_marker = (key, upload.upload_id)
    return UploadsPage(listed, prefixes, False, *next_marker)
