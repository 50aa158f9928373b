"""Planning a stage: skip decisions, ranges, batches, resumption and order."""

from __future__ import annotations

from aif_gateway.stage.engine.plan import (
    BATCH_FILES,
    SMALL_FILE,
    Batch,
    Finalize,
    Range,
    Whole,
    plan_transfer,
    split_ranges,
    unchanged,
)
from aif_gateway.stage.options import MiB
from aif_gateway.stage.sources import Entry
from aif_gateway.stage.state.journal import DoneRecord, PartialFile

PART = 8 * MiB


def fs(rel: str, size: int, mtime: int = 1) -> Entry:
    return Entry(rel, size, mtime, None, None, f"/src/{rel}")


def s3(rel: str, size: int, etag: str = "e") -> Entry:
    return Entry(rel, size, 1, etag, None, f"s3://b/{rel}", True)


def test_split_ranges_cover_the_file_exactly() -> None:
    assert split_ranges(20, 8) == [(0, 8), (8, 16), (16, 20)]
    assert split_ranges(16, 8) == [(0, 8), (8, 16)]
    assert split_ranges(0, 8) == []


def test_large_files_become_ranges_and_come_first() -> None:
    plan = plan_transfer([fs("a/small", 10), s3("big", 2 * PART + 1), fs("mid", 2 * MiB)], {}, PART)
    kinds = [type(u).__name__ for u in plan.units]
    assert kinds == ["Range", "Range", "Range", "Whole", "Batch"]
    assert [(u.start, u.end) for u in plan.units[:3]] == [(0, PART), (PART, 2 * PART), (2 * PART, 2 * PART + 1)]
    assert plan.split["big"].remaining == 3 and plan.split["big"].fresh
    assert plan.bytes_to_move == 10 + 2 * PART + 1 + 2 * MiB


def test_small_files_and_small_objects_are_batched_apart() -> None:
    entries = [fs(f"f{i}", 100) for i in range(BATCH_FILES + 5)] + [s3("o1", 100), s3("o2", 100)]
    entries += [s3("o3", SMALL_FILE + 1)]
    plan = plan_transfer(entries, {}, PART)
    batches = [u for u in plan.units if isinstance(u, Batch)]
    assert sorted(len(b.entries) for b in batches) == [2, 5, BATCH_FILES]
    assert all(len({e.from_s3 for e in b.entries}) == 1 for b in batches)
    assert [u.entry.rel_path for u in plan.units if isinstance(u, Whole)] == ["o3"]


def test_batches_are_also_cut_by_bytes() -> None:
    entries = [fs(f"f{i}", SMALL_FILE) for i in range(40)]
    plan = plan_transfer(entries, {}, PART)
    assert all(sum(e.size for e in b.entries) <= 16 * MiB for b in plan.units if isinstance(b, Batch))
    assert sum(len(b.entries) for b in plan.units if isinstance(b, Batch)) == 40


def test_resumed_file_only_fetches_its_missing_ranges() -> None:
    big = s3("big", 3 * PART)
    partial = {"big": PartialFile(big.source_id, big.size, PART, {0: (PART, "h0"), 2 * PART: (3 * PART, "h2")})}
    plan = plan_transfer([big], partial, PART)
    assert plan.units == [Range(big, PART, 2 * PART)]
    assert plan.resumed_bytes == 2 * PART and not plan.split["big"].fresh
    assert plan.bytes_to_move == PART


def test_a_changed_source_or_part_size_restarts_the_file() -> None:
    big = s3("big", 2 * PART, etag="new")
    stale = {"big": PartialFile("etag:old", big.size, PART, {0: (PART, "h0")})}
    plan = plan_transfer([big], stale, PART)
    assert len(plan.units) == 2 and plan.split["big"].fresh and plan.resumed_bytes == 0
    other_part = {"big": PartialFile(big.source_id, big.size, PART // 2, {0: (PART // 2, "h0")})}
    assert plan_transfer([big], other_part, PART).split["big"].fresh


def test_a_file_whose_ranges_all_landed_is_only_finalized() -> None:
    big = fs("big", 2 * PART)
    partial = {"big": PartialFile(big.source_id, big.size, PART, {0: (PART, "a"), PART: (2 * PART, "b")})}
    plan = plan_transfer([big], partial, PART)
    assert plan.units == [Finalize(big)]
    assert plan.bytes_to_move == 0


def test_unchanged_needs_same_source_version_and_untouched_destination() -> None:
    entry = s3("x", 10, etag="e1")
    record = DoneRecord("x", 10, "etag:e1", "h", 555, entry.url)
    assert unchanged(entry, record, (10, 555))
    assert not unchanged(entry, record, (10, 556))  # the copy was touched
    assert not unchanged(entry, record, None)  # the copy is gone
    assert not unchanged(s3("x", 10, etag="e2"), record, (10, 555))  # the source changed
    assert not unchanged(entry, None, (10, 555))
