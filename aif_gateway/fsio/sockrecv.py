"""Receiving the rest of a request body straight from its socket, in a worker thread.

The engine's ``recv_hashed`` loops recv -> hash -> pwrite without Python per chunk (native code
releases the GIL for the whole body). The socket belongs to an event loop's transport, which
the caller pauses first and never lets read again on that connection (see
``s3/transport.py``, which also decides when a body is read this way); the thread works on a
private ``dup`` of it.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable

from .threadslots import SlotsBusy, ThreadSlots

__all__ = ["ReceiveUnavailable", "receive_in_thread"]

# A receiver waits in poll() for as long as its client is slow: the bound is on concurrent
# large uploads per worker process (see threadslots).
RECEIVER_THREADS = 32


class ReceiveUnavailable(Exception):
    """Nothing was read (every receiver thread busy): the caller should read the body the ordinary way."""


@functools.cache
def _receivers() -> ThreadSlots:
    return ThreadSlots(RECEIVER_THREADS, "aif-recv")


def _shut_down(fds: list[int]) -> None:
    sock = socket.socket(fileno=fds[0])
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone
    finally:
        sock.detach()  # the fd stays open until the thread is done with it


async def receive_in_thread(sock_fd: int, receive: Callable[[int], int]) -> int:
    """``receive(private_sock_fd)`` in a receiver thread; its result.

    If the caller is cancelled the socket is shut down, which ends the thread's recv at once (the
    connection is lost to that request anyway).
    """

    def run(own_sock: int, cancelled: threading.Event) -> int:
        return receive(own_sock)

    try:
        return await _receivers().run(run, (sock_fd,), on_cancel=_shut_down)
    except SlotsBusy:
        raise ReceiveUnavailable("every receiver thread is busy") from None
