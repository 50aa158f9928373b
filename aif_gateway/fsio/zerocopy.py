"""Zero-copy sending of file bytes to a socket with ``os.sendfile``, in worker threads.

uvloop has no ``loop.sendfile`` (uvloop issue 228), so the event loop cannot do this itself.
The bytes go from the page cache to the socket inside the kernel; Python only loops over
partial sends.

When zero-copy is used at all (the switch, the smallest body worth it) is the protocol
layer's decision (``s3/transport.py``); this module only sends.

The socket is non-blocking and belongs to the event loop's transport: we never change its
flags; on EAGAIN we wait for POLLOUT with ``select.poll``.
"""

from __future__ import annotations

import errno
import functools
import os
import select
import threading

from .threadslots import SlotsBusy, ThreadSlots

__all__ = ["SendfileUnavailable", "send_file", "send_file_in_thread"]

# Each sender thread may sit in poll() for as long as its client reads slowly (see
# threadslots); when all are busy, further GETs copy through the default path instead.
SENDER_THREADS = 32

# A client that accepts no byte for this long is treated as gone (its thread is released).
STALL_TIMEOUT_S = 120.0
# How often a waiting sender looks at its cancel flag (graceful shutdown, handler cancelled).
_POLL_SLICE_MS = 500

# errnos with which sendfile says "not for this file or socket", as opposed to an I/O failure.
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ESPIPE})


class SendfileUnavailable(Exception):
    """Nothing was sent (sendfile refused for this file or socket, or every sender thread busy):
    the caller should send the bytes by copying."""


def send_file(
    sock_fd: int,
    file_fd: int,
    offset: int,
    count: int,
    cancelled: threading.Event | None = None,
    stall_timeout_s: float = STALL_TIMEOUT_S,
) -> int:
    """Send up to ``count`` bytes of the file from ``offset`` (blocking); the bytes sent, fewer
    than ``count`` only when the file ended early (it shrank).

    ``ConnectionError`` when the peer went away, ``TimeoutError`` when the peer read nothing for
    ``stall_timeout_s`` or ``cancelled`` was set, ``SendfileUnavailable`` when the kernel refuses
    sendfile for this file or socket before a byte went out.
    """
    sent = 0
    poller: select.poll | None = None
    while sent < count:
        try:
            n = os.sendfile(sock_fd, file_fd, offset + sent, count - sent)
        except BlockingIOError:
            if poller is None:
                poller = select.poll()
                poller.register(sock_fd, select.POLLOUT)
            _wait_writable(poller, cancelled, stall_timeout_s)
            continue
        except OSError as exc:
            if sent == 0 and exc.errno in _UNSUPPORTED:
                raise SendfileUnavailable(f"sendfile refused: {exc.strerror}") from exc
            raise
        if n == 0:
            break  # end of file before ``count``: the file shrank since it was sized
        sent += n
    return sent


def _wait_writable(poller: select.poll, cancelled: threading.Event | None, stall_timeout_s: float) -> None:
    waited_ms = 0.0
    while not poller.poll(_POLL_SLICE_MS):
        waited_ms += _POLL_SLICE_MS
        if cancelled is not None and cancelled.is_set():
            raise TimeoutError("sendfile cancelled")
        if waited_ms >= stall_timeout_s * 1000:
            raise TimeoutError(f"the client read nothing for {stall_timeout_s:g}s")
    # POLLERR/POLLHUP also end the wait: the next sendfile then raises the socket's error.


@functools.cache
def _senders() -> ThreadSlots:
    return ThreadSlots(SENDER_THREADS, "aif-sendfile")


async def send_file_in_thread(sock_fd: int, file_fd: int, offset: int, count: int) -> int:
    """``send_file`` in one of this process's sender threads; ``SendfileUnavailable`` too when
    every sender thread is busy."""

    def send(own_sock: int, own_file: int, cancelled: threading.Event) -> int:
        return send_file(own_sock, own_file, offset, count, cancelled)

    try:
        return await _senders().run(send, (sock_fd, file_fd))
    except SlotsBusy:
        raise SendfileUnavailable("every sender thread is busy") from None
