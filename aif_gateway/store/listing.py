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

``page_uploads`` applies the same prefix / delimiter / marker rules to multipart uploads.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import S3Error
from .base import ListPage, ObjectInfo, UploadInfo, UploadsPage
from .paths import INTERNAL_DIR, check_inside

# Supplied by the store: the object at ``path`` (a file, or a directory when ``key`` ends in
# "/"), or None when it is not an object (a plain directory; a file that vanished meanwhile).
InfoFor = Callable[[Path, str, os.stat_result], ObjectInfo | None]

_FILE, _SYMLINK, _DIR = "file", "symlink", "dir"


@dataclass(frozen=True)
class _Child:
    sort_name: str  # name, or name + "/" for a directory
    name: str
    kind: str


@dataclass
class _Frame:
    path: Path
    base: str  # the key prefix of everything below this directory: "" or "a/b/"
    children: Iterator[_Child]


@dataclass(frozen=True)
class _Candidate:
    """A key the walk found in range; whether it is really an object is decided lazily."""

    key: str
    path: Path
    kind: str


def _is_utf8(name: str) -> bool:
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # surrogate-escaped bytes from a non-UTF-8 name
        return False
    return True


def _sorted_children(path: Path, *, top: bool) -> Iterator[_Child]:
    """The entries of one directory in key order. Reads names and d_type only, no stat."""
    children = []
    try:
        with os.scandir(path) as it:
            for entry in it:
                name = entry.name
                if (top and name == INTERNAL_DIR) or not _is_utf8(name):
                    continue
                try:
                    if entry.is_symlink():
                        children.append(_Child(name, name, _SYMLINK))
                    elif entry.is_dir(follow_symlinks=False):
                        children.append(_Child(name + "/", name, _DIR))
                    elif entry.is_file(follow_symlinks=False):
                        children.append(_Child(name, name, _FILE))
                    # FIFOs, sockets and devices are not objects.
                except OSError:
                    continue  # vanished between readdir and the type check
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return iter(())  # removed or unreadable since its parent was read: nothing below it
    children.sort(key=lambda child: child.sort_name)
    return iter(children)


class _KeyWalker:
    """Yields candidate keys > ``after`` starting with ``prefix``, in order, lazily.

    The consumer calls :meth:`skip` with a common prefix it has just returned; the walk then
    abandons every directory and entry under it without reading further.
    """

    def __init__(self, bucket_dir: Path, prefix: str, start_after: str) -> None:
        self._bucket_dir = bucket_dir
        self._real_bucket = os.path.realpath(bucket_dir)
        self._prefix = prefix
        self._after = start_after
        self._skip_prefix = ""

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
            path, base = path / part, f"{base}{part}/"
        if base:
            try:
                if not os.path.isdir(path) or os.path.islink(path):
                    return None
            except OSError:
                return None
            # A symlinked ancestor would lead outside the tree the walk may follow.
            if os.path.realpath(path) != os.path.join(self._real_bucket, base.rstrip("/")):
                return None
        return _Frame(path, base, _sorted_children(path, top=not base))

    def __iter__(self) -> Iterator[_Candidate]:
        first = self._first_frame()
        if first is None:
            return
        if first.base and self._wants_key(first.base):  # the prefix names a directory marker
            yield _Candidate(first.base, first.path, _DIR)
        stack = [first]
        while stack:
            frame = stack[-1]
            if self._skipped(frame.base):
                stack.pop()
                continue
            child = next(frame.children, None)
            if child is None:
                stack.pop()
                continue
            path = frame.path / child.name
            if child.kind != _DIR:
                key = frame.base + child.name
                if self._wants_key(key):
                    yield _Candidate(key, path, child.kind)
                continue
            base = frame.base + child.sort_name
            if not self._wants_subtree(base):
                continue
            if self._wants_key(base):
                yield _Candidate(base, path, _DIR)  # a directory marker, if it carries one
                if not self._wants_subtree(base):  # the consumer skipped it meanwhile
                    continue
            stack.append(_Frame(path, base, _sorted_children(path, top=False)))

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
    """Decides whether a candidate is an object, stat-ing as little as possible."""

    def __init__(self, walker: _KeyWalker, info_for: InfoFor) -> None:
        self._walker = walker
        self._info_for = info_for

    def exists(self, cand: _Candidate) -> bool:
        if cand.kind == _FILE:
            return True  # a regular file is an object; no stat needed to know that
        return self.info(cand) is not None

    def info(self, cand: _Candidate) -> ObjectInfo | None:
        try:
            if cand.kind == _SYMLINK:
                st = self._walker.followable_stat(cand.path)
                if st is None:
                    return None
            else:
                st = os.stat(cand.path, follow_symlinks=False)
            return self._info_for(cand.path, cand.key, st)
        except FileNotFoundError:
            return None  # deleted while we listed: simply not there any more


def list_objects(
    bucket_dir: Path,
    *,
    prefix: str = "",
    delimiter: str = "",
    start_after: str = "",
    max_keys: int = 1000,
    info_for: InfoFor,
) -> ListPage:
    """One page of ListObjects. Blocking: call it in a thread.

    Keys and common prefixes returned are all > ``start_after``; a common prefix counts once
    toward ``max_keys``; ``next_marker`` is the last key or common prefix returned.
    """
    if max_keys <= 0:
        return ListPage(objects=[], common_prefixes=[], is_truncated=False, next_marker=None)
    walker = _KeyWalker(bucket_dir, prefix, start_after)
    resolver = _Resolver(walker, info_for)
    objects: list[ObjectInfo] = []
    prefixes: list[str] = []
    last: str | None = None
    for cand in walker:
        common = _common_prefix(cand.key, prefix, delimiter)
        if common is not None:
            if not resolver.exists(cand):
                continue
            walker.skip(common)
            if common <= start_after:
                continue  # returned on an earlier page, whose marker lies inside it
            if len(objects) + len(prefixes) == max_keys:
                return ListPage(objects, prefixes, is_truncated=True, next_marker=last)
            prefixes.append(common)
            last = common
            continue
        if len(objects) + len(prefixes) == max_keys:
            if resolver.exists(cand):
                return ListPage(objects, prefixes, is_truncated=True, next_marker=last)
            continue
        info = resolver.info(cand)
        if info is not None:
            objects.append(info)
            last = cand.key
    return ListPage(objects, prefixes, is_truncated=False, next_marker=last)


def page_uploads(
    uploads: list[UploadInfo],
    prefix: str,
    delimiter: str,
    key_marker: str,
    upload_id_marker: str,
    max_uploads: int,
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
