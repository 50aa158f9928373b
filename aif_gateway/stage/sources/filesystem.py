"""Sources on a filesystem: a file or a directory tree (``FilesystemPath``), and how fast the
filesystem under a path is.

Symlinks inside a tree are copied as files when they point at a file inside the tree; others
(directories, targets outside the tree) are skipped and counted in a warning.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ..errors import StageError, from_os_error
from ..options import StageOptions
from .entry import Entry, join_rel
from .source import ListedSource

__all__ = ["LOCAL_KINDS", "FilesystemPath", "on_local_fs", "walk_tree"]

log = logging.getLogger("aif_gateway.stage")

_MAX_WALK_THREADS = 16


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
                    item_rel = join_rel(rel, item.name)
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
        pending: set[Future[Any]] = {pool.submit(scan, root, "")}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                found, subdirs, skipped = future.result()
                files.extend(found)
                skipped_links += skipped
                pending.update(pool.submit(scan, path, rel) for path, rel in subdirs)
    if skipped_links:
        log.warning(
            "symlinks skipped (directories, or targets outside the source tree)",
            extra={"source": root, "count": skipped_links},
        )
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
    return [
        Entry(prefix + rel, s.st_size, s.st_mtime_ns, None, None, p)
        for rel, p, s in walk_tree(path, 1 if on_local_fs(path) else jobs)
    ]


@dataclass(frozen=True)
class FilesystemPath(ListedSource):
    """A file (staged as ``DEST/NAME``) or a directory (merged into the destination)."""

    path: str  # as given: ``~`` and relative paths are resolved when it is listed

    names_from_readdir = True

    def __str__(self) -> str:
        return self.path

    def normal(self) -> str:
        return os.path.abspath(os.path.expanduser(self.path))

    def local_path(self) -> str | None:
        return os.path.expanduser(self.path)

    def cache_identity(self, options: StageOptions) -> str:
        return f"path {os.path.realpath(self.path)}"

    async def list_entries(self, dest_rel: str | None, options: StageOptions, s3: Any = None) -> list[Entry]:
        return await asyncio.to_thread(_list_path, self.path, dest_rel, options.jobs)
