"""Space reserved as the bytes arrive (fsio.reserve), and the writer that feeds it
(publish.HashingWriter), on real files and sockets."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import socket
import threading

import pytest

from aif_gateway.fsio.reserve import FIRST_STEP, RESERVE_WINDOW, Reservation
from aif_gateway.store.publish import HashingWriter

MiB = 1 << 20


class Recorder:
    """A reserve function that records its ranges, or fails with ``fail``."""

    def __init__(self, fail: int | None = None) -> None:
        self.ranges: list[tuple[int, int]] = []
        self.fail = fail

    def __call__(self, fd: int, offset: int, length: int) -> None:
        self.ranges.append((offset, length))
        if self.fail is not None:
            raise OSError(self.fail, os.strerror(self.fail))

    @property
    def end(self) -> int:
        return max((offset + length for offset, length in self.ranges), default=0)


def test_nothing_is_reserved_before_bytes_are_in_hand() -> None:
    recorder = Recorder()
    reservation = Reservation(3, 0, 250 * MiB, recorder, "test")
    assert reservation.receive_step(0) == FIRST_STEP
    assert recorder.ranges == []
    reservation.cover(10)
    assert recorder.end == 20  # 10 bytes arrived: at most as many again ahead


def test_reservations_stay_within_a_window_of_the_bytes_written() -> None:
    recorder = Recorder()
    start = 7 * MiB
    reservation = Reservation(3, start, 1000 * MiB, recorder, "test")
    written = 0
    while written < 1000 * MiB:
        written = min(written + 3 * MiB, 1000 * MiB)
        reservation.cover(written)
        assert written <= recorder.end - start <= written + min(written, RESERVE_WINDOW)
    assert recorder.end == start + 1000 * MiB  # never past the declared size
    assert len(recorder.ranges) < 30  # windows, not a call per write
    ends = [offset + length for offset, length in recorder.ranges]
    assert [offset for offset, _ in recorder.ranges] == [start] + ends[:-1]  # contiguous


def test_a_full_disk_fails_the_write() -> None:
    reservation = Reservation(3, 0, 100 * MiB, Recorder(errno.ENOSPC), "test")
    with pytest.raises(OSError) as info:
        reservation.cover(MiB)
    assert info.value.errno == errno.ENOSPC


def test_an_unsupported_reservation_stops_trying() -> None:
    recorder = Recorder(errno.EOPNOTSUPP)
    reservation = Reservation(3, 0, 100 * MiB, recorder, "test")
    reservation.cover(MiB)
    reservation.cover(50 * MiB)
    assert len(recorder.ranges) == 1
    assert reservation.receive_step(MiB) == 100 * MiB  # nothing left to pace the reads by


def test_reserve_all_takes_the_whole_limit_at_once() -> None:
    recorder = Recorder()
    Reservation(3, 4096, 10 * MiB, recorder, "test").reserve_all()
    assert recorder.ranges == [(4096, 10 * MiB)]


def test_a_socket_body_is_received_window_by_window(tmp_path) -> None:
    data = random.Random(5).randbytes(9 * MiB + 17)
    reader, sender = socket.socketpair()
    reader.setblocking(False)
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    recorder = Recorder()
    writer = HashingWriter(
        path, fd, [], offset=100, unlink_on_discard=False, reservation=Reservation(fd, 100, len(data), recorder, "test")
    )
    thread = threading.Thread(target=sender.sendall, args=(data,))
    thread.start()
    try:
        assert writer.receive(reader.fileno(), len(data), 10.0) == len(data)
        thread.join()
        temp = writer.finish(fsync=False)
    finally:
        reader.close()
        sender.close()
    assert path.read_bytes()[100:] == data and temp.digests["MD5"] == hashlib.md5(data).digest()
    # Reserved only once bytes were received: after the first FIRST_STEP, as much again ahead.
    assert recorder.ranges[0] == (100, 2 * FIRST_STEP)
    assert recorder.end == 100 + len(data)
