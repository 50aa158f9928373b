"""Handing a prepared response's socket to the data path's sendfile for the body.

aiohttp keeps writing through its transport; the sender writes to the same socket from a
thread. The two must never interleave, so, with the status line and headers already queued:
1. wait until the transport's write buffer is empty (those headers, or a previous response's
   tail on a kept-alive connection, must reach the socket before the first body byte);
2. stop the transport reading, so the loop neither sees a client's EOF (and closes the
   socket) nor parses a pipelined request while the thread sends;
3. send the body in a sender thread; nothing writes to the transport meanwhile;
4. resume reading and account the bytes on aiohttp's writer, so ``write_eof()`` finds the body
   complete (it writes nothing for a Content-Length response) and keep-alive goes on.

Public API
- ``plain_socket_fd(http) -> int | None``: the connection's socket where bytes may bypass
  aiohttp: not TLS, not closing.
- ``sendfile_socket(http, count) -> int | None``: the socket to send ``count`` body bytes on,
  or None where zero-copy cannot apply (switched off, TLS, a transport without a socket) or
  does not pay (fewer than ``SENDFILE_MIN_BYTES``).
- ``send_body_by_sendfile(http, writer, sock_fd, file_fd, offset, count) -> int`` (async):
  steps 1-4; returns the bytes sent (fewer than ``count`` when the file shrank). Raises
  ``SendfileUnavailable`` before any body byte went out (the caller copies instead),
  ``ConnectionError``/``TimeoutError`` when the client went away or stopped reading.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from ..fsio.zerocopy import SENDFILE_MIN_BYTES, SendfileUnavailable, send_file_in_thread, sendfile_enabled

__all__ = ["SendfileUnavailable", "plain_socket_fd", "send_body_by_sendfile", "sendfile_socket"]


def plain_socket_fd(http: web.BaseRequest) -> int | None:
    """The descriptor of the request's connection where bytes may go around aiohttp (see
    direct_body too): None for a closing transport, one without a socket, or TLS (a TLS
    transport reports its raw socket too, but bytes there would skip the encryption)."""
    transport = http.transport
    if transport is None or transport.is_closing() or transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    return None if sock is None else sock.fileno()


def sendfile_socket(http: web.BaseRequest, count: int) -> int | None:
    if count < SENDFILE_MIN_BYTES or not sendfile_enabled():
        return None
    return plain_socket_fd(http)


async def send_body_by_sendfile(
    http: web.BaseRequest, writer: AbstractStreamWriter, sock_fd: int, file_fd: int, offset: int, count: int
) -> int:
    transport = http.transport
    assert transport is not None, "sendfile_socket found a transport"
    await _drain_completely(transport, writer)
    paused_here = transport.is_reading()
    if paused_here:
        transport.pause_reading()
    try:
        sent = await send_file_in_thread(sock_fd, file_fd, offset, count)
    finally:
        if paused_here and not transport.is_closing():
            transport.resume_reading()
    writer.output_size += sent  # what aiohttp reports as the response's body_length (access log)
    return sent


async def _drain_completely(transport: asyncio.Transport, writer: AbstractStreamWriter) -> None:
    """Waits until nothing is buffered in the transport.

    aiohttp's own drain waits only down to the low-water mark; a zero high-water mark makes the
    transport pause its protocol until the buffer is empty, and aiohttp's drain waits for that.
    """
    if transport.get_write_buffer_size():
        low, high = transport.get_write_buffer_limits()
        transport.set_write_buffer_limits(high=0, low=0)
        try:
            await writer.drain()
        finally:
            transport.set_write_buffer_limits(high=high, low=low)
    if transport.is_closing():
        raise ConnectionResetError("the client went away before the body")
