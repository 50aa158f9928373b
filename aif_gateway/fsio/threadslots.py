"""A bounded set of worker threads for socket work that may wait on a slow client.

Sending a file to a socket (``zerocopy``) and receiving a body from one (``sockrecv``) each tie a
thread to a client for as long as that client is slow, so the bound is on concurrent slow
clients per worker process, not on CPUs. Each use has its own slots so that slow clients never
starve the default executor the storage layer runs filesystem calls in; when every slot is
taken the caller gets ``SlotsBusy`` at once and goes the ordinary way instead of queueing.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

__all__ = ["SlotsBusy", "ThreadSlots"]


class SlotsBusy(Exception):
    """Every thread is busy: nothing was started."""


class ThreadSlots:
    """``threads`` worker threads (their names start with ``name``), each taken by one ``run`` at a time."""

    def __init__(self, threads: int, name: str) -> None:
        self._free = threading.BoundedSemaphore(threads)
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=name)

    async def run(
        self, fn: Callable[..., int], fds: Sequence[int], on_cancel: Callable[[list[int]], None] | None = None
    ) -> int:
        """Call ``fn(*private_fds, cancelled)`` in a slot's thread; its result.

        ``private_fds`` are ``dup``s of ``fds`` closed when the thread is done (so a caller that
        is cancelled and closes its own descriptors cannot have their numbers reused under the
        thread). When the awaiting task is cancelled, ``cancelled`` (a ``threading.Event``) is set
        and ``on_cancel(private_fds)`` is called, for work that cannot poll the event (it may shut
        a socket down, for example). ``SlotsBusy`` when every thread is taken.
        """
        # Claimed on the loop, freed by the thread (or at once if the future never started).
        if not self._free.acquire(blocking=False):
            raise SlotsBusy("every thread is busy")
        own = _PrivateFds()
        try:
            own.fds.extend(os.dup(fd) for fd in fds)
            cancelled = threading.Event()
            future = self._executor.submit(fn, *own.fds, cancelled)
        except BaseException:
            own.close()
            self._free.release()
            raise

        def release(_: object) -> None:
            own.close()
            self._free.release()

        future.add_done_callback(release)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            cancelled.set()
            if on_cancel is not None:
                own.use(on_cancel)
            raise
        finally:
            cancelled.set()  # no-op when done

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait)

    def has_free_slot(self) -> bool:
        if self._free.acquire(blocking=False):
            self._free.release()
            return True
        return False


class _PrivateFds:
    """The dups a thread works on. ``use`` runs only while they are still open: the thread's
    end closes them, and a number closed there may already be another connection's."""

    def __init__(self) -> None:
        self.fds: list[int] = []
        self._lock = threading.Lock()
        self._closed = False

    def use(self, fn: Callable[[list[int]], None]) -> None:
        with self._lock:
            if not self._closed:
                fn(self.fds)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for fd in self.fds:
                os.close(fd)
