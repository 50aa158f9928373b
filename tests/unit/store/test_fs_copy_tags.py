"""CopyObject (including in-place metadata replacement) and object tagging."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from aif_gateway.errors import S3Error
from aif_gateway.store.base import ObjectAttrs, ObjectInfo, WriteOptions
from aif_gateway.store.fs import FsStore
from aif_gateway.store.meta import SIDECAR, XATTR

from ..store_support import get, new_store, put, run


@pytest.fixture(params=[XATTR, SIDECAR])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FsStore:
    return new_store(tmp_path / "root", request.param)


def copy(
    store: FsStore,
    src: str,
    dst: str,
    attrs: ObjectAttrs | None = None,
    options: WriteOptions | None = None,
    **kwargs: object,
) -> ObjectInfo:
    return run(store.copy_object("bkt", src, "bkt", dst, attrs, options or WriteOptions(), **kwargs))  # type: ignore[arg-type]


def test_copy_keeps_data_metadata_and_tags_by_default(store: FsStore) -> None:
    src = put(store, "src", b"payload", ObjectAttrs(content_type="text/x", user_meta={"a": "1"}, tags={"t": "v"}))
    copied = copy(store, "src", "deep/dst")
    assert get(store, "deep/dst") == b"payload"
    assert (copied.etag, copied.content_type, copied.user_meta, copied.tag_count) == (src.etag, "text/x", {"a": "1"}, 1)
    assert run(store.head_object("bkt", "deep/dst")) == copied
    assert run(store.get_tags("bkt", "deep/dst")) == {"t": "v"}


def test_copy_with_replace_directive_uses_the_new_attributes(store: FsStore) -> None:
    put(store, "src", b"payload", ObjectAttrs(user_meta={"a": "1"}, tags={"t": "v"}))
    copied = copy(store, "src", "dst", ObjectAttrs(content_type="text/y", user_meta={"b": "2"}, tags={}))
    assert (copied.content_type, copied.user_meta, copied.tag_count) == ("text/y", {"b": "2"}, 0)
    assert run(store.get_tags("bkt", "dst")) == {}


def test_copy_overwrites_an_existing_destination(store: FsStore) -> None:
    put(store, "src", b"new")
    put(store, "dst", b"old contents")
    copy(store, "src", "dst")
    assert get(store, "dst") == b"new"


def test_copy_hashes_when_a_checksum_is_asked_for(store: FsStore) -> None:
    put(store, "src", b"payload")
    copied = copy(store, "src", "dst", options=WriteOptions(hash_algorithms=frozenset({"CRC32C"})))
    assert set(copied.checksums) == {"CRC32C"}
    assert copied.etag == hashlib.md5(b"payload").hexdigest()


def test_copy_of_a_foreign_file_keeps_a_dash_etag(store: FsStore) -> None:
    (store.root / "bkt" / "job.out").write_bytes(b"from a job")
    copied = copy(store, "job.out", "copy.out")
    assert "-" in copied.etag
    assert run(store.head_object("bkt", "copy.out")).etag == copied.etag


def test_copy_source_check_runs_first_and_can_refuse(store: FsStore) -> None:
    src = put(store, "src", b"payload")
    seen: list[ObjectInfo] = []

    def refuse(info: ObjectInfo) -> None:
        seen.append(info)
        raise S3Error("PreconditionFailed")

    with pytest.raises(S3Error) as exc:
        copy(store, "src", "dst", check_source=refuse)
    assert exc.value.code == "PreconditionFailed"
    assert seen[0].etag == src.etag
    with pytest.raises(S3Error):
        run(store.head_object("bkt", "dst"))


def test_copy_honours_destination_conditions(store: FsStore) -> None:
    put(store, "src", b"a")
    put(store, "dst", b"b")
    with pytest.raises(S3Error) as exc:
        copy(store, "src", "dst", options=WriteOptions(if_none_match=True))
    assert exc.value.code == "PreconditionFailed"
    assert get(store, "dst") == b"b"


def test_copy_of_a_missing_source_is_no_such_key(store: FsStore) -> None:
    with pytest.raises(S3Error) as exc:
        copy(store, "missing", "dst")
    assert exc.value.code == "NoSuchKey"


def test_copy_onto_itself_replaces_metadata_in_place(store: FsStore) -> None:
    original = put(store, "k", b"same bytes", ObjectAttrs(user_meta={"v": "1"}, tags={"t": "1"}))
    inode = os.stat(store.root / "bkt" / "k").st_ino
    replaced = copy(store, "k", "k", ObjectAttrs(content_type="text/new", user_meta={"v": "2"}))
    assert os.stat(store.root / "bkt" / "k").st_ino == inode  # no data copied
    assert (replaced.etag, replaced.size, replaced.mtime_ns) == (original.etag, original.size, original.mtime_ns)
    assert (replaced.content_type, replaced.user_meta) == ("text/new", {"v": "2"})
    assert run(store.head_object("bkt", "k")) == replaced
    assert run(store.get_tags("bkt", "k")) == {"t": "1"}  # tags=None: the tags stay


def test_copy_onto_itself_gives_a_foreign_file_metadata(store: FsStore) -> None:
    (store.root / "bkt" / "f.dat").write_bytes(b"hpc")
    before = run(store.head_object("bkt", "f.dat"))
    after = copy(store, "f.dat", "f.dat", ObjectAttrs(content_type="text/csv", user_meta={"src": "job"}))
    assert after.etag == before.etag
    assert run(store.head_object("bkt", "f.dat")).user_meta == {"src": "job"}


def test_tags_round_trip_and_delete(store: FsStore) -> None:
    put(store, "k", b"x")
    assert run(store.get_tags("bkt", "k")) == {}
    run(store.put_tags("bkt", "k", {"project": "climate", "tier": "hot"}))
    assert run(store.get_tags("bkt", "k")) == {"project": "climate", "tier": "hot"}
    assert run(store.head_object("bkt", "k")).tag_count == 2
    run(store.delete_tags("bkt", "k"))
    assert run(store.get_tags("bkt", "k")) == {}


def test_tagging_does_not_invalidate_the_record(store: FsStore) -> None:
    written = put(store, "k", b"x", ObjectAttrs(content_type="text/plain"))
    run(store.put_tags("bkt", "k", {"a": "b"}))
    assert run(store.head_object("bkt", "k")).etag == written.etag


def test_an_overwrite_drops_the_old_tags(store: FsStore) -> None:
    put(store, "k", b"x", ObjectAttrs(tags={"a": "b"}))
    put(store, "k", b"y")
    assert run(store.get_tags("bkt", "k")) == {}


def test_tags_of_a_missing_object_are_no_such_key(store: FsStore) -> None:
    for call in (
        lambda: store.get_tags("bkt", "nope"),
        lambda: store.put_tags("bkt", "nope", {"a": "b"}),
        lambda: store.delete_tags("bkt", "nope"),
    ):
        with pytest.raises(S3Error) as exc:
            run(call())
        assert exc.value.code == "NoSuchKey"


@pytest.mark.parametrize(
    "tags", [{f"k{i}": "v" for i in range(11)}, {"k" * 129: "v"}, {"": "v"}, {"k": "v" * 257}, {"aws:reserved": "v"}]
)
def test_tag_limits_are_invalid_tag(store: FsStore, tags: dict[str, str]) -> None:
    put(store, "k", b"x")
    with pytest.raises(S3Error) as exc:
        run(store.put_tags("bkt", "k", tags))
    assert exc.value.code == "InvalidTag"
    with pytest.raises(S3Error) as exc:
        put(store, "k2", b"x", ObjectAttrs(tags=tags))
    assert exc.value.code == "InvalidTag"


def test_tag_limits_at_the_boundary_are_accepted(store: FsStore) -> None:
    put(store, "k", b"x")
    tags = {f"{i}" + "k" * 127: "v" * 256 for i in range(10)}
    run(store.put_tags("bkt", "k", tags))
    assert run(store.get_tags("bkt", "k")) == tags
