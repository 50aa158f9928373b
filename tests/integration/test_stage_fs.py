"""``aif-gateway stage`` with filesystem sources and destinations: the real CLI as a subprocess."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aif_gateway.stage import StageError, StageOptions, list_sources, stage_in, stage_status

from .helpers import MiB, write_random_file
from .stage_support import CLI, complete_marker, ok, report_of, stage, tree, without_root_bypass


def make_tree(top: Path) -> None:
    write_random_file(top / "big.bin", 13 * MiB)  # 3 ranges of 5 MiB
    write_random_file(top / "mid" / "two-mib.bin", 2 * MiB)
    for i in range(30):
        write_random_file(top / "small" / f"f{i:02d}.dat", i * 331)
    write_random_file(top / "deep" / "a" / "b" / "name with spaces é.txt", 10)
    (top / "empty.txt").write_bytes(b"")
    os.symlink("mid/two-mib.bin", top / "link-inside")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    top = tmp_path / "src"
    make_tree(top)
    return top


def test_tree_is_copied_identically_marked_complete_and_not_copied_twice(src: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    report_file = tmp_path / "report.json"
    report = ok(stage("in", src, "--to", dest, "--json", "--part-size", "5M", "--jobs", "4", "--report", report_file))
    assert json.loads(report_file.read_text()) == report
    expected = tree(src)
    assert tree(dest) == expected
    assert report["files"] == len(expected) == 35 and report["skipped_files"] == 0
    assert report["bytes"] == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert report["verified"] == {"source": 35} and report["path"] == str(dest)
    assert stage("status", dest).returncode == 0 and stage_status(dest)["files"] == 35
    assert list((dest / ".aifstage" / "partial").iterdir()) == []

    again = ok(stage("in", src, "--to", dest, "--json"))
    assert (again["files"], again["bytes"], again["skipped_files"]) == (0, 0, 35)

    write_random_file(src / "small" / "f03.dat", 5000)
    third = ok(stage("in", src, "--to", dest, "--json"))
    assert (third["files"], third["bytes"], third["skipped_files"]) == (1, 5000, 34)
    assert tree(dest) == tree(src)


def test_manifest_checksums_are_enforced(tmp_path: Path) -> None:
    import xxhash

    good = tmp_path / "good.bin"
    bad = tmp_path / "bad.bin"
    data = os.urandom(3 * MiB)
    good.write_bytes(data)
    bad.write_bytes(data)
    right = xxhash.xxh3_64_hexdigest(data)
    wrong = xxhash.xxh3_64_hexdigest(data + b"x")
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"good.bin in/good.bin xxh3={right}\n")
    dest = tmp_path / "dest"
    report = ok(stage("in", f"@{manifest}", "--to", dest, "--json"))
    assert report["verified"] == {"manifest": 1} and (dest / "in" / "good.bin").read_bytes() == data

    manifest.write_text(f"good.bin in/good.bin xxh3={right}\nbad.bin in/bad.bin xxh3={wrong}\n")
    dest2 = tmp_path / "dest2"
    proc = stage("in", f"@{manifest}", "--to", dest2, "--json")
    assert proc.returncode == 1, proc.stderr
    assert "bad.bin" in proc.stderr and "manifest's xxh3_64" in proc.stderr
    assert report_of(proc)["ok"] is False
    assert not (dest2 / "in" / "bad.bin").exists() and not complete_marker(dest2).exists()
    assert stage("status", dest2).returncode == 1


def test_a_source_changed_after_listing_fails_the_stage(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random_file(src / "small.bin", 1000)
    write_random_file(src / "medium.bin", 3 * MiB)
    write_random_file(src / "large.bin", 12 * MiB)
    options = StageOptions(part_size=5 * MiB, progress=False, progress_interval_s=0)
    entries = list_sources([str(src)], options)
    for name in ("small.bin", "medium.bin", "large.bin"):
        dest = tmp_path / f"dest-{name}"
        path = src / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, other content, new mtime
        time.sleep(0.01)
        path.write_bytes(bytes(data))
        with pytest.raises(StageError) as caught:
            asyncio.run(stage_in([str(src)], dest, options, entries=entries))
        assert caught.value.kind == "verify" and name in str(caught.value)
        assert not (dest / name).exists() and stage_status(dest) is None
        entries = list_sources([str(src)], options)


def test_a_second_stager_of_the_same_destination_is_refused(src: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / ".aifstage").mkdir(parents=True)
    with open(dest / ".aifstage" / "lock", "w") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)  # as a running stager holds it
        proc = stage("in", src, "--to", dest)
    assert proc.returncode == 2 and "another process is staging" in proc.stderr and str(dest) in proc.stderr


def test_missing_source_is_exit_3_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    proc = stage("in", missing, "--to", tmp_path / "dest")
    assert proc.returncode == 3 and str(missing) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_usage_errors_are_exit_2(tmp_path: Path) -> None:
    assert stage("in", tmp_path).returncode == 2  # neither --to nor --cache
    assert stage("in", tmp_path, "--to", tmp_path / "d", "--part-size", "1M").returncode == 2
    (tmp_path / "file").write_bytes(b"1")
    inside = stage("in", tmp_path, "--to", tmp_path / "copy")  # the destination inside the source
    assert inside.returncode == 2 and "inside the source" in inside.stderr


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_no_space_is_exit_4_before_copying_when_it_cannot_fit(small_tmpfs: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random_file(src / "too-big.bin", 3 * MiB)
    dest = small_tmpfs / "dest"
    proc = stage("in", src, "--to", dest)
    assert proc.returncode == 4, proc.stderr
    assert "not enough space" in proc.stderr and str(dest) in proc.stderr
    assert not (dest / "too-big.bin").exists() and not complete_marker(dest).exists()


def test_no_space_while_writing_is_exit_4_and_nothing_looks_complete(small_tmpfs: Path, tmp_path: Path) -> None:
    # 800 files of 100 bytes "need" 80 KB, but each takes a 4 KiB page of the 2 MiB tmpfs.
    src = tmp_path / "src"
    for i in range(800):
        write_random_file(src / f"f{i:03d}", 100)
    dest = small_tmpfs / "dest"
    proc = stage("in", src, "--to", dest, "--json")
    assert proc.returncode == 4, proc.stderr
    assert "no space left" in proc.stderr and str(dest) in proc.stderr
    assert not complete_marker(dest).exists() and stage_status(dest) is None
    landed = [p for p in dest.iterdir() if p.name != ".aifstage"]
    assert 0 < len(landed) < 800
    assert all(p.read_bytes() == (src / p.name).read_bytes() for p in landed)  # whole files, or none


def test_permission_problems_are_exit_5_naming_the_path(src: Path, tmp_path: Path) -> None:
    prefix = without_root_bypass()
    locked = src / "small"
    locked.chmod(0)
    try:
        proc = stage("in", src, "--to", tmp_path / "dest", prefix=prefix)
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 5, proc.stderr
    assert "permission denied" in proc.stderr and str(locked) in proc.stderr

    readonly = tmp_path / "readonly"
    readonly.mkdir(mode=0o555)
    readonly.chmod(0o555)
    proc = stage("in", src, "--to", readonly / "dest", prefix=prefix)
    assert proc.returncode == 5, proc.stderr
    assert "permission denied" in proc.stderr and str(readonly / "dest") in proc.stderr
    assert not (readonly / "dest").exists()


def test_stage_out_to_a_path_copies_only_new_or_changed_files(src: Path, tmp_path: Path) -> None:
    dest = tmp_path / "results"
    first = ok(stage("out", src, "--to", dest, "--json", "--part-size", "5M"))
    assert first["direction"] == "out" and first["files"] == 35 and tree(dest) == tree(src)
    write_random_file(src / "new.bin", 77)
    second = ok(stage("out", src, "--to", dest, "--json"))
    assert (second["files"], second["bytes"], second["skipped_files"]) == (1, 77, 35)


def test_progress_is_a_bar_on_a_terminal_and_log_lines_otherwise(src: Path, tmp_path: Path) -> None:
    proc = stage("in", src, "--to", tmp_path / "logged", "--progress-interval", "0.001", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if '"stage progress"' in line]
    assert lines and '"total_files": 35' in lines[-1] and "\r" not in proc.stderr

    leader, follower = pty.openpty()
    child = subprocess.Popen(
        [*CLI, "in", str(src), "--to", str(tmp_path / "tty")],
        stdin=follower,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    assert child.wait(timeout=60) == 0
    os.close(leader)
    text = out.decode(errors="replace")
    assert "\r" in text and "35/35 files" in text and "ETA" in text and '"stage progress"' not in text


def test_links_at_the_destination_are_replaced_not_written_through(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random_file(src / "small.txt", 100)
    write_random_file(src / "large.bin", 3 * MiB)
    dest = tmp_path / "dest"
    dest.mkdir()
    keep = {name: tmp_path / f"keep-{name}" for name in ("small.txt", "large.bin")}
    for outside in keep.values():
        outside.write_bytes(b"must not change")
    os.link(keep["small.txt"], dest / "small.txt")  # a hard link, e.g. from a `cp -al` snapshot
    os.symlink(keep["large.bin"], dest / "large.bin")
    ok(stage("in", src, "--to", dest, "--json"))
    assert tree(dest) == tree(src)
    assert all(outside.read_bytes() == b"must not change" for outside in keep.values())
