"""FsStore objects on a real filesystem: round trips, foreign files, markers, delete, atomicity."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from aif_gateway.errors import S3Error
from aif_gateway.fsio.creds import PosixIds
from aif_gateway.store import publish
from aif_gateway.store.base import CALLER, ObjectAttrs, WriteOptions
from aif_gateway.store.fs import FsStore
from aif_gateway.store.meta import EMPTY_MD5, SIDECAR, XATTR
from aif_gateway.store.paths import INTERNAL_DIR
from aif_gateway.store.reader import PREFETCH_MAX

from ..store_support import failing_stream, files_under, get, new_store, put, run, state_dir, stream


@pytest.fixture(params=[XATTR, SIDECAR])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FsStore:
    return new_store(tmp_path / "root", request.param)


@pytest.fixture
def bucket_dir(store: FsStore) -> Path:
    return store.root / "bkt"


def test_put_then_get_and_head_round_trip(store: FsStore) -> None:
    attrs = ObjectAttrs(content_type="text/csv", headers={"Cache-Control": "max-age=60"}, user_meta={"run": "42"})
    data = b"x" * (3 << 20) + b"tail"  # several write batches
    written = put(store, "dir/sub/data.csv", data, attrs, WriteOptions(hash_algorithms=frozenset({"SHA256"})))
    assert written.etag == hashlib.md5(data).hexdigest()
    assert written.checksums == {"SHA256": base64.b64encode(hashlib.sha256(data).digest()).decode()}
    head = run(store.head_object("bkt", "dir/sub/data.csv"))
    assert head == written
    assert (head.content_type, head.headers, head.user_meta) == (
        "text/csv",
        {"Cache-Control": "max-age=60"},
        {"run": "42"},
    )
    assert get(store, "dir/sub/data.csv") == data
    assert (store.root / "bkt" / "dir" / "sub" / "data.csv").read_bytes() == data  # a plain file


def test_ranged_chunks_read_exactly_the_range(store: FsStore) -> None:
    put(store, "k", bytes(range(256)))

    async def read_range() -> bytes:
        reader = await store.open_object("bkt", "k")
        try:
            return b"".join([c async for c in reader.chunks(10, 99, chunk_size=7)])
        finally:
            await reader.close()

    assert run(read_range()) == bytes(range(10, 100))


@pytest.mark.parametrize("size", [1, PREFETCH_MAX, PREFETCH_MAX + 1, 3 * PREFETCH_MAX])
def test_prefetched_and_read_bodies_give_the_same_ranges(store: FsStore, size: int) -> None:
    """Small bodies come from the open call's read (fast path), larger ones from pread."""
    data = os.urandom(size)
    put(store, "k", data)

    async def read(start: int, end: int) -> tuple[bytes, bool]:
        reader = await store.open_object("bkt", "k")
        try:
            body = b"".join([c async for c in reader.chunks(start, end, chunk_size=1000)])
            return body, reader.prefetched is not None
        finally:
            await reader.close()

    for start, end in [(0, size - 1), (0, 0), (size - 1, size - 1), (size // 3, size // 2)]:
        body, prefetched = run(read(start, end))
        assert body == data[start : end + 1]
        assert prefetched == (size <= PREFETCH_MAX)


def test_a_small_body_is_the_version_that_was_opened(store: FsStore, bucket_dir: Path) -> None:
    put(store, "k", b"old bytes")

    async def open_then_rewrite_in_place() -> bytes:
        reader = await store.open_object("bkt", "k")
        try:
            (bucket_dir / "k").write_bytes(b"NEW BYTES")  # an HPC job rewriting the file in place
            return b"".join([c async for c in reader.chunks(0, 8)])
        finally:
            await reader.close()

    assert run(open_then_rewrite_in_place()) == b"old bytes"


def test_empty_object(store: FsStore) -> None:
    assert put(store, "empty", b"").etag == EMPTY_MD5
    assert get(store, "empty") == b""


def test_overwrite_replaces_data_and_metadata(store: FsStore) -> None:
    put(store, "k", b"one", ObjectAttrs(user_meta={"v": "1"}))
    put(store, "k", b"two!", ObjectAttrs(content_type="text/plain"))
    head = run(store.head_object("bkt", "k"))
    assert (head.size, head.user_meta, head.content_type) == (4, {}, "text/plain")
    assert get(store, "k") == b"two!"


def test_foreign_files_are_objects_with_dash_etags_and_guessed_types(store: FsStore, bucket_dir: Path) -> None:
    (bucket_dir / "results").mkdir()
    (bucket_dir / "results" / "out.json").write_bytes(b"{}")
    head = run(store.head_object("bkt", "results/out.json"))
    assert (head.size, head.content_type) == (2, "application/json")
    assert head.etag.endswith("-1")
    assert run(store.head_object("bkt", "results/out.json")).etag == head.etag
    assert get(store, "results/out.json") == b"{}"
    listed = run(store.list_objects("bkt"))
    assert [(o.key, o.etag) for o in listed.objects] == [("results/out.json", head.etag)]


def test_rewrite_in_place_invalidates_the_record(store: FsStore, bucket_dir: Path) -> None:
    put(store, "k.txt", b"gateway wrote this", ObjectAttrs(content_type="application/x-custom"))
    with open(bucket_dir / "k.txt", "r+b") as f:  # an HPC job rewrites it
        f.write(b"JOB")
        f.truncate(3)
    head = run(store.head_object("bkt", "k.txt"))
    assert (head.size, head.content_type) == (3, "text/plain")
    assert "-" in head.etag


def test_missing_objects_and_directories_are_no_such_key(store: FsStore, bucket_dir: Path) -> None:
    (bucket_dir / "plain-dir").mkdir()
    for key in ("nope", "plain-dir", "plain-dir/", "nope/deeper"):
        with pytest.raises(S3Error) as exc:
            run(store.head_object("bkt", key))
        assert exc.value.code == "NoSuchKey"
        with pytest.raises(S3Error) as exc:
            run(store.open_object("bkt", key))
        assert exc.value.code == "NoSuchKey"


def test_directory_markers(store: FsStore, bucket_dir: Path) -> None:
    marker = put(store, "folder/", b"", ObjectAttrs(user_meta={"kind": "dir"}))
    assert (marker.etag, marker.size, marker.is_dir_marker) == (EMPTY_MD5, 0, True)
    assert (bucket_dir / "folder").is_dir()
    assert run(store.head_object("bkt", "folder/")).user_meta == {"kind": "dir"}
    put(store, "folder/inner", b"x")
    run(store.delete_object("bkt", "folder/inner"))
    assert (bucket_dir / "folder").is_dir()  # cleanup of empty parents stops at a marker
    assert [o.key for o in run(store.list_objects("bkt")).objects] == ["folder/"]
    run(store.delete_object("bkt", "folder/"))
    assert not (bucket_dir / "folder").exists()


def test_deleting_a_marker_of_a_non_empty_directory_keeps_the_other_keys(store: FsStore) -> None:
    put(store, "d/", b"")
    put(store, "d/f", b"data")
    run(store.delete_object("bkt", "d/"))
    assert [o.key for o in run(store.list_objects("bkt")).objects] == ["d/f"]


def test_markers_must_be_empty(store: FsStore) -> None:
    with pytest.raises(S3Error) as exc:
        put(store, "d/", b"data")
    assert exc.value.code == "InvalidArgument"


def test_delete_removes_empty_parents_up_to_the_bucket(store: FsStore, bucket_dir: Path) -> None:
    put(store, "a/b/c/d", b"1")
    put(store, "a/keep", b"2")
    run(store.delete_object("bkt", "a/b/c/d"))
    assert sorted(p.name for p in bucket_dir.iterdir()) == ["a"]
    assert [p.name for p in (bucket_dir / "a").iterdir()] == ["keep"]
    run(store.delete_object("bkt", "a/keep"))
    assert [p.name for p in bucket_dir.iterdir()] == []  # internal state lives outside buckets


def test_delete_of_a_missing_key_succeeds(store: FsStore) -> None:
    run(store.delete_object("bkt", "never/existed"))
    put(store, "file", b"x")
    run(store.delete_object("bkt", "file/"))  # names a marker, not the file
    assert get(store, "file") == b"x"


@pytest.mark.parametrize(("existing", "key"), [("a", "a/b"), ("a/b", "a")])
def test_file_and_prefix_conflicts_are_refused(store: FsStore, existing: str, key: str) -> None:
    put(store, existing, b"first")
    with pytest.raises(S3Error) as exc:
        put(store, key, b"second")
    assert exc.value.code == "InvalidArgument"
    assert "conflicts" in exc.value.message
    assert get(store, existing) == b"first"


def test_a_file_may_replace_an_empty_unmarked_directory(store: FsStore, bucket_dir: Path) -> None:
    (bucket_dir / "leftover").mkdir()
    put(store, "leftover", b"now a file")
    assert get(store, "leftover") == b"now a file"


@pytest.mark.parametrize(
    "key",
    [
        "../escape",
        "a/../../escape",
        "./a",
        "a//b",
        "/abs",
        "a\x00b",
        "x" * 256,
        "k" * 1025,
        f"{INTERNAL_DIR}/tmp/x",
        f"{INTERNAL_DIR}/locks",
    ],
)
def test_bad_keys_are_rejected_with_nothing_written(store: FsStore, tmp_path: Path, key: str) -> None:
    before = files_under(tmp_path)
    with pytest.raises(S3Error) as exc:
        put(store, key, b"payload")
    assert exc.value.code in ("InvalidArgument", "KeyTooLongError")
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("target", ["file", "dir"])
def test_symlinks_leaving_the_bucket_are_refused_for_read_and_write(
    store: FsStore, bucket_dir: Path, tmp_path: Path, target: str
) -> None:
    outside = tmp_path / "outside"
    if target == "file":
        outside.write_bytes(b"secret")
        keys = ["link"]
    else:
        outside.mkdir()
        (outside / "f").write_bytes(b"secret")
        keys = ["link/f", "link/new"]
    os.symlink(outside, bucket_dir / "link")
    for key in keys:
        for action in (
            lambda: run(store.head_object("bkt", key)),
            lambda: get(store, key),
            lambda: put(store, key, b"overwrite"),
            lambda: run(store.delete_object("bkt", key)),
        ):
            with pytest.raises(S3Error) as exc:
                action()
            assert exc.value.code == "AccessDenied"
    if target == "dir":
        assert [p.name for p in outside.iterdir()] == ["f"]
        outside = outside / "f"
    assert outside.read_bytes() == b"secret"


def test_symlinks_inside_the_bucket_are_followed(store: FsStore, bucket_dir: Path) -> None:
    put(store, "real/data", b"bytes", ObjectAttrs(user_meta={"m": "1"}))
    os.symlink("real", bucket_dir / "alias")
    head = run(store.head_object("bkt", "alias/data"))
    assert (head.size, head.user_meta) == (5, {"m": "1"})
    assert get(store, "alias/data") == b"bytes"


def test_an_open_reader_keeps_the_old_bytes_after_overwrite_and_delete(store: FsStore) -> None:
    put(store, "k", b"old bytes")

    async def scenario() -> bytes:
        reader = await store.open_object("bkt", "k")
        try:
            await store.put_object("bkt", "k", stream(b"NEW"), ObjectAttrs(), WriteOptions())
            await store.delete_object("bkt", "k")
            return b"".join([c async for c in reader.chunks(0, reader.info.size - 1)])
        finally:
            await reader.close()

    assert run(scenario()) == b"old bytes"


def test_a_body_failing_midway_leaves_the_old_object_and_no_temp_file(store: FsStore, bucket_dir: Path) -> None:
    put(store, "k", b"old")
    with pytest.raises(ConnectionResetError):
        run(store.put_object("bkt", "k", failing_stream(b"x" * (2 << 20)), ObjectAttrs(), WriteOptions()))
    assert get(store, "k") == b"old"
    assert list((state_dir(bucket_dir.parent, bucket_dir.name) / "tmp").iterdir()) == []


def test_failed_verification_publishes_nothing(store: FsStore, bucket_dir: Path) -> None:
    def reject(digests: dict[str, bytes]) -> None:
        raise S3Error("BadDigest")

    with pytest.raises(S3Error) as exc:
        put(store, "k", b"data", options=WriteOptions(verify=reject))
    assert exc.value.code == "BadDigest"
    with pytest.raises(S3Error) as exc:
        put(store, "k2", b"short", options=WriteOptions(expected_size=10))
    assert exc.value.code == "IncompleteBody"
    assert [p.name for p in bucket_dir.iterdir()] == []  # internal state lives outside buckets
    assert list((state_dir(bucket_dir.parent, bucket_dir.name) / "tmp").iterdir()) == []


def test_verify_sees_the_digests_of_the_received_bytes(store: FsStore) -> None:
    seen: dict[str, bytes] = {}
    put(store, "k", b"abc", options=WriteOptions(hash_algorithms=frozenset({"CRC32"}), verify=seen.update))
    assert seen["MD5"] == hashlib.md5(b"abc").digest()
    assert seen["CRC32"] == (0x352441C2).to_bytes(4, "big")


def test_metadata_lives_in_xattrs_or_sidecars(tmp_path: Path) -> None:
    xattr_store = new_store(tmp_path / "x", XATTR)
    put(xattr_store, "k", b"data", ObjectAttrs(tags={"a": "b"}))
    assert set(os.listxattr(tmp_path / "x" / "bkt" / "k")) == {"user.aifgw.meta", "user.aifgw.tags"}
    sidecar_store = new_store(tmp_path / "s", SIDECAR)
    put(sidecar_store, "k", b"data", ObjectAttrs(tags={"a": "b"}))
    assert os.listxattr(tmp_path / "s" / "bkt" / "k") == []
    assert run(sidecar_store.get_tags("bkt", "k")) == {"a": "b"}


def test_a_full_disk_is_reported_as_an_s3_error(store: FsStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(fd: int, data: object, offset: int, hasher: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    # The one call that writes a PUT's bytes (native code, so os.write cannot be patched).
    monkeypatch.setattr(publish, "write_hashed", disk_full)
    with pytest.raises(S3Error) as exc:
        put(store, "k", b"data")
    assert (exc.value.code, exc.value.message) == ("InternalError", "The storage filesystem is full.")
    monkeypatch.undo()
    assert list((state_dir(store.root, "bkt") / "tmp").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
def test_a_refused_publish_leaves_the_objects_sidecar_alone() -> None:
    # The sidecar is written with the gateway's ids just before the rename: a user who may not
    # replace the object must be refused before it, or the object would lose its record.
    top = Path(tempfile.mkdtemp(prefix="aif-sidecar-", dir="/tmp"))  # reachable by uid 4101
    try:
        top.chmod(0o755)
        store = new_store(top / "root", "sidecar")
        before = put(store, "k", b"original")
        token = CALLER.set(PosixIds(4101, 4101))
        try:
            with pytest.raises(S3Error) as exc:
                put(store, "k", b"not yours")
        finally:
            CALLER.reset(token)
        assert exc.value.code == "AccessDenied"
        assert run(store.head_object("bkt", "k")).etag == before.etag
    finally:
        shutil.rmtree(top)
