"""The pure-Python version of the listing's batch stat (``native/listing.c``), reached through
``fsio.engine.stat_entries``: ``lstat`` and one extended attribute of many files of one directory.

``stat_entries(directory, names, xattr) -> (modes, sizes, mtimes_ns, values)``: four
lists, one item per name: the lstat fields of ``directory/name``, or 0, 0, 0 when it (or the
directory) no longer exists (no file has mode 0); and for a regular file the value of
``xattr`` (None when ``xattr`` is None or the attribute is absent or unreadable: ENODATA,
EACCES, ENOTSUP, EPERM, ENOENT). Any other error raises ``OSError`` (for the directory, or the
first name that met it). Flat lists rather than a tuple per name: a page's worth of tuples
would be built only to be taken apart again.

The native version runs the whole batch without the GIL.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

__all__ = ["stat_entries"]

Columns = tuple[list[int], list[int], list[int], list[bytes | None]]

# Errors meaning "this file has no value to read": absent, unreadable, no user xattrs here.
_NO_VALUE = {errno.ENODATA, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.ENOENT}


def stat_entries(directory: str, names: Sequence[str], xattr: str | None) -> Columns:
    modes: list[int] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    values: list[bytes | None] = []
    try:
        # O_PATH: search permission is enough, as for a stat by path.
        dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        dir_fd = -1  # the directory went, and its files with it
    try:
        for name in names:
            st = _lstat(dir_fd, name)
            value = None
            if st is not None and xattr is not None and stat.S_ISREG(st.st_mode):
                try:
                    value = os.getxattr(f"{directory}/{name}", xattr, follow_symlinks=False)
                except OSError as exc:
                    if exc.errno not in _NO_VALUE:
                        raise
            modes.append(st.st_mode if st is not None else 0)
            sizes.append(st.st_size if st is not None else 0)
            mtimes.append(st.st_mtime_ns if st is not None else 0)
            values.append(value)
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)
    return modes, sizes, mtimes, values


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    if dir_fd < 0:
        return None
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
