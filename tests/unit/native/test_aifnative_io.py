"""File I/O of both engines on real files: hashing writes, striped pread/pwrite, copies,
reflinks, preallocation and aligned buffers. Each test runs the C engine and its Python version."""

from __future__ import annotations

import ctypes
import errno
import os
import random
import resource

import pytest

from aif_gateway import _native
from aif_gateway.fsio import pyengine

MIB = 1 << 20
SIZES = [0, 1, 7, 4095, 4096, 65537, MIB + 3, 9 * MIB]
ENGINES = {"native": _native, "python": pyengine}


@pytest.fixture(params=sorted(ENGINES))
def engine(request):
    return ENGINES[request.param]


def _data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _open(path, flags=os.O_RDWR | os.O_CREAT):
    return os.open(path, flags | os.O_CLOEXEC, 0o644)


@pytest.fixture
def bad_fd():
    """A descriptor number that is closed and that no later open() hands out (it takes the lowest)."""
    fd = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 1
    with pytest.raises(OSError):
        os.fstat(fd)
    return fd


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("offset", [0, 3, 4096])
def test_write_hashed_writes_at_offset_and_hashes(engine, tmp_path, size, offset):
    data = _data(size, seed=size)
    path = tmp_path / "f"
    path.write_bytes(b"x" * offset)
    hasher = engine.Hasher(["CRC32C", "SHA256"])
    fd = _open(path)
    try:
        assert engine.write_hashed(fd, data, offset, hasher) == size
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * offset + data
    expected = pyengine.Hasher(["CRC32C", "SHA256"])
    expected.update(data)
    assert hasher.digests() == expected.digests()


def test_write_hashed_batches_add_up_to_one_object(engine, tmp_path):
    data = _data(3 * MIB + 11, seed=1)
    cuts = [0, 5, MIB, MIB + 4097, 3 * MIB + 11]
    hasher = engine.Hasher(["CRC64NVME"])
    fd = _open(tmp_path / "f")
    try:
        for a, b in zip(cuts, cuts[1:]):
            engine.write_hashed(fd, memoryview(data)[a:b], a, hasher)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data
    whole = engine.Hasher(["CRC64NVME"])
    whole.update(data)
    assert hasher.digests() == whole.digests()


def test_write_hashed_bad_fd_raises_oserror(engine, bad_fd):
    with pytest.raises(OSError) as raised:
        engine.write_hashed(bad_fd, b"abc", 0, engine.Hasher([]))
    assert raised.value.errno == errno.EBADF


def test_write_hashed_to_read_only_fd_raises(engine, tmp_path):
    (tmp_path / "f").write_bytes(b"")
    fd = _open(tmp_path / "f", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as raised:
            engine.write_hashed(fd, b"abc", 0, engine.Hasher([]))
    finally:
        os.close(fd)
    assert raised.value.errno == errno.EBADF


@pytest.mark.parametrize(
    "size, offset, stripe, threads",
    [
        (0, 0, 4096, 4),
        (1, 0, 4096, 4),
        (4095, 1, 4096, 3),
        (65537, 4095, 4096, 8),
        (MIB + 3, 7, 65536, 4),
        (MIB + 3, 0, 1000, 16),  # a stripe size that is no power of two
        (9 * MIB, 3 * MIB, 4 * MIB, 2),
        (9 * MIB, 5, MIB, 1),
    ],
)
def test_striped_write_then_read_round_trips(engine, tmp_path, size, offset, stripe, threads):
    data = _data(size, seed=size + offset)
    fd = _open(tmp_path / "f")
    try:
        assert engine.pwrite_striped(fd, data, offset, stripe, threads) == size
        assert os.fstat(fd).st_size == (offset + size if size else 0)
        back = bytearray(size)
        assert engine.pread_striped(fd, back, offset, stripe, threads) == size
    finally:
        os.close(fd)
    assert back == data
    assert (tmp_path / "f").read_bytes()[offset:] == data


@pytest.mark.parametrize(
    "file_size, offset", [(0, 0), (10, 0), (5000, 100), (MIB + 3, 4096), (MIB + 3, MIB + 3), (10, 50)]
)
def test_striped_read_stops_at_end_of_file(engine, tmp_path, file_size, offset):
    data = _data(file_size, seed=3)
    (tmp_path / "f").write_bytes(data)
    fd = _open(tmp_path / "f", os.O_RDONLY)
    try:
        into = bytearray(b"\xee" * (2 * MIB))
        got = engine.pread_striped(fd, into, offset, 4096, 4)
    finally:
        os.close(fd)
    expected = data[offset:]
    assert got == len(expected)
    assert into[:got] == expected
    assert into[got:] == b"\xee" * (len(into) - got)  # nothing past the end of file is touched


def test_striped_engines_agree_on_partial_reads(tmp_path):
    (tmp_path / "f").write_bytes(_data(300_001, seed=4))
    fd = _open(tmp_path / "f", os.O_RDONLY)
    try:
        for offset in (0, 1, 4095, 299_999):
            a, b = bytearray(MIB), bytearray(MIB)
            assert _native.pread_striped(fd, a, offset, 8192, 5) == pyengine.pread_striped(fd, b, offset, 8192, 5)
            assert a == b
    finally:
        os.close(fd)


@pytest.mark.parametrize("writing", [True, False])
def test_striped_bad_fd_raises_oserror(engine, bad_fd, writing):
    call = engine.pwrite_striped if writing else engine.pread_striped
    with pytest.raises(OSError) as raised:
        call(bad_fd, bytearray(MIB), 0, 4096, 4)
    assert raised.value.errno == errno.EBADF


def test_striped_write_to_read_only_fd_raises(engine, tmp_path):
    (tmp_path / "f").write_bytes(b"")
    fd = _open(tmp_path / "f", os.O_RDONLY)
    try:
        with pytest.raises(OSError):
            engine.pwrite_striped(fd, bytes(MIB), 0, 4096, 4)
    finally:
        os.close(fd)


@pytest.mark.parametrize("stripe, threads", [(0, 1), (4096, 0), (-1, 2)])
def test_striped_rejects_nonsense_arguments(engine, tmp_path, stripe, threads):
    fd = _open(tmp_path / "f")
    try:
        with pytest.raises(ValueError):
            engine.pwrite_striped(fd, b"abc", 0, stripe, threads)
        with pytest.raises(ValueError):
            engine.pread_striped(fd, bytearray(3), -1, 4096, 1)
    finally:
        os.close(fd)


def test_striped_read_needs_a_writable_buffer(engine, tmp_path):
    fd = _open(tmp_path / "f")
    try:
        with pytest.raises(TypeError):
            engine.pread_striped(fd, b"abc", 0, 4096, 1)
    finally:
        os.close(fd)


def test_o_direct_read_into_aligned_buffer(engine, tmp_path):
    data = _data(2 * MIB, seed=5)
    (tmp_path / "f").write_bytes(data)
    buf = engine.aligned_buffer(MIB)
    fd = _open(tmp_path / "f", os.O_RDONLY | os.O_DIRECT)
    try:
        assert engine.pread_striped(fd, buf, MIB, 256 * 1024, 4) == MIB
    finally:
        os.close(fd)
    assert bytes(memoryview(buf)) == data[MIB:]


@pytest.mark.parametrize("size", [0, 1, 65537, 9 * MIB])
@pytest.mark.parametrize("src_offset, dst_offset", [(0, 0), (3, 4096), (4096, 1)])
def test_copy_range_across_files(engine, tmp_path, size, src_offset, dst_offset):
    data = _data(src_offset + size, seed=size)
    (tmp_path / "src").write_bytes(data)
    src = _open(tmp_path / "src", os.O_RDONLY)
    dst = _open(tmp_path / "dst")
    try:
        assert engine.copy_range(src, dst, src_offset, dst_offset, size) == size
    finally:
        os.close(src)
        os.close(dst)
    assert (tmp_path / "dst").read_bytes() == (bytes(dst_offset) + data[src_offset:] if size else b"")


def test_copy_range_stops_at_the_source_end(engine, tmp_path):
    (tmp_path / "src").write_bytes(b"0123456789")
    src = _open(tmp_path / "src", os.O_RDONLY)
    dst = _open(tmp_path / "dst")
    try:
        assert engine.copy_range(src, dst, 4, 0, 100) == 6
    finally:
        os.close(src)
        os.close(dst)
    assert (tmp_path / "dst").read_bytes() == b"456789"


def test_copy_range_falls_back_where_the_kernel_refuses(engine, tmp_path):
    """copy_file_range refuses an O_APPEND target (EBADF): the bytes go through the process."""
    data = _data(3 * MIB + 1, seed=6)
    (tmp_path / "src").write_bytes(data)
    src = _open(tmp_path / "src", os.O_RDONLY)
    dst = _open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        with pytest.raises(OSError) as refused:
            os.copy_file_range(src, dst, 10)
        assert refused.value.errno == errno.EBADF
        assert engine.copy_range(src, dst, 0, 0, len(data)) == len(data)
    finally:
        os.close(src)
        os.close(dst)
    assert (tmp_path / "dst").read_bytes() == data


def test_copy_range_between_filesystems(engine, tmp_path):
    """A memfd lives on tmpfs: from there to tmp_path is another filesystem (EXDEV) unless
    tmp_path is tmpfs too; the result is the same either way."""
    data = _data(MIB + 5, seed=8)
    src = os.memfd_create("src", os.MFD_CLOEXEC)
    dst = _open(tmp_path / "dst")
    try:
        os.write(src, data)
        assert engine.copy_range(src, dst, 5, 0, MIB) == MIB
    finally:
        os.close(src)
        os.close(dst)
    assert (tmp_path / "dst").read_bytes() == data[5:]


def test_copy_range_bad_fd_raises(engine, tmp_path, bad_fd):
    dst = _open(tmp_path / "dst")
    try:
        with pytest.raises(OSError) as raised:
            engine.copy_range(bad_fd, dst, 0, 0, 10)
    finally:
        os.close(dst)
    assert raised.value.errno == errno.EBADF


def test_reflink_is_false_where_the_filesystem_cannot(engine):
    # memfds live on tmpfs, which has no shared extents.
    src, dst = os.memfd_create("src"), os.memfd_create("dst")
    try:
        os.write(src, b"data")
        assert engine.reflink(src, dst) is False
        assert os.fstat(dst).st_size == 0
    finally:
        os.close(src)
        os.close(dst)


def test_reflink_bad_fd_raises(engine, bad_fd):
    dst = os.memfd_create("dst")
    try:
        with pytest.raises(OSError) as raised:
            engine.reflink(bad_fd, dst)
    finally:
        os.close(dst)
    assert raised.value.errno == errno.EBADF


def test_fallocate_reserves_blocks(engine, tmp_path):
    fd = _open(tmp_path / "f")
    try:
        engine.fallocate(fd, 4096, 3 * MIB)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    assert st.st_size == 4096 + 3 * MIB
    assert st.st_blocks * 512 >= 3 * MIB
    assert (tmp_path / "f").read_bytes() == bytes(4096 + 3 * MIB)


def test_fallocate_errors_raise(engine, tmp_path, bad_fd):
    with pytest.raises(OSError) as raised:
        engine.fallocate(bad_fd, 0, 10)
    assert raised.value.errno == errno.EBADF
    fd = _open(tmp_path / "f")
    try:
        with pytest.raises(OSError) as raised:
            engine.fallocate(fd, 0, 0)
    finally:
        os.close(fd)
    assert raised.value.errno == errno.EINVAL


def _address(buffer) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


@pytest.mark.parametrize("size", [1, 7, 4096, 65537, MIB + 3])
@pytest.mark.parametrize("alignment", [4096, 65536])
def test_aligned_buffer_is_aligned_zeroed_and_writable(engine, size, alignment):
    buf = engine.aligned_buffer(size, alignment)
    assert _address(buf) % alignment == 0
    view = memoryview(buf)
    assert len(view) == len(buf) == size
    assert not view.readonly
    assert bytes(view) == bytes(size)
    view[-1] = 0xAB
    assert memoryview(buf)[-1] == 0xAB


def test_aligned_buffer_default_alignment_and_empty(engine):
    assert _address(engine.aligned_buffer(10)) % 4096 == 0
    assert len(memoryview(engine.aligned_buffer(0))) == 0


@pytest.mark.parametrize("size, alignment", [(-1, 4096), (10, 3000), (10, 4)])
def test_aligned_buffer_rejects_bad_arguments(engine, size, alignment):
    with pytest.raises(ValueError):
        engine.aligned_buffer(size, alignment)
