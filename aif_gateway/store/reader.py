"""An open object: a file descriptor plus the metadata read through it.

Public API: ``FileReader(fd, info)`` with ``info``, ``fileno()``, ``chunks(start, end,
chunk_size=1 MiB)`` (async iterator of bytes ``start``..``end`` inclusive, read with ``os.pread``
in a worker thread) and ``close()`` (async). It implements ``base.ObjectReader``.

Because the descriptor stays open, a GET that started before an overwrite or delete keeps
reading the version it opened (publish replaces the name, never the bytes of an open file).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from ..errors import S3Error
from .base import ObjectInfo

DEFAULT_CHUNK = 1 << 20


class FileReader:
    def __init__(self, fd: int, info: ObjectInfo) -> None:
        self._fd = fd
        self.info = info

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("reader is closed")
        return self._fd

    async def chunks(self, start: int, end: int, chunk_size: int = DEFAULT_CHUNK) -> AsyncIterator[bytes]:
        fd = self.fileno()
        position = start
        while position <= end:
            data = await asyncio.to_thread(os.pread, fd, min(chunk_size, end - position + 1), position)
            if not data:
                # Someone truncated the file in place. Raising (rather than ending quietly) lets the
                # protocol layer abort the response instead of sending a silently short body.
                raise S3Error("InternalError", "The object shrank while it was being read.")
            position += len(data)
            yield data

    async def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
