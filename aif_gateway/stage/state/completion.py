"""What a finished stage leaves behind: the manifest and the atomic completion marker.

- ``DEST/.aifstage/manifest.json``: ``{"version": 1, "files": [{"rel", "size", "xxh3", "url",
  "etag" | "mtime_ns" (the source's version), "dest_mtime_ns"}]}``, sorted by rel.
- ``DEST/.aifstage/complete.json``: ``{"version": 1, "sources", "fingerprint", "files", "bytes",
  "manifest_sha256", "finished_at"}``, written LAST (temporary name, fsync, rename), after the
  data and the manifest are durable. A stage is complete iff this file exists, the manifest it
  names is intact, and every file the manifest lists is there with its recorded size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import Any

from .journal import DoneRecord
from .statedir import StageDir, write_atomically

__all__ = ["check_complete", "read_manifest", "stage_status", "write_complete", "write_manifest"]

VERSION = 1
_PARALLEL_STAT_FROM = 2000


def _record(raw: dict[str, Any]) -> DoneRecord:
    source_id = f"etag:{raw['etag']}" if "etag" in raw else f"mtime:{raw['mtime_ns']}"
    return DoneRecord(raw["rel"], int(raw["size"]), source_id, raw["xxh3"], int(raw["dest_mtime_ns"]), raw["url"])


def _file_line(record: DoneRecord) -> str:
    """One file's object of the manifest (see the module's docstring), formatted directly: a
    fifth of the cost of building a dict for json.dumps, once per staged file."""
    kind, _, value = record.source_id.partition(":")
    source = f'"etag":{_quote(value)}' if kind == "etag" else f'"mtime_ns":{int(value):d}'
    return (
        f'{{"rel":{_quote(record.rel)},"size":{record.size:d},"xxh3":{_quote(record.xxh3)},'
        f'"url":{_quote(record.url)},{source},"dest_mtime_ns":{record.dest_mtime_ns:d}}}'
    )


def write_manifest(sd: StageDir, records: list[DoneRecord]) -> str:
    """Write the manifest of ``records`` atomically; returns its sha256 (hex), for the marker."""
    files = ",".join(_file_line(r) for r in sorted(records))  # by rel: the records' first item
    data = f'{{"version":{VERSION:d},"files":[{files}]}}'.encode()
    write_atomically(sd.manifest, data)
    return hashlib.sha256(data).hexdigest()


def read_manifest(path: Path) -> dict[str, DoneRecord]:
    """The records of a manifest, by rel; empty when it is missing or unreadable (nothing is skipped
    then)."""
    try:
        raw = json.loads(path.read_bytes())
        return {f["rel"]: _record(f) for f in raw["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_complete(
    sd: StageDir, *, sources: list[str], fingerprint: str, files: int, total_bytes: int, manifest_sha256: str
) -> dict[str, Any]:
    """Write complete.json (last: see the module docstring); returns the marker written."""
    marker = {
        "version": VERSION,
        "sources": sources,
        "fingerprint": fingerprint,
        "files": files,
        "bytes": total_bytes,
        "manifest_sha256": manifest_sha256,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_atomically(sd.complete, json.dumps(marker, indent=1).encode())
    return marker


def _mismatch(dest: Path, raw: dict[str, Any]) -> str | None:
    try:
        st = os.stat(dest / raw["rel"], follow_symlinks=False)
    except OSError as exc:
        return f"{raw['rel']}: {exc.strerror}"
    if st.st_size != raw["size"] or st.st_mtime_ns != raw["dest_mtime_ns"]:
        return f"{raw['rel']} was changed after the stage"
    return None


def check_complete(dest: Path) -> tuple[dict[str, Any] | None, str]:
    """(the completion marker, "") when ``dest`` holds a complete and intact stage, else (None, why)."""
    sd = StageDir(Path(dest))
    try:
        marker = json.loads(sd.complete.read_bytes())
        manifest_bytes = sd.manifest.read_bytes()
    except FileNotFoundError as exc:
        return None, f"{exc.filename} is missing (the stage never finished, or is running)"
    except (OSError, ValueError) as exc:
        return None, f"unreadable stage state: {exc}"
    if not isinstance(marker, dict) or marker.get("version") != VERSION:
        return None, f"{sd.complete} is not a version-{VERSION} completion marker"
    if hashlib.sha256(manifest_bytes).hexdigest() != marker.get("manifest_sha256"):
        return None, f"{sd.manifest} does not match the completion marker"
    try:
        files = json.loads(manifest_bytes)["files"]
    except (ValueError, KeyError) as exc:
        return None, f"unreadable manifest: {exc}"
    if len(files) >= _PARALLEL_STAT_FROM:
        with ThreadPoolExecutor(16) as pool:
            problems = pool.map(lambda raw: _mismatch(sd.dest, raw), files, chunksize=256)
            problem = next((p for p in problems if p), None)
    else:
        problem = next((p for p in map(lambda raw: _mismatch(sd.dest, raw), files) if p), None)
    if problem:
        return None, problem
    return marker, ""


def stage_status(dest: Path) -> dict[str, Any] | None:
    """The complete.json content when ``dest`` holds a complete, consistent stage; else None."""
    return check_complete(dest)[0]
