"""Multipart uploads written into one data file: Complete in O(1) when parts are uniform, a
reassembled file otherwise, and the writers of one upload kept apart across threads and processes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aif_gateway.errors import S3Error
from aif_gateway.store import multipart, multipart_layout, multipart_slots
from aif_gateway.store.base import CompletedPart, ObjectAttrs, WriteOptions
from aif_gateway.store.fs import FsStore
from aif_gateway.store.multipart import MIN_PART_SIZE
from aif_gateway.store.multipart_layout import in_place_plan

from ..multipart_support import BUCKET, root, run, stream, uploads  # noqa: F401 (root is a fixture)
from ..store_support import state_dir

P = MIN_PART_SIZE


def part_bytes(number: int, size: int = P) -> bytes:
    """Distinct bytes per part, so a part at a wrong offset shows."""
    return bytes([number % 251]) * size


def upload_dir(root: Path, upload_id: str) -> Path:
    return state_dir(root, BUCKET) / "uploads" / upload_id


def put_part(root: Path, upload_id: str, number: int, data: bytes, known_size: bool = True):
    options = WriteOptions(expected_size=len(data) if known_size else None)
    return run(uploads(root).upload_part("k", upload_id, number, stream(data), options))


def complete(root: Path, upload_id: str, parts):
    return run(
        uploads(root).complete("k", upload_id, [CompletedPart(p.part_number, p.etag) for p in parts], WriteOptions())
    )


def multipart_etag(datas: list[bytes]) -> str:
    return hashlib.md5(b"".join(hashlib.md5(d).digest() for d in datas)).hexdigest() + f"-{len(datas)}"


def error_code(call) -> str:
    with pytest.raises(S3Error) as info:
        call()
    return info.value.code


class CopyCounter:
    """Counts the bytes Complete moves between files (reflinked or copied)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes = 0
        real_copy, real_clone = multipart_layout.copy_range, multipart_layout.clone_range

        def copy_range(src, dst, offset, length, dst_offset=0):
            self.bytes += length
            return real_copy(src, dst, offset, length, dst_offset=dst_offset)

        def clone_range(src, dst, offset, length, dst_offset):
            shared = real_clone(src, dst, offset, length, dst_offset)
            self.bytes += shared
            return shared

        monkeypatch.setattr(multipart_layout, "copy_range", copy_range)
        monkeypatch.setattr(multipart_layout, "clone_range", clone_range)


# -- uniform parts: Complete renames the data file --------------------------------------------
def test_uniform_parts_in_any_order_complete_without_copying_a_byte(root: Path, monkeypatch) -> None:
    datas = [part_bytes(1), part_bytes(2), part_bytes(3, 1234)]
    upload_id = run(uploads(root).create("k", ObjectAttrs(content_type="text/x")))
    parts = {n: put_part(root, upload_id, n, datas[n - 1]) for n in (2, 3, 1)}
    data_file = upload_dir(root, upload_id) / "data"
    inode = data_file.stat().st_ino
    assert [p.name for p in upload_dir(root, upload_id).iterdir() if p.name.startswith("part-")] and not [
        p for p in upload_dir(root, upload_id).iterdir() if p.name.startswith("part-") and p.suffix != ".json"
    ]
    counter = CopyCounter(monkeypatch)

    info = complete(root, upload_id, [parts[1], parts[2], parts[3]])

    published = root / BUCKET / "k"
    assert counter.bytes == 0 and published.stat().st_ino == inode
    assert published.read_bytes() == b"".join(datas)
    assert info.etag == multipart_etag(datas) and info.size == 2 * P + 1234
    head = run(FsStore(root).head_object(BUCKET, "k"))
    assert (head.etag, head.part_sizes, head.content_type) == (info.etag, (P, P, 1234), "text/x")
    assert not upload_dir(root, upload_id).exists()


def test_a_single_full_part_is_published_in_place(root: Path) -> None:
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    part = put_part(root, upload_id, 1, part_bytes(1, P + 10))
    inode = (upload_dir(root, upload_id) / "data").stat().st_ino
    complete(root, upload_id, [part])
    assert (root / BUCKET / "k").stat().st_ino == inode
    assert (root / BUCKET / "k").read_bytes() == part_bytes(1, P + 10)


def test_a_retried_part_overwrites_its_range_and_only_its_last_record_counts(root: Path) -> None:
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    one = put_part(root, upload_id, 1, part_bytes(1))
    put_part(root, upload_id, 2, part_bytes(2, 100))
    two = put_part(root, upload_id, 2, part_bytes(7, 50))  # the retry, other bytes, shorter
    listed = run(uploads(root).list_parts("k", upload_id)).parts
    assert [(p.part_number, p.size, p.etag) for p in listed] == [(1, P, one.etag), (2, 50, two.etag)]
    inode = (upload_dir(root, upload_id) / "data").stat().st_ino
    info = complete(root, upload_id, [one, two])
    assert (root / BUCKET / "k").stat().st_ino == inode
    assert (root / BUCKET / "k").read_bytes() == part_bytes(1) + part_bytes(7, 50)
    assert info.etag == multipart_etag([part_bytes(1), part_bytes(7, 50)])


def test_a_failed_rewrite_of_a_part_leaves_no_record_naming_its_range(root: Path) -> None:
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    put_part(root, upload_id, 1, part_bytes(1))

    async def dies_midway() -> AsyncIterator[bytes]:
        yield part_bytes(9, 1 << 20)
        raise ConnectionResetError("client went away")

    options = WriteOptions(expected_size=P)
    with pytest.raises(ConnectionResetError):
        run(uploads(root).upload_part("k", upload_id, 1, dies_midway(), options))
    assert run(uploads(root).list_parts("k", upload_id)).parts == []
    again = put_part(root, upload_id, 1, part_bytes(1))  # the client's next try
    complete(root, upload_id, [again])
    assert (root / BUCKET / "k").read_bytes() == part_bytes(1)


def test_a_retried_complete_of_an_in_place_upload_returns_the_same_answer(root: Path) -> None:
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    parts = [put_part(root, upload_id, 1, part_bytes(1)), put_part(root, upload_id, 2, b"end")]
    first = complete(root, upload_id, parts)
    assert complete(root, upload_id, parts) == first
    assert (root / BUCKET / "k").read_bytes() == part_bytes(1) + b"end"


def test_a_refused_in_place_complete_keeps_the_upload_whole(root: Path) -> None:
    run(FsStore(root).put_object(BUCKET, "k", stream(b"old"), ObjectAttrs(), WriteOptions()))
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    parts = [put_part(root, upload_id, n, part_bytes(n)) for n in (1, 2)]
    completed = [CompletedPart(p.part_number, p.etag) for p in parts]
    refused = WriteOptions(if_none_match=True)
    assert error_code(lambda: run(uploads(root).complete("k", upload_id, completed, refused))) == ("PreconditionFailed")
    assert (root / BUCKET / "k").read_bytes() == b"old"
    complete(root, upload_id, parts)
    assert (root / BUCKET / "k").read_bytes() == part_bytes(1) + part_bytes(2)


# -- anything else: Complete assembles a new file -----------------------------------------------
def test_a_first_part_smaller_than_a_later_one_switches_the_upload_to_part_files(root: Path) -> None:
    datas = [part_bytes(1, P), part_bytes(2, P + 4096), part_bytes(3, 10)]
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    parts = [put_part(root, upload_id, n, datas[n - 1]) for n in (1, 2, 3)]
    layout = json.loads((upload_dir(root, upload_id) / "layout.json").read_text())
    assert layout == {"part_size": P, "separate": True}
    own_files = [p for p in upload_dir(root, upload_id).iterdir() if p.name.startswith("part-") and p.suffix != ".json"]
    assert len(own_files) == 2  # parts 2 and 3; part 1 stays in the data file
    info = complete(root, upload_id, parts)
    assert (root / BUCKET / "k").read_bytes() == b"".join(datas)
    assert info.etag == multipart_etag(datas)


def test_part_one_arriving_last_and_smaller_than_p_falls_back(root: Path) -> None:
    datas = [part_bytes(1, P), part_bytes(2, P + 8192)]
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    two = put_part(root, upload_id, 2, datas[1])  # decides P = P + 8192
    one = put_part(root, upload_id, 1, datas[0])
    complete(root, upload_id, [one, two])
    assert (root / BUCKET / "k").read_bytes() == b"".join(datas)


@pytest.mark.parametrize("listed", [(1, 2), (1, 3), (2, 3)])
def test_a_complete_naming_some_of_the_parts_assembles_them(root: Path, monkeypatch, listed) -> None:
    datas = {n: part_bytes(n) for n in (1, 2, 3)}
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    parts = {n: put_part(root, upload_id, n, datas[n]) for n in (1, 2, 3)}
    counter = CopyCounter(monkeypatch)
    info = complete(root, upload_id, [parts[n] for n in listed])
    assert counter.bytes == 2 * P  # nothing else could be right: the data file holds a third part
    assert (root / BUCKET / "k").read_bytes() == b"".join(datas[n] for n in listed)
    assert info.etag == multipart_etag([datas[n] for n in listed])
    assert not upload_dir(root, upload_id).exists()


def test_parts_of_unknown_or_small_size_get_files_of_their_own(root: Path) -> None:
    """As uploads written before the data file existed: records with no offset, one file each."""
    datas = [part_bytes(1), part_bytes(2, 7)]
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    parts = [put_part(root, upload_id, 1, datas[0], known_size=False), put_part(root, upload_id, 2, datas[1])]
    records = [json.loads(p.read_text()) for p in sorted(upload_dir(root, upload_id).glob("part-*.json"))]
    assert all("offset" not in r and r["file"].startswith("part-") for r in records)
    assert (upload_dir(root, upload_id) / "data").stat().st_size == 0  # made at create, never written
    complete(root, upload_id, parts)
    assert (root / BUCKET / "k").read_bytes() == b"".join(datas)


@pytest.mark.parametrize("sizes, in_place", [((P, P, 10), True), ((P, P + 10, 10), False)])
def test_upload_part_copy_writes_uniform_ranges_into_the_data_file(root: Path, sizes, in_place) -> None:
    source = b"".join(part_bytes(n + 1, size) for n, size in enumerate(sizes))
    store = FsStore(root)
    run(store.put_object(BUCKET, "src", stream(source), ObjectAttrs(), WriteOptions()))
    upload_id = run(uploads(root).create("k", ObjectAttrs()))

    async def copy(number: int, first: int, last: int):
        reader = await store.open_object(BUCKET, "src")
        try:
            return await uploads(root).upload_part_copy("k", upload_id, number, reader, (first, last))
        finally:
            await reader.close()

    parts, offset = [], 0
    for number, size in enumerate(sizes, start=1):
        parts.append(run(copy(number, offset, offset + size - 1)))
        offset += size
    inode = (upload_dir(root, upload_id) / "data").stat().st_ino
    info = complete(root, upload_id, parts)
    assert ((root / BUCKET / "k").stat().st_ino == inode) == in_place
    assert (root / BUCKET / "k").read_bytes() == source
    assert info.etag == multipart_etag([part_bytes(n + 1, size) for n, size in enumerate(sizes)])


def test_abort_removes_the_data_file_and_its_state(root: Path) -> None:
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    put_part(root, upload_id, 1, part_bytes(1))
    put_part(root, upload_id, 2, part_bytes(2, P + 1))  # switches: a part file as well
    run(uploads(root).abort("k", upload_id))
    assert list((state_dir(root, BUCKET) / "uploads").iterdir()) == []
    assert list((state_dir(root, BUCKET) / "tmp").iterdir()) == []
    assert not (root / BUCKET / "k").exists()
    assert error_code(lambda: put_part(root, upload_id, 3, part_bytes(3))) == "NoSuchUpload"


# -- concurrent writers -----------------------------------------------------------------------
def test_parts_written_by_concurrent_threads_land_at_their_offsets(root: Path) -> None:
    datas = {n: part_bytes(n) for n in range(1, 7)}
    datas[7] = part_bytes(7, 999)
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    results = {}

    def upload(n: int) -> None:
        results[n] = put_part(root, upload_id, n, datas[n])

    threads = [threading.Thread(target=upload, args=(n,)) for n in sorted(datas, reverse=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    inode = (upload_dir(root, upload_id) / "data").stat().st_ino
    info = complete(root, upload_id, [results[n] for n in sorted(results)])
    assert (root / BUCKET / "k").stat().st_ino == inode
    assert (root / BUCKET / "k").read_bytes() == b"".join(datas[n] for n in sorted(datas))
    assert info.etag == multipart_etag([datas[n] for n in sorted(datas)])


def _upload_parts_in_child(root: str, upload_id: str, numbers: list[int]) -> None:
    for n in numbers:
        put_part(Path(root), upload_id, n, part_bytes(n))


def test_parts_written_by_concurrent_processes_land_at_their_offsets(root: Path) -> None:
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_upload_parts_in_child, args=(str(root), upload_id, numbers))
        for numbers in ([4, 1], [2, 3])
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
    assert [c.exitcode for c in children] == [0, 0]
    parts = run(uploads(root).list_parts("k", upload_id)).parts
    inode = (upload_dir(root, upload_id) / "data").stat().st_ino
    complete(root, upload_id, parts)
    assert (root / BUCKET / "k").stat().st_ino == inode
    assert (root / BUCKET / "k").read_bytes() == b"".join(part_bytes(n) for n in (1, 2, 3, 4))


def test_a_second_writer_of_a_busy_part_writes_a_file_of_its_own(root: Path) -> None:
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    one = put_part(root, upload_id, 1, part_bytes(1))
    slots = upload_dir(root, upload_id) / "slots"
    assert multipart_slots.hold_part(slots, 2)  # the original writer of part 2, still busy
    try:
        two = put_part(root, upload_id, 2, part_bytes(2))  # the retry does not wait for it
    finally:
        multipart_slots.release_part(slots, 2)
    record = json.loads((upload_dir(root, upload_id) / "part-00002.json").read_text())
    assert record["file"] != "data"
    complete(root, upload_id, [one, two])
    assert (root / BUCKET / "k").read_bytes() == part_bytes(1) + part_bytes(2)


def _hold_part_until_told(slots: str, ready, done) -> None:
    assert multipart_slots.hold_part(Path(slots), 2)
    ready.set()
    done.wait(60)
    multipart_slots.release_part(Path(slots), 2)


@pytest.mark.parametrize("writer_in", ["this process", "another process"])
def test_complete_waits_for_writers_of_the_data_file_then_gives_up(root: Path, monkeypatch, writer_in) -> None:
    monkeypatch.setattr(multipart, "COMPLETE_WAIT_S", 0.2)
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    parts = [put_part(root, upload_id, 1, part_bytes(1)), put_part(root, upload_id, 2, b"end")]
    slots = upload_dir(root, upload_id) / "slots"
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    if writer_in == "this process":
        holder = threading.Thread(target=_hold_part_until_told, args=(str(slots), ready, done))
    else:
        holder = context.Process(target=_hold_part_until_told, args=(str(slots), ready, done))
    holder.start()
    try:
        assert ready.wait(30)
        assert error_code(lambda: complete(root, upload_id, parts)) == "ConditionalRequestConflict"
        assert not (root / BUCKET / "k").exists()
    finally:
        done.set()
        holder.join()
    complete(root, upload_id, parts)
    assert (root / BUCKET / "k").read_bytes() == part_bytes(1) + b"end"


def test_a_part_arriving_while_complete_holds_the_data_file_never_touches_it(root: Path) -> None:
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    one = put_part(root, upload_id, 1, part_bytes(1))
    slots = upload_dir(root, upload_id) / "slots"
    with multipart_slots.no_writers(slots, 1.0):  # as a Complete holds it
        put_part(root, upload_id, 2, part_bytes(2))
    assert json.loads((upload_dir(root, upload_id) / "part-00002.json").read_text())["file"] != "data"
    assert (upload_dir(root, upload_id) / "data").stat().st_size == P
    complete(root, upload_id, [one])
    assert (root / BUCKET / "k").read_bytes() == part_bytes(1)


# -- the layout decision, as a pure function --------------------------------------------------
def record(n: int, size: int, offset: int | None = None, file: str = "data") -> dict:
    placed = {"file": file} if offset is None else {"file": file, "offset": offset}
    return {"part_number": n, "size": size, **placed}


LAYOUT = {"part_size": 100, "separate": False}


@pytest.mark.parametrize(
    "chosen, extra, misplaced",
    [
        ([record(1, 100, 0), record(2, 100, 100), record(3, 1, 200)], [], []),
        ([record(1, 40, 0)], [], []),
        ([record(1, 100, 0), record(2, 7, None, "part-00002.ab")], [], [2]),  # came before P
        ([record(1, 100, 0), record(2, 100, 100)], [record(3, 5, 200)], None),  # would cut part 3
        ([record(1, 100, 0), record(3, 100, 200)], [], None),  # skips part 2
        ([record(2, 100, 100)], [], None),  # does not start at 1
        ([record(1, 90, 0), record(2, 100, 100)], [], None),  # a short part before the last
        ([record(1, 100, 0), record(2, 101, None, "part-00002.ab")], [], None),  # longer than P
    ],
)
def test_in_place_plan(chosen, extra, misplaced) -> None:
    stored = {r["part_number"]: r for r in chosen + extra}
    plan = in_place_plan(chosen, stored, LAYOUT)
    assert (None if plan is None else [r["part_number"] for r in plan]) == misplaced
    assert in_place_plan(chosen, stored, None) is None


def test_a_small_last_part_that_came_before_p_is_the_only_part_copied(root: Path, monkeypatch) -> None:
    datas = [part_bytes(1), part_bytes(2), part_bytes(3, 1234)]
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    parts = {n: put_part(root, upload_id, n, datas[n - 1]) for n in (3, 1, 2)}
    inode = (upload_dir(root, upload_id) / "data").stat().st_ino
    counter = CopyCounter(monkeypatch)
    complete(root, upload_id, [parts[1], parts[2], parts[3]])
    assert counter.bytes == 1234 and (root / BUCKET / "k").stat().st_ino == inode
    assert (root / BUCKET / "k").read_bytes() == b"".join(datas)


def test_a_parts_range_is_reserved_as_its_bytes_arrive_keeping_the_size(root: Path) -> None:
    upload_id = run(uploads(root).create("k", ObjectAttrs()))
    put_part(root, upload_id, 1, part_bytes(1))  # P is now known
    state = uploads(root).state
    slot = multipart_layout.place_part(state, "k", upload_id, 2, P)  # declares P, sends nothing yet
    assert slot is not None
    data_file = upload_dir(root, upload_id) / "data"
    try:
        assert data_file.stat().st_blocks * 512 <= P + 64 * 1024  # nothing reserved for part 2 yet
        writer = slot.writer(frozenset())
        writer.write([b"x" * (1 << 20)])
        assert P + (1 << 20) <= data_file.stat().st_blocks * 512 <= P + 2 * (1 << 20) + 64 * 1024
        assert data_file.stat().st_size == P + (1 << 20)  # KEEP_SIZE: nothing past the bytes written
        writer.discard()
    finally:
        slot.release()
