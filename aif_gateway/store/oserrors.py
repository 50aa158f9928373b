"""Filesystem failures as S3 errors, in one place, and blocking work off the event loop.

Every blocking call of the storage layer goes through ``in_thread`` (or through ``as_caller``,
the same without the errno translation).
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ..errors import S3Error
from ..fsio.creds import acting_as
from .base import CALLER

__all__ = ["as_caller", "in_thread", "s3_errors"]

T = TypeVar("T")

_NOT_PERMITTED = "Access Denied: the gateway may not access this path on the filesystem."

# errno -> (S3 code, message)
ERRNO_ERRORS: dict[int, tuple[str, str]] = {
    errno.EACCES: ("AccessDenied", _NOT_PERMITTED),
    errno.EPERM: ("AccessDenied", _NOT_PERMITTED),
    errno.EROFS: ("AccessDenied", "Access Denied: this part of the filesystem is read-only."),
    # Opened with O_NOFOLLOW where only the gateway's own files may be: someone put a link there.
    errno.ELOOP: ("AccessDenied", "Access Denied: a symbolic link stands where a file was expected."),
    errno.ENAMETOOLONG: ("KeyTooLongError", "The key is too long for the underlying filesystem."),
    errno.ENOSPC: ("InternalError", "The storage filesystem is full."),
    errno.EDQUOT: ("InternalError", "The storage quota of the gateway is exhausted."),
}


@contextmanager
def s3_errors() -> Iterator[None]:
    """Turn an ``OSError`` whose errno S3 has a word for (EACCES -> AccessDenied, ENOSPC ->
    InternalError "full"...) into that ``S3Error``; any other ``OSError`` passes through unchanged
    (a client's ``ConnectionResetError`` stays what it is)."""
    try:
        yield
    except OSError as exc:
        mapped = ERRNO_ERRORS.get(exc.errno or 0)
        if mapped is None:
            raise
        raise S3Error(*mapped) from exc


async def in_thread(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run blocking filesystem work off the event loop as the caller, translating errno into S3 errors:
    ``fn`` in a worker thread holding the caller's POSIX ids (``base.CALLER``), under ``s3_errors()``."""
    with s3_errors():
        return await as_caller(fn, *args, **kwargs)


async def as_caller(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """``fn`` in a worker thread that holds the request's POSIX ids while it runs."""
    ids = CALLER.get()

    def run() -> T:
        with acting_as(ids):
            return fn(*args, **kwargs)

    return await asyncio.to_thread(run)
