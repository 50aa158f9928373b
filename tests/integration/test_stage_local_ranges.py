"""Large files between local filesystems: their ranges are copied in order by one worker, which
makes the file's digests on the way; a file resumed from an earlier run's ranges is read back
instead, and a journaled range whose bytes changed since fails the stage."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
import xxhash

from aif_gateway.stage import StageError, StageOptions, stage_in, stage_status
from aif_gateway.stage.state.journal import Journal
from aif_gateway.stage.state.statedir import StageDir

from .helpers import MiB

PART = 5 * MiB


def options(**kwargs) -> StageOptions:
    return StageOptions(part_size=PART, progress=False, progress_interval_s=0, **kwargs)


def big_source(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(3 * PART + 12345)
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(data)
    return src, data


def manifest_xxh3(dest: Path, rel: str) -> str:
    files = json.loads((dest / ".aifstage" / "manifest.json").read_text())["files"]
    return next(f["xxh3"] for f in files if f["rel"] == rel)


def test_a_large_local_file_is_copied_in_order_and_its_digest_made_on_the_way(tmp_path: Path) -> None:
    src, data = big_source(tmp_path)
    dest = tmp_path / "dest"
    report = asyncio.run(stage_in([str(src)], dest, options()))
    assert (dest / "big.bin").read_bytes() == data
    assert manifest_xxh3(dest, "big.bin") == xxhash.xxh3_64_hexdigest(data)
    assert report.files == 1 and report.bytes == len(data) and stage_status(dest) is not None


def _journal_first_range(src: Path, dest: Path, data: bytes, content: bytes) -> None:
    """What a stage killed after its first range leaves: that range in the partial file (with
    ``content``) and journaled with the xxh3 of the source's bytes."""
    sd = StageDir(dest)
    sd.partial_dir.mkdir(parents=True)
    partial = sd.partial_path("big.bin")
    with open(partial, "wb") as fh:
        fh.write(content)
        fh.truncate(len(data))
    journal = Journal(sd.journal_path, dest)
    journal.open()
    st = (src / "big.bin").stat()
    journal.add_range(
        "big.bin", f"mtime:{st.st_mtime_ns}", len(data), PART, 0, PART, xxhash.xxh3_64_hexdigest(data[:PART])
    )
    journal.flush()
    journal.close()


def test_a_resumed_local_file_copies_only_its_missing_ranges_and_is_read_back(tmp_path: Path) -> None:
    src, data = big_source(tmp_path)
    dest = tmp_path / "dest"
    _journal_first_range(src, dest, data, data[:PART])
    report = asyncio.run(stage_in([str(src)], dest, options()))
    assert report.skipped_bytes == PART and report.bytes == len(data) - PART
    assert (dest / "big.bin").read_bytes() == data
    assert manifest_xxh3(dest, "big.bin") == xxhash.xxh3_64_hexdigest(data)


def test_a_journaled_range_whose_bytes_changed_fails_the_stage(tmp_path: Path) -> None:
    src, data = big_source(tmp_path)
    dest = tmp_path / "dest"
    corrupt = bytearray(data[:PART])
    corrupt[1000] ^= 0xFF
    _journal_first_range(src, dest, data, bytes(corrupt))
    with pytest.raises(StageError) as caught:
        asyncio.run(stage_in([str(src)], dest, options()))
    assert caught.value.kind == "verify" and "read back differently" in str(caught.value)
    assert not (dest / "big.bin").exists() and stage_status(dest) is None
    # The bad partial file was dropped: the next run copies the file again, whole and right.
    report = asyncio.run(stage_in([str(src)], dest, options()))
    assert report.skipped_bytes == 0 and (dest / "big.bin").read_bytes() == data
