"""The listing's view of metadata (meta.listed_info, MetaStore.describe_listed) against the
exact reading (ObjectRecord.decode + info_for) it shortcuts."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from aif_gateway.store.base import ObjectInfo
from aif_gateway.store.meta import (
    META_XATTR,
    SIDECAR,
    XATTR,
    ObjectRecord,
    info_for,
    listed_info,
    listed_object,
    meta_store_for,
)

from ..store_support import bucket_paths

MTIME = 1_735_689_600_123_456_789
LISTED_FIELDS = ("key", "size", "mtime_ns", "etag", "checksums", "checksum_type", "is_dir_marker")


class Stat:
    def __init__(self, size: int, mtime_ns: int) -> None:
        self.st_size, self.st_mtime_ns = size, mtime_ns


def listed_fields(info: ObjectInfo) -> tuple[object, ...]:
    return tuple(getattr(info, name) for name in LISTED_FIELDS)


def exact(key: str, size: int, mtime_ns: int, data: bytes | None) -> ObjectInfo:
    record = ObjectRecord.decode(data) if data else None
    return info_for(key, Stat(size, mtime_ns), record)  # type: ignore[arg-type]


def test_listed_object_equals_the_constructors_object() -> None:
    fast = listed_object("k", 5, MTIME, "e", {"CRC32": "AAAAAA=="}, "FULL_OBJECT", True)
    slow = ObjectInfo(
        key="k",
        size=5,
        mtime_ns=MTIME,
        etag="e",
        checksums={"CRC32": "AAAAAA=="},
        checksum_type="FULL_OBJECT",
        is_dir_marker=True,
    )
    assert fast == slow
    assert vars(fast) == {f.name: getattr(slow, f.name) for f in dataclasses.fields(ObjectInfo)}
    plain = listed_object("k", 5, MTIME, "e")
    assert plain == ObjectInfo(key="k", size=5, mtime_ns=MTIME, etag="e")
    assert plain.headers is not listed_object("j", 5, MTIME, "e").headers  # no shared mutable default


RECORDS = {
    "plain": ObjectRecord(etag="0" * 32, size=5, mtime_ns=MTIME).encode(),
    "checksums": ObjectRecord(
        etag="1" * 32,
        size=5,
        mtime_ns=MTIME,
        content_type="text/csv",
        headers={"Cache-Control": "no-cache"},
        user_meta={"who": 'ü "q"'},
        checksums={"CRC32": "AAAAAA==", "SHA256": "x" * 44},
        checksum_type="COMPOSITE",
    ).encode(),
    "multipart": ObjectRecord(etag="2" * 32 + "-3", size=5, mtime_ns=MTIME, part_sizes=(2, 2, 1)).encode(),
    "marker": ObjectRecord(etag="3" * 32, size=0, mtime_ns=1, dir_marker=True).encode(),
    "stale size": ObjectRecord(etag="4" * 32, size=6, mtime_ns=MTIME).encode(),
    "stale mtime": ObjectRecord(etag="5" * 32, size=5, mtime_ns=MTIME + 1).encode(),
    "not json": b"{not json",
    "not a dict": b"[1, 2]",
    "unknown field": b'{"etag":"e","size":5,"mtime_ns":%d,"colour":"red"}' % MTIME,
    "missing field": b'{"etag":"e","size":5}',
    "spaces": b' {"etag": "e", "size": 5, "mtime_ns": %d} ' % MTIME,
    "bad part runs": b'{"etag":"e","size":5,"mtime_ns":%d,"part_sizes":[[1,2,3]]}' % MTIME,
    "odd part counts": b'{"etag":"e","size":5,"mtime_ns":%d,"part_sizes":[[1,true]]}' % MTIME,
    "float size": b'{"etag":"e","size":5.0,"mtime_ns":%d}' % MTIME,
    "not utf-8": b'{"etag":"\xff","size":5,"mtime_ns":%d}' % MTIME,
    "forged header": b'{"etag":"e","size":5,"mtime_ns":%d,"headers":{"Set-Cookie":"a=b"}}' % MTIME,
    "etag of a list": b'{"etag":["e"],"size":5,"mtime_ns":%d}' % MTIME,
    "checksums of ints": b'{"etag":"e","size":5,"mtime_ns":%d,"checksums":{"CRC32":1}}' % MTIME,
    "long part run": b'{"etag":"e","size":5,"mtime_ns":%d,"part_sizes":[[0,100000000],[5,1]]}' % MTIME,
    "empty": b"",
    "none": None,
}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_listed_info_agrees_with_the_exact_reading(name: str) -> None:
    data = RECORDS[name]
    assert listed_fields(listed_info("dir/k", 5, MTIME, data)) == listed_fields(exact("dir/k", 5, MTIME, data))


@pytest.mark.parametrize("name", ["forged header", "etag of a list", "checksums of ints", "long part run"])
def test_a_forged_record_lists_as_a_foreign_file(name: str) -> None:
    assert listed_info("dir/k", 5, MTIME, RECORDS[name]) == listed_info("dir/k", 5, MTIME, None)


def test_a_foreign_file_lists_with_the_foreign_etag() -> None:
    info = listed_info("dir/k", 5, MTIME, None)
    assert info.etag.endswith("-1") and info.etag == exact("dir/k", 5, MTIME, None).etag
    assert (info.size, info.mtime_ns, info.checksums) == (5, MTIME, {})


@pytest.fixture(params=[XATTR, SIDECAR])
def bucket(request, tmp_path: Path):
    paths = bucket_paths(tmp_path, "bkt")
    paths.dir.mkdir()
    return paths, meta_store_for(paths, request.param)


def test_describe_listed_reads_each_backend_like_meta_read(bucket) -> None:
    paths, meta = bucket
    directory = paths.dir / "d"
    directory.mkdir()
    names = ["written", "foreign", "rewritten", "gone", "now-a-dir"]
    for name in names[:4]:
        (directory / name).write_bytes(b"data")
    (directory / "now-a-dir").mkdir()
    for name, etag in (("written", "a" * 32), ("rewritten", "b" * 32)):
        st = os.stat(directory / name)
        record = ObjectRecord(
            etag=etag,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            checksums={"CRC32C": "AAAAAA=="},
            checksum_type="FULL_OBJECT",
        )
        meta.write(directory / name, f"d/{name}", record)
    (directory / "rewritten").write_bytes(b"rewritten in place")
    (directory / "gone").unlink()
    infos = meta.describe_listed(str(directory), names, [f"d/{name}" for name in names])
    assert infos[3:] == [None, None]
    for name, info in zip(names[:3], infos[:3]):
        path = directory / name
        expected = info_for(f"d/{name}", os.stat(path), meta.read(path, f"d/{name}"))
        assert listed_fields(info) == listed_fields(expected), name
    assert infos[0].etag == "a" * 32 and infos[0].checksum_type == "FULL_OBJECT"
    assert infos[1].etag.endswith("-1") and infos[2].etag.endswith("-1")


def test_describe_listed_follows_a_record_moved_to_a_blob(tmp_path: Path) -> None:
    paths = bucket_paths(tmp_path, "bkt")
    (paths.dir / "d").mkdir(parents=True)
    meta = meta_store_for(paths, XATTR)
    path = paths.dir / "d" / "big"
    path.write_bytes(b"x")
    st = os.stat(path)
    record = ObjectRecord(etag="c" * 32, size=st.st_size, mtime_ns=st.st_mtime_ns)
    # What MetaStore._set does with a record too large for the filesystem's xattrs.
    (paths.state / "blobs").mkdir(parents=True)
    (paths.state / "blobs" / ("d" * 32)).write_bytes(record.encode())
    os.setxattr(path, META_XATTR, b"@blob:" + b"d" * 32)
    assert meta.read(path, "d/big") == record
    [info] = meta.describe_listed(str(paths.dir / "d"), ["big"], ["d/big"])
    assert info is not None and info.etag == "c" * 32


@pytest.mark.parametrize("name", ["plain", "checksums", "multipart", "marker"])
def test_records_the_gateway_writes_take_the_fast_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The shortcut only pays if it accepts what the gateway writes.
    def slow(cls, data):  # type: ignore[no-untyped-def]
        raise AssertionError("ObjectRecord.decode was called")

    monkeypatch.setattr(ObjectRecord, "decode", classmethod(slow))
    raw = json.loads(RECORDS[name])
    assert listed_info("k", raw["size"], raw["mtime_ns"], RECORDS[name]).etag == raw["etag"]
