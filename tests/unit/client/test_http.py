"""The S3 client's blocking HTTP/1.1 (client/http.py) against a scripted server on a real socket: bodies to files,
chunked bodies, keep-alive and a kept-alive connection the server closed, short bodies, abort."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import xxhash

from aif_gateway.client.errors import TruncatedBody
from aif_gateway.client.http import Endpoint, Pool

MiB = 1 << 20
BODY = os.urandom(3 * MiB + 12345)

# A handler gets the request head and the connection; it answers and returns whether to keep
# reading requests on that connection.
Handler = Callable[[bytes, socket.socket], bool]


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            try:
                while True:
                    while b"\r\n\r\n" not in data:
                        more = conn.recv(65536)
                        if not more:
                            return
                        data += more
                    head, _, data = data.partition(b"\r\n\r\n")
                    self.requests.append(head)
                    if not self.handler(head, conn):
                        return
            except (BrokenPipeError, ConnectionResetError):
                return  # the client went away (as some tests make it do)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], Pool]]:
    servers: list[Server] = []
    pools: list[Pool] = []

    def start(handler: Handler) -> Pool:
        server = Server(handler)
        servers.append(server)
        pool = Pool(Endpoint(f"http://127.0.0.1:{server.port}"), 4)
        pool.server = server  # type: ignore[attr-defined]
        pools.append(pool)
        return pool

    yield start
    for pool in pools:
        pool.close()
    for server in servers:
        server.close()


def body_answer(body: bytes, extra: str = "") -> Handler:
    def handler(head: bytes, conn: socket.socket) -> bool:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body)
        return "connection: close" not in extra.lower()

    return handler


def test_a_body_lands_in_the_file_at_its_offset_and_is_hashed_in_order(serve, tmp_path: Path) -> None:
    pool = serve(body_answer(BODY))
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    hasher = xxhash.xxh3_64()
    try:
        for _ in range(2):  # the second request reuses the connection
            with pool.request("GET", "/b/k", {"host": "x"}) as response:
                assert response.status == 200 and response.length == len(BODY)
                response.to_file(fd, 100, len(BODY), memoryview(bytearray(MiB)), hasher.update)
    finally:
        os.close(fd)
    assert path.read_bytes() == bytes(100) + BODY
    assert hasher.digest() == xxhash.xxh3_64(BODY + BODY).digest()
    assert pool.server.connections == 1  # type: ignore[attr-defined]


def test_a_chunked_body_is_read_whole(serve) -> None:
    def handler(head: bytes, conn: socket.socket) -> bool:
        conn.sendall(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\n<Err>\r\n3\r\nor/\r\n0\r\nX-Trailer: y\r\n\r\n"
        )
        return True

    pool = serve(handler)
    for _ in range(2):
        with pool.request("GET", "/b/missing", {"host": "x"}) as response:
            assert response.status == 404 and response.read_all(1000) == b"<Err>or/"
    assert pool.server.connections == 1  # type: ignore[attr-defined]


def test_a_connection_the_server_closed_while_idle_is_replaced_and_the_request_resent(serve) -> None:
    served = []

    def handler(head: bytes, conn: socket.socket) -> bool:
        served.append(head)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return False  # close after each response without saying so

    pool = serve(handler)
    for _ in range(3):
        with pool.request("GET", "/b/k", {"host": "x"}) as response:
            assert response.read_all(10) == b"ok"
    assert len(served) == 3 and pool.server.connections == 3  # type: ignore[attr-defined]


def test_connection_close_and_http_1_0_are_not_reused(serve) -> None:
    pool = serve(body_answer(b"abc", "Connection: close\r\n"))
    for _ in range(2):
        with pool.request("GET", "/b/k", {"host": "x"}) as response:
            assert response.read_all(10) == b"abc"
    assert pool.server.connections == 2  # type: ignore[attr-defined]


def test_a_head_answer_has_a_length_but_no_body(serve) -> None:
    def handler(head: bytes, conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Amz-Checksum-Crc32c: abc=\r\n\r\n")
        return True

    pool = serve(handler)
    for _ in range(2):
        with pool.request("HEAD", "/b/k", {"host": "x"}) as response:
            assert response.length == 1000 and response.headers["x-amz-checksum-crc32c"] == "abc="
    assert pool.server.connections == 1  # type: ignore[attr-defined]


def test_a_body_shorter_than_its_length_is_a_truncated_body(serve, tmp_path: Path) -> None:
    def handler(head: bytes, conn: socket.socket) -> bool:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\n\r\n".encode() + BODY[:MiB])
        return False

    pool = serve(handler)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        with pool.request("GET", "/b/k", {"host": "x"}) as response, pytest.raises(TruncatedBody):
            response.to_file(fd, 0, len(BODY), memoryview(bytearray(MiB)), None)
    finally:
        os.close(fd)
    with pool.request("GET", "/b/k", {"host": "x"}):
        pass
    assert pool.server.connections == 2  # type: ignore[attr-defined]


def test_abort_ends_a_read_stalled_on_a_silent_server(serve, tmp_path: Path) -> None:
    release = threading.Event()

    def handler(head: bytes, conn: socket.socket) -> bool:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\n\r\n".encode() + BODY[:MiB])
        release.wait(30)  # then nothing: the client's read waits
        return False

    pool = serve(handler)
    errors: list[BaseException] = []

    def read() -> None:
        fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
        try:
            with pool.request("GET", "/b/k", {"host": "x"}) as response:
                response.to_file(fd, 0, len(BODY), memoryview(bytearray(MiB)), None)
        except BaseException as exc:
            errors.append(exc)
        finally:
            os.close(fd)

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(0.5)
    assert reader.is_alive()  # stalled
    pool.abort()
    reader.join(5)
    release.set()
    assert not reader.is_alive() and len(errors) == 1
    with pytest.raises(ConnectionAbortedError):
        pool.request("GET", "/b/k", {"host": "x"})
