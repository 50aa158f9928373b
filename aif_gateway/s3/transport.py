"""The client's connection: where a body goes around aiohttp, and where it goes through it.

aiohttp reads and writes every connection through its transport, in chunks of up to 64 KiB
with Python per chunk. Two bodies are worth moving without it, over plain HTTP only (on TLS
the socket carries ciphertext): a GET's body, sent by the kernel from the object's file to the
socket (``send_zero_copy``), and the large rest of a PUT or UploadPart body, read by native
code from the socket into the file (``request_body``). The bytes themselves move in store/
(``ObjectReader.send_to``; the ``BodyOnSocket`` a write's stream may end with); this module
decides when, keeps aiohttp's transport out of their way meanwhile and its bookkeeping right.
Nothing else in s3/ touches the socket.

Zero-copy send, with the status line and headers already queued (aiohttp and the sender
thread write to the same socket and must never interleave):
1. wait until the transport's write buffer is empty (those headers, or a previous response's
   tail on a kept-alive connection, must reach the socket before the first body byte);
2. stop the transport reading, so the loop neither sees a client's EOF (and closes the
   socket) nor parses a pipelined request while the thread sends;
3. the store sends the body from a sender thread; nothing writes to the transport meanwhile;
4. resume reading and account the bytes on aiohttp's writer, so ``write_eof()`` finds the body
   complete (it writes nothing for a Content-Length response) and keep-alive goes on.

Receive from the socket, once what aiohttp already buffered is taken: the stream yields a
``BodyOnSocket`` and the store's native ``recv_hashed`` reads the rest, decodes it when it is
aws-chunked (with the request's own decoder, which also checks the chunk signatures), hashes
and writes it. For that:
1. the transport stops reading (synchronously after the StreamReader's buffer is emptied, so no
   byte can arrive in between), so the event loop never sees body bytes meanwhile;
2. the store's thread reads exactly the bytes left of the declared length, from a ``dup`` of
   the socket;
3. aiohttp's HTTP parser still expects those bytes, so the connection cannot carry another
   request: the payload is marked ended (aiohttp's own lingering read would go through its
   parser) and the response carries ``Connection: close`` (``CLOSE_AFTER_RESPONSE``, applied
   by the app's middleware). When the store gave up before the end (a bad chunk signature, a
   body too long), the client may still be sending: ``BODY_LEFT_ON_SOCKET`` makes the
   connection close by lingering (``connection``), or the kernel would answer the unread bytes
   with a RST and the client lose the response.
   The app's middleware settles this (``settle_body``) before the response: the stream does it
   itself when it ends, but a stream abandoned by an exception ends only when the event loop
   finalizes it, which may be after the response has promised keep-alive.
When the store cannot take the rest (every receiver thread busy) it leaves ``started`` False,
reading resumes and the body continues through aiohttp. Only where it pays: a body with a
Content-Length and at least ``RECV_DIRECT_MIN_BYTES`` still on the socket.

Either way a stalled body ends the request after ``stall_timeout`` seconds without a byte
(``Limits.body_stall_timeout``): a client that stops sending holds its connection no longer.
Both paths can be switched off (``AIF_SENDFILE=0``, ``AIF_RECV_DIRECT=0``): every test of a
data path runs both ways.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from ..errors import S3Error
from ..store.base import BodyOnSocket, ObjectReader, SendfileUnavailable
from .limits import DEFAULT_BODY_STALL_TIMEOUT_S

__all__ = [
    "BODY_LEFT_ON_SOCKET",
    "BYTES_AROUND_PARSER",
    "CLOSE_AFTER_RESPONSE",
    "READ_SIZE",
    "BodyDecoder",
    "Readable",
    "RECV_DIRECT_ENV",
    "RECV_DIRECT_MIN_BYTES",
    "SENDFILE_ENV",
    "SENDFILE_MIN_BYTES",
    "content_chunks",
    "plain_socket_fd",
    "recv_direct_enabled",
    "request_body",
    "send_zero_copy",
    "sendfile_enabled",
    "settle_body",
]

log = logging.getLogger(__name__)

SENDFILE_ENV = "AIF_SENDFILE"
RECV_DIRECT_ENV = "AIF_RECV_DIRECT"

# Below this, the copying path sends headers and body in one write after one pread, while
# sendfile costs a thread hand-off, two dups, a separate header write and more syscalls: the
# few-microsecond memcpy it saves is less than that. At 64 KiB the gateway's CPU per GET was
# already no higher by sendfile than by copying (2-CPU machine, 4 keep-alive clients).
SENDFILE_MIN_BYTES = 64 * 1024

# The HTTP parser of a connection whose body was read around it cannot take the next request,
# so that connection closes after the response. A reconnect costs about 0.1-0.2 ms of client
# and server time; from 4 MiB up, copying each 64 KiB chunk through Python costs more than that
# (and multipart parts are 5 MiB or more with every S3 tool).
RECV_DIRECT_MIN_BYTES = 4 * 1024 * 1024

READ_SIZE = 1 << 20

CLOSE_AFTER_RESPONSE = web.RequestKey("close_after_response", bool)
# Some of a body read around aiohttp may still be on the socket, unread, when the connection
# closes: it closes by lingering (``connection.GatewayRequestHandler``).
BODY_LEFT_ON_SOCKET = web.RequestKey("body_left_on_socket", bool)
# Body bytes handed to the store's socket receiver: aiohttp's StreamReader never counts them,
# so the access log adds them to its total_bytes.
BYTES_AROUND_PARSER = web.RequestKey("bytes_around_parser", int)


def _switched_on(variable: str) -> bool:
    return os.environ.get(variable, "1").strip().lower() not in ("0", "false", "no", "off")


@functools.cache
def sendfile_enabled() -> bool:
    """``$AIF_SENDFILE``, read once; ``0`` switches zero-copy GETs off."""
    return _switched_on(SENDFILE_ENV)


@functools.cache
def recv_direct_enabled() -> bool:
    """``$AIF_RECV_DIRECT``, read once; ``0`` switches receiving bodies from the socket off."""
    return _switched_on(RECV_DIRECT_ENV)


def plain_socket_fd(http: web.BaseRequest) -> int | None:
    """The descriptor of the request's connection where bytes may go around aiohttp: None for a
    closing transport, one without a socket, or TLS (a TLS transport reports its raw socket too,
    but bytes there would skip the encryption)."""
    transport = http.transport
    if transport is None or transport.is_closing() or transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    return None if sock is None else sock.fileno()


# -- sending ---------------------------------------------------------------------------------
async def send_zero_copy(
    http: web.BaseRequest, writer: AbstractStreamWriter, reader: ObjectReader, offset: int, count: int
) -> int | None:
    """Sends ``count`` bytes of ``reader`` from ``offset`` as the body of the response whose
    headers ``writer`` holds, by the store's zero-copy ``send_to`` (steps 1-4 above).

    Returns the bytes sent (fewer than ``count`` when the file shrank), or None when nothing
    was sent and the caller copies the body instead: switched off, TLS, no socket, fewer than
    ``SENDFILE_MIN_BYTES``, or refused by the kernel or the store (every sender thread busy).
    ``ConnectionError``/``TimeoutError`` when the client went away or stopped reading.
    """
    if count < SENDFILE_MIN_BYTES or not sendfile_enabled():
        return None
    sock_fd = plain_socket_fd(http)
    transport = http.transport
    if sock_fd is None or transport is None:
        return None
    await _drain_completely(transport, writer)
    paused_here = transport.is_reading()
    if paused_here:
        transport.pause_reading()
    try:
        sent = await reader.send_to(sock_fd, offset, count)
    except SendfileUnavailable as why:
        log.debug("GET %s: copying the body (%s)", http.raw_path, why)
        return None
    finally:
        if paused_here and not transport.is_closing():
            transport.resume_reading()
    writer.output_size += sent  # what aiohttp reports as the response's body_length (access log)
    log.debug("GET %s: %d bytes sent by sendfile", http.raw_path, sent)
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


# -- receiving -------------------------------------------------------------------------------
class Readable(Protocol):
    """What aiohttp's StreamReader and asyncio's StreamReader both offer."""

    async def read(self, n: int = -1) -> bytes: ...


class BodyDecoder(Protocol):
    """What ``request_body`` needs of an aws-chunked body's decoder (``chunked.AwsChunkedDecoder``)."""

    @property
    def engine(self) -> object:
        """The data path's decoder, which the store's receive loop goes on with."""
        ...

    def decode(self, raw: bytes | bytearray) -> memoryview: ...

    def finish(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[bytes | memoryview]: ...


async def request_body(
    http: web.BaseRequest,
    raw_length: int | None,
    decoder: BodyDecoder | None = None,
    stall_timeout: float = DEFAULT_BODY_STALL_TIMEOUT_S,
) -> AsyncIterator[bytes | memoryview | BodyOnSocket]:
    """The body's data as chunks, perhaps ending in a ``BodyOnSocket``; ``raw_length`` is
    Content-Length (None when the request has none); ``decoder`` decodes an aws-chunked body
    (its ``finish`` runs at the end either way, raising S3Error for an incomplete body)."""
    content = http.content
    sock_fd = plain_socket_fd(http) if raw_length is not None and recv_direct_enabled() else None
    transport = http.transport
    # total_bytes: what aiohttp's parser has fed into the StreamReader so far.
    if (
        sock_fd is not None
        and raw_length is not None
        and transport is not None
        and content.exception() is None
        and not content.is_eof()
        and raw_length - content.total_bytes >= RECV_DIRECT_MIN_BYTES
    ):
        # Emptying the buffer may resume a transport aiohttp's flow control had paused, so
        # take it first and pause after; with no await in between, no byte arrives meanwhile.
        buffered = content.read_nowait(-1)
        on_socket = raw_length - content.total_bytes
        transport.pause_reading()
        rest = BodyOnSocket(sock_fd, on_socket, stall_timeout, None if decoder is None else decoder.engine)
        hand_over = http[_HAND_OVER] = _HandOver(http, transport, rest)
        try:
            head = decoder.decode(buffered) if decoder is not None and buffered else buffered
            if head:
                yield head
            yield rest
            hand_over.read_in_full = True  # the store came back for more: it read all of the rest
        finally:
            hand_over.settle()
        if rest.started:
            log.debug("body bytes received from the socket", extra={"bytes": rest.count})
            if decoder is not None:
                decoder.finish()
            return
        # Not taken: the rest comes through aiohttp after all.
    if decoder is not None:
        async for data in decoder:
            yield data
        return
    async for data in content_chunks(content, stall_timeout):
        yield data


class _HandOver:
    """The rest of a body handed to the store's socket receiver, and what that leaves the
    connection in: ``settle`` applies it once, when the stream ends or is closed, or when the
    app's middleware gets there first (``settle_body``)."""

    __slots__ = ("_http", "_transport", "_rest", "read_in_full", "_settled")

    def __init__(self, http: web.BaseRequest, transport: asyncio.Transport, rest: BodyOnSocket) -> None:
        self._http = http
        self._transport = transport
        self._rest = rest
        self.read_in_full = False
        self._settled = False

    def settle(self) -> None:
        if self._settled:
            return
        self._settled = True
        if self._rest.started:
            # Some or all of the rest was read around aiohttp: this connection is done.
            self._http.content.feed_eof()
            self._http[CLOSE_AFTER_RESPONSE] = True
            self._http[BYTES_AROUND_PARSER] = self._rest.count
            if not self.read_in_full:
                self._http[BODY_LEFT_ON_SOCKET] = True
        elif not self._transport.is_closing():
            # Not taken (or never offered): the rest comes through aiohttp after all.
            self._transport.resume_reading()


_HAND_OVER = web.RequestKey("socket_hand_over", _HandOver)


def settle_body(http: web.BaseRequest) -> None:
    """Puts the connection in the state the request's body left it in, before the response is
    sent (step 3 above); nothing when no body was handed to the store's socket receiver."""
    hand_over = http.get(_HAND_OVER)
    if hand_over is not None:
        hand_over.settle()


async def content_chunks(
    content: Readable, stall_timeout: float = DEFAULT_BODY_STALL_TIMEOUT_S
) -> AsyncIterator[bytes]:
    """A StreamReader's bytes in chunks of up to ``READ_SIZE``; a client hanging up mid-body is
    IncompleteBody, one that sends nothing for ``stall_timeout`` seconds RequestTimeout."""
    while True:
        try:
            async with asyncio.timeout(stall_timeout):
                data = await content.read(READ_SIZE)
        except ConnectionResetError as exc:
            # The client hung up mid-body: an ordinary failed upload, not a server fault.
            raise S3Error("IncompleteBody", f"The body ended early: {exc}") from exc
        except TimeoutError:
            raise S3Error("RequestTimeout") from None
        if not data:
            return
        yield data
