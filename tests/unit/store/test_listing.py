"""Listing order, grouping and paging over real directory trees, against a brute-force reference."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from aif_gateway.store import listing
from aif_gateway.store.base import ListPage, ObjectInfo
from aif_gateway.store.listing import list_objects
from aif_gateway.store.paths import INTERNAL_DIR


class Tree:
    """A bucket directory built from keys; directory markers are remembered by path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.markers: set[Path] = set()
        self.info_calls: list[str] = []
        root.mkdir(exist_ok=True)

    def add(self, key: str) -> None:
        path = self.root / key
        if key.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            self.markers.add(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(key.encode())

    def info_for(self, path: Path, key: str, st: os.stat_result) -> ObjectInfo | None:
        self.info_calls.append(key)
        if key.endswith("/"):
            if path not in self.markers:
                return None
            return ObjectInfo(key=key, size=0, mtime_ns=st.st_mtime_ns, etag="d", is_dir_marker=True)
        return ObjectInfo(key=key, size=st.st_size, mtime_ns=st.st_mtime_ns, etag="f")

    def list(self, **kw: object) -> ListPage:
        return list_objects(self.root, info_for=self.info_for, **kw)  # type: ignore[arg-type]


def reference(keys: list[str], prefix="", delimiter="", start_after="", max_keys=1000):
    """S3 semantics by brute force: sort as UTF-8 bytes, filter, group, cut."""
    entries: list[tuple[str, bool]] = []  # (key or common prefix, is_prefix)
    for key in sorted(set(keys), key=lambda k: k.encode("utf-8")):
        if key <= start_after or not key.startswith(prefix):
            continue
        idx = key.find(delimiter, len(prefix)) if delimiter else -1
        if idx >= 0:
            common = key[: idx + len(delimiter)]
            if common <= start_after or (entries and entries[-1] == (common, True)):
                continue
            entries.append((common, True))
        else:
            entries.append((key, False))
    page = entries[:max_keys] if max_keys > 0 else []
    objects = [e for e, is_prefix in page if not is_prefix]
    prefixes = [e for e, is_prefix in page if is_prefix]
    truncated = max_keys > 0 and len(entries) > max_keys
    return objects, prefixes, truncated, (page[-1][0] if page else None)


def as_tuple(page: ListPage):
    return [o.key for o in page.objects], page.common_prefixes, page.is_truncated, page.next_marker


NAMES = ["a", "a.b", "a0", "a-", "b", "ab", "abc", "x y", "p+q", "é", "日本", "\U0001f600", "n\nl", "a-b"]


def random_keys(rng: random.Random, count: int) -> list[str]:
    """Keys that can coexist on a filesystem: no file where another key needs a directory."""
    keys: set[str] = set()
    files: set[str] = set()
    dirs: set[str] = set()
    for _ in range(count):
        parts = [rng.choice(NAMES) for _ in range(rng.randint(1, 4))]
        path = "/".join(parts)
        marker = rng.random() < 0.1
        needed_dirs = {"/".join(parts[:i]) for i in range(1, len(parts))} | ({path} if marker else set())
        if needed_dirs & files or (not marker and path in dirs):
            continue
        dirs |= needed_dirs
        if not marker:
            files.add(path)
        keys.add(path + "/" if marker else path)
    return sorted(keys)


@pytest.mark.parametrize("seed", range(6))
def test_random_trees_match_reference(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    keys = random_keys(rng, 150)
    tree = Tree(tmp_path / "bucket")
    for key in keys:
        tree.add(key)
    prefixes = ["", "a", "a/", "a-", "ab", "é", "a/a", "zzz", keys[0][:3]]
    afters = ["", "a", "a/", "a.b", "a/b", "ab/", keys[len(keys) // 2], "\U0010ffff"]
    for delimiter in ["", "/", "-", "ab"]:
        for prefix in prefixes:
            for start_after in afters:
                max_keys = rng.choice([1, 2, 7, 1000])
                kw = dict(prefix=prefix, delimiter=delimiter, start_after=start_after, max_keys=max_keys)
                assert as_tuple(tree.list(**kw)) == reference(keys, **kw), kw


@pytest.mark.parametrize("delimiter", ["", "/", "-", "ab"])
@pytest.mark.parametrize("prefix", ["", "a", "a/"])
def test_paging_with_next_marker_reproduces_full_listing(tmp_path: Path, delimiter: str, prefix: str) -> None:
    keys = random_keys(random.Random(42), 200)
    tree = Tree(tmp_path / "bucket")
    for key in keys:
        tree.add(key)
    full = reference(keys, prefix=prefix, delimiter=delimiter, max_keys=100_000)
    got_objects: list[str] = []
    got_prefixes: list[str] = []
    marker = ""
    while True:
        page = tree.list(prefix=prefix, delimiter=delimiter, start_after=marker, max_keys=3)
        got_objects += [o.key for o in page.objects]
        got_prefixes += page.common_prefixes
        if not page.is_truncated:
            break
        assert page.next_marker is not None
        marker = page.next_marker
    assert (got_objects, got_prefixes) == (full[0], full[1])


def test_directory_keys_sort_between_dot_and_zero(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "bucket")
    for key in ["a0", "a/b", "a.b", "a-", "a+", "a b"]:
        tree.add(key)
    assert as_tuple(tree.list())[0] == ["a b", "a+", "a-", "a.b", "a/b", "a0"]


def test_internal_dir_at_top_is_never_listed(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "bucket")
    tree.add(f"{INTERNAL_DIR}/tmp/upload-part")
    tree.add("visible")
    assert as_tuple(tree.list())[0] == ["visible"]
    assert as_tuple(tree.list(prefix=f"{INTERNAL_DIR}/"))[0] == []
    assert tree.list(delimiter="/").common_prefixes == []


def test_empty_directories_list_nothing(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "bucket")
    (tree.root / "empty" / "deeper").mkdir(parents=True)
    tree.add("z")
    assert as_tuple(tree.list(delimiter="/")) == (["z"], [], False, "z")
    assert as_tuple(tree.list()) == (["z"], [], False, "z")


def test_directory_marker_lists_as_key_with_slash(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "bucket")
    tree.add("d/")
    tree.add("d/x")
    page = tree.list()
    assert [o.key for o in page.objects] == ["d/", "d/x"]
    assert page.objects[0].is_dir_marker
    assert as_tuple(tree.list(delimiter="/")) == ([], ["d/"], False, "d/")
    assert as_tuple(tree.list(prefix="d/", delimiter="/")) == (["d/", "d/x"], [], False, "d/x")


def test_symlinks_inside_listed_outside_and_directories_not(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    tree = Tree(tmp_path / "bucket")
    tree.add("real")
    tree.add("sub/inner")
    (tree.root / "link-in").symlink_to(tree.root / "real")
    (tree.root / "link-out").symlink_to(outside / "secret")
    (tree.root / "link-dir").symlink_to(tree.root / "sub")
    (tree.root / "link-loop").symlink_to(tree.root)
    (tree.root / "link-dangling").symlink_to(tree.root / "nothing")
    page = tree.list()
    assert [o.key for o in page.objects] == ["link-in", "real", "sub/inner"]
    assert page.objects[0].size == 1 + len("eal")  # the target's size
    # A prefix through a symlinked directory does not escape either.
    assert as_tuple(tree.list(prefix="link-dir/"))[0] == []


def test_max_keys_zero_is_empty_and_not_truncated(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "bucket")
    tree.add("a")
    assert as_tuple(tree.list(max_keys=0)) == ([], [], False, None)


def test_truncation_is_exact(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "bucket")
    tree.add("a")
    tree.add("b")
    (tree.root / "c").mkdir()  # empty: not another entry
    assert as_tuple(tree.list(max_keys=2)) == (["a", "b"], [], False, "b")
    assert as_tuple(tree.list(max_keys=1)) == (["a"], [], True, "a")


def test_common_prefixes_count_toward_max_keys(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "bucket")
    for key in ["a/1", "a/2", "b", "c/1"]:
        tree.add(key)
    assert as_tuple(tree.list(delimiter="/", max_keys=2)) == (["b"], ["a/"], True, "b")
    assert as_tuple(tree.list(delimiter="/", start_after="b")) == ([], ["c/"], False, "c/")


def test_page_stats_only_what_it_returns(tmp_path: Path) -> None:
    tree = Tree(tmp_path / "bucket")
    for d in range(20):
        for f in range(50):
            tree.add(f"d{d:02}/f{f:02}")
    page = tree.list(max_keys=10)
    assert len(page.objects) == 10 and page.is_truncated
    # The first directory's marker check, then the page; the lookahead needs no stat.
    assert tree.info_calls == ["d00/"] + [f"d00/f{f:02}" for f in range(10)]


def test_subtrees_before_start_after_or_outside_prefix_are_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = Tree(tmp_path / "bucket")
    for d in range(10):
        for f in range(5):
            tree.add(f"d{d}/sub/f{f}")
    opened: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path):  # observe which directories the walk reads
        opened.append(os.path.relpath(path, tree.root))
        return real_scandir(path)

    monkeypatch.setattr(listing.os, "scandir", recording_scandir)
    page = tree.list(start_after="d7/sub/f4", max_keys=1)
    assert [o.key for o in page.objects] == ["d8/sub/f0"]
    assert opened == [".", "d7", "d7/sub", "d8", "d8/sub"]

    opened.clear()
    tree.list(prefix="d3/sub/f")
    assert opened == ["d3/sub"]

    opened.clear()
    page = tree.list(delimiter="/", max_keys=3)
    assert page.common_prefixes == ["d0/", "d1/", "d2/"]
    # One descent per common prefix to prove it is not empty, then the rest is skipped.
    assert opened == [".", "d0", "d0/sub", "d1", "d1/sub", "d2", "d2/sub", "d3", "d3/sub"]
