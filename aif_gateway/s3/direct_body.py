"""Request bodies whose large remainder the data path reads straight from the socket.

aiohttp hands a body to Python in chunks of up to 64 KiB through its StreamReader; for a large
PUT or UploadPart that is the gateway's main cost. Here, once what aiohttp already buffered is
taken, the stream yields a ``SocketTail``: the storage layer's native ``recv_hashed`` reads the
rest from the socket, decodes it when it is aws-chunked (with the request's own decoder, which
also checks the chunk signatures), hashes it and writes it, with no Python per chunk. For that:
1. the transport stops reading (synchronously after the StreamReader's buffer is emptied, so no
   byte can arrive in between), so the event loop never sees body bytes meanwhile;
2. the thread reads exactly the bytes left of the declared length, from a ``dup`` of the socket;
3. aiohttp's HTTP parser still expects those bytes, so the connection cannot carry another
   request: the payload is marked ended (no lingering read) and the response carries
   ``Connection: close`` (``CLOSE_AFTER_RESPONSE``, applied by the app's middleware).
When the storage layer cannot take the tail (every receiver thread busy) it leaves ``started``
False, reading resumes and the body continues through aiohttp.

Only where it pays and is sound: a body with a Content-Length, no TLS (the bytes on the socket
are ciphertext), not switched off (``AIF_RECV_DIRECT=0``), and at least
``RECV_DIRECT_MIN_BYTES`` still on the socket.

Public API
- ``request_body(http, raw_length, decoder=None, stall_timeout=STALL_TIMEOUT_S) -> ByteStream``:
  the body's data as chunks, possibly ending in a ``SocketTail``; ``raw_length`` is
  Content-Length (None when the request has none); ``decoder`` an ``AwsChunkedDecoder`` for
  aws-chunked bodies (its ``finish`` runs at the end either way, raising S3Error for an
  incomplete body).
- ``content_chunks(content, stall_timeout=STALL_TIMEOUT_S) -> AsyncIterator[bytes]``: a
  StreamReader's bytes in chunks of up to ``READ_SIZE``; a client hanging up mid-body is
  IncompleteBody, one that sends nothing for ``stall_timeout`` seconds RequestTimeout.
- ``CLOSE_AFTER_RESPONSE``: the request key set when the connection must close after the
  response.

Either way a stalled body ends the request after ``stall_timeout`` seconds without a byte
(``Limits.body_stall_timeout``): a client that stops sending holds its connection no longer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from ..errors import S3Error
from ..fsio.sockrecv import RECV_DIRECT_MIN_BYTES, STALL_TIMEOUT_S, recv_direct_enabled
from ..store.base import SocketTail
from .sendfile import plain_socket_fd

if TYPE_CHECKING:
    from .chunked import AwsChunkedDecoder

log = logging.getLogger(__name__)

READ_SIZE = 1 << 20

CLOSE_AFTER_RESPONSE = web.RequestKey("close_after_response", bool)
# Body bytes handed to the socket receiver: aiohttp's StreamReader never counts them, so the
# access log adds them to its total_bytes.
BYTES_AROUND_PARSER = web.RequestKey("bytes_around_parser", int)


class _Readable(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


async def request_body(
    http: web.BaseRequest, raw_length: int | None, decoder: AwsChunkedDecoder | None = None,
    stall_timeout: float = STALL_TIMEOUT_S,
) -> AsyncIterator[bytes | memoryview | SocketTail]:
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
        head: bytes | memoryview = content.read_nowait(-1)
        on_socket = raw_length - content.total_bytes
        transport.pause_reading()
        tail = SocketTail(sock_fd, on_socket, stall_timeout, None if decoder is None else decoder.engine)
        try:
            if decoder is not None and head:
                head = decoder.decode(head)
            if head:
                yield head
            yield tail
        finally:
            if tail.started:
                # Some or all of the rest was read around aiohttp: this connection is done.
                content.feed_eof()
                http[CLOSE_AFTER_RESPONSE] = True
                http[BYTES_AROUND_PARSER] = on_socket
            elif not transport.is_closing():
                transport.resume_reading()
        if tail.started:
            log.debug("body bytes received from the socket", extra={"bytes": tail.count})
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


async def content_chunks(content: _Readable, stall_timeout: float = STALL_TIMEOUT_S) -> AsyncIterator[bytes]:
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
