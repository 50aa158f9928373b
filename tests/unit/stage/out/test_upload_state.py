"""Stage-out resume records: parsing, which parts a re-run keeps, and the state directory on disk."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from aif_gateway.stage import StageError
from aif_gateway.stage.out.upload_state import UploadRecord, UploadState, parse_record, resumable_parts, state_dir

MiB = 1 << 20
SIZE = 12 * MiB  # parts of 5, 5 and 2 MiB at a 5 MiB part size


def _record(**parts: tuple[str, int]) -> UploadRecord:
    record = UploadRecord("run/ckpt.pt", "up-1", SIZE, 111, 5 * MiB)
    record.parts = {int(n[1:]): value for n, value in parts.items()}
    return record


def test_a_record_reads_back_from_its_lines_ignoring_a_torn_last_line(tmp_path: Path) -> None:
    state = UploadState(tmp_path / "state")
    state.open()
    state.start(_record())
    state.add_part("run/ckpt.pt", 2, '"e2"', 5 * MiB)
    state.add_part("run/ckpt.pt", 1, "e1-old", 5 * MiB)
    state.add_part("run/ckpt.pt", 1, "e1", 5 * MiB)  # sent again: the last line wins
    (path,) = state.uploads.iterdir()
    with open(path, "a") as fh:
        fh.write('{"n": 3, "etag": "e')  # killed mid-write
    assert state.records() == {"run/ckpt.pt": _record(p1=("e1", 5 * MiB), p2=("e2", 5 * MiB))}
    state.close()


def test_a_record_without_a_readable_header_is_none() -> None:
    assert parse_record([]) is None
    assert parse_record(['{"key": "k", "upload_id": "u"']) is None
    assert parse_record(['{"n": 1, "etag": "e", "size": 5}']) is None


def test_parts_listed_with_the_recorded_etag_and_size_are_kept() -> None:
    record = _record(p1=("e1", 5 * MiB), p2=("e2", 5 * MiB), p3=("e3", 2 * MiB))
    listed = {1: ('"e1"', 5 * MiB), 2: ("other", 5 * MiB), 3: ("e3", 2 * MiB)}
    assert resumable_parts(record, SIZE, 111, listed) == {1: "e1", 3: "e3"}


def test_parts_the_server_lacks_or_sized_unlike_the_split_are_sent_again() -> None:
    record = _record(p1=("e1", 5 * MiB), p2=("e2", 4 * MiB), p9=("e9", 5 * MiB))
    listed = {2: ("e2", 4 * MiB), 9: ("e9", 5 * MiB)}
    assert resumable_parts(record, SIZE, 111, listed) == {}


def test_another_file_version_or_a_vanished_upload_starts_over() -> None:
    record = _record(p1=("e1", 5 * MiB))
    listed = {1: ("e1", 5 * MiB)}
    assert resumable_parts(record, SIZE, 111, listed) == {1: "e1"}
    assert resumable_parts(record, SIZE, 112, listed) is None  # touched
    assert resumable_parts(record, SIZE + 1, 111, listed) is None  # grew
    assert resumable_parts(record, SIZE, 111, None) is None  # no such upload


def test_the_state_lives_under_xdg_cache_home_keyed_by_endpoint_destination_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "src").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "src")
    one = state_dir("http://a:1", "s3://b/p/", tmp_path / "src")
    assert one.parent == tmp_path / "cache" / "aif-gateway" / "stage-out"
    assert state_dir("http://a:1", "s3://b/p/", tmp_path / "link") == one  # the real path counts
    assert (
        len(
            {
                one,
                state_dir("http://a:2", "s3://b/p/", tmp_path / "src"),
                state_dir("http://a:1", "s3://b/q/", tmp_path / "src"),
                state_dir("http://a:1", "s3://b/p/", tmp_path),
            }
        )
        == 4
    )


def _try_open(path: Path, answer: multiprocessing.Queue) -> None:
    try:
        UploadState(path).open()
        answer.put("opened")
    except StageError as exc:
        answer.put(str(exc))


def test_one_stage_out_at_a_time_and_an_emptied_state_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "state"
    state = UploadState(path)
    state.open()
    # fcntl locks are per process: the second opener must be another one.
    answer: multiprocessing.Queue = multiprocessing.Queue()
    other = multiprocessing.get_context("fork").Process(target=_try_open, args=(path, answer))
    other.start()
    other.join(10)
    assert "another stage out" in answer.get(timeout=5)
    state.start(_record())
    state.close()
    assert state.uploads.is_dir()  # a record left: kept for the next run

    state.open()
    state.drop("run/ckpt.pt")
    state.close()
    assert not path.exists()


def test_state_falls_back_to_a_private_temp_dir_without_a_usable_home(tmp_path, monkeypatch) -> None:
    # A batch user without a home directory (Slurm's stage-out runs as the job user).
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(blocker / "home"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    path = state_dir("http://a:1", "s3://b/p/", tmp_path / "src")
    private = tmp_path / "tmp" / f"aif-gateway-{os.getuid()}"
    assert path.parent == private / "stage-out"
    assert (private.stat().st_mode & 0o777) == 0o700
    state = UploadState(path)
    state.open()
    state.close()


def test_a_temp_dir_someone_else_could_write_is_not_used(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(blocker / "home"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    planted = tmp_path / f"aif-gateway-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    path = state_dir("http://a:1", "s3://b/p/", tmp_path / "src")
    assert not path.is_relative_to(planted)
