"""The manifest and the completion marker: what makes a stage count as complete."""

from __future__ import annotations

import json
import os
from pathlib import Path

from aif_gateway.stage.state.completion import (
    check_complete,
    read_manifest,
    stage_status,
    write_complete,
    write_manifest,
)
from aif_gateway.stage.state.journal import DoneRecord
from aif_gateway.stage.state.statedir import StageDir


def _stage(dest: Path, files: dict[str, bytes]) -> StageDir:
    sd = StageDir(dest)
    sd.partial_dir.mkdir(parents=True)
    records = []
    for rel, data in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        source = "etag:abc" if rel.startswith("s3") else "mtime:42"
        records.append(DoneRecord(rel, len(data), source, "00ff", path.stat().st_mtime_ns, f"src/{rel}"))
    sha = write_manifest(sd, records)
    write_complete(
        sd,
        sources=["src"],
        fingerprint="fp",
        files=len(records),
        total_bytes=sum(len(d) for d in files.values()),
        manifest_sha256=sha,
    )
    return sd


def test_a_finished_stage_is_complete_and_its_manifest_round_trips(tmp_path: Path) -> None:
    sd = _stage(tmp_path, {"a/b.bin": b"hello", "s3obj": b"x" * 10})
    marker = stage_status(tmp_path)
    assert marker is not None and marker["fingerprint"] == "fp" and marker["files"] == 2 and marker["bytes"] == 15
    records = read_manifest(sd.manifest)
    assert records["s3obj"].source_id == "etag:abc" and records["a/b.bin"].source_id == "mtime:42"
    raw = json.loads(sd.manifest.read_bytes())
    assert raw["files"][0]["rel"] == "a/b.bin" and raw["files"][0]["mtime_ns"] == 42
    assert raw["files"][1]["etag"] == "abc"


def test_no_marker_means_not_complete(tmp_path: Path) -> None:
    sd = _stage(tmp_path, {"f": b"1"})
    sd.complete.unlink()
    marker, why = check_complete(tmp_path)
    assert marker is None and "complete.json" in why


def test_a_changed_or_missing_file_makes_the_stage_incomplete(tmp_path: Path) -> None:
    _stage(tmp_path, {"f": b"1", "g": b"2"})
    st = (tmp_path / "f").stat()
    os.utime(tmp_path / "f", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    marker, why = check_complete(tmp_path)
    assert marker is None and "f was changed" in why
    other = tmp_path / "other"
    _stage(other, {"f": b"1"})
    (other / "f").unlink()
    assert stage_status(other) is None


def test_a_manifest_that_does_not_match_the_marker_is_refused(tmp_path: Path) -> None:
    sd = _stage(tmp_path, {"f": b"1"})
    sd.manifest.write_bytes(sd.manifest.read_bytes().replace(b'"size":1', b'"size":1 '))
    marker, why = check_complete(tmp_path)
    assert marker is None and "does not match" in why


def test_begin_removes_the_marker_and_takes_the_lock(tmp_path: Path) -> None:
    _stage(tmp_path, {"f": b"1"})
    sd = StageDir(tmp_path)
    sd.begin()
    try:
        assert not sd.complete.exists() and stage_status(tmp_path) is None
    finally:
        sd.end()


def test_names_json_must_escape_round_trip(tmp_path: Path) -> None:
    names = {'quo"te\\back': b"1", "é/ünï": b"22", "bad-\udcff-utf8": b"333", "ctl\t": b""}
    sd = StageDir(tmp_path)
    sd.partial_dir.mkdir(parents=True)
    records = [
        DoneRecord(rel, len(data), "mtime:42" if data else 'etag:"e"-1', "00ff", 7, f"/src/{rel}")
        for rel, data in names.items()
    ]
    write_manifest(sd, records)
    assert read_manifest(sd.manifest) == {r.rel: r for r in records}
