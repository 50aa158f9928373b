"""The stage journal: replay rules, and lines surviving a flush and a reread."""

from __future__ import annotations

import json
from pathlib import Path

from aif_gateway.stage.state.journal import DoneRecord, Journal, PartialFile, replay


def _range(rel: str, start: int, end: int, src: str = "etag:e1", size: int = 300, part: int = 100) -> str:
    return json.dumps(
        {"t": "r", "rel": rel, "src": src, "size": size, "part": part, "s": start, "e": end, "x": f"h{start}"}
    )


def _done(rel: str, src: str = "etag:e1") -> str:
    return json.dumps(DoneRecord(rel, 300, src, "abcd", 123, "s3://b/" + rel).to_json())


def test_replay_collects_the_ranges_of_a_partial_file() -> None:
    state = replay([_range("a", 0, 100), _range("a", 200, 300)])
    assert state.partial["a"].ranges == {0: (100, "h0"), 200: (300, "h200")}
    assert state.partial["a"].bytes_done == 200
    assert state.done == {}


def test_a_new_source_version_restarts_the_ranges() -> None:
    state = replay([_range("a", 0, 100), _range("a", 100, 200, src="etag:e2")])
    assert state.partial["a"].source_id == "etag:e2"
    assert state.partial["a"].ranges == {100: (200, "h100")}


def test_another_part_size_restarts_the_ranges() -> None:
    state = replay([_range("a", 0, 100), _range("a", 0, 150, part=150)])
    assert state.partial["a"].ranges == {0: (150, "h0")}


def test_done_replaces_partial_state_and_drop_forgets_both() -> None:
    state = replay([_range("a", 0, 100), _done("a"), _range("b", 0, 100)])
    assert "a" not in state.partial and state.done["a"].xxh3 == "abcd"
    state = replay([json.dumps({"t": "x", "rel": "a"}), json.dumps({"t": "x", "rel": "b"})], state)
    assert state.done == {} and state.partial == {}


def test_a_torn_or_unknown_line_is_ignored() -> None:
    torn = _range("a", 100, 200)[:-7]
    state = replay([_range("a", 0, 100), torn, '{"t": "zz", "rel": "q"}', "not json"])
    assert state.partial["a"].ranges == {0: (100, "h0")}


def test_partial_file_matches_only_the_same_source_size_and_part() -> None:
    partial = PartialFile("etag:e1", 300, 100)
    assert partial.matches("etag:e1", 300, 100)
    assert not partial.matches("etag:e2", 300, 100)
    assert not partial.matches("etag:e1", 301, 100)
    assert not partial.matches("etag:e1", 300, 64)


def test_flushed_lines_are_read_back_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / ".aifstage" / "journal" / "log", tmp_path)
    journal.open()
    journal.add_range("big", "mtime:5", 300, 100, 0, 100, "x0")
    journal.add_range("big", "mtime:5", 300, 100, 100, 200, "x1")
    record = DoneRecord("small", 3, "mtime:7", "ffff", 99, "/src/small")
    journal.add_done(record)
    journal.flush()
    journal.add_drop("big")  # pending, not flushed: a crash now loses it
    journal.close()
    state = Journal(journal.path, tmp_path).read_state()
    assert state.partial["big"].ranges == {0: (100, "x0"), 100: (200, "x1")}
    assert state.done == {"small": record}


def test_remove_forgets_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j" / "log", tmp_path)
    journal.open()
    journal.add_drop("x")
    journal.flush()
    journal.remove()
    assert not journal.path.exists()
    assert Journal(journal.path, tmp_path).read_state().done == {}


def test_a_done_line_is_the_compact_json_of_its_record() -> None:
    for rel in ("plain", 'quo"te\\back', "é/ünï", "bad-\udcff-utf8", "ctl\n\t"):
        record = DoneRecord(rel, 7, "etag:x-1", "0123456789abcdef", 5, f"s3://b/{rel}")
        assert record.to_line() == json.dumps(record.to_json(), separators=(",", ":")) + "\n"
        assert replay([record.to_line()]).done[rel] == record
