"""store.direct: objects written on the tree by another process, as the gateway itself publishes them."""

from __future__ import annotations

import base64
import hashlib
import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from awscrt import checksums as crt

from aif_gateway.errors import S3Error
from aif_gateway.store.direct import DirectBucket

from ..store_support import new_store, run, state_dir

KIB = 1024


def write_stripes(writer, data: bytes, stripe: int, threads: int = 4) -> list[int]:
    """Each stripe in its own task, the last ones first: stripes may land in any order."""
    spans = [(i, off, data[off : off + stripe]) for i, off in enumerate(range(0, len(data), stripe))] or [(0, 0, b"")]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda s: writer.write_at(memoryview(s[2]), s[1], s[0]), reversed(spans)))
    return [len(s[2]) for s in spans]


@pytest.mark.parametrize("backend", ["xattr", "sidecar"])
@pytest.mark.parametrize("size", [0, 1, 300 * KIB + 7])
def test_the_gateway_serves_what_was_written_directly(tmp_path, backend, size):
    store = new_store(tmp_path, backend)
    data = random.Random(size).randbytes(size)
    bucket = DirectBucket.open(tmp_path, "bkt", meta_backend=backend)
    writer = bucket.writer("ck/a.bin", checksum=True)
    record = writer.commit(write_stripes(writer, data, 64 * KIB))

    crc = base64.b64encode(crt.crc64nvme(data).to_bytes(8, "big")).decode()
    assert record.checksums == {"CRC64NVME": crc} and record.checksum_type == "FULL_OBJECT"
    info = run(store.head_object("bkt", "ck/a.bin"))
    assert (info.size, info.etag, info.checksums) == (size, record.etag, {"CRC64NVME": crc})
    # Not an MD5, and says so: a dash, as S3 ETags that are not MD5s have.
    assert "-" in info.etag and info.etag != hashlib.md5(data).hexdigest()
    assert (tmp_path / "bkt/ck/a.bin").read_bytes() == data
    assert not os.listdir(state_dir(tmp_path, "bkt") / "tmp")


def test_without_hashing_the_etag_comes_from_the_callers_digest(tmp_path):
    store = new_store(tmp_path)
    bucket = DirectBucket.open(tmp_path, "bkt")
    etags = []
    for digest in (b"\x01" * 16, b"\x02" * 16, b"\x01" * 16, None, None):
        writer = bucket.writer("k")
        record = writer.commit(write_stripes(writer, b"same bytes" * 500, 1000), content_digest=digest)
        assert record.checksums == {} and record.etag.endswith("-5")
        etags.append(record.etag)
    assert etags[0] == "01" * 16 + "-5" and etags[1] != etags[0] and etags[2] == etags[0]
    assert len({etags[0], etags[1], etags[3], etags[4]}) == 4  # no digest: unique to each write
    info = run(store.head_object("bkt", "k"))
    assert info.etag == etags[4] and info.checksums == {}


def test_md5_etags_are_those_of_a_multipart_upload(tmp_path):
    store = new_store(tmp_path)
    data = random.Random(1).randbytes(200 * KIB + 1)
    bucket = DirectBucket.open(tmp_path, "bkt")
    writer = bucket.writer("m", md5=True)
    sizes = write_stripes(writer, data, 64 * KIB)
    record = writer.commit(sizes)
    parts = [data[i : i + 64 * KIB] for i in range(0, len(data), 64 * KIB)]
    assert record.etag == hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-4"
    info = run(store.head_object("bkt", "m"))
    assert info.part_sizes == tuple(sizes)

    writer = bucket.writer("single", md5=True)
    assert writer.commit(write_stripes(writer, data, len(data))).etag == hashlib.md5(data).hexdigest()


def test_a_short_file_is_not_published(tmp_path):
    new_store(tmp_path)
    bucket = DirectBucket.open(tmp_path, "bkt")
    writer = bucket.writer("short")
    writer.write_at(memoryview(b"x" * 10), 0, 0)
    with pytest.raises(OSError, match="expected 20"):
        writer.commit([20])
    assert not (tmp_path / "bkt/short").exists()
    assert not os.listdir(state_dir(tmp_path, "bkt") / "tmp")


def test_discard_leaves_the_old_object(tmp_path):
    store = new_store(tmp_path)
    bucket = DirectBucket.open(tmp_path, "bkt")
    writer = bucket.writer("k")
    old = writer.commit(write_stripes(writer, b"old", 10))
    writer = bucket.writer("k")
    writer.write_at(memoryview(b"new bytes"), 0, 0)
    writer.discard()
    assert run(store.head_object("bkt", "k")).etag == old.etag
    assert (tmp_path / "bkt/k").read_bytes() == b"old"


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "a\0b", "x" * 300])
def test_keys_cannot_leave_the_bucket(tmp_path, key):
    new_store(tmp_path)
    bucket = DirectBucket.open(tmp_path, "bkt")
    with pytest.raises(S3Error):
        bucket.writer(key)
    assert list((state_dir(tmp_path, "bkt") / "tmp").iterdir()) == []  # refused before anything was made


def test_a_symlink_out_of_the_bucket_is_refused(tmp_path):
    new_store(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / "bkt/link")
    bucket = DirectBucket.open(tmp_path, "bkt")
    with pytest.raises(S3Error):
        bucket.writer("link/file")


def test_missing_bucket(tmp_path):
    with pytest.raises(FileNotFoundError):
        DirectBucket.open(tmp_path, "nope")
    with pytest.raises(S3Error):
        DirectBucket.open(tmp_path, "Bad_Name")


def test_list_and_delete(tmp_path):
    store = new_store(tmp_path)
    bucket = DirectBucket.open(tmp_path, "bkt")
    for key in ("p/a", "p/b/c", "q"):
        w = bucket.writer(key)
        w.commit(write_stripes(w, key.encode(), 100))
    assert sorted(bucket.list("p")) == ["p/a", "p/b/c"]
    bucket.delete("p/a")
    bucket.delete("p/a")  # already gone: fine
    assert sorted(bucket.list("")) == ["p/b/c", "q"]
    with pytest.raises(S3Error, match="NoSuchKey|does not exist"):
        run(store.head_object("bkt", "p/a"))


def test_delete_prunes_empty_directories_and_size(tmp_path):
    new_store(tmp_path)
    bucket = DirectBucket.open(tmp_path, "bkt")
    for key in ("a/b/c/x", "a/y"):
        w = bucket.writer(key)
        w.commit(write_stripes(w, b"12345", 100))
    assert bucket.size("a/b/c/x") == 5
    with pytest.raises(FileNotFoundError):
        bucket.size("a/b")  # a directory is no object
    bucket.delete("a/b/c/x")
    assert not (tmp_path / "bkt/a/b").exists() and (tmp_path / "bkt/a/y").is_file()


def test_opening_for_reads_creates_nothing(tmp_path):
    """A node may mount the tree read-only: only writing makes the bucket's internal directories."""
    (tmp_path / "bkt/ck").mkdir(parents=True)
    (tmp_path / "bkt/ck/f").write_bytes(b"data")
    bucket = DirectBucket.open(tmp_path, "bkt")
    assert bucket.size("ck/f") == 4 and list(bucket.list("ck")) == ["ck/f"]
    assert sorted(os.listdir(tmp_path / "bkt")) == ["ck"]


def test_enclosing_finds_the_bucket_a_path_lies_in(tmp_path):
    new_store(tmp_path)  # a bucket the gateway made: it carries the gateway's record
    bucket, prefix = DirectBucket.enclosing(tmp_path / "bkt/run/step-1")
    assert (bucket.name, bucket.directory, prefix) == ("bkt", tmp_path / "bkt", "run/step-1")


def test_the_bucket_directory_itself_encloses_with_no_prefix(tmp_path):
    store = new_store(tmp_path)
    bucket, prefix = DirectBucket.enclosing(tmp_path / "bkt")
    assert prefix == ""  # not ".", which is no key
    writer = bucket.writer("at-the-top")
    writer.commit(write_stripes(writer, b"abc", 64 * KIB))
    assert run(store.head_object("bkt", "at-the-top")).size == 3


def test_enclosing_a_plain_directory_is_none(tmp_path):
    (tmp_path / "plain/run").mkdir(parents=True)
    assert DirectBucket.enclosing(tmp_path / "plain/run") is None
