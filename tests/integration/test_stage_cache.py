"""``aif-gateway stage in --cache``: the real CLI staging from the real gateway into a site cache.

A dataset staged once is reused by the next job without moving a byte; a changed object is a new
dataset (a new cache entry); ``stage status --cache`` and ``stage release`` see the same leases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .gateway import Credentials, GatewayProcess
from .helpers import TOOL_TIMEOUT_S, MiB

OBJECTS = {"train/0.bin": 300_000, "train/1.bin": 2 * MiB, "labels.csv": 1234}


def stage(
    gateway: GatewayProcess, credentials: Credentials, *args: str, expect_rc: int = 0
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
        "AWS_ENDPOINT_URL": gateway.url,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "aif_gateway", "stage", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
    )
    assert proc.returncode == expect_rc, f"rc {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def stage_in(
    gateway: GatewayProcess, credentials: Credentials, src: str, cache: Path, holder: str, *extra: str
) -> dict:
    proc = stage(
        gateway, credentials, "in", src, "--cache", str(cache), "--holder", holder, "--json", "--no-progress", *extra
    )
    return json.loads(proc.stdout.splitlines()[-1])


def upload(s3, bucket: str) -> dict[str, bytes]:
    contents = {key: os.urandom(size) for key, size in OBJECTS.items()}
    for key, body in contents.items():
        s3.put_object(Bucket=bucket, Key=f"ds/{key}", Body=body)
    return contents


def test_second_stage_in_of_a_dataset_is_a_hit_with_no_bytes_moved(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str, tmp_path: Path
) -> None:
    contents = upload(s3, bucket)
    cache = tmp_path / "cache"
    first = stage_in(gateway, credentials, f"s3://{bucket}/ds", cache, "1001")
    assert first["ok"] and first["cache"]["hit"] is False
    assert (first["files"], first["bytes"]) == (3, sum(OBJECTS.values()))
    data = Path(first["path"])
    assert data == cache / first["cache"]["key"] / "data"
    assert {key: (data / key).read_bytes() for key in OBJECTS} == contents
    mtimes = {key: (data / key).stat().st_mtime_ns for key in OBJECTS}

    second = stage_in(
        gateway, credentials, f"s3://{bucket}/ds", cache, "1002", "--to", str(tmp_path / "job" / "dataset")
    )
    assert second["cache"] == {**first["cache"], "hit": True}
    assert (second["files"], second["bytes"]) == (0, 0)
    assert (second["skipped_files"], second["skipped_bytes"]) == (3, sum(OBJECTS.values()))
    assert {key: (data / key).stat().st_mtime_ns for key in OBJECTS} == mtimes
    assert (tmp_path / "job" / "dataset").resolve() == data.resolve()
    assert (tmp_path / "job" / "dataset" / "labels.csv").read_bytes() == contents["labels.csv"]


def test_changed_object_is_a_new_entry_and_release_unpins(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str, tmp_path: Path
) -> None:
    contents = upload(s3, bucket)
    cache = tmp_path / "cache"
    old = stage_in(gateway, credentials, f"s3://{bucket}/ds", cache, "2001")
    contents["labels.csv"] = b"changed,labels\n"
    s3.put_object(Bucket=bucket, Key="ds/labels.csv", Body=contents["labels.csv"])

    new = stage_in(gateway, credentials, f"s3://{bucket}/ds", cache, "2002")
    assert new["cache"]["hit"] is False and new["cache"]["key"] != old["cache"]["key"]
    assert {key: (Path(new["path"]) / key).read_bytes() for key in OBJECTS} == contents
    # The old entry is untouched: a job still reading it sees the data it started with.
    assert (Path(old["path"]) / "labels.csv").stat().st_size == OBJECTS["labels.csv"]

    listed = [
        json.loads(line) for line in stage(gateway, credentials, "status", "--cache", str(cache)).stdout.splitlines()
    ]
    assert [(e["key"], e["complete"], [lease["holder"] for lease in e["leases"]]) for e in listed] == [
        (old["cache"]["key"], True, ["2001"]),
        (new["cache"]["key"], True, ["2002"]),
    ]

    assert stage(gateway, credentials, "release", "--cache", str(cache), "--holder", "2001").stdout.strip() == "1"
    # Unpinned and least recently used: a cap that fits one entry evicts the old one for a third.
    s3.put_object(Bucket=bucket, Key="other/x.bin", Body=os.urandom(1000))
    cap = str(sum(OBJECTS.values()) + 10_000)
    assert stage(gateway, credentials, "release", "--cache", str(cache), "--holder", "2002").stdout.strip() == "1"
    third = stage_in(gateway, credentials, f"s3://{bucket}/other", cache, "2003", "--cache-size", cap)
    assert third["cache"]["evicted"] == [old["cache"]["key"]]
    assert not Path(old["path"]).exists() and Path(new["path"]).is_dir()
