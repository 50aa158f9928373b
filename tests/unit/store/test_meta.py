"""Metadata records: encoding, validity against the file, foreign files, both backends."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aif_gateway.store.base import MAX_PARTS
from aif_gateway.store.meta import (
    BACKEND_ENV,
    META_XATTR,
    SIDECAR,
    XATTR,
    ObjectRecord,
    decode_tags,
    foreign_etag,
    guess_content_type,
    info_for,
    meta_store_for,
)
from aif_gateway.store.paths import BucketPaths
from aif_gateway.store.record_checks import MAX_RECORD_BYTES

from ..store_support import bucket_paths


def record_of(path: Path, **fields: object) -> ObjectRecord:
    st = os.stat(path)
    return ObjectRecord(etag="0" * 32, size=st.st_size, mtime_ns=st.st_mtime_ns, **fields)  # type: ignore[arg-type]


def test_record_round_trips_through_its_encoding() -> None:
    record = ObjectRecord(
        etag="abc-3",
        size=17,
        mtime_ns=0,
        content_type="text/csv",
        headers={"Cache-Control": "no-cache"},
        user_meta={"owner": "ü"},
        checksums={"CRC32": "AAAAAA=="},
        checksum_type="COMPOSITE",
        part_sizes=(5, 5, 5, 2),
    )
    assert ObjectRecord.decode(record.encode()) == record


def test_many_equal_parts_encode_compactly() -> None:
    record = ObjectRecord(etag="e-10000", size=9999 * (8 << 20) + 1, mtime_ns=0, part_sizes=(8 << 20,) * 9999 + (1,))
    assert len(record.encode()) < 200
    assert ObjectRecord.decode(record.encode()) == record


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"etag": "x"}', b'{"unknown": 1}'])
def test_corrupt_records_decode_to_none(data: bytes) -> None:
    assert ObjectRecord.decode(data) is None


GOOD = {"etag": "0" * 32, "size": 10, "mtime_ns": 1}


def forged(**fields: object) -> bytes:
    return json.dumps({**GOOD, **fields}).encode()


def test_a_well_formed_record_passes_the_checks() -> None:
    assert (
        ObjectRecord.decode(
            forged(headers={"Cache-Control": "no-cache"}, user_meta={"a-b": "ü x"}, part_sizes=[[4, 2], [2, 1]])
        )
        is not None
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Set-Cookie": "session=stolen"},
        {"Location": "https://evil.example"},
        {"cache-control": "no-cache"},
        {"Expires": "x\r\nSet-Cookie: a=b"},
    ],
)
def test_records_naming_headers_s3_objects_cannot_carry_are_refused(headers: dict[str, str]) -> None:
    assert ObjectRecord.decode(forged(headers=headers)) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"size": "10"},
        {"size": -1},
        {"size": True},
        {"mtime_ns": 1.5},
        {"etag": 5},
        {"etag": 'a"b'},
        {"etag": ""},
        {"content_type": ["text/plain"]},
        {"content_type": "text/plain\r\nSet-Cookie: a=b"},
        {"headers": ["Cache-Control"]},
        {"headers": {"Cache-Control": 5}},
        {"user_meta": {"a": ["x"]}},
        {"user_meta": {"Bad Name": "x"}},
        {"user_meta": {"a": "x\ny"}},
        {"checksums": {"CRC32": 1}},
        {"checksums": {"MD4": "AAAAAA=="}},
        {"checksums": {"CRC32": "not base64!"}},
        {"checksum_type": "WHOLE"},
        {"dir_marker": "yes"},
        {"part_sizes": "10"},
        {"part_sizes": [[10]]},
        {"part_sizes": [[10, 0]]},
        {"part_sizes": [[-5, 1], [15, 1]]},
    ],
)
def test_records_with_wrong_types_or_values_are_refused(fields: dict[str, object]) -> None:
    assert ObjectRecord.decode(forged(**fields)) is None


def test_part_sizes_must_add_up_to_the_object() -> None:
    assert ObjectRecord.decode(forged(part_sizes=[[4, 2]])) is None


def test_a_long_run_of_parts_is_refused_before_it_is_expanded() -> None:
    # 10**8 one-byte parts, as a run: expanding it first took seconds and hundreds of MB per HEAD.
    assert ObjectRecord.decode(forged(size=10**8, part_sizes=[[1, 10**8]])) is None
    assert ObjectRecord.decode(forged(size=MAX_PARTS + 1, part_sizes=[[1, MAX_PARTS + 1]])) is None
    assert ObjectRecord.decode(forged(size=MAX_PARTS, part_sizes=[[1, MAX_PARTS]])) is not None


def test_more_runs_than_parts_allowed_are_refused() -> None:
    runs = [[1, 1]] * (MAX_PARTS + 1)
    assert ObjectRecord.decode(forged(size=MAX_PARTS + 1, part_sizes=runs)) is None


def test_a_record_larger_than_the_cap_is_not_parsed() -> None:
    padded = forged(content_type="x" * MAX_RECORD_BYTES)
    assert ObjectRecord.decode(padded) is None


@pytest.mark.parametrize(
    "data", [b"[]", b'{"a": 1}', b'{"k": ["v"]}', json.dumps({str(i): "v" for i in range(11)}).encode()]
)
def test_tag_sets_that_the_gateway_cannot_have_written_read_as_none(data: bytes) -> None:
    assert decode_tags(data) == {}


def test_a_blob_pointer_cannot_leave_the_blob_directory(bucket: BucketPaths) -> None:
    meta = meta_store_for(bucket, XATTR)
    path = bucket.dir / "obj"
    path.write_bytes(b"data")
    st = os.stat(path)
    outside = bucket.dir / "planted.json"  # any file the record could point at
    outside.write_bytes(ObjectRecord(etag="e", size=st.st_size, mtime_ns=st.st_mtime_ns).encode())
    os.setxattr(path, META_XATTR, b"@blob:../../planted.json")
    assert meta.read(path, "obj") is None


def test_a_huge_sidecar_is_not_read_whole(bucket: BucketPaths) -> None:
    meta = meta_store_for(bucket, SIDECAR)
    path = bucket.dir / "obj"
    path.write_bytes(b"data")
    bucket.meta.mkdir(parents=True)
    (bucket.meta / "obj.json").write_bytes(b" " * (2 * MAX_RECORD_BYTES) + record_of(path).encode())
    assert meta.read(path, "obj") is None


def test_a_record_is_valid_only_while_size_and_mtime_match(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    record = record_of(path, content_type="text/plain")
    assert info_for("f", os.stat(path), record).etag == "0" * 32
    path.write_bytes(b"v2 longer")  # an HPC job rewrote it in place
    info = info_for("f", os.stat(path), record)
    assert info.etag != "0" * 32 and "-" in info.etag
    assert info.size == 9


def test_foreign_etags_are_stable_and_never_look_like_md5(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 10)
    st = os.stat(path)
    assert foreign_etag("data.bin", st) == foreign_etag("data.bin", os.stat(path))
    assert foreign_etag("data.bin", st).endswith("-1")
    assert foreign_etag("other.bin", st) != foreign_etag("data.bin", st)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert foreign_etag("data.bin", os.stat(path)) != foreign_etag("data.bin", st)


@pytest.mark.parametrize(
    ("key", "content_type"),
    [
        ("a/b.json", "application/json"),
        ("x.txt", "text/plain"),
        ("img.png", "image/png"),
        ("no-extension", "application/octet-stream"),
        ("weird.zzqq", "application/octet-stream"),
    ],
)
def test_foreign_content_type_is_guessed_from_the_extension(key: str, content_type: str) -> None:
    assert guess_content_type(key) == content_type


@pytest.fixture(params=[XATTR, SIDECAR])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def bucket(tmp_path: Path) -> BucketPaths:
    (tmp_path / "bkt").mkdir()
    return bucket_paths(tmp_path, "bkt")


def test_records_and_tags_round_trip_in_both_backends(bucket: BucketPaths, backend: str) -> None:
    meta = meta_store_for(bucket, backend)
    path = bucket.dir / "sub" / "obj"
    path.parent.mkdir()
    path.write_bytes(b"data")
    assert meta.read(path, "sub/obj") is None
    record = record_of(path, user_meta={"k": "v"})
    meta.write(path, "sub/obj", record)
    meta.write_tags(path, "sub/obj", {"team": "hpc"})
    assert meta.read(path, "sub/obj") == record
    assert meta.read_tags(path, "sub/obj") == {"team": "hpc"}
    meta.write_tags(path, "sub/obj", None)
    assert meta.read_tags(path, "sub/obj") == {}
    assert os.stat(path).st_mtime_ns == record.mtime_ns  # writing metadata leaves the data's mtime alone


def test_sidecar_backend_writes_no_xattrs(bucket: BucketPaths) -> None:
    meta = meta_store_for(bucket, SIDECAR)
    path = bucket.dir / "obj"
    path.write_bytes(b"data")
    meta.write(path, "obj", record_of(path))
    assert os.listxattr(path) == []
    assert (bucket.meta / "obj.json").is_file()


def test_sidecar_names_of_long_segments_fit_the_filesystem(bucket: BucketPaths) -> None:
    meta = meta_store_for(bucket, SIDECAR)
    key = "d/" + "n" * 255
    path = bucket.dir / key
    path.parent.mkdir()
    path.write_bytes(b"")
    record = record_of(path)
    meta.write(path, key, record)
    assert meta.read(path, key) == record


def test_sidecar_marker_and_file_records_do_not_collide(bucket: BucketPaths) -> None:
    meta = meta_store_for(bucket, SIDECAR)
    (bucket.dir / "d").mkdir()
    (bucket.dir / "d" / "f").write_bytes(b"")
    marker = ObjectRecord(etag="m", size=0, mtime_ns=1, dir_marker=True)
    meta.write(bucket.dir / "d", "d/", marker)
    meta.write(bucket.dir / "d" / "f", "d/f", record_of(bucket.dir / "d" / "f"))
    assert meta.read(bucket.dir / "d", "d/") == marker
    meta.remove("d/f")
    assert meta.read(bucket.dir / "d", "d/") == marker


def test_environment_forces_the_sidecar_backend(bucket: BucketPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, SIDECAR)
    assert meta_store_for(bucket).backend == SIDECAR


def test_probe_picks_xattrs_exactly_where_the_filesystem_has_them(
    bucket: BucketPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    try:
        os.setxattr(bucket.dir, "user.test", b"1")
        expected = XATTR
    except OSError:
        expected = SIDECAR
    assert meta_store_for(bucket).backend == expected


def test_metadata_too_large_for_xattrs_still_round_trips(bucket: BucketPaths, backend: str) -> None:
    meta = meta_store_for(bucket, backend)
    path = bucket.dir / "obj"
    path.write_bytes(b"data")
    record = record_of(path, user_meta={f"m{i}": "v" * 200 for i in range(10)})  # 2 KB, S3's limit
    tags = {f"{i}" + "k" * 127: "v" * 256 for i in range(10)}  # S3's maximal tag set
    meta.stage(path, record, tags)
    assert meta.read(path, "obj") == (record if backend == XATTR else None)
    meta.write(path, "obj", record)
    meta.write_tags(path, "obj", tags)
    assert meta.read(path, "obj") == record
    assert meta.read_tags(path, "obj") == tags
