"""``aif-gateway stage`` against the real gateway over S3: the CLI as a subprocess (and the library
where a test must act between listing and reading)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aif_gateway.stage import StageError, StageOptions, list_sources, stage_in, stage_status

from .gateway import Credentials, GatewayProcess
from .helpers import MiB, random_bytes, write_random_file
from .stage_support import (
    CLI,
    complete_marker,
    file_digest,
    journal_ranges,
    ok,
    report_of,
    s3_env,
    stage,
    tree,
    wait_for_ranges,
)


@pytest.fixture
def env(gateway: GatewayProcess, credentials: Credentials) -> dict[str, str]:
    return s3_env(gateway, credentials)


@pytest.fixture(params=["signed-here", "botocore"])
def any_get_env(request: pytest.FixtureRequest, env: dict[str, str]) -> dict[str, str]:
    """The environment for a stage reading objects by the fast GET path, and by its Python fallback."""
    return {**env, "AIF_STAGE_S3_GET": "" if request.param == "signed-here" else "botocore"}


def options_for(gateway: GatewayProcess, credentials: Credentials, **kwargs) -> StageOptions:
    return StageOptions(
        endpoint_url=gateway.url,
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
        progress=False,
        progress_interval_s=0,
        **kwargs,
    )


def test_a_prefix_is_staged_verified_and_not_fetched_twice(
    s3, bucket: str, bucket_dir: Path, any_get_env, tmp_path: Path
) -> None:
    env = any_get_env
    objects = {f"ds/train/{i:02d}.bin": random_bytes(i * 1000) for i in range(12)}
    objects["ds/empty"] = b""
    objects["ds/odd name +%é~(1).bin"] = random_bytes(500)  # a key that must be URI-encoded to be signed
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    parts = [random_bytes(5 * MiB), random_bytes(5 * MiB), random_bytes(2 * MiB)]
    # A multipart object with a full-object CRC32C: what a range-split file is checked against.
    upload = s3.create_multipart_upload(
        Bucket=bucket, Key="ds/multi.bin", ChecksumAlgorithm="CRC32C", ChecksumType="FULL_OBJECT"
    )
    answers = [
        s3.upload_part(
            Bucket=bucket,
            Key="ds/multi.bin",
            UploadId=upload["UploadId"],
            PartNumber=n,
            Body=body,
            ChecksumAlgorithm="CRC32C",
        )
        for n, body in enumerate(parts, 1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="ds/multi.bin",
        UploadId=upload["UploadId"],
        MultipartUpload={
            "Parts": [
                {"ETag": a["ETag"], "PartNumber": n, "ChecksumCRC32C": a["ChecksumCRC32C"]}
                for n, a in enumerate(answers, 1)
            ]
        },
        ChecksumType="FULL_OBJECT",
    )
    objects["ds/multi.bin"] = b"".join(parts)
    job_file = bucket_dir / "ds/hpc/written-by-a-job.bin"  # a plain file: an ETag that is no MD5
    job_file.parent.mkdir(parents=True)
    objects["ds/hpc/written-by-a-job.bin"] = random_bytes(11 * MiB)
    job_file.write_bytes(objects["ds/hpc/written-by-a-job.bin"])
    s3.put_object(Bucket=bucket, Key="ds2/not-this", Body=b"x")  # shares the prefix "ds" but not "ds/"

    dest = tmp_path / "dest"
    report = ok(stage("in", f"s3://{bucket}/ds", "--to", dest, "--json", "--part-size", "5M", env=env))
    expected = {key[3:]: hashlib.sha256(data).hexdigest() for key, data in objects.items()}
    assert tree(dest) == expected
    assert report["files"] == 16 and report["bytes"] == sum(map(len, objects.values()))
    # MD5 ETags of the single-part uploads, the CRC32C of the multipart one; the job's file has
    # neither: its size and its ETag (If-Match on every range) are what is checked.
    assert report["verified"] == {"md5": 14, "checksum": 1, "size+etag": 1}
    assert report["sources"] == [f"s3://{bucket}/ds"] and report["retries"] == 0
    assert stage_status(dest) is not None

    again = ok(stage("in", f"s3://{bucket}/ds/", "--to", dest, "--json", env=env))
    assert (again["files"], again["bytes"], again["skipped_files"]) == (0, 0, 16)

    s3.put_object(Bucket=bucket, Key="ds/train/03.bin", Body=b"new content")
    third = ok(stage("in", f"s3://{bucket}/ds", "--to", dest, "--json", env=env))
    assert (third["files"], third["bytes"]) == (1, len(b"new content"))
    assert (dest / "train/03.bin").read_bytes() == b"new content"


def test_endpoint_and_keys_can_come_from_an_aws_profile(
    s3, bucket: str, gateway: GatewayProcess, credentials: Credentials, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="p/x.bin", Body=b"profiled")
    config = tmp_path / "aws-config"
    config.write_text(f"[profile staging]\nendpoint_url = {gateway.url}\nregion = us-east-1\n")
    keys = tmp_path / "aws-credentials"
    keys.write_text(
        f"[staging]\naws_access_key_id = {credentials.access_key}\naws_secret_access_key = {credentials.secret_key}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update({"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(keys), "AWS_PROFILE": "staging"})
    dest = tmp_path / "dest"
    ok(stage("in", f"s3://{bucket}/p", "--to", dest, "--json", env=env))
    assert (dest / "x.bin").read_bytes() == b"profiled"
    env.pop("AWS_PROFILE")
    ok(stage("in", f"s3://{bucket}/p", "--to", tmp_path / "dest2", "--profile", "staging", "--json", env=env))
    proc = stage("in", f"s3://{bucket}/p", "--to", tmp_path / "dest3", "--profile", "nope", env=env)
    assert proc.returncode == 2 and "profile" in proc.stderr


def test_missing_bucket_prefix_or_wrong_keys_are_named_with_their_exit_codes(
    s3, bucket: str, env, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="data/x", Body=b"1")
    proc = stage("in", "s3://no-such-bucket-for-stage/x", "--to", tmp_path / "d1", env=env)
    assert proc.returncode == 3 and "bucket does not exist: s3://no-such-bucket-for-stage/x" in proc.stderr
    proc = stage("in", f"s3://{bucket}/nothing-here/", "--to", tmp_path / "d2", env=env)
    assert proc.returncode == 3 and f"no objects at s3://{bucket}/nothing-here/" in proc.stderr
    bad_keys = {**env, "AWS_SECRET_ACCESS_KEY": "wrong-secret"}
    proc = stage("in", f"s3://{bucket}/data", "--to", tmp_path / "d3", env=bad_keys)
    assert proc.returncode == 5 and "refused the credentials" in proc.stderr
    for name in ("d1", "d2", "d3"):
        assert not complete_marker(tmp_path / name).exists()


@pytest.fixture(scope="module")
def interrupted_gateway(
    tmp_path_factory: pytest.TempPathFactory, gateway_logs: Path, credentials: Credentials
) -> Iterator[GatewayProcess]:
    """A gateway of their own for the tests that kill stages mid-transfer: clients vanishing
    mid-request must leave no traceback in its log."""
    gw = GatewayProcess(
        tmp_path_factory.mktemp("stage-interrupt-root"), gateway_logs, credentials=credentials, workers=2
    ).start()
    yield gw
    gw.stop()
    assert not gw.tracebacks(), gw.tracebacks()[-6000:]


@pytest.fixture(scope="module")
def big_object(interrupted_gateway: GatewayProcess) -> tuple[str, Path]:
    """A 160 MiB object (written as a plain file in a bucket directory, as an HPC job would) to
    interrupt stages of."""
    path = interrupted_gateway.root / "stage-big" / "data" / "big.bin"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as fh:
        for _ in range(40):
            fh.write(os.urandom(4 * MiB))
    return "s3://stage-big/data", path


def _start(url: str, dest: Path, env: dict[str, str]) -> subprocess.Popen:
    # Through botocore: the fast path can fetch all 160 MiB before the journal's first flush
    # (a syncfs of the whole destination filesystem) returns, leaving nothing to interrupt.
    # The runs that resume use the fast path.
    return subprocess.Popen(
        [*CLI, "in", url, "--to", str(dest), "--part-size", "5M", "--jobs", "2", "--json"],
        env={**env, "AIF_STAGE_S3_GET": "botocore"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_killed_stage_resumes_where_it_stopped(
    big_object, interrupted_gateway: GatewayProcess, credentials: Credentials, tmp_path: Path
) -> None:
    url, source = big_object
    env = s3_env(interrupted_gateway, credentials)
    dest = tmp_path / "dest"
    proc = _start(url, dest, env)
    wait_for_ranges(dest, proc, at_least=1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert not complete_marker(dest).exists() and not (dest / "big.bin").exists()
    journaled = journal_ranges(dest)

    report = ok(stage("in", url, "--to", dest, "--json", "--part-size", "5M", env=env))
    size = source.stat().st_size
    assert report["skipped_bytes"] >= journaled * 5 * MiB > 0
    assert report["bytes"] + report["skipped_bytes"] == size and report["bytes"] < size
    assert file_digest(dest / "big.bin") == file_digest(source)
    assert stage("status", dest).returncode == 0


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_stop_cleanly_keeping_the_journal(
    big_object, interrupted_gateway: GatewayProcess, credentials: Credentials, tmp_path: Path, signum: int, code: int
) -> None:
    url, _ = big_object
    dest = tmp_path / "dest"
    proc = _start(url, dest, s3_env(interrupted_gateway, credentials))
    wait_for_ranges(dest, proc, at_least=1)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"stopped by {signal.Signals(signum).name}" in err and "Traceback" not in err
    report = report_of(subprocess.CompletedProcess([], code, out, err))
    assert report["ok"] is False and report["bytes"] > 0
    assert not complete_marker(dest).exists() and journal_ranges(dest) >= 1


def test_an_object_changed_after_listing_fails_the_stage(
    s3, bucket: str, bucket_dir: Path, gateway: GatewayProcess, credentials: Credentials, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="d/small.bin", Body=random_bytes(1000))
    write_random_file(bucket_dir / "d" / "large.bin", 11 * MiB)
    options = options_for(gateway, credentials, part_size=5 * MiB)
    for name in ("small.bin", "large.bin"):
        entries = list_sources([f"s3://{bucket}/d"], options)
        path = bucket_dir / "d" / name
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF  # the same size, other bytes: a new ETag
        path.write_bytes(bytes(data))
        dest = tmp_path / name
        with pytest.raises(StageError) as caught:
            asyncio.run(stage_in([f"s3://{bucket}/d"], dest, options, entries=entries))
        assert caught.value.kind == "verify" and f"s3://{bucket}/d/{name}" in str(caught.value)
        assert "changed during the stage" in str(caught.value)
        assert not (dest / name).exists() and stage_status(dest) is None


def test_stage_out_uploads_only_new_or_changed_files_multipart_when_large(s3, bucket: str, env, tmp_path: Path) -> None:
    src = tmp_path / "results"
    for i in range(5):
        write_random_file(src / "logs" / f"{i}.txt", 100 + i)
    write_random_file(src / "ckpt.pt", 12 * MiB)
    url = f"s3://{bucket}/run1"
    first = ok(stage("out", src, "--to", url, "--json", "--part-size", "5M", env=env))
    assert (first["files"], first["skipped_files"]) == (6, 0) and first["verified"] == {"md5": 6}
    for path in src.rglob("*"):
        if path.is_file():
            body = s3.get_object(Bucket=bucket, Key="run1/" + str(path.relative_to(src)))
            assert body["Body"].read() == path.read_bytes()
    head = s3.head_object(Bucket=bucket, Key="run1/ckpt.pt")
    assert head["ETag"].strip('"').endswith("-3")
    assert head["Metadata"]["aif-mtime"] == str((src / "ckpt.pt").stat().st_mtime_ns)

    again = ok(stage("out", src, "--to", url, "--json", "--part-size", "5M", env=env))
    assert (again["files"], again["bytes"], again["skipped_files"]) == (0, 0, 6)
    write_random_file(src / "logs" / "2.txt", 102)  # same size, new content and mtime
    third = ok(stage("out", src, "--to", url, "--json", "--part-size", "5M", env=env))
    assert (third["files"], third["bytes"]) == (1, 102)
    assert s3.get_object(Bucket=bucket, Key="run1/logs/2.txt")["Body"].read() == (src / "logs/2.txt").read_bytes()
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    proc = stage("out", src, "--to", "s3://no-such-bucket-for-stage-out/x", env=env)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def _corrupt_keeping_mtime(path: Path) -> None:
    """Flip one byte of a file behind the gateway's back, restoring its mtime: the gateway keeps
    answering with the object's old ETag and checksums, as a server returning wrong data would."""
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(st.st_size // 2)
        byte = fh.read(1)
        fh.seek(st.st_size // 2)
        fh.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_wrong_bytes_under_the_listed_etag_fail_verification(
    s3, bucket: str, bucket_dir: Path, any_get_env, tmp_path: Path
) -> None:
    env = any_get_env
    s3.put_object(Bucket=bucket, Key="single/obj.bin", Body=random_bytes(3 * MiB))
    parts = [random_bytes(5 * MiB), random_bytes(1 * MiB)]
    upload = s3.create_multipart_upload(
        Bucket=bucket, Key="multi/obj.bin", ChecksumAlgorithm="CRC32C", ChecksumType="FULL_OBJECT"
    )
    answers = [
        s3.upload_part(
            Bucket=bucket,
            Key="multi/obj.bin",
            UploadId=upload["UploadId"],
            PartNumber=n,
            Body=body,
            ChecksumAlgorithm="CRC32C",
        )
        for n, body in enumerate(parts, 1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="multi/obj.bin",
        UploadId=upload["UploadId"],
        MultipartUpload={
            "Parts": [
                {"ETag": a["ETag"], "PartNumber": n, "ChecksumCRC32C": a["ChecksumCRC32C"]}
                for n, a in enumerate(answers, 1)
            ]
        },
        ChecksumType="FULL_OBJECT",
    )
    for prefix, what in (("single", "its ETag (MD5)"), ("multi", "its x-amz-checksum-crc32c")):
        etag = s3.head_object(Bucket=bucket, Key=f"{prefix}/obj.bin")["ETag"]
        _corrupt_keeping_mtime(bucket_dir / prefix / "obj.bin")
        assert s3.head_object(Bucket=bucket, Key=f"{prefix}/obj.bin")["ETag"] == etag
        dest = tmp_path / prefix
        proc = stage("in", f"s3://{bucket}/{prefix}", "--to", dest, "--part-size", "5M", env=env)
        assert proc.returncode == 1, proc.stderr
        assert f"does not match {what}" in proc.stderr and f"s3://{bucket}/{prefix}/obj.bin" in proc.stderr
        assert not (dest / "obj.bin").exists() and not complete_marker(dest).exists()
        assert list((dest / ".aifstage" / "partial").iterdir()) == []
