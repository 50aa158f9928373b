"""One checkpoint file on its way out: bytes arrive in order, stripes leave in parallel.

The serialiser hands ``write`` the file's bytes in order: small pieces (headers of each tensor's
record) are copied into a buffer, large ones (the tensors' own memory) are kept as views, so a
tensor's bytes are never copied in user space. Every ``part_size`` bytes form a stripe that a
target's thread writes (a file region, or one UploadPart) while the serialiser goes on; at most
``max_inflight`` stripes of one file wait or run at a time, which bounds the memory held by
copied pieces and keeps every tensor alive only as long as its bytes are in flight. Each kind of
target subclasses ``FileWriter`` with how a stripe is sent, how the file is published and how it
is discarded.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["FileWriter", "Piece", "as_bytes_view"]

Piece = memoryview | bytes | bytearray


def as_bytes_view(data: Any) -> memoryview:
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class FileWriter(ABC):
    def __init__(self, pool: ThreadPoolExecutor, part_size: int, max_inflight: int = 16) -> None:
        self._pool = pool
        self.part_size = part_size
        self._pieces: list[Piece] = []
        self._tail = bytearray()
        self._length = 0  # bytes of the stripe being filled
        self._offset = 0  # where that stripe starts in the file
        self._sizes: list[int] = []
        self._futures: list[Future[Any]] = []
        self._slots = threading.BoundedSemaphore(max_inflight)
        self._done = False

    # -- the serialiser's side ---------------------------------------------------------------
    def write(self, data: Any, keep: bool = False) -> None:
        """Append ``data``. ``keep``: its memory stays valid and unchanged until ``commit``
        returns (a tensor's storage), so it is sent from where it is; else it is copied."""
        view = as_bytes_view(data)
        while len(view):
            if self._length == self.part_size:
                self._flush(last=False)
            room = self.part_size - self._length
            chunk, view = view[:room], view[room:]
            if keep:
                self._seal_tail()
                self._pieces.append(chunk)
            else:
                self._tail += chunk
            self._length += len(chunk)

    @property
    def position(self) -> int:
        return self._offset + self._length

    def commit(self, digest: bytes | None = None) -> int:
        """Wait for every stripe and publish the file; returns its size. ``digest``: one the
        caller computed over the content (a target may name the object's version by it). On an
        error the file is discarded (nothing of it becomes visible) and the error raised."""
        try:
            self._seal_tail()
            if not self._sizes:
                # The whole file fits in one stripe: one call does all of it (a single PUT).
                pieces, self._pieces = self._pieces, []
                size = self._length
                self._publish([size], [], pieces, digest)
            else:
                self._flush(last=True)
                results = [f.result() for f in self._futures]
                size = self._offset
                self._publish(self._sizes, results, [], digest)
            self._done = True
            return size
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        for f in self._futures:
            f.cancel()
        for f in self._futures:
            if not f.cancelled():
                try:
                    f.result()
                except BaseException:
                    pass
        self._pieces, self._tail = [], bytearray()
        self._discard()

    # -- stripes -----------------------------------------------------------------------------
    def _seal_tail(self) -> None:
        if self._tail:
            self._pieces.append(self._tail)
            self._tail = bytearray()  # a new buffer: the sealed one is read by a thread

    def _flush(self, last: bool) -> None:
        self._seal_tail()
        for f in self._futures:  # fail fast: a stripe that failed ends the file now
            if f.done() and f.exception() is not None:
                error = f.exception()
                self.abort()
                raise error  # type: ignore[misc]
        part, offset, pieces = len(self._sizes), self._offset, self._pieces
        self._sizes.append(self._length)
        self._offset += self._length
        self._pieces, self._length = [], 0
        self._slots.acquire()

        def run() -> Any:
            try:
                return self._send(part, offset, pieces, last)
            finally:
                self._slots.release()

        self._futures.append(self._pool.submit(run))

    @abstractmethod
    def _send(self, part: int, offset: int, pieces: list[Piece], last: bool) -> Any:
        """Write stripe ``part`` (its bytes at ``offset``); called from a pool thread."""

    @abstractmethod
    def _publish(self, part_sizes: list[int], results: list[Any], single: list[Piece], digest: bytes | None) -> None:
        """Make the file visible. ``single``: the whole file's pieces when no stripe was sent."""

    @abstractmethod
    def _discard(self) -> None:
        """Remove whatever was written."""
