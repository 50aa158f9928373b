"""recv_hashed of both engines on real sockets, and the receiver threads around it.

The reading end is non-blocking, as an event loop's socket is, so every test also exercises the
EAGAIN -> poll path; the sending end writes in uneven pieces with pauses.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import threading
import time
import zlib

import pytest

from aif_gateway import _native
from aif_gateway.fsio import pyengine, sockrecv

MIB = 1 << 20
ENGINES = {"native": _native, "python": pyengine}


@pytest.fixture(params=sorted(ENGINES))
def engine(request):
    return ENGINES[request.param]


@pytest.fixture
def pair():
    reader, sender = socket.socketpair()
    reader.setblocking(False)
    yield reader, sender
    reader.close()
    sender.close()


def _send_later(sock: socket.socket, data: bytes, seed: int, close: bool = False) -> threading.Thread:
    """Sends ``data`` in random pieces with short pauses, from a thread."""

    def run() -> None:
        rng = random.Random(seed)
        view = memoryview(data)
        try:
            while view:
                n = rng.randint(1, 300_000)
                sock.sendall(view[:n])
                view = view[n:]
                if rng.random() < 0.2:
                    time.sleep(0.002)
            if close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader gave up on the body (a refused one) and closed

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("size", [0, 1, 65535, 3 * MIB + 5])
@pytest.mark.parametrize("offset", [0, 4097])
def test_reads_exactly_count_bytes_into_the_file_and_hashes_them(engine, pair, tmp_path, size, offset) -> None:
    reader, sender = pair
    data = random.Random(size).randbytes(size)
    trailing = b"NEXT REQUEST"
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"p" * offset, 0)
        hasher = engine.Hasher(["CRC32"])
        thread = _send_later(sender, data + trailing, seed=size)
        got = engine.recv_hashed(reader.fileno(), fd, offset, size, hasher, 10_000)
        thread.join()
        assert got == size
        assert os.pread(fd, size + offset + 10, 0) == b"p" * offset + data
        digests = hasher.digests()
        assert digests["MD5"] == hashlib.md5(data).digest()
        assert digests["CRC32"] == zlib.crc32(data).to_bytes(4, "big")
    finally:
        os.close(fd)
    # What follows the body (a pipelined request) is left on the socket, unread.
    reader.setblocking(True)
    assert reader.recv(100) == trailing


def test_both_engines_agree_byte_for_byte(pair, tmp_path) -> None:
    reader, sender = pair
    results = []
    for name in sorted(ENGINES):
        engine = ENGINES[name]
        data = random.Random(7).randbytes(2 * MIB + 333)
        fd = os.open(tmp_path / name, os.O_RDWR | os.O_CREAT, 0o644)
        hasher = engine.Hasher(["CRC32C", "SHA256", "CRC64NVME"])
        thread = _send_later(sender, data, seed=len(name))
        engine.recv_hashed(reader.fileno(), fd, 10, len(data), hasher, 10_000)
        thread.join()
        results.append((os.pread(fd, 3 * MIB, 0), hasher.digests()))
        os.close(fd)
    assert results[0] == results[1]


def test_peer_closing_early_is_a_connection_reset(engine, pair, tmp_path) -> None:
    reader, sender = pair
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        thread = _send_later(sender, b"x" * 1000, seed=1, close=True)
        with pytest.raises(ConnectionResetError, match="after 1000 of 5000"):
            engine.recv_hashed(reader.fileno(), fd, 0, 5000, engine.Hasher([]), 10_000)
        thread.join()
    finally:
        os.close(fd)


def test_a_silent_peer_times_out(engine, pair, tmp_path) -> None:
    reader, sender = pair
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        sender.sendall(b"abc")
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="sent nothing"):
            engine.recv_hashed(reader.fileno(), fd, 0, 10, engine.Hasher([]), 300)
        assert 0.25 < time.monotonic() - started < 5
        assert os.pread(fd, 10, 0) == b"abc"
    finally:
        os.close(fd)


def test_write_errors_are_raised(engine, pair, tmp_path) -> None:
    reader, sender = pair
    fd = os.open(tmp_path / "f", os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        sender.sendall(b"abc")
        with pytest.raises(OSError) as info:
            engine.recv_hashed(reader.fileno(), fd, 0, 3, engine.Hasher([]), 1000)
        assert not isinstance(info.value, (ConnectionError, TimeoutError))
    finally:
        os.close(fd)


def test_bad_arguments(engine, pair, tmp_path) -> None:
    reader, _ = pair
    with pytest.raises(ValueError):
        engine.recv_hashed(reader.fileno(), 0, -1, 1, engine.Hasher([]), 1000)
    with pytest.raises(ValueError):
        engine.recv_hashed(reader.fileno(), 0, 0, -1, engine.Hasher([]), 1000)
    with pytest.raises(ValueError):
        engine.recv_hashed(reader.fileno(), 0, 0, 1, engine.Hasher([]), 0)


# -- receiver threads ------------------------------------------------------------------------


def test_receive_in_thread_runs_on_a_private_descriptor(pair) -> None:
    reader, sender = pair
    sender.sendall(b"hello")
    seen = []

    def receive(own: int) -> int:
        seen.append(own)
        reader_copy = socket.socket(fileno=own)
        try:
            reader_copy.setblocking(True)
            return len(reader_copy.recv(5))
        finally:
            reader_copy.detach()

    open_before = len(os.listdir("/proc/self/fd"))
    assert asyncio.run(sockrecv.receive_in_thread(reader.fileno(), receive)) == 5
    assert seen and seen[0] != reader.fileno()
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_cancelling_the_caller_shuts_the_socket_and_frees_the_thread(pair, tmp_path, monkeypatch) -> None:
    slots = sockrecv.ThreadSlots(1, "test-recv")
    monkeypatch.setattr(sockrecv, "_receivers", lambda: slots)
    reader, sender = pair
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)

    def receive(own: int) -> int:
        return _native.recv_hashed(own, fd, 0, 10 * MIB, _native.Hasher([]), 60_000)

    async def run() -> None:
        task = asyncio.ensure_future(sockrecv.receive_in_thread(reader.fileno(), receive))
        await asyncio.sleep(0.2)
        with pytest.raises(sockrecv.ReceiveUnavailable):  # the only thread is taken
            await sockrecv.receive_in_thread(reader.fileno(), receive)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.monotonic()
    asyncio.run(run())
    slots.shutdown(wait=True)  # returns once the blocked recv saw the shutdown
    assert time.monotonic() - started < 10
    assert slots.has_free_slot()
    os.close(fd)


# -- aws-chunked bodies: decoded in the same loop ------------------------------------------------


def _signed_chunked(data: bytes, chunk: int, ctx) -> bytes:
    from ..s3.test_chunked import signed_body

    return signed_body(data, chunk, ctx)


def _decoder(engine, ctx, length):
    from aif_gateway.fsio import pychunked

    cls = _native.ChunkedDecoder if engine is _native else pychunked.ChunkedDecoder
    return cls(True, False, ctx.signing_key, ctx.amz_date, ctx.scope, ctx.seed_signature, length, [])


def test_signed_aws_chunked_body_is_decoded_into_the_file(engine, pair, tmp_path) -> None:
    from ..s3.test_chunked import SIGNED

    reader, sender = pair
    data = random.Random(3).randbytes(2 * MIB + 77)
    body = _signed_chunked(data, 128 * 1024, SIGNED)
    decoder = _decoder(engine, SIGNED, len(data))
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        hasher = engine.Hasher([])
        thread = _send_later(sender, body, seed=3)
        written = engine.recv_hashed(reader.fileno(), fd, 5, len(body), hasher, 10_000, decoder)
        thread.join()
        decoder.finish()
        assert decoder.done and written == len(data)
        assert os.pread(fd, len(data) + 100, 5) == data
        assert hasher.digests()["MD5"] == hashlib.md5(data).digest()
    finally:
        os.close(fd)


def test_a_tampered_chunk_raises_the_decoders_error(engine, pair, tmp_path) -> None:
    from ..s3.test_chunked import SIGNED

    reader, sender = pair
    data = random.Random(4).randbytes(MIB)
    body = bytearray(_signed_chunked(data, 64 * 1024, SIGNED))
    body[len(body) // 2] ^= 1
    decoder = _decoder(engine, SIGNED, len(data))
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        thread = _send_later(sender, bytes(body), seed=4)
        with pytest.raises(ValueError) as info:
            engine.recv_hashed(reader.fileno(), fd, 0, len(body), engine.Hasher([]), 10_000, decoder)
        reader.shutdown(socket.SHUT_RDWR)  # as the gateway closes such a connection
        thread.join()
        assert getattr(info.value, "kind", None) in ("signature", "framing")
        assert not decoder.done
    finally:
        os.close(fd)


def test_native_loop_refuses_a_decoder_of_another_type(pair, tmp_path) -> None:
    reader, _ = pair
    with pytest.raises(TypeError):
        _native.recv_hashed(reader.fileno(), 0, 0, 1, _native.Hasher([]), 1000, object())
