"""Multipart uploads on real files: state on disk only, so any instance or process can continue."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from aif_gateway.checksums import b64, digest_of
from aif_gateway.errors import S3Error
from aif_gateway.store import publish
from aif_gateway.store.base import CompletedPart, ExpectedObject, ObjectAttrs, WriteOptions
from aif_gateway.store.fs import FsStore
from aif_gateway.store.multipart import MIN_PART_SIZE, MultipartUploads

from ..multipart_support import BUCKET, root, run, stream, uploads  # noqa: F401 (root is a fixture)
from ..store_support import state_dir

BIG = bytes(range(256)) * (MIN_PART_SIZE // 256)  # exactly the minimum part size
NONE = WriteOptions()


def put_part(mp: MultipartUploads, key: str, upload_id: str, number: int, data: bytes, options=NONE):
    """UploadPart as the protocol layer calls it: the body's length known before its bytes."""
    if options.expected_size is None:
        options = replace(options, expected_size=len(data))
    return run(mp.upload_part(key, upload_id, number, stream(data), options))


def complete(mp: MultipartUploads, key: str, upload_id: str, parts, options=NONE):
    return run(mp.complete(key, upload_id, [CompletedPart(n, etag) for n, etag in parts], options))


def error_code(call) -> str:
    with pytest.raises(S3Error) as info:
        call()
    return info.value.code


def test_complete_builds_exact_bytes_etag_and_metadata(root: Path) -> None:
    mp = uploads(root)
    attrs = ObjectAttrs(content_type="text/plain", user_meta={"who": "me"}, tags={"t": "1"})
    upload_id = run(mp.create("dir/obj", attrs))
    p1 = put_part(mp, "dir/obj", upload_id, 1, BIG)
    p2 = put_part(mp, "dir/obj", upload_id, 2, b"tail")
    assert p1.etag == hashlib.md5(BIG).hexdigest() and p2.size == 4

    info = complete(mp, "dir/obj", upload_id, [(1, p1.etag), (2, f'"{p2.etag}"')])

    assert (root / BUCKET / "dir" / "obj").read_bytes() == BIG + b"tail"
    expected = hashlib.md5(hashlib.md5(BIG).digest() + hashlib.md5(b"tail").digest()).hexdigest() + "-2"
    assert info.etag == expected and info.size == len(BIG) + 4 and info.tag_count == 1
    head = run(FsStore(root).head_object(BUCKET, "dir/obj"))
    assert (head.etag, head.part_sizes, head.content_type, head.user_meta) == (
        expected,
        (len(BIG), 4),
        "text/plain",
        {"who": "me"},
    )
    assert run(FsStore(root).get_tags(BUCKET, "dir/obj")) == {"t": "1"}
    assert not (state_dir(root, BUCKET) / "uploads" / upload_id).exists()


def test_reuploaded_part_replaces_the_previous_one(root: Path) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs()))
    put_part(mp, "k", upload_id, 1, b"old")
    new = put_part(mp, "k", upload_id, 1, b"new!")
    page = run(mp.list_parts("k", upload_id))
    assert [(p.part_number, p.size, p.etag) for p in page.parts] == [(1, 4, new.etag)]
    # The replaced bytes are gone: one data file per part number.
    upload_dir = state_dir(root, BUCKET) / "uploads" / upload_id
    assert len([p for p in upload_dir.iterdir() if p.name.startswith("part-") and p.suffix != ".json"]) == 1
    complete(mp, "k", upload_id, [(1, new.etag)])
    assert (root / BUCKET / "k").read_bytes() == b"new!"


def test_upload_part_errors(root: Path) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs()))
    other_id = run(mp.create("other", ObjectAttrs()))
    assert error_code(lambda: put_part(mp, "k", upload_id, 0, b"x")) == "InvalidArgument"
    assert error_code(lambda: put_part(mp, "k", upload_id, 10_001, b"x")) == "InvalidArgument"
    assert error_code(lambda: put_part(mp, "k", "0" * 40, 1, b"x")) == "NoSuchUpload"
    assert error_code(lambda: put_part(mp, "k", "../../etc", 1, b"x")) == "NoSuchUpload"
    assert error_code(lambda: put_part(mp, "k", other_id, 1, b"x")) == "NoSuchUpload"
    assert error_code(lambda: run(mp.list_parts("other", upload_id))) == "NoSuchUpload"
    put_part(mp, "k", upload_id, 10_000, b"x")


def test_failed_verification_leaves_no_part(root: Path) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs()))

    def verify(digests):
        raise S3Error("BadDigest")

    assert error_code(lambda: put_part(mp, "k", upload_id, 1, b"data", WriteOptions(verify=verify))) == "BadDigest"
    short = WriteOptions(expected_size=10)
    assert error_code(lambda: put_part(mp, "k", upload_id, 1, b"data", short)) == "IncompleteBody"
    assert run(mp.list_parts("k", upload_id)).parts == []
    assert list((state_dir(root, BUCKET) / "tmp").iterdir()) == []


def test_complete_validation_errors(root: Path) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs()))
    small = put_part(mp, "k", upload_id, 1, b"small")
    big = put_part(mp, "k", upload_id, 2, BIG)
    last = put_part(mp, "k", upload_id, 3, b"end")
    cases = {
        "MalformedXML": [],
        "InvalidPartOrder": [(2, big.etag), (2, big.etag)],
        "InvalidPart": [(2, big.etag), (4, last.etag)],
        "EntityTooSmall": [(1, small.etag), (2, big.etag)],
    }
    for code, parts in cases.items():
        assert error_code(lambda: complete(mp, "k", upload_id, parts)) == code, code
    assert error_code(lambda: complete(mp, "k", upload_id, [(2, big.etag), (3, small.etag)])) == "InvalidPart"
    assert error_code(lambda: complete(mp, "k", upload_id, [(3, last.etag), (2, big.etag)])) == "InvalidPartOrder"
    assert error_code(lambda: complete(mp, "other", upload_id, [(2, big.etag)])) == "NoSuchUpload"
    # Nothing was published, and the upload is intact: a correct Complete still works.
    assert not (root / BUCKET / "k").exists()
    complete(mp, "k", upload_id, [(2, big.etag), (3, last.etag)])
    assert (root / BUCKET / "k").read_bytes() == BIG + b"end"


def test_part_checksums_sent_with_complete_must_match(root: Path) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs(), checksum_algorithm="CRC32"))
    part = put_part(mp, "k", upload_id, 1, b"abc")
    wrong = CompletedPart(1, part.etag, {"CRC32": b64(digest_of("CRC32", b"abd"))})
    with pytest.raises(S3Error) as info:
        run(mp.complete("k", upload_id, [wrong], NONE))
    assert info.value.code == "InvalidPart"
    right = CompletedPart(1, part.etag, {"CRC32": b64(digest_of("CRC32", b"abc"))})
    run(mp.complete("k", upload_id, [right], NONE))


def test_composite_checksum_is_checksum_of_part_checksums(root: Path) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs(), checksum_algorithm="CRC32C"))
    p1 = put_part(mp, "k", upload_id, 1, BIG)
    p2 = put_part(mp, "k", upload_id, 2, b"xyz")
    assert p1.checksums["CRC32C"] == b64(digest_of("CRC32C", BIG))
    info = complete(mp, "k", upload_id, [(1, p1.etag), (2, p2.etag)])
    joined = digest_of("CRC32C", BIG) + digest_of("CRC32C", b"xyz")
    assert info.checksums == {"CRC32C": b64(digest_of("CRC32C", joined)) + "-2"}
    assert info.checksum_type == "COMPOSITE"


def test_full_object_checksum_is_the_crc_of_the_whole_object(root: Path) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs(), checksum_algorithm="CRC64NVME"))
    p1 = put_part(mp, "k", upload_id, 1, BIG)
    p2 = put_part(mp, "k", upload_id, 2, b"xyz")
    info = complete(mp, "k", upload_id, [(1, p1.etag), (2, p2.etag)])
    assert info.checksums == {"CRC64NVME": b64(digest_of("CRC64NVME", BIG + b"xyz"))}
    assert info.checksum_type == "FULL_OBJECT"
    assert run(FsStore(root).head_object(BUCKET, "k")).checksums == info.checksums


@pytest.mark.parametrize(
    "algorithm, checksum_type",
    [("SHA256", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE"), (None, "COMPOSITE"), ("MD4", None)],
)
def test_impossible_checksum_settings_are_refused(root: Path, algorithm, checksum_type) -> None:
    mp = uploads(root)
    assert error_code(lambda: run(mp.create("k", ObjectAttrs(), algorithm, checksum_type))) == "InvalidRequest"


def test_retried_complete_returns_the_same_result(root: Path) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs()))
    part = put_part(mp, "k", upload_id, 1, b"only")
    first = complete(mp, "k", upload_id, [(1, part.etag)])
    (root / BUCKET / "k").write_bytes(b"rewritten by someone else")
    assert complete(uploads(root), "k", upload_id, [(1, part.etag)]) == first
    assert error_code(lambda: complete(mp, "k", upload_id, [(1, "0" * 32)])) == "NoSuchUpload"
    assert error_code(lambda: put_part(mp, "k", upload_id, 2, b"late")) == "NoSuchUpload"
    assert error_code(lambda: run(mp.abort("k", upload_id))) == "NoSuchUpload"


def test_completion_records_are_cleaned_up_later(root: Path) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs()))
    part = put_part(mp, "k", upload_id, 1, b"x")
    complete(mp, "k", upload_id, [(1, part.etag)])
    assert list((state_dir(root, BUCKET) / "uploads").iterdir()) == []  # DeleteBucket sees none
    assert mp.cleanup_done_records() == 0  # younger than a day: kept for retries
    assert mp.cleanup_done_records(older_than_s=-1) == 1
    assert error_code(lambda: complete(mp, "k", upload_id, [(1, part.etag)])) == "NoSuchUpload"


def test_racing_completes_publish_once_and_agree(root: Path) -> None:
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    part = put_part(uploads(root), "k", upload_id, 1, b"raced")
    results: list[object] = []

    def racer() -> None:
        try:
            results.append(complete(uploads(root), "k", upload_id, [(1, part.etag)]))
        except S3Error as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=racer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    infos = [r for r in results if not isinstance(r, str)]
    assert infos and all(info == infos[0] for info in infos)
    assert all(r == "NoSuchUpload" for r in results if isinstance(r, str))
    assert (root / BUCKET / "k").read_bytes() == b"raced"


def test_upload_started_by_one_store_is_completed_by_another(root: Path) -> None:
    first_store, second_store = FsStore(root), FsStore(root)
    upload_id = run(first_store.create_multipart(BUCKET, "k", ObjectAttrs()))
    one = run(first_store.upload_part(BUCKET, "k", upload_id, 1, stream(BIG), NONE))
    two = run(second_store.upload_part(BUCKET, "k", upload_id, 2, stream(b"end"), NONE))
    listed = run(second_store.list_uploads(BUCKET))
    assert [u.upload_id for u in listed.uploads] == [upload_id]
    parts = [CompletedPart(1, one.etag), CompletedPart(2, two.etag)]
    info = run(second_store.complete_multipart(BUCKET, "k", upload_id, parts, NONE))
    assert run(first_store.head_object(BUCKET, "k")) == info
    assert (root / BUCKET / "k").read_bytes() == BIG + b"end"


def _continue_in_child(root: str, upload_id: str, etag: str) -> None:
    store = FsStore(Path(root))
    second = run(store.upload_part(BUCKET, "k", upload_id, 2, stream(b"from the child"), NONE))
    parts = [CompletedPart(1, etag), CompletedPart(2, second.etag)]
    run(store.complete_multipart(BUCKET, "k", upload_id, parts, NONE))


def test_upload_continues_and_completes_in_another_process(root: Path) -> None:
    store = FsStore(root)
    upload_id = run(store.create_multipart(BUCKET, "k", ObjectAttrs()))
    first = run(store.upload_part(BUCKET, "k", upload_id, 1, stream(BIG), NONE))
    child = multiprocessing.get_context("spawn").Process(
        target=_continue_in_child, args=(str(root), upload_id, first.etag)
    )
    child.start()
    child.join()
    assert child.exitcode == 0
    assert (root / BUCKET / "k").read_bytes() == BIG + b"from the child"
    assert run(store.list_uploads(BUCKET)).uploads == []


def test_abort_removes_everything_and_publishes_nothing(root: Path) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs()))
    put_part(mp, "k", upload_id, 1, b"data")
    assert error_code(lambda: run(mp.abort("other", upload_id))) == "NoSuchUpload"
    run(uploads(root).abort("k", upload_id))
    assert not (root / BUCKET / "k").exists()
    assert list((state_dir(root, BUCKET) / "uploads").iterdir()) == []
    assert list((state_dir(root, BUCKET) / "tmp").iterdir()) == []
    assert error_code(lambda: run(mp.abort("k", upload_id))) == "NoSuchUpload"
    assert error_code(lambda: run(mp.list_parts("k", upload_id))) == "NoSuchUpload"


def test_failed_conditional_complete_keeps_old_object_and_upload(root: Path) -> None:
    store = FsStore(root)
    run(store.put_object(BUCKET, "k", stream(b"old"), ObjectAttrs(), NONE))
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs()))
    part = put_part(mp, "k", upload_id, 1, b"new")
    refused = WriteOptions(if_none_match=True)
    assert error_code(lambda: complete(mp, "k", upload_id, [(1, part.etag)], refused)) == "PreconditionFailed"
    assert error_code(lambda: complete(mp, "k", upload_id, [(1, part.etag)], WriteOptions(if_match="0" * 32))) == (
        "PreconditionFailed"
    )
    assert (root / BUCKET / "k").read_bytes() == b"old"
    assert not [p for p in (state_dir(root, BUCKET) / "tmp").iterdir() if p.name.startswith("complete.")]
    old_etag = run(store.head_object(BUCKET, "k")).etag
    complete(mp, "k", upload_id, [(1, part.etag)], WriteOptions(if_match=old_etag))
    assert (root / BUCKET / "k").read_bytes() == b"new"


@pytest.mark.skipif(os.geteuid() != 0, reason="an upload of another user's needs root to make")
@pytest.mark.parametrize("planted", ["hard link", "symlink"])
def test_a_part_file_replaced_by_a_link_is_never_published(root: Path, planted: str) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs()))
    part = run(mp.upload_part("k", upload_id, 1, stream(b"mine"), NONE))  # of unknown length: a file of its own
    upload_dir = state_dir(root, BUCKET) / "uploads" / upload_id
    for path in (upload_dir, *upload_dir.iterdir()):
        os.chown(path, 4101, 4101)  # a user's upload, which the user may rearrange
    secret = root / "not-the-uploaders"  # root's
    secret.write_bytes(b"secret")
    [part_file] = [p for p in upload_dir.glob("part-00001.*") if p.suffix != ".json"]
    part_file.unlink()
    (os.link if planted == "hard link" else os.symlink)(secret, part_file)
    assert error_code(lambda: complete(mp, "k", upload_id, [(1, part.etag)])) in ("InvalidPart", "AccessDenied")
    assert not (root / BUCKET / "k").exists()


def test_complete_failing_midway_keeps_old_object_and_leaves_no_temp(root: Path) -> None:
    run(FsStore(root).put_object(BUCKET, "k", stream(b"old"), ObjectAttrs(), NONE))
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs()))
    first = put_part(mp, "k", upload_id, 1, BIG)
    # Of unknown length, so in a part file of its own.
    second = run(mp.upload_part("k", upload_id, 2, stream(b"end"), NONE))
    upload_dir = state_dir(root, BUCKET) / "uploads" / upload_id
    for data_file in upload_dir.glob("part-00002.*"):
        if data_file.suffix != ".json":
            data_file.unlink()  # lost behind the gateway's back before Complete reads it
    assert error_code(lambda: complete(mp, "k", upload_id, [(1, first.etag), (2, second.etag)])) == "InvalidPart"
    assert (root / BUCKET / "k").read_bytes() == b"old"
    assert list((state_dir(root, BUCKET) / "tmp").iterdir()) == []


def test_list_parts_pages_by_part_number(root: Path) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs(), owner="alice"))
    for number in (5, 1, 3, 2):
        put_part(mp, "k", upload_id, number, b"p" * number)
    page = run(mp.list_parts("k", upload_id, max_parts=2))
    assert [p.part_number for p in page.parts] == [1, 2]
    assert page.is_truncated and page.next_part_number_marker == 2
    assert page.upload.owner == "alice" and page.upload.key == "k"
    page = run(mp.list_parts("k", upload_id, part_number_marker=2, max_parts=2))
    assert [(p.part_number, p.size) for p in page.parts] == [(3, 3), (5, 5)]
    assert not page.is_truncated


def test_list_uploads_sorted_grouped_and_paged(root: Path) -> None:
    mp = uploads(root)
    ids = {}
    for key in ["b", "a/x", "a/y", "c", "b", "a.b"]:
        ids.setdefault(key, []).append(run(mp.create(key, ObjectAttrs())))

    def listed(**kw):
        page = run(mp.list_uploads(**kw))
        return [(u.key, u.upload_id) for u in page.uploads], page.common_prefixes, page.is_truncated

    everything = [
        ("a.b", ids["a.b"][0]),
        ("a/x", ids["a/x"][0]),
        ("a/y", ids["a/y"][0]),
        ("b", ids["b"][0]),
        ("b", ids["b"][1]),
        ("c", ids["c"][0]),
    ]
    assert listed() == (everything, [], False)
    assert listed(delimiter="/") == ([everything[0]] + everything[3:], ["a/"], False)
    assert listed(prefix="a/") == (everything[1:3], [], False)
    assert listed(key_marker="b") == (everything[5:], [], False)
    assert listed(key_marker="b", upload_id_marker=ids["b"][0]) == (everything[4:], [], False)

    page = run(mp.list_uploads(max_uploads=4))
    assert page.is_truncated and (page.next_key_marker, page.next_upload_id_marker) == ("b", ids["b"][0])
    rest = run(mp.list_uploads(key_marker=page.next_key_marker, upload_id_marker=page.next_upload_id_marker))
    assert [(u.key, u.upload_id) for u in page.uploads + rest.uploads] == everything
    page = run(mp.list_uploads(delimiter="/", max_uploads=2))
    assert page.common_prefixes == ["a/"] and (page.next_key_marker, page.next_upload_id_marker) == ("a/", None)


def test_upload_part_copy_copies_a_range_of_the_source(root: Path) -> None:
    store = FsStore(root)
    source_bytes = bytes(range(256)) * 100
    run(store.put_object(BUCKET, "src", stream(source_bytes), ObjectAttrs(), NONE))
    mp = uploads(root)
    upload_id = run(mp.create("dst", ObjectAttrs(), checksum_algorithm="SHA256"))
    seen = []

    async def copy(number, src_range, check=None):
        reader = await store.open_object(BUCKET, "src")
        try:
            return await mp.upload_part_copy("dst", upload_id, number, reader, src_range, check)
        finally:
            await reader.close()

    part = run(copy(1, (10, 19), seen.append))
    assert seen[0].key == "src"
    assert (part.size, part.etag) == (10, hashlib.md5(source_bytes[10:20]).hexdigest())
    assert part.checksums["SHA256"] == b64(hashlib.sha256(source_bytes[10:20]).digest())
    whole = run(copy(2, None))
    assert whole.size == len(source_bytes)
    for bad in [(0, len(source_bytes)), (5, 4)]:
        assert error_code(lambda: run(copy(3, bad))) == "InvalidArgument"

    def refuse(info):
        raise S3Error("PreconditionFailed")

    assert error_code(lambda: run(copy(3, None, refuse))) == "PreconditionFailed"
    assert error_code(lambda: run(copy(0, None))) == "InvalidArgument"
    assert [p.part_number for p in run(mp.list_parts("dst", upload_id)).parts] == [1, 2]


# -- what a Complete request asserts about the object ---------------------------------------
def full_object_upload(root: Path) -> tuple[MultipartUploads, str, list[CompletedPart]]:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs(), checksum_algorithm="CRC32", checksum_type="FULL_OBJECT"))
    p1 = put_part(mp, "k", upload_id, 1, BIG)
    p2 = put_part(mp, "k", upload_id, 2, b"xyz")
    return mp, upload_id, [CompletedPart(1, p1.etag), CompletedPart(2, p2.etag)]


FULL_CRC32 = b64(digest_of("CRC32", BIG + b"xyz"))


def complete_expecting(mp: MultipartUploads, upload_id: str, parts, **expected):
    return run(mp.complete("k", upload_id, parts, NONE, ExpectedObject(**expected)))


@pytest.mark.parametrize(
    "expected, code",
    [
        ({"checksum_algorithm": "CRC32", "checksum": b64(digest_of("CRC32", b"other bytes"))}, "BadDigest"),
        ({"checksum_algorithm": "CRC32", "checksum": FULL_CRC32 + "-2"}, "BadDigest"),  # not a composite
        ({"checksum_type": "COMPOSITE"}, "BadDigest"),
        ({"checksum_algorithm": "CRC32C", "checksum": FULL_CRC32}, "InvalidRequest"),  # not the upload's
        ({"size": len(BIG) + 4}, "InvalidRequest"),
    ],
)
def test_a_complete_whose_claims_are_wrong_publishes_nothing(root: Path, expected, code) -> None:
    mp, upload_id, parts = full_object_upload(root)
    assert error_code(lambda: complete_expecting(mp, upload_id, parts, **expected)) == code
    assert not (root / BUCKET / "k").exists()
    assert list((state_dir(root, BUCKET) / "tmp").iterdir()) == []
    assert len(run(mp.list_parts("k", upload_id)).parts) == 2  # the upload is intact


def test_a_complete_whose_claims_hold_publishes_and_its_retry_is_checked_too(root: Path) -> None:
    mp, upload_id, parts = full_object_upload(root)
    claims = {
        "checksum_algorithm": "CRC32",
        "checksum": FULL_CRC32,
        "checksum_type": "FULL_OBJECT",
        "size": len(BIG) + 3,
    }
    info = complete_expecting(mp, upload_id, parts, **claims)
    assert info.checksums == {"CRC32": FULL_CRC32} and info.checksum_type == "FULL_OBJECT"
    assert (root / BUCKET / "k").read_bytes() == BIG + b"xyz"
    assert complete_expecting(mp, upload_id, parts, **claims) == info
    assert error_code(lambda: complete_expecting(mp, upload_id, parts, size=1)) == "InvalidRequest"


def test_a_composite_claim_may_carry_or_leave_out_the_part_count(root: Path) -> None:
    for suffix in ("", "-2"):
        mp = uploads(root)
        upload_id = run(mp.create("k", ObjectAttrs(), checksum_algorithm="SHA1"))
        p1 = put_part(mp, "k", upload_id, 1, BIG)
        p2 = put_part(mp, "k", upload_id, 2, b"xyz")
        composite = b64(digest_of("SHA1", digest_of("SHA1", BIG) + digest_of("SHA1", b"xyz")))
        parts = [CompletedPart(1, p1.etag), CompletedPart(2, p2.etag)]
        wrong = b64(digest_of("SHA1", b"nope")) + suffix
        assert (
            error_code(lambda: complete_expecting(mp, upload_id, parts, checksum_algorithm="SHA1", checksum=wrong))
            == "BadDigest"
        )
        info = complete_expecting(
            mp, upload_id, parts, checksum_algorithm="SHA1", checksum=composite + suffix, checksum_type="COMPOSITE"
        )
        assert info.checksums == {"SHA1": composite + "-2"}


def test_a_claimed_checksum_on_an_upload_without_one_is_invalid(root: Path) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs()))
    part = put_part(mp, "k", upload_id, 1, b"abc")
    crc = b64(digest_of("CRC32", b"abc"))
    parts = [CompletedPart(1, part.etag)]
    assert error_code(lambda: complete_expecting(mp, upload_id, parts, checksum_algorithm="CRC32", checksum=crc)) == (
        "InvalidRequest"
    )
    assert error_code(lambda: complete_expecting(mp, upload_id, parts, checksum_type="FULL_OBJECT")) == "BadDigest"


# -- digests a part keeps -------------------------------------------------------------------
def test_a_part_keeps_its_checksums_but_not_digests_computed_only_to_verify(root: Path) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs(), checksum_algorithm="CRC32C"))
    seen: dict[str, bytes] = {}
    options = WriteOptions(
        hash_algorithms=frozenset({"CRC32"}), verify_algorithms=frozenset({"SHA256"}), verify=seen.update
    )
    part = put_part(mp, "k", upload_id, 1, b"abc", options)
    assert seen["SHA256"] == hashlib.sha256(b"abc").digest()
    assert set(part.checksums) == {"CRC32", "CRC32C"}
    assert set(run(mp.list_parts("k", upload_id)).parts[0].checksums) == {"CRC32", "CRC32C"}


# -- filesystem errors ----------------------------------------------------------------------
def test_filesystem_errors_of_multipart_calls_are_s3_errors(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mp = uploads(root)
    upload_id = run(mp.create("k", ObjectAttrs()))

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    # The disk fills up under a part in a file of its own, and under one in the data file
    # (both are written by publish.HashingWriter).
    monkeypatch.setattr(publish, "write_hashed", no_space)
    for data in (b"data", BIG):
        with pytest.raises(S3Error) as info:
            put_part(mp, "k", upload_id, 1, data)
        assert (info.value.code, info.value.message) == ("InternalError", "The storage filesystem is full.")
    monkeypatch.undo()
    assert run(mp.list_parts("k", upload_id)).parts == []
    monkeypatch.setattr(os, "mkdir", denied)
    assert error_code(lambda: run(mp.create("k2", ObjectAttrs()))) == "AccessDenied"
    monkeypatch.undo()
    assert list((state_dir(root, BUCKET) / "tmp").iterdir()) == []
