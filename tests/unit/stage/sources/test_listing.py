"""Sources: manifest lines, safe destination paths, the fingerprint, and filesystem listing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aif_gateway.stage.errors import StageError
from aif_gateway.stage.options import StageOptions
from aif_gateway.stage.sources import Entry, fingerprint, list_sources, parse_manifest_line, safe_rel_path

OPTIONS = StageOptions(jobs=4)


def entry(rel: str, size: int = 1, mtime: int = 1, etag: str | None = None) -> Entry:
    return Entry(rel, size, mtime, etag, None, "s3://b/" + rel if etag else "/x/" + rel, bool(etag))


def test_fingerprint_ignores_order_but_sees_every_change() -> None:
    base = [entry("a", etag="e1"), entry("b/c", 5, 7)]
    assert fingerprint(base) == fingerprint(list(reversed(base)))
    changed = {
        fingerprint([entry("a", etag="e2"), entry("b/c", 5, 7)]),
        fingerprint([entry("a", etag="e1"), entry("b/c", 6, 7)]),
        fingerprint([entry("a", etag="e1"), entry("b/c", 5, 8)]),
        fingerprint([entry("a", etag="e1"), entry("b/d", 5, 7)]),
        fingerprint([entry("a", etag="e1")]),
    }
    assert fingerprint(base) not in changed and len(changed) == 5


def test_manifest_lines_parse_destination_and_checksum() -> None:
    line = parse_manifest_line("s3://b/k.bin  data/k.bin  xxh3=00112233AABBCCDD  # comment")
    assert line is not None
    assert (line.src, line.dest_rel, line.checksum) == ("s3://b/k.bin", "data/k.bin", ("XXH3_64", "00112233aabbccdd"))
    line = parse_manifest_line("'/path with space/f' sha256=" + "ab" * 32)
    assert line is not None and line.src == "/path with space/f" and line.checksum == ("SHA256", "ab" * 32)
    line = parse_manifest_line('s3://b/x etag="abc"')
    assert line is not None and line.etag == "abc" and line.dest_rel is None
    assert parse_manifest_line("   # only a comment") is None and parse_manifest_line("") is None


@pytest.mark.parametrize("text", ["src xxh3=123", "src md5=zz" + "0" * 30, "src a b", "'unclosed"])
def test_malformed_manifest_lines_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_manifest_line(text)


@pytest.mark.parametrize("rel", ["", "/abs", "a/../b", "a//b", "./a", "a/.", ".aifstage/x", "x/"])
def test_unsafe_destination_paths_are_refused(rel: str) -> None:
    with pytest.raises(StageError) as caught:
        safe_rel_path(rel, "s3://b/" + rel)
    assert caught.value.kind == "usage"


def test_safe_paths_pass() -> None:
    assert safe_rel_path("a/b.c", "x") == "a/b.c"
    assert safe_rel_path("..a/b..", "x") == "..a/b.."


def test_a_tree_lists_its_files_and_only_the_symlinks_that_stay_inside(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "top.txt").write_bytes(b"1")
    (src / "d" / "e" / "deep.bin").write_bytes(b"22")
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"333")
    os.symlink("d/e/deep.bin", src / "inside-link")
    os.symlink(outside, src / "outside-link")
    os.symlink("d", src / "dir-link")
    os.mkfifo(src / "fifo")
    entries = list_sources([str(src)], OPTIONS)
    assert [(e.rel_path, e.size) for e in entries] == [("d/e/deep.bin", 2), ("inside-link", 2), ("top.txt", 1)]
    assert entries[0].url == str(src / "d" / "e" / "deep.bin") and entries[0].etag is None


def test_a_single_file_lands_under_its_name(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"abc")
    [only] = list_sources([str(tmp_path / "f.bin")], OPTIONS)
    assert (only.rel_path, only.size, only.source_id) == ("f.bin", 3, f"mtime:{only.mtime_ns}")


def test_a_manifest_names_files_destinations_and_checksums(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "t.bin").write_bytes(b"t")
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# sources\na.bin renamed/a.bin xxh3={'0' * 16}\ntree sub\n")
    entries = list_sources([f"@{manifest}"], OPTIONS)
    assert [(e.rel_path, e.checksum) for e in entries] == [
        ("renamed/a.bin", ("XXH3_64", "0" * 16)),
        ("sub/t.bin", None),
    ]


def test_two_sources_for_one_destination_path_are_a_usage_error(tmp_path: Path) -> None:
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "same.txt").write_bytes(b"1")
    with pytest.raises(StageError) as caught:
        list_sources([str(tmp_path / "x"), str(tmp_path / "y")], OPTIONS)
    assert caught.value.kind == "usage" and "same.txt" in str(caught.value)


def test_a_checksum_on_a_tree_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "t").write_bytes(b"t")
    manifest = tmp_path / "m"
    manifest.write_text(f"tree xxh3={'0' * 16}\n")
    with pytest.raises(StageError) as caught:
        list_sources([f"@{manifest}"], OPTIONS)
    assert caught.value.kind == "usage"


def test_a_missing_path_or_manifest_is_source_missing(tmp_path: Path) -> None:
    for spec in (str(tmp_path / "nope"), f"@{tmp_path / 'nope.txt'}"):
        with pytest.raises(StageError) as caught:
            list_sources([spec], OPTIONS)
        assert caught.value.kind == "source_missing" and caught.value.exit_code == 3
        assert "nope" in str(caught.value)


def test_list_sources_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    import asyncio

    (tmp_path / "f").write_bytes(b"1")

    async def inside() -> list[Entry]:
        return list_sources([str(tmp_path)], OPTIONS)

    assert [e.rel_path for e in asyncio.run(inside())] == ["f"]
