"""The write path's pieces: streaming into temp files, copying, and sweeping crash leftovers."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aif_gateway.errors import S3Error
from aif_gateway.store.fs import FsStore
from aif_gateway.store.paths import BucketPaths
from aif_gateway.store.publish import cleanup_stale_temp, copy_range, copy_to_temp, receive_body

from ..store_support import bucket_paths, put, run, state_dir, stream


@pytest.fixture
def bucket(tmp_path: Path) -> BucketPaths:
    (tmp_path / "bkt").mkdir()
    return bucket_paths(tmp_path, "bkt")


def test_receive_body_writes_and_hashes_many_small_chunks(bucket: BucketPaths) -> None:
    chunks = [bytes([i % 251]) * 1000 for i in range(3000)]  # 3 MB in 1 kB pieces
    temp = run(receive_body(bucket, stream(*chunks), ["SHA1"]))
    data = b"".join(chunks)
    assert temp.path.read_bytes() == data
    assert temp.size == len(data)
    assert temp.digests["MD5"] == hashlib.md5(data).digest()
    assert temp.digests["SHA1"] == hashlib.sha1(data).digest()
    assert temp.mtime_ns == os.stat(temp.path).st_mtime_ns


def test_a_cancelled_upload_leaves_no_temp_file(bucket: BucketPaths) -> None:
    started = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * (1 << 20)
            started.set()
            await asyncio.sleep(0)

    async def scenario() -> None:
        task = asyncio.ensure_future(receive_body(bucket, endless(), []))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    assert list(bucket.tmp.iterdir()) == []


@pytest.mark.parametrize("algorithms", [None, ["CRC32"]], ids=["kernel-copy", "hashed-copy"])
def test_copy_to_temp_copies_the_range_exactly(
    bucket: BucketPaths, tmp_path: Path, algorithms: list[str] | None
) -> None:
    source = tmp_path / "source"
    data = os.urandom(3 << 20)
    source.write_bytes(data)
    fd = os.open(source, os.O_RDONLY)
    try:
        temp = copy_to_temp(bucket, fd, 1000, len(data) - 2000, algorithms)
    finally:
        os.close(fd)
    assert temp.path.read_bytes() == data[1000:-1000]
    assert temp.size == len(data) - 2000
    if algorithms is None:
        assert temp.digests == {}
    else:
        assert temp.digests["MD5"] == hashlib.md5(data[1000:-1000]).digest()


@pytest.fixture(params=["kernel", "read-write"])
def copy_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every copy test twice: with copy_file_range, and with it failing as across filesystems."""
    if request.param == "read-write":

        def cross_device(*args: object) -> int:
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "copy_file_range", cross_device)
    return request.param


def test_copy_range_writes_at_the_destination_offset(tmp_path: Path, copy_path: str) -> None:
    data = os.urandom(3 << 20)
    (tmp_path / "source").write_bytes(data)
    (tmp_path / "dest").write_bytes(b"head")
    src = os.open(tmp_path / "source", os.O_RDONLY)
    dst = os.open(tmp_path / "dest", os.O_WRONLY)
    try:
        copy_range(src, dst, 1000, len(data) - 2000, dst_offset=4)
        copy_range(src, dst, 0, 10, dst_offset=4 + len(data) - 2000)
    finally:
        os.close(src)
        os.close(dst)
    assert (tmp_path / "dest").read_bytes() == b"head" + data[1000:-1000] + data[:10]


def test_copy_range_past_the_end_of_the_source_is_an_error(tmp_path: Path, copy_path: str) -> None:
    (tmp_path / "source").write_bytes(b"short")
    src = os.open(tmp_path / "source", os.O_RDONLY)
    dst = os.open(tmp_path / "dest", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(S3Error) as info:
            copy_range(src, dst, 0, 10)
    finally:
        os.close(src)
        os.close(dst)
    assert info.value.code == "InternalError"


def test_copy_to_temp_without_kernel_copy_gives_the_same_bytes(
    bucket: BucketPaths, tmp_path: Path, copy_path: str
) -> None:
    data = os.urandom(1 << 20)
    (tmp_path / "source").write_bytes(data)
    fd = os.open(tmp_path / "source", os.O_RDONLY)
    try:
        temp = copy_to_temp(bucket, fd, 7, len(data) - 7, None)
    finally:
        os.close(fd)
    assert temp.path.read_bytes() == data[7:] and temp.size == len(data) - 7


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_cleanup_removes_only_old_leftovers(bucket: BucketPaths) -> None:
    (bucket.tmp / "put.1.old").write_bytes(b"crashed")
    (bucket.tmp / "upload.abc").mkdir()
    (bucket.tmp / "upload.abc" / "part").write_bytes(b"half-deleted")
    (bucket.tmp / "put.2.fresh").write_bytes(b"in flight")
    _age(bucket.tmp / "put.1.old", 7200)
    _age(bucket.tmp / "upload.abc", 7200)
    assert cleanup_stale_temp(bucket, older_than_s=3600) == 2
    assert [p.name for p in bucket.tmp.iterdir()] == ["put.2.fresh"]


def test_cleanup_of_a_bucket_never_written_to(tmp_path: Path) -> None:
    (tmp_path / "bkt").mkdir()
    assert cleanup_stale_temp(BucketPaths.at("bkt", tmp_path / "bkt", state_dir(tmp_path, "bkt"))) == 0


def test_the_store_sweeps_stale_temp_files_on_its_first_write(tmp_path: Path) -> None:
    (tmp_path / "root" / "bkt").mkdir(parents=True)
    leftover = state_dir(tmp_path / "root", "bkt") / "tmp" / "put.99.dead"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"crashed")
    _age(leftover, 7200)
    put(FsStore(tmp_path / "root"), "k", b"x")
    assert not leftover.exists()
