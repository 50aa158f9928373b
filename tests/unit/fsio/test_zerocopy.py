"""The sendfile loop against real files and real (non-blocking) sockets, compared with pread."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aif_gateway.fsio import zerocopy
from aif_gateway.fsio.zerocopy import SendfileUnavailable, send_file, send_file_in_thread

SIZE = 3 * 1024 * 1024 + 4321


@pytest.fixture
def data_file(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    data = os.urandom(SIZE)
    path = tmp_path / "object"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(sender, receiver): the sender non-blocking with a small buffer, as a loop's socket is."""
    sender, receiver = socket.socketpair()
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    sender.setblocking(False)
    yield sender, receiver
    sender.close()
    receiver.close()


def _drain(sock: socket.socket, into: bytearray) -> threading.Thread:
    """Reads ``sock`` to EOF in a thread (slowly enough that the sender meets EAGAIN)."""

    def run() -> None:
        while chunk := sock.recv(8192):
            into.extend(chunk)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _send_and_receive(pair, fd: int, offset: int, count: int) -> tuple[int, bytes]:
    sender, receiver = pair
    received = bytearray()
    reader = _drain(receiver, received)
    sent = send_file(sender.fileno(), fd, offset, count)
    sender.shutdown(socket.SHUT_WR)
    reader.join()
    return sent, bytes(received)


@pytest.mark.parametrize(
    ("offset", "count"),
    [(0, SIZE), (0, 1), (1, SIZE - 1), (4095, 4097), (SIZE - 70_000, 70_000), (123_457, 2 * 1024 * 1024)],
)
def test_sends_the_same_bytes_as_pread(pair, data_file, offset: int, count: int) -> None:
    fd, _ = data_file
    sent, received = _send_and_receive(pair, fd, offset, count)
    assert sent == count
    assert received == os.pread(fd, count, offset)


def test_a_file_shorter_than_asked_sends_what_exists(pair, data_file) -> None:
    fd, data = data_file
    sent, received = _send_and_receive(pair, fd, SIZE - 1000, 5000)
    assert sent == 1000
    assert received == data[-1000:]


def test_leaves_the_socket_non_blocking(pair, data_file) -> None:
    sender, _ = pair
    flags = fcntl.fcntl(sender.fileno(), fcntl.F_GETFL)
    _send_and_receive(pair, data_file[0], 0, SIZE)
    assert fcntl.fcntl(sender.fileno(), fcntl.F_GETFL) == flags
    assert flags & os.O_NONBLOCK


def test_a_closed_peer_is_a_connection_error(pair, data_file) -> None:
    sender, receiver = pair
    receiver.close()
    with pytest.raises(ConnectionError):
        send_file(sender.fileno(), data_file[0], 0, SIZE)


def test_a_peer_that_reads_nothing_times_out(pair, data_file) -> None:
    sender, _ = pair
    with pytest.raises(TimeoutError):
        send_file(sender.fileno(), data_file[0], 0, SIZE, stall_timeout_s=0.5)


def test_a_cancelled_send_stops_while_waiting(pair, data_file) -> None:
    sender, _ = pair
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(TimeoutError, match="cancelled"):
        send_file(sender.fileno(), data_file[0], 0, SIZE, cancelled)


def test_a_source_sendfile_refuses_is_unavailable_before_any_byte(pair) -> None:
    sender, receiver = pair
    read_end, write_end = os.pipe()  # sendfile needs a seekable source: a pipe is refused
    try:
        os.write(write_end, b"x" * 100)
        with pytest.raises(SendfileUnavailable):
            send_file(sender.fileno(), read_end, 0, 100)
    finally:
        os.close(read_end)
        os.close(write_end)
    receiver.setblocking(False)
    with pytest.raises(BlockingIOError):
        receiver.recv(1)  # nothing reached the peer


def test_in_thread_sends_and_closes_its_private_descriptors(pair, data_file) -> None:
    sender, receiver = pair
    fd, data = data_file
    open_before = len(os.listdir("/proc/self/fd"))
    received = bytearray()
    reader = _drain(receiver, received)
    sent = asyncio.run(send_file_in_thread(sender.fileno(), fd, 10, SIZE - 10))
    sender.shutdown(socket.SHUT_WR)
    reader.join()
    assert (sent, bytes(received)) == (SIZE - 10, data[10:])
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_in_thread_is_unavailable_when_every_sender_is_busy(pair, data_file, monkeypatch) -> None:
    monkeypatch.setattr(zerocopy, "_senders", lambda: busy)
    busy = zerocopy.ThreadSlots(1, "test-sender")
    sender, _ = pair

    async def two_sends() -> None:
        # The first blocks on a peer that reads nothing; the second finds no free thread.
        first = asyncio.ensure_future(send_file_in_thread(sender.fileno(), data_file[0], 0, SIZE))
        await asyncio.sleep(0)
        with pytest.raises(SendfileUnavailable, match="busy"):
            await send_file_in_thread(sender.fileno(), data_file[0], 0, SIZE)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first

    asyncio.run(two_sends())
    busy.shutdown(wait=True)  # the cancelled sender noticed and returned its thread
    assert busy.has_free_slot()
