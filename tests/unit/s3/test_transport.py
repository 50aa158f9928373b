"""The transport seam: when a body goes around aiohttp, and aiohttp's state around that.

Servers here are aiohttp on uvloop in-process, as the gateway runs, with real sockets; the
bytes are moved by the store's own reader (send) or by a thread reading the socket as the
store's receive loop does (receive).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import uvloop
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from aif_gateway.s3 import transport
from aif_gateway.s3.transport import (
    BODY_LEFT_ON_SOCKET,
    BYTES_AROUND_PARSER,
    CLOSE_AFTER_RESPONSE,
    RECV_DIRECT_MIN_BYTES,
    SENDFILE_MIN_BYTES,
    plain_socket_fd,
    request_body,
    send_zero_copy,
    settle_body,
)
from aif_gateway.store.base import BodyOnSocket, ObjectInfo
from aif_gateway.store.reader import FileReader

SIZE = 3 * 1024 * 1024 + 4321


def _serve(handler: Callable[[web.Request], Any], method: str, client: Callable[[int], Any]) -> Any:
    """Runs ``client(port)`` in a thread against ``handler`` served by aiohttp on uvloop."""

    async def serve() -> Any:
        app = web.Application()
        app.router.add_route(method, "/", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            return await asyncio.to_thread(client, port)
        finally:
            await runner.cleanup()

    return uvloop.run(serve())


# -- the switches ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variable", "switch"),
    [(transport.SENDFILE_ENV, transport.sendfile_enabled), (transport.RECV_DIRECT_ENV, transport.recv_direct_enabled)],
)
@pytest.mark.parametrize(("value", "enabled"), [(None, True), ("1", True), ("0", False), ("off", False)])
def test_switch_is_read_from_the_environment(monkeypatch, variable, switch, value: str | None, enabled: bool) -> None:
    if value is None:
        monkeypatch.delenv(variable, raising=False)
    else:
        monkeypatch.setenv(variable, value)
    switch.cache_clear()
    try:
        assert switch() is enabled
    finally:
        switch.cache_clear()


# -- the socket ------------------------------------------------------------------------------
def _transport(closing: bool = False, tls: bool = False, sock: object | None = None) -> mock.Mock:
    extra = {"sslcontext": object() if tls else None, "socket": sock}
    fake = mock.Mock()
    fake.is_closing.return_value = closing
    fake.get_extra_info.side_effect = lambda name, default=None: extra.get(name, default)
    return fake


def test_the_plain_socket_is_offered_only_where_bytes_may_bypass_aiohttp() -> None:
    sock = mock.Mock()
    sock.fileno.return_value = 42
    plain = make_mocked_request("GET", "/", transport=_transport(sock=sock))
    assert plain_socket_fd(plain) == 42
    assert plain_socket_fd(make_mocked_request("GET", "/", transport=_transport(tls=True, sock=sock))) is None
    assert plain_socket_fd(make_mocked_request("GET", "/", transport=_transport(closing=True, sock=sock))) is None
    assert plain_socket_fd(make_mocked_request("GET", "/", transport=_transport())) is None


class _RefusingReader:
    """A reader that must not be asked to send."""

    async def send_to(self, sock_fd: int, offset: int, count: int) -> int:
        raise AssertionError("send_to was called")


@pytest.mark.parametrize(("count", "switched_on"), [(SENDFILE_MIN_BYTES - 1, True), (SENDFILE_MIN_BYTES, False)])
def test_zero_copy_declines_small_bodies_and_when_switched_off(monkeypatch, count: int, switched_on: bool) -> None:
    monkeypatch.setattr(transport, "sendfile_enabled", lambda: switched_on)
    sock = mock.Mock()
    sock.fileno.return_value = 42
    request = make_mocked_request("GET", "/", transport=_transport(sock=sock))
    writer = mock.Mock()
    assert asyncio.run(send_zero_copy(request, writer, _RefusingReader(), 0, count)) is None  # type: ignore[arg-type]
    writer.drain.assert_not_called()


# -- sending ---------------------------------------------------------------------------------
def test_body_follows_bytes_still_buffered_in_the_transport(tmp_path: Path) -> None:
    """A prefix left in the transport's buffer must go out first.

    The handler queues 8 MiB without draining while the client is not reading yet, so most of it
    sits in uvloop's buffer when the sendfile starts; the body must still arrive in order, and
    the connection must serve the next request.
    """
    data = os.urandom(SIZE)
    (tmp_path / "object").write_bytes(data)
    reader = FileReader(os.open(tmp_path / "object", os.O_RDONLY), ObjectInfo("object", SIZE, mtime_ns=0, etag="-"))
    prefix = b"P" * (8 * 1024 * 1024)

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = len(prefix) + SIZE
        writer = await response.prepare(request)
        assert writer is not None
        await writer.write(prefix, drain=False)
        assert await send_zero_copy(request, writer, reader, 0, SIZE) == SIZE
        await response.write_eof()
        return response

    try:
        bodies = _serve(handler, "GET", _two_slow_gets)
    finally:
        asyncio.run(reader.close())
    assert bodies == [prefix + data, prefix + data]


def _two_slow_gets(port: int) -> list[bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    bodies = []
    for _ in range(2):
        conn.request("GET", "/")
        time.sleep(0.3)  # let the server's buffers fill before reading anything
        bodies.append(conn.getresponse().read())
    conn.close()
    return bodies


# -- receiving -------------------------------------------------------------------------------
def _recv_exactly(fd: int, count: int) -> bytes:
    """What the store's receive loop does: ``count`` bytes from a dup of a non-blocking socket."""
    sock = socket.socket(fileno=os.dup(fd))
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    data = bytearray()
    try:
        while len(data) < count:
            try:
                chunk = sock.recv(count - len(data))
            except BlockingIOError:
                poller.poll(1000)
                continue
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return bytes(data)


@pytest.mark.parametrize("taken", [True, False], ids=["taken", "declined"])
def test_a_large_body_ends_on_the_socket_whether_or_not_the_store_takes_it(taken: bool) -> None:
    body = os.urandom(RECV_DIRECT_MIN_BYTES * 2 + 7)
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        received = bytearray()
        async for item in request_body(request, request.content_length):
            if isinstance(item, BodyOnSocket):
                seen["on_socket"] = item.count
                if taken:
                    item.started = True
                    received += await asyncio.to_thread(_recv_exactly, item.fd, item.count)
            else:
                received += item
        seen["close"] = request.get(CLOSE_AFTER_RESPONSE, False)
        seen["around_parser"] = request.get(BYTES_AROUND_PARSER, 0)
        seen["left"] = request.get(BODY_LEFT_ON_SOCKET, False)
        response = web.Response(text=hashlib.sha256(received).hexdigest())
        if seen["close"]:
            response.force_close()  # as the app's middleware does
        return response

    def put(port: int) -> tuple[str, str | None]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("PUT", "/", body=body, headers={"Content-Length": str(len(body))})
        response = conn.getresponse()
        answer = (response.read().decode(), response.getheader("Connection"))
        conn.close()
        return answer

    digest, connection = _serve(handler, "PUT", put)
    assert digest == hashlib.sha256(body).hexdigest()
    assert seen["on_socket"] >= RECV_DIRECT_MIN_BYTES
    assert seen["close"] is taken
    assert seen["around_parser"] == (seen["on_socket"] if taken else 0)
    assert (connection == "close") is taken
    assert seen["left"] is False  # read in full: nothing to linger for


def test_a_stream_abandoned_mid_socket_is_settled_before_the_response() -> None:
    # As when the store's receive loop raises (a bad chunk signature): the stream is left
    # suspended, and the event loop would close it only later, after the response.
    body = os.urandom(RECV_DIRECT_MIN_BYTES * 2)
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        stream = request_body(request, request.content_length)
        async for item in stream:
            if isinstance(item, BodyOnSocket):
                item.started = True
                await asyncio.to_thread(_recv_exactly, item.fd, 1000)
                break  # abandoned, not closed
        seen["before"] = request.get(CLOSE_AFTER_RESPONSE, False)
        settle_body(request)
        seen["close"] = request.get(CLOSE_AFTER_RESPONSE, False)
        seen["left"] = request.get(BODY_LEFT_ON_SOCKET, False)
        seen["content_ended"] = request.content.is_eof()
        await stream.aclose()  # settles again: nothing changes
        response = web.Response(text="refused")
        response.force_close()
        return response

    def put(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            try:
                sock.sendall(f"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                sock.recv(65536)
            except OSError:
                pass  # this bare aiohttp server does not linger

    _serve(handler, "PUT", put)
    assert seen == {"before": False, "close": True, "left": True, "content_ended": True}


def test_a_body_without_a_length_goes_through_aiohttp() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        items = [item async for item in request_body(request, None)]
        assert not any(isinstance(item, BodyOnSocket) for item in items)
        return web.Response(text=str(sum(len(item) for item in items)))

    def put(port: int) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("PUT", "/", body=iter([b"x" * RECV_DIRECT_MIN_BYTES, b"y" * 5]), encode_chunked=True)
        answer = conn.getresponse().read().decode()
        conn.close()
        return answer

    assert _serve(handler, "PUT", put) == str(RECV_DIRECT_MIN_BYTES + 5)
