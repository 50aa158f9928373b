"""Blocking HTTP/1.1 for the client's requests, called from its callers' worker threads.

One request per call on a keep-alive connection from a small, thread-safe pool (``Pool``); a
request on a kept-alive connection that the server had closed is sent again once on a fresh
connection. The response head is parsed here and the body goes into memory (``read_into``,
``read_all``) or into a file (``to_file``: ``recv_into`` a large buffer, hashed while it is in
the CPU's cache, ``pwrite``). ``Response.release()`` gives the connection back to the pool
when the body was read to its end, else closes it; ``Pool.abort()`` also ends the requests in
flight.

Why not aiohttp on the event loop: its per-request machinery and the hops between the loop and the
threads that write files cost about 1 ms of CPU per small object and capped one large object at a
few hundred MB/s (see perf/RESULTS.md, "Staging"); here a small GET costs a fifth of that.
Why not splice(2) from the socket into the file: the bytes must be hashed, and reading them back
from the file cost more than receiving them through the buffer (measured there too).

Only what S3 answers need: Content-Length or chunked bodies, no redirects, no proxies, no
compression (none is asked for). Request bodies (the checkpoint writer's PUTs and parts) are
sent from memory as given, piece by piece.

Failures: ``ConnectionError`` / ``TimeoutError`` for the transport and ``errors.TruncatedBody``
for a short body (all retried by callers as transient); ``FileError`` when ``to_file`` could not
write the file (its ``error``: the OSError).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..fsio.fullio import pwrite_all
from .errors import TruncatedBody

__all__ = ["Endpoint", "FileError", "Pool", "Response"]

_HEAD_LIMIT = 64 * 1024  # response heads are a few hundred bytes; S3 errors travel in the body


class FileError(Exception):
    """The file side of ``to_file`` failed (no space, an I/O error): not the network's fault."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class Endpoint:
    def __init__(self, url: str, ca_bundle: str | None = None) -> None:
        split = urlsplit(url)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ValueError(f"not an http(s) endpoint: {url}")
        self.tls = split.scheme == "https"
        self.host = split.hostname
        self.port = split.port or (443 if self.tls else 80)
        self.netloc = split.netloc  # the Host header (and what SigV4 signs)
        self._ssl: Any = None
        if self.tls:
            import ssl  # here: a plain-HTTP stage does not load OpenSSL's bindings

            self._ssl = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()

    def connect(self, timeout_s: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl is not None:
            sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
        return sock


class _Connection:
    def __init__(self, sock: socket.socket, tls: bool) -> None:
        self.sock = sock
        self.tls = tls
        self.buffer = bytearray(_HEAD_LIMIT)
        self.start = self.end = 0  # buffer[start:end]: bytes received and not consumed yet
        self.used = False  # a request went out on it before: the server may have closed it since

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> int:
        """Receive more into the buffer (compacting it first); 0 at the peer's end of stream."""
        if self.start:
            pending = self.end - self.start
            self.buffer[:pending] = self.buffer[self.start : self.end]
            self.start, self.end = 0, pending
        if self.end == len(self.buffer):
            raise ConnectionError("an HTTP response head or chunk header longer than 64 KiB")
        n = self.sock.recv_into(memoryview(self.buffer)[self.end :])
        self.end += n
        return n

    def read_line(self) -> bytes:
        while True:
            found = self.buffer.find(b"\r\n", self.start, self.end)
            if found >= 0:
                line = bytes(self.buffer[self.start : found])
                self.start = found + 2
                return line
            if not self._fill():
                raise ConnectionResetError("the server closed the connection mid-response")

    def read_into(self, view: memoryview) -> None:
        """Exactly len(view) bytes: what the buffer holds first, then straight from the socket."""
        got = min(len(view), self.end - self.start)
        view[:got] = memoryview(self.buffer)[self.start : self.start + got]
        self.start += got
        while got < len(view):
            n = self.sock.recv_into(view[got:])
            if not n:
                raise TruncatedBody(f"the body ended after {got} of {len(view)} bytes")
            got += n


class Response:
    def __init__(
        self, pool: Pool, conn: _Connection, status: int, reason: str, headers: dict[str, str], head_only: bool
    ) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self.length = None if self.chunked or length is None else int(length)
        self._left = 0 if head_only or status in (204, 304) else self.length
        self._keep = headers.get("connection", "").lower() != "close" and (self._left is not None or self.chunked)

    @property
    def _c(self) -> _Connection:
        if self._conn is None:
            raise RuntimeError("the response was released")
        return self._conn

    def read_into(self, view: memoryview) -> None:
        """The body's next len(view) bytes (a body with a Content-Length)."""
        if self._left is None or len(view) > self._left:
            raise TruncatedBody(f"asked for {len(view)} bytes of a body with {self._left} left")
        self._c.read_into(view)
        self._left -= len(view)

    def read_all(self, limit: int) -> bytes:
        """The whole body (at most ``limit`` bytes: longer ones raise ConnectionError)."""
        if self.chunked:
            return b"".join(self._chunks(limit))
        if self._left is None:  # delimited by the end of the connection
            self._keep = False
            parts, total = [], 0
            conn = self._c
            while True:
                if conn.start < conn.end:
                    parts.append(bytes(conn.buffer[conn.start : conn.end]))
                    total += conn.end - conn.start
                    conn.start = conn.end
                if total > limit:
                    raise ConnectionError(f"a response body over {limit} bytes")
                if not conn._fill():
                    return b"".join(parts)
        if self._left > limit:
            raise ConnectionError(f"a response body of {self._left} bytes, over {limit}")
        out = bytearray(self._left)
        self.read_into(memoryview(out))
        return bytes(out)

    def _chunks(self, limit: int) -> Any:
        conn, total = self._c, 0
        while True:
            size = int(conn.read_line().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while conn.read_line():  # trailers, then the empty line
                    pass
                self._left = 0
                return
            total += size
            if total > limit:
                raise ConnectionError(f"a chunked response body over {limit} bytes")
            piece = bytearray(size)
            conn.read_into(memoryview(piece))
            if conn.read_line():
                raise ConnectionError("a malformed chunked body")
            yield bytes(piece)

    def to_file(
        self, fd: int, offset: int, count: int, buffer: memoryview, hasher: Callable[[memoryview], None] | None
    ) -> None:
        """The next ``count`` body bytes, written at ``offset`` of ``fd`` through ``buffer``
        and fed to ``hasher`` in order on the way. A failure of the file raises FileError."""
        if self._left is None or count > self._left:
            raise TruncatedBody(f"asked for {count} bytes of a body with {self._left} left")
        conn = self._c
        done = 0
        while done < count:
            piece = buffer[: min(len(buffer), count - done)]
            conn.read_into(piece)
            self._left -= len(piece)
            if hasher is not None:
                hasher(piece)
            _pwrite_all(fd, piece, offset + done)
            done += len(piece)

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._keep and self._left == 0 and conn.start == conn.end:
            self._pool._give_back(conn)
        else:
            self._pool._drop(conn)

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    try:
        pwrite_all(fd, view, offset)
    except OSError as exc:
        raise FileError(exc) from None


class Pool:
    def __init__(
        self, endpoint: Endpoint, size: int, connect_timeout_s: float = 20.0, read_timeout_s: float = 120.0
    ) -> None:
        self.endpoint = endpoint
        self._size = size
        self._connect_timeout = connect_timeout_s
        self._read_timeout = read_timeout_s
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()  # idle or in use: what abort() shuts down
        self._lock = threading.Lock()
        self._closed = False

    def _take(self) -> _Connection:
        with self._lock:
            if self._closed:
                raise ConnectionAbortedError("the connection pool was closed")
            if self._idle:
                return self._idle.pop()
        sock = self.endpoint.connect(self._connect_timeout)
        sock.settimeout(self._read_timeout)
        conn = _Connection(sock, self.endpoint.tls)
        with self._lock:
            self._open.add(conn)
        return conn

    def _give_back(self, conn: _Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._size:
                conn.used = True
                self._idle.append(conn)
                return
        self._drop(conn)

    def _drop(self, conn: _Connection) -> None:
        with self._lock:
            self._open.discard(conn)
        conn.close()

    def request(
        self, method: str, target: str, headers: dict[str, str], body: Sequence[memoryview | bytes | bytearray] = ()
    ) -> Response:
        """Send ``method target`` with ``headers`` (Host among them; Content-Length too when
        there is a ``body``, given as pieces sent as they are) and read the response head."""
        data = (
            f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        ).encode("latin-1")
        while True:
            conn = self._take()
            try:
                conn.sock.sendall(data)
                for piece in body:
                    conn.sock.sendall(piece)
                status_line = conn.read_line()
                break
            except ConnectionError:
                self._drop(conn)
                if not conn.used:
                    raise
                # A kept-alive connection the server had closed: nothing was processed, send again.
            except BaseException:
                self._drop(conn)
                raise
        try:
            version, _, rest = status_line.decode("latin-1").partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise ConnectionError(f"not an HTTP/1.x response: {status_line[:100]!r}")
            headers_in: dict[str, str] = {}
            while line := conn.read_line():
                name, _, value = line.decode("latin-1").partition(":")
                headers_in[name.strip().lower()] = value.strip()
            if version == "HTTP/1.0":
                headers_in.setdefault("connection", "close")
        except BaseException:
            self._drop(conn)
            raise
        return Response(self, conn, int(code), reason, headers_in, head_only=method == "HEAD")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._drop(conn)

    def abort(self) -> None:
        """Close the pool and end every request in flight: their threads' reads return at once
        (and fail), instead of waiting for a slow or stalled server."""
        self.close()
        with self._lock:
            in_use = list(self._open)
        for conn in in_use:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already
