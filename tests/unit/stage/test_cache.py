"""The site staging cache (aif_gateway/stage/cache.py): keys, hits, LRU eviction, leases, locks.

Sources are real files listed by the real lister; the stager is a stand-in that writes files of
the listed sizes and a genuine completion marker (so hits are decided by the real
``stage_status``) while counting its calls. Races use real processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import xxhash

from aif_gateway.stage import Entry, Report, StageError, StageOptions, fingerprint
from aif_gateway.stage.cache import cache_entries, default_holder, entry_key, evict, release, stage_in_cached
from aif_gateway.stage.cli.cache_commands import parse_duration
from aif_gateway.stage.state.completion import write_complete, write_manifest
from aif_gateway.stage.state.journal import DoneRecord
from aif_gateway.stage.state.statedir import StageDir

OPTIONS = StageOptions(progress=False, progress_interval_s=0)
CHILD_TIMEOUT_S = 60


def make_source(path: Path, sizes: dict[str, int]) -> Path:
    for rel, size in sizes.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(os.urandom(size))
    return path


class FakeStager:
    """Writes every entry as a file of its size, then the manifest and completion marker."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[Path] = []
        self.delay = delay

    async def __call__(self, specs, dest: Path, options, *, entries: list[Entry]) -> Report:
        self.calls.append(dest)
        await asyncio.sleep(self.delay)
        sd = StageDir(dest)
        sd.begin()
        records = []
        for e in entries:
            target = dest / e.rel_path
            target.parent.mkdir(parents=True, exist_ok=True)
            data = os.urandom(e.size)
            target.write_bytes(data)
            records.append(
                DoneRecord(
                    e.rel_path, e.size, e.source_id, xxhash.xxh3_64_hexdigest(data), target.stat().st_mtime_ns, e.url
                )
            )
        total = sum(e.size for e in entries)
        write_complete(
            sd,
            sources=list(specs),
            fingerprint=fingerprint(entries),
            files=len(entries),
            total_bytes=total,
            manifest_sha256=write_manifest(sd, records),
        )
        sd.end()
        return Report("in", list(specs), str(dest), ok=True, path=str(dest), files=len(entries), bytes=total)


def cached(
    src: Path | str,
    cache: Path,
    stager,
    *,
    holder: str = "job-1",
    cache_size: int | None = None,
    link_to: Path | None = None,
    **kwargs,
) -> Report:
    return asyncio.run(
        stage_in_cached(
            [str(src)], cache, OPTIONS, holder=holder, cache_size=cache_size, link_to=link_to, stager=stager, **kwargs
        )
    )


def keys(cache: Path) -> list[str]:
    return [e["key"] for e in cache_entries(cache)]


# ---- keys -------------------------------------------------------------------------------------


def test_key_is_stable_and_changes_when_a_source_file_changes(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", {"a": 10, "d/b": 20})
    first = entry_key([str(src)], asyncio.run(_list(src)), OPTIONS)
    assert entry_key([str(src)], asyncio.run(_list(src)), OPTIONS) == first
    (src / "d" / "b").write_bytes(b"x" * 21)
    assert entry_key([str(src)], asyncio.run(_list(src)), OPTIONS) != first


def test_key_names_where_the_data_comes_from(tmp_path: Path) -> None:
    # Same relative paths, sizes and mtimes from two trees: two datasets.
    one = make_source(tmp_path / "one", {"a": 5})
    two = make_source(tmp_path / "two", {"a": 5})
    os.utime(two / "a", ns=(0, (one / "a").stat().st_mtime_ns))
    assert fingerprint(asyncio.run(_list(one))) == fingerprint(asyncio.run(_list(two)))
    assert entry_key([str(one)], asyncio.run(_list(one)), OPTIONS) != entry_key(
        [str(two)], asyncio.run(_list(two)), OPTIONS
    )


def test_key_of_an_s3_source_includes_its_endpoint() -> None:
    entries = [Entry("k", 3, 0, "etag1", None, "s3://bucket/k", True)]
    here = entry_key(["s3://bucket/"], entries, StageOptions(endpoint_url="http://a:9000"))
    assert here == entry_key(["s3://bucket"], entries, StageOptions(endpoint_url="http://a:9000/"))
    assert here != entry_key(["s3://bucket"], entries, StageOptions(endpoint_url="http://b:9000"))
    changed = [Entry("k", 3, 0, "etag2", None, "s3://bucket/k", True)]
    assert here != entry_key(["s3://bucket"], changed, StageOptions(endpoint_url="http://a:9000"))


def test_key_does_not_depend_on_source_order(tmp_path: Path) -> None:
    one = make_source(tmp_path / "one", {"a": 5})
    two = make_source(tmp_path / "two", {"b": 5})
    entries = asyncio.run(_list(one, two))
    assert entry_key([str(one), str(two)], entries, OPTIONS) == entry_key([str(two), str(one)], entries, OPTIONS)


async def _list(*srcs: Path) -> list[Entry]:
    from aif_gateway.stage import alist_sources

    return await alist_sources([str(s) for s in srcs], OPTIONS)


# ---- hits and misses --------------------------------------------------------------------------


def test_second_stage_in_is_a_hit_without_transfer(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", {"a": 100, "d/b": 200})
    cache, stager = tmp_path / "cache", FakeStager()
    first = cached(src, cache, stager)
    second = cached(src, cache, stager, holder="job-2")
    assert len(stager.calls) == 1
    assert first.cache["hit"] is False and second.cache["hit"] is True
    assert first.cache["key"] == second.cache["key"]
    assert first.path == second.path == str(cache / first.cache["key"] / "data")
    assert (second.files, second.bytes, second.skipped_files, second.skipped_bytes) == (0, 0, 2, 300)
    assert (Path(second.path) / "d" / "b").stat().st_size == 200
    [entry] = cache_entries(cache)
    assert entry["complete"] and entry["size"] == 300 and entry["files"] == 2
    assert sorted(lease["holder"] for lease in entry["leases"]) == ["job-1", "job-2"]


def test_changed_source_stages_a_new_entry(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", {"a": 100})
    cache, stager = tmp_path / "cache", FakeStager()
    first = cached(src, cache, stager)
    (src / "a").write_bytes(b"y" * 101)
    second = cached(src, cache, stager)
    assert len(stager.calls) == 2
    assert second.cache["hit"] is False and second.cache["key"] != first.cache["key"]
    assert sorted(keys(cache)) == sorted([first.cache["key"], second.cache["key"]])


def test_incomplete_entry_is_staged_again_in_the_same_place(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", {"a": 100})
    cache = tmp_path / "cache"

    async def failing(specs, dest: Path, options, *, entries) -> Report:
        dest.mkdir(parents=True)
        (dest / "half-done").write_bytes(b"kept for the resume")
        raise StageError("transfer", "connection lost")

    with pytest.raises(StageError, match="connection lost"):
        cached(src, cache, failing, holder="job-1")
    [entry] = cache_entries(cache)
    assert not entry["complete"]
    assert entry["leases"] == []  # the failed call's own lease does not pin the broken entry

    seen: list[bool] = []
    stager = FakeStager()

    async def resuming(specs, dest: Path, options, *, entries) -> Report:
        seen.append((dest / "half-done").exists())
        return await stager(specs, dest, options, entries=entries)

    report = cached(src, cache, resuming, holder="job-2")
    assert seen == [True] and report.cache["hit"] is False
    assert cache_entries(cache)[0]["complete"]


# ---- eviction ---------------------------------------------------------------------------------


def test_least_recently_used_entry_is_evicted_first(tmp_path: Path) -> None:
    cache, stager = tmp_path / "cache", FakeStager()
    srcs = {name: make_source(tmp_path / name, {"f": 400}) for name in "abcd"}
    key = {}
    for name in "abc":
        key[name] = cached(srcs[name], cache, stager, holder=f"job-{name}", cache_size=1200).cache["key"]
        assert release(cache, f"job-{name}") == 1
    # A hit makes "a" the most recently used; "b" is now the oldest.
    hit = cached(srcs["a"], cache, stager, holder="job-a2", cache_size=1200)
    assert hit.cache["hit"] and release(cache, "job-a2") == 1
    d = cached(srcs["d"], cache, stager, holder="job-d", cache_size=1200)
    assert d.cache["evicted"] == [key["b"]]
    assert sorted(keys(cache)) == sorted([key["a"], key["c"], d.cache["key"]])
    assert not any(p.name.startswith(".evicted-") for p in cache.iterdir())
    # Listing order is the eviction order: least recently used first.
    assert keys(cache) == [key["c"], key["a"], d.cache["key"]]


def test_leased_entry_is_never_evicted(tmp_path: Path) -> None:
    cache, stager = tmp_path / "cache", FakeStager()
    old = cached(make_source(tmp_path / "old", {"f": 500}), cache, stager, holder="job-running", cache_size=1000)
    newer = cached(make_source(tmp_path / "newer", {"f": 500}), cache, stager, holder="job-done", cache_size=1000)
    release(cache, "job-done")
    third = cached(make_source(tmp_path / "third", {"f": 500}), cache, stager, holder="job-3", cache_size=1000)
    # "old" is the least recently used but its job still runs: the newer, released one goes.
    assert third.cache["evicted"] == [newer.cache["key"]]
    assert old.cache["key"] in keys(cache)


def test_no_room_while_leased_entries_fill_the_cache(tmp_path: Path) -> None:
    cache, stager = tmp_path / "cache", FakeStager()
    cached(make_source(tmp_path / "a", {"f": 600}), cache, stager, holder="job-a", cache_size=1000)
    with pytest.raises(StageError) as caught:
        cached(make_source(tmp_path / "b", {"f": 600}), cache, stager, holder="job-b", cache_size=1000)
    assert caught.value.kind == "no_space" and caught.value.exit_code == 4
    assert "600 B" in str(caught.value) and "leased" in str(caught.value)
    assert len(stager.calls) == 1
    # The refused entry keeps no lease, so it can never pin space.
    assert sorted(len(e["leases"]) for e in cache_entries(cache)) == [0, 1]
    release(cache, "job-a")
    assert (
        cached(make_source(tmp_path / "b", {"f": 600}), cache, stager, holder="job-b", cache_size=1000).cache["hit"]
        is False
    )


def test_entry_larger_than_the_whole_cache_fails_naming_the_sizes(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", {"f": 3000})
    with pytest.raises(StageError) as caught:
        cached(src, tmp_path / "cache", FakeStager(), cache_size=2048)
    assert caught.value.kind == "no_space"
    assert "2.9 KiB (3000 bytes)" in str(caught.value) and "2.0 KiB" in str(caught.value)
    assert "--cache-size" in str(caught.value)


def test_evict_counts_entries_without_meta_by_their_size_on_disk(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    stray = cache / ("0" * 32)
    (stray / "data").mkdir(parents=True)
    (stray / "data" / "f").write_bytes(b"z" * 700)  # a stage-in that crashed before meta.json
    assert cache_entries(cache)[0]["size"] == 700
    assert evict(cache, 400, 1000) == ["0" * 32]
    assert not stray.exists()
    assert evict(cache, 400, 1000) == []


# ---- leases -----------------------------------------------------------------------------------


def test_pid_lease_lapses_when_its_process_exits(tmp_path: Path) -> None:
    cache, stager = tmp_path / "cache", FakeStager()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = default_holder(proc.pid)
        cached(make_source(tmp_path / "a", {"f": 10}), cache, stager, holder=holder)
        assert [(lease["holder"], lease["live"]) for lease in cache_entries(cache)[0]["leases"]] == [(holder, True)]
        assert evict(cache, 1000, 1000) == []
    finally:
        proc.kill()
        proc.wait()
    assert cache_entries(cache)[0]["leases"][0]["live"] is False
    assert len(evict(cache, 1000, 1000)) == 1


def test_pid_lease_of_a_reused_pid_is_not_live(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cached(make_source(tmp_path / "a", {"f": 10}), cache, FakeStager(), holder=default_holder())
    [lease_file] = (cache / keys(cache)[0] / "leases").iterdir()
    assert cache_entries(cache)[0]["leases"][0]["live"] is True
    record = json.loads(lease_file.read_text())
    lease_file.write_text(json.dumps({**record, "pid_start": "1"}))  # another process, same pid
    assert cache_entries(cache)[0]["leases"][0]["live"] is False


def test_job_lease_lapses_after_max_age(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cached(make_source(tmp_path / "a", {"f": 10}), cache, FakeStager(), holder="4242")
    lease_file = cache / keys(cache)[0] / "leases" / "4242"
    eight_days_ago = time.time() - 8 * 86400
    os.utime(lease_file, (eight_days_ago, eight_days_ago))
    assert cache_entries(cache, lease_max_age=9 * 86400)[0]["leases"][0]["live"] is True
    assert evict(cache, 1000, 1000, lease_max_age=9 * 86400) == []
    assert cache_entries(cache)[0]["leases"][0]["live"] is False  # default: 7 days
    assert len(evict(cache, 1000, 1000)) == 1


def test_release_drops_the_holders_leases_and_counts_them(tmp_path: Path) -> None:
    cache, stager = tmp_path / "cache", FakeStager()
    cached(make_source(tmp_path / "a", {"f": 10}), cache, stager, holder="77")
    cached(make_source(tmp_path / "b", {"f": 10}), cache, stager, holder="77")
    cached(make_source(tmp_path / "b", {"f": 10}), cache, stager, holder="78")
    assert release(cache, "77") == 2
    assert release(cache, "77") == 0
    assert sorted(lease["holder"] for e in cache_entries(cache) for lease in e["leases"]) == ["78"]
    assert release(tmp_path / "no-cache-here", "77") == 0


def test_bad_holder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(StageError) as caught:
        release(tmp_path, "../escape")
    assert caught.value.kind == "usage"


def test_cli_default_lease_max_age_is_the_librarys() -> None:
    from aif_gateway.stage import cache
    from aif_gateway.stage.cli import cache_commands as cache_cli

    assert cache_cli.DEFAULT_LEASE_MAX_AGE_S == cache.DEFAULT_LEASE_MAX_AGE_S == 7 * 86400


def test_parse_duration() -> None:
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("90") == 90
    assert parse_duration("1.5m") == 90
    with pytest.raises(ValueError):
        parse_duration("soon")


# ---- links ------------------------------------------------------------------------------------


def test_link_to_points_at_the_entry_and_replaces_an_older_link(tmp_path: Path) -> None:
    cache, stager, link = tmp_path / "cache", FakeStager(), tmp_path / "job" / "dataset"
    first = cached(make_source(tmp_path / "a", {"f": 10}), cache, stager, link_to=link)
    assert link.is_symlink() and link.resolve() == Path(first.path).resolve()
    second = cached(make_source(tmp_path / "b", {"g": 10}), cache, stager, link_to=link)
    assert link.resolve() == Path(second.path).resolve() and (link / "g").exists()
    assert sorted(p.name for p in link.parent.iterdir()) == ["dataset"]


def test_relative_cache_dir_gives_absolute_paths_and_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_source(tmp_path / "a", {"f": 10})
    report = cached("a", Path("cache"), FakeStager(), link_to=Path("job/dataset"))
    assert report.path == str(tmp_path / "cache" / report.cache["key"] / "data") == report.cache["path"]
    assert (tmp_path / "job" / "dataset" / "f").stat().st_size == 10


def test_link_to_refuses_to_replace_a_directory(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    with pytest.raises(StageError) as caught:
        cached(make_source(tmp_path / "a", {"f": 10}), tmp_path / "cache", FakeStager(), link_to=tmp_path / "real")
    assert caught.value.kind == "usage" and str(tmp_path / "real") in str(caught.value)


# ---- concurrency ------------------------------------------------------------------------------


def test_two_tasks_of_one_process_transfer_once(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", {"a": 100})
    cache, stager = tmp_path / "cache", FakeStager(delay=0.3)

    async def both() -> list[Report]:
        return await asyncio.gather(
            *(
                stage_in_cached(
                    [str(src)], cache, OPTIONS, holder=f"job-{i}", cache_size=None, link_to=None, stager=stager
                )
                for i in range(2)
            )
        )

    reports = asyncio.run(both())
    assert len(stager.calls) == 1
    assert sorted(r.cache["hit"] for r in reports) == [False, True]


CHILD = textwrap.dedent("""\
    import asyncio, json, os, sys, time
    from pathlib import Path
    from aif_gateway.stage import StageOptions, stage_in
    from aif_gateway.stage.cache import stage_in_cached

    src, cache, calls, go, mode = sys.argv[1:6]

    async def counting(specs, dest, options, *, entries):
        with open(calls, "a") as f:
            f.write(f"{os.getpid()}\\n")
        if mode == "hang":
            dest.mkdir(parents=True, exist_ok=True)
            (dest / "half-done").write_bytes(b"x")
            Path(go + ".started").touch()
            await asyncio.sleep(3600)
        await asyncio.sleep(0.5)  # hold the entry while the other process arrives
        return await stage_in(specs, dest, options, entries=entries)

    while not os.path.exists(go):
        time.sleep(0.01)
    report = asyncio.run(stage_in_cached(
        [src], Path(cache), StageOptions(progress=False, progress_interval_s=0),
        holder=f"job-{os.getpid()}", cache_size=None, link_to=None, stager=counting))
    print(json.dumps(report.to_dict()))
""")


def _start_child(tmp_path: Path, src: Path, cache: Path, mode: str = "stage") -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen(
        [sys.executable, str(script), str(src), str(cache), str(tmp_path / "calls"), str(tmp_path / "go"), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_racing_for_one_dataset_transfer_it_once(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", {"a": 100_000, "d/b": 50_000})
    cache = tmp_path / "cache"
    children = [_start_child(tmp_path, src, cache) for _ in range(2)]
    (tmp_path / "go").touch()
    reports = []
    for child in children:
        out, err = child.communicate(timeout=CHILD_TIMEOUT_S)
        assert child.returncode == 0, err
        reports.append(json.loads(out.splitlines()[-1]))
    assert len((tmp_path / "calls").read_text().split()) == 1
    assert sorted(r["cache"]["hit"] for r in reports) == [False, True]
    assert reports[0]["path"] == reports[1]["path"]
    hit = next(r for r in reports if r["cache"]["hit"])
    assert (hit["bytes"], hit["skipped_files"], hit["skipped_bytes"]) == (0, 2, 150_000)
    assert (Path(hit["path"]) / "a").read_bytes() == (src / "a").read_bytes()


def test_entry_being_staged_is_not_evicted_and_a_killed_stage_in_resumes(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", {"a": 1000})
    cache = tmp_path / "cache"
    child = _start_child(tmp_path, src, cache, mode="hang")
    (tmp_path / "go").touch()
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while not (tmp_path / "go.started").exists():
        assert child.poll() is None, child.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # Even with its lease gone (a pid holder that already exited, say), an entry that is being
    # staged is not evicted: its entry lock says it is in use.
    [lease] = (cache / keys(cache)[0] / "leases").iterdir()
    lease.unlink()
    assert evict(cache, 0, 0) == []
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()

    seen: list[bool] = []
    stager = FakeStager()

    async def resuming(specs, dest: Path, options, *, entries) -> Report:
        seen.append((dest / "half-done").exists())
        return await stager(specs, dest, options, entries=entries)

    report = asyncio.run(
        asyncio.wait_for(
            stage_in_cached(
                [str(src)], cache, OPTIONS, holder="job-next", cache_size=None, link_to=None, stager=resuming
            ),
            timeout=CHILD_TIMEOUT_S,
        )
    )
    assert seen == [True] and report.cache["hit"] is False
