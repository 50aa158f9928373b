"""``aif-gateway stage out`` killed mid-multipart-upload: the re-run sends only the missing parts
(or starts over when the file changed), against the real gateway, with the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .gateway import Credentials, GatewayProcess
from .helpers import MiB, write_random_file
from .stage_support import CLI, file_digest, ok, s3_env, stage

SIZE = 64 * MiB
PART = 5 * MiB


@pytest.fixture
def env(gateway: GatewayProcess, credentials: Credentials, tmp_path: Path) -> dict[str, str]:
    # The resume state goes to the XDG cache directory: one of this test's own.
    return {**s3_env(gateway, credentials), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def _killed_after_parts(s3, bucket: str, src: Path, url: str, env: dict[str, str], at_least: int) -> int:
    """Start a stage out, SIGKILL it once ``at_least`` parts of its upload are on the gateway,
    and return how many parts the gateway then holds."""
    # One part at a time, so the kill lands mid-upload rather than after the last part.
    proc = subprocess.Popen(
        [*CLI, "out", str(src), "--to", url, "--part-size", "5M", "--jobs", "1", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"the stage ended (rc={proc.returncode}) before it was killed"
            assert time.monotonic() < deadline, "no parts landed"
            uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            if (
                uploads
                and len(
                    s3.list_parts(Bucket=bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"]).get(
                        "Parts", []
                    )
                )
                >= at_least
            ):
                break
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    (upload,) = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    parts = s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get("Parts", [])
    assert len(parts) < SIZE // PART, "the upload finished before the kill"
    return len(parts)


def _state_records(env: dict[str, str]) -> list[Path]:
    return list(Path(env["XDG_CACHE_HOME"]).glob("aif-gateway/stage-out/*/uploads/*"))


def test_a_killed_stage_out_sends_only_the_missing_parts(s3, bucket: str, env, tmp_path: Path) -> None:
    src = tmp_path / "results"
    write_random_file(src / "ckpt.pt", SIZE)
    url = f"s3://{bucket}/run1"
    landed = _killed_after_parts(s3, bucket, src, url, env, at_least=2)
    assert len(_state_records(env)) == 1

    report = ok(stage("out", src, "--to", url, "--json", "--part-size", "5M", env=env))
    # A part can land on the gateway after its record was last written: at most one per job.
    assert report["skipped_bytes"] >= (landed - 1) * PART > 0
    assert report["bytes"] + report["skipped_bytes"] == SIZE and report["bytes"] < SIZE
    assert report["files"] == 1
    got = tmp_path / "got"
    s3.download_file(bucket, "run1/ckpt.pt", str(got))
    assert file_digest(got) == file_digest(src / "ckpt.pt")
    assert s3.head_object(Bucket=bucket, Key="run1/ckpt.pt")["ETag"].strip('"').endswith(f"-{-(-SIZE // PART)}")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert not list(Path(env["XDG_CACHE_HOME"]).glob("aif-gateway/stage-out/*"))  # nothing left behind


def test_a_file_changed_since_the_kill_is_uploaded_anew_and_the_old_upload_aborted(
    s3, bucket: str, env, tmp_path: Path
) -> None:
    src = tmp_path / "results"
    write_random_file(src / "ckpt.pt", SIZE)
    url = f"s3://{bucket}/run1"
    _killed_after_parts(s3, bucket, src, url, env, at_least=2)
    with open(src / "ckpt.pt", "r+b") as fh:  # rewrite the start: same size, a new mtime
        fh.write(os.urandom(MiB))

    report = ok(stage("out", src, "--to", url, "--json", "--part-size", "5M", env=env))
    assert (report["bytes"], report["skipped_bytes"]) == (SIZE, 0)
    got = tmp_path / "got"
    s3.download_file(bucket, "run1/ckpt.pt", str(got))
    assert file_digest(got) == file_digest(src / "ckpt.pt")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert _state_records(env) == []
