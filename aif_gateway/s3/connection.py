"""A connection before it carries a request: bounded in time and memory, refusals in S3's words.

aiohttp reads a request's line and header section itself and calls the application only once
they are complete. It has no time limit for that (its keep-alive timer closes only idle
connections) and keeps every header line it is sent up to its size limits: 20 unauthenticated
connections sending 250 header lines of 64 KiB each, never ending the section, held 620 MB of
a worker until the keep-alive timeout, an hour later. Here, per connection:
- the request line and header section of a request may take ``header_timeout`` seconds from
  their first byte (from the connection's opening for its first request); then the client gets
  ``RequestTimeout`` and the connection closes (a connection that sent nothing is just closed);
- they may hold ``MAX_REQUEST_HEAD_BYTES``; past that the client gets
  ``RequestHeaderSectionTooLarge`` and the connection closes, unread. Smaller sections still
  reach the application, which answers the same error past S3's 16 KiB (``app.py``), and
  aiohttp's own limits (``PARSER_LIMITS``) hold each line to S3-sensible sizes;
- what aiohttp refuses itself (a bad request line, a malformed header, a line too long) is
  answered with an S3 error document and one log line, never aiohttp's plain-text echo of the
  input, never a traceback.
Between requests, an idle keep-alive connection closes after ``keepalive_timeout`` seconds
(aiohttp's own timer). Slow bodies are bounded where they are read (``transport``).

A connection that closes after a response while the client may still be sending (a refusal
above, or a body the store stopped reading on the socket, ``transport.BODY_LEFT_ON_SOCKET``)
closes by lingering, as RFC 9112 section 9.6 asks and nginx and Apache do: closing a socket
with unread bytes in its receive buffer makes the kernel send a RST, and the client, still
writing its body, gets a reset instead of the response it has not read yet. So the response is
sent, the write side shut (``transport.write_eof()``: the client reads the response, then
EOF), and what the client still sends is read and dropped until it closes, or for at most
``LINGER_TIMEOUT_S`` seconds, ``LINGER_IDLE_S`` without a byte, or ``LINGER_MAX_BYTES``; then
the connection closes. All on the event loop, in this connection's own protocol: no thread,
and the connection counts as open until then. On TLS, which cannot shut one direction, the
response is followed by the same bounded drain without the half-close. Bodies that aiohttp
itself reads after an early answer (its own lingering read, through its parser, which keeps
the connection when the body ends) get the same time bound (``lingering_time``).

The hook: aiohttp builds one ``RequestHandler`` (its asyncio protocol) per connection, in
``web.Server.__call__``. ``GatewayRunner`` is an ``AppRunner`` whose server builds a
``GatewayRequestHandler`` instead; that handler wraps its HTTP parser so that every byte a
client sends passes ``_feed`` first, and raises its refusals as the ``HttpProcessingError`` that
aiohttp's parser raises for bad input, so aiohttp's own error path answers them (through
``handle_error``, overridden here to speak S3).

The server runs the application with ``GatewayRunner``, and the application hands
``PARSER_LIMITS`` to aiohttp in its ``handler_args``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from ..errors import S3Error
from .limits import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_KEEPALIVE_TIMEOUT_S
from .responses import error_response, new_request_id, stamp_request_id
from .transport import BODY_LEFT_ON_SOCKET

__all__ = ["GatewayRunner", "PARSER_LIMITS"]

# One line per refused request on the access log, beside the application's lines.
log = logging.getLogger("aif_gateway.access")
server_log = logging.getLogger("aif_gateway.server")

KiB = 1024
MiB = 1024 * KiB
# aiohttp's limits per line: the request line (a 1 KiB key percent-encoded is 3 KiB; a presigned
# URL with a session token a few KiB more) and any one header line.
MAX_REQUEST_LINE_BYTES = 16 * KiB
MAX_FIELD_BYTES = 16 * KiB
MAX_HEADERS = 128
PARSER_LIMITS = {"max_line_size": MAX_REQUEST_LINE_BYTES, "max_field_size": MAX_FIELD_BYTES, "max_headers": MAX_HEADERS}
# All the bytes of one request line and header section held before the section is complete:
# room for the longest request line and for header sections the application still answers.
MAX_REQUEST_HEAD_BYTES = 64 * KiB

# Lingering close. A client that sends its whole body before reading (http.client, urllib3,
# most SDKs) sees the response only once its last byte is taken, so the drain must outlast the
# rest of a refused body where that is cheap: 64 MiB holds the default part of every common S3
# tool (rclone 5 MiB, boto3 and the AWS CLI 8 MiB, minio-go 16 MiB, s5cmd 50 MiB), and the
# loop drops it fast (64 MiB in 40 ms on loopback, a loaded 2-CPU machine). 5 s carries 64 MiB at
# 13 MB/s and more; 2 s without a byte is Apache's per-read linger (nginx waits 5 s per read,
# 30 s in all). Past any bound the connection closes and a client still sending gets the reset:
# a refused 5 GiB PUT is not waited for, and sending forever holds a connection no longer.
LINGER_TIMEOUT_S = 5.0
LINGER_IDLE_S = 2.0
LINGER_MAX_BYTES = 64 * MiB

_NOTHING_PARSED: tuple[tuple[()], bool, bytes] = ((), False, b"")


class HeadTimedOut(HttpProcessingError):
    """The request line and header section took longer than the header timeout."""

    code = 400


class HeadTooLarge(HttpProcessingError):
    """The request line and header section outgrew ``MAX_REQUEST_HEAD_BYTES``."""

    code = 400


def _s3_error_for(exc: BaseException | None, request_line_done: bool) -> tuple[S3Error, str]:
    """The S3 error answering a request aiohttp could not parse, and a short reason for the log
    (its class, never the input it quotes)."""
    if isinstance(exc, HeadTimedOut):
        return S3Error("RequestTimeout"), "header timeout"
    if (
        isinstance(exc, HeadTooLarge)
        or (isinstance(exc, LineTooLong) and request_line_done)
        or (isinstance(exc, BadHttpMessage) and exc.message == "Too many headers received")
    ):
        limit = MAX_REQUEST_HEAD_BYTES if isinstance(exc, HeadTooLarge) else MAX_FIELD_BYTES
        return S3Error("RequestHeaderSectionTooLarge", extra={"MaxSizeAllowed": str(limit)}), "header section too large"
    if isinstance(exc, LineTooLong):
        return S3Error(
            "InvalidURI", f"The request line is longer than {MAX_REQUEST_LINE_BYTES} bytes."
        ), "request line too long"
    return S3Error("InvalidRequest", "The request is not valid HTTP/1.1."), type(exc).__name__


class _Lingering:
    """A lingering close under way: what the client sent since, and when it ends."""

    __slots__ = ("_loop", "ended", "discarded", "last_read")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.ended: asyncio.Future[str] = loop.create_future()  # with the reason it ended
        self.discarded = 0
        self.last_read = loop.time()

    def discard(self, data: bytes) -> None:
        self.discarded += len(data)
        self.last_read = self._loop.time()
        if self.discarded >= LINGER_MAX_BYTES:
            self.end("bytes")

    def end(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)

    async def wait(self) -> str:
        """Until the client closes (or goes), or a bound is reached; returns which."""
        deadline = self._loop.time() + LINGER_TIMEOUT_S
        while not self.ended.done():
            now = self._loop.time()
            if now >= deadline:
                self.end("time")
            elif now >= self.last_read + LINGER_IDLE_S:
                self.end("idle")
            else:
                await asyncio.wait([self.ended], timeout=min(deadline, self.last_read + LINGER_IDLE_S) - now)
        return self.ended.result()


class _GuardedParser:
    """aiohttp's HTTP parser with every fed byte passing ``check(parser, data)`` instead."""

    __slots__ = ("_parser", "_check")

    def __init__(self, parser: Any, check: Any) -> None:
        self._parser = parser
        self._check = check

    def feed_data(self, data: bytes) -> Any:
        return self._check(self._parser, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)


class GatewayRequestHandler(RequestHandler):
    __slots__ = (
        "_header_timeout",
        "_head_bytes",
        "_line_end",
        "_head_timer",
        "_last_payload",
        "_refused",
        "_refusal",
        "_lingering",
    )

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._head_bytes = 0  # bytes of the request line and header section being received
        self._line_end: int | None = None  # where its request line ended, once it did
        self._head_timer: asyncio.TimerHandle | None = None
        self._last_payload: Any = None  # the body of the last request parsed
        self._refused = False  # from then on every byte received is dropped
        self._refusal: HttpProcessingError | None = None  # to raise through the parser, once
        self._lingering: _Lingering | None = None  # once set, every byte received is dropped
        # The proxy stands in for aiohttp's parser, which the handler only feeds.
        self._parser = _GuardedParser(self._parser, self._feed)  # type: ignore[assignment]

    # -- the header section's bounds ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()  # the first request must begin, and end its header section, in time

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        if self._lingering is not None:
            self._lingering.end("lost")
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self._loop.call_later(self._header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _awaiting_head(self) -> bool:
        # Between requests once the last one's body was read (or it had none). A chunk that
        # ends one body and begins the next request counts as body: at most one read uncounted.
        return self._last_payload is None or self._last_payload.is_eof()

    def _feed(self, parser: Any, data: bytes) -> Any:
        if self._refused:
            refusal, self._refusal = self._refusal, None
            if refusal is not None:
                raise refusal  # aiohttp answers it as it answers bad input, then closes
            return _NOTHING_PARSED
        awaiting_head = bool(data) and self._awaiting_head()
        if awaiting_head:
            self._arm()
            if self._line_end is None and (newline := data.find(b"\n")) >= 0:
                self._line_end = self._head_bytes + newline
            self._head_bytes += len(data)
        try:
            result = parser.feed_data(data)
        except HttpProcessingError:
            # aiohttp answers its own refusal; what follows must not queue more of them (each
            # quoting the input), nor reach the parser at all.
            self._refuse(None)
            raise
        if result[0]:  # a request's header section is complete (the chunk may hold body bytes too)
            self._last_payload = result[0][-1][1]
            self._head_bytes, self._line_end = 0, None
            self._disarm()
        elif awaiting_head and self._head_bytes > MAX_REQUEST_HEAD_BYTES:
            # Checked once the chunk is parsed: the parser then holds at most this, plus one read.
            self._refuse(HeadTooLarge())
            return self._feed(parser, b"")
        return result

    def _refuse(self, refusal: HttpProcessingError | None) -> None:
        self._disarm()
        self._refused = True
        self._refusal = refusal

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._refused or self.transport is None:
            return
        if self._request_in_progress or self._messages or not self._awaiting_head():
            self._arm()  # a request is being answered: whatever follows it waits its turn
            return
        if self._head_bytes == 0:
            self.force_close()  # nothing sent at all: nothing to answer
            return
        self._refuse(HeadTimedOut())
        self.data_received(b"")  # through the parser's error path, answered like a bad request

    # -- closing while the client may still be sending ------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._lingering is not None:
            self._lingering.discard(data)
        else:
            super().data_received(data)

    def eof_received(self) -> None:
        if self._lingering is not None:
            self._lingering.end("eof")
        # None: the transport closes, as for any client's EOF.

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        resp, reset = await super().finish_response(request, resp, start_time)
        if not reset and not resp.keep_alive and (self._refused or request.get(BODY_LEFT_ON_SOCKET, False)):
            await self._linger()  # aiohttp's start() then closes the transport
        return resp, reset

    async def _linger(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self._lingering is not None:
            return
        self._disarm()
        lingering = self._lingering = _Lingering(self._loop)
        if transport.can_write_eof():  # not TLS
            transport.write_eof()  # once the response is flushed: the transports keep the order
        transport.resume_reading()  # paused for a body read around aiohttp, or by flow control
        started = self._loop.time()
        reason = await lingering.wait()
        server_log.debug(
            "lingering close",
            extra={
                "ended_by": reason,
                "discarded": lingering.discarded,
                "ms": round((self._loop.time() - started) * 1000, 3),
            },
        )

    # -- answering what aiohttp refused ---------------------------------------------------------
    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse (400), or to a handler that failed
        outside the application's own error handling (500, 504): an S3 error document."""
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response")
        request_id = new_request_id()
        if status == 400:
            request_line_done = self._line_end is not None and self._line_end <= MAX_REQUEST_LINE_BYTES
            err, reason = _s3_error_for(exc, request_line_done)
            log.info(
                "request refused",
                extra={
                    "request_id": request_id,
                    "status": err.status,
                    "error": err.code,
                    "reason": reason,
                    "remote": request.remote,
                },
            )
        else:
            err = S3Error("InternalError")
            server_log.error("request failed (request id %s)", request_id, exc_info=exc)
        response = error_response(err, request_id, "/", head=False)
        stamp_request_id(response.headers, request_id)
        response.force_close()
        return response


class _GatewayServer(web.Server):
    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout

    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, header_timeout=self._header_timeout, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections are ``GatewayRequestHandler``s."""

    def __init__(
        self,
        app: web.Application,
        *,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        # aiohttp's lingering read of a body answered early: bounded like the gateway's own.
        kwargs.setdefault("lingering_time", LINGER_TIMEOUT_S)
        super().__init__(app, keepalive_timeout=keepalive_timeout, **kwargs)
        self._header_timeout = header_timeout

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        # The application's server, with the same handler, request factory and settings.
        return _GatewayServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            header_timeout=self._header_timeout,
            **plain._kwargs,
        )
