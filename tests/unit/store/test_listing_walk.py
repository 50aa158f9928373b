"""The listing walk's shortcuts: runs of regular files, the lookahead that reads one entry, files
described a directory at a time. Results are held to the brute-force reference of
test_listing.py, through a real FsStore (both metadata backends) as well."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from aif_gateway.store import listing
from aif_gateway.store.base import ObjectInfo
from aif_gateway.store.meta import SIDECAR, XATTR

from ..store_support import new_store, put, run
from .test_listing import Tree, as_tuple, random_keys, reference


def files(root: Path, keys: list[str]) -> Tree:
    tree = Tree(root)
    for key in keys:
        tree.add(key)
    return tree


@pytest.mark.parametrize("backend", [XATTR, SIDECAR])
@pytest.mark.parametrize("seed", range(3))
def test_a_real_store_matches_the_reference(tmp_path: Path, backend: str, seed: int) -> None:
    rng = random.Random(seed)
    keys = random_keys(rng, 120)
    store = new_store(tmp_path / "root", backend)
    bucket_dir = tmp_path / "root" / "bkt"
    for key in keys:
        if key.endswith("/"):
            put(store, key, b"")  # a marker
        elif rng.random() < 0.3:
            put(store, key, key.encode())  # an object with a record
        else:
            (bucket_dir / key).parent.mkdir(parents=True, exist_ok=True)
            (bucket_dir / key).write_bytes(key.encode())  # a foreign file
    for delimiter in ["", "/", "-"]:
        for prefix in ["", "a", "a/", keys[0][:2]]:
            for start_after in ["", "a/", keys[len(keys) // 3], keys[-1]]:
                for max_keys in [1, 2, 5, 1000]:
                    kw = dict(prefix=prefix, delimiter=delimiter, start_after=start_after, max_keys=max_keys)
                    page = run(store.list_objects("bkt", **kw))  # type: ignore[arg-type]
                    assert as_tuple(page) == reference(keys, **kw), kw
                    for info in page.objects:
                        assert info.size == len(info.key.encode()) or info.is_dir_marker, info


def test_runs_stop_at_symlinks_directories_and_the_end_of_the_prefix(tmp_path: Path) -> None:
    tree = files(tmp_path / "bucket", ["d/a", "d/c", "d/c0/x", "d/e", "d/f1", "d/f10", "d/f2"])
    (tree.root / "d" / "b").symlink_to(tree.root / "d" / "a")
    (tree.root / "d" / "d").symlink_to(tmp_path / "outside")  # dangling: no object
    everything = ["d/a", "d/b", "d/c", "d/c0/x", "d/e", "d/f1", "d/f10", "d/f2"]
    for max_keys in range(1, 10):
        page = tree.list(max_keys=max_keys)
        assert [o.key for o in page.objects] == everything[:max_keys]
        assert page.is_truncated == (max_keys < len(everything))
    assert as_tuple(tree.list(prefix="d/f1")) == (["d/f1", "d/f10"], [], False, "d/f10")
    assert as_tuple(tree.list(prefix="d/f1", max_keys=1)) == (["d/f1"], [], True, "d/f1")


def test_the_lookahead_reads_one_entry_of_the_next_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = files(tmp_path / "bucket", [f"d{d}/f{f}" for d in range(3) for f in range(5)])
    read: list[str] = []
    real_read_kinds = listing._read_kinds

    def recording(path: str, **kw: object) -> dict[str, int]:
        read.append(os.path.relpath(path, tree.root))
        return real_read_kinds(path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(listing, "_read_kinds", recording)
    page = tree.list(max_keys=5)
    assert as_tuple(page) == ([f"d0/f{f}" for f in range(5)], [], True, "d0/f4")
    assert read == [".", "d0"]  # d1 proved not empty without being read whole and sorted
    read.clear()
    page = tree.list(start_after="d0/f4", max_keys=5)  # the next page resumes at d0: read, filtered
    assert as_tuple(page) == ([f"d1/f{f}" for f in range(5)], [], True, "d1/f4")
    assert read == [".", "d0", "d1"]


@pytest.mark.parametrize("blocker", ["empty", "fifo", "dangling", "subdir-only"])
def test_the_lookahead_is_exact_when_the_next_directory_has_no_file_at_its_top(tmp_path: Path, blocker: str) -> None:
    tree = files(tmp_path / "bucket", ["a/1", "a/2"])
    nxt = tree.root / "b"
    nxt.mkdir()
    if blocker == "fifo":
        os.mkfifo(nxt / "pipe")
    elif blocker == "dangling":
        (nxt / "link").symlink_to(tmp_path / "nothing")
    elif blocker == "subdir-only":
        tree.add("b/sub/deep")
    more = blocker == "subdir-only"
    assert tree.list(max_keys=2).is_truncated == more
    tree.add("c/3")
    assert tree.list(max_keys=2).is_truncated


def test_files_are_described_a_directory_at_a_time(tmp_path: Path) -> None:
    tree = files(tmp_path / "bucket", [f"d{d}/f{f}" for d in range(3) for f in range(4)])
    calls: list[tuple[str, list[str], list[str]]] = []

    def describe(directory: str, names: list[str], keys: list[str]) -> list[ObjectInfo | None]:
        calls.append((os.path.relpath(directory, tree.root), names, keys))
        return [ObjectInfo(key=key, size=0, mtime_ns=0, etag="e") for key in keys]

    page = listing.list_objects(tree.root, max_keys=10, info_for=tree.info_for, describe_files=describe)
    assert [o.key for o in page.objects] == [f"d{d}/f{f}" for d in range(3) for f in range(4)][:10]
    assert calls == [
        ("d0", ["f0", "f1", "f2", "f3"], ["d0/f0", "d0/f1", "d0/f2", "d0/f3"]),
        ("d1", ["f0", "f1", "f2", "f3"], ["d1/f0", "d1/f1", "d1/f2", "d1/f3"]),
        ("d2", ["f0", "f1"], ["d2/f0", "d2/f1"]),
    ]


def test_a_file_gone_before_it_is_described_is_left_out(tmp_path: Path) -> None:
    tree = files(tmp_path / "bucket", ["a", "b", "c", "d"])

    def describe(directory: str, names: list[str], keys: list[str]) -> list[ObjectInfo | None]:
        return [None if key == "c" else ObjectInfo(key=key, size=0, mtime_ns=0, etag="e") for key in keys]

    page = listing.list_objects(tree.root, max_keys=3, info_for=tree.info_for, describe_files=describe)
    # A short page: the marker still moves past "c", so the next page does not return it again.
    assert as_tuple(page) == (["a", "b"], [], True, "c")
