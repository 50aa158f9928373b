"""Conditional writes racing across workers, and multipart uploads that change process."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from .clients import boto3_client
from .gateway import Credentials, GatewayProcess
from .helpers import MiB, random_bytes

RACERS = 32


def _race_if_none_match(gateway: GatewayProcess, credentials: Credentials, bucket: str, key: str):
    """32 clients, each on its own connection, PUT the same key with If-None-Match: *."""
    clients = [boto3_client(gateway.url, credentials) for _ in range(RACERS)]
    bodies = [f"writer {i}\n".encode() * 20_000 for i in range(RACERS)]
    start = threading.Barrier(RACERS)

    def attempt(i: int) -> str:
        start.wait()
        try:
            clients[i].put_object(Bucket=bucket, Key=key, Body=bodies[i], IfNoneMatch="*")
            return "won"
        except ClientError as exc:
            return exc.response["Error"]["Code"]

    try:
        with ThreadPoolExecutor(RACERS) as pool:
            outcomes = list(pool.map(attempt, range(RACERS)))
    finally:
        for client in clients:
            client.close()
    return outcomes, bodies


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_if_none_match_puts_have_exactly_one_winner(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str, round_: int
) -> None:
    outcomes, bodies = _race_if_none_match(gateway, credentials, bucket, "contended")
    assert outcomes.count("won") == 1, outcomes
    assert outcomes.count("PreconditionFailed") == RACERS - 1, outcomes
    winner = bodies[outcomes.index("won")]
    assert s3.get_object(Bucket=bucket, Key="contended")["Body"].read() == winner
    # The race really crossed processes: the access log names the worker (pid) per request.
    assert len(_workers_that_served(gateway, f"PUT /{bucket}/contended")) >= 2


def _workers_that_served(gateway: GatewayProcess, request_line_prefix: str) -> set[int]:
    pids = set()
    for line in gateway.stderr().splitlines():
        if line.startswith("{") and '"aif_gateway.access"' in line:
            entry = json.loads(line)
            if entry["msg"].startswith(request_line_prefix):
                pids.add(entry["pid"])
    return pids


def test_if_match_put_replaces_only_the_named_version(s3, bucket: str) -> None:
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"two", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert exc.value.response["Error"]["Code"] == "PreconditionFailed"
    s3.put_object(Bucket=bucket, Key="k", Body=b"three", IfMatch=first)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"three"


def test_if_none_match_applies_to_complete_multipart(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="taken", Body=b"original")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="taken")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="taken", UploadId=upload_id, PartNumber=1, Body=b"new")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="taken",
            UploadId=upload_id,
            IfNoneMatch="*",
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )
    assert exc.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="taken")["Body"].read() == b"original"


def _parts() -> list[bytes]:
    return [random_bytes(5 * MiB), random_bytes(1 * MiB)]


def _complete(client, bucket: str, key: str, upload_id: str, etags: list[str]) -> dict:
    return client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )


def test_multipart_started_on_one_gateway_completes_on_another(
    start_gateway, credentials: Credentials, s3, bucket: str
) -> None:
    other = start_gateway()
    s3_other = boto3_client(other.url, credentials)
    parts = _parts()
    try:
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key="moved.bin")["UploadId"]
        etags = [
            client.upload_part(Bucket=bucket, Key="moved.bin", UploadId=upload_id, PartNumber=n, Body=body)["ETag"]
            for n, (client, body) in enumerate([(s3, parts[0]), (s3_other, parts[1])], 1)
        ]
        listed = s3_other.list_parts(Bucket=bucket, Key="moved.bin", UploadId=upload_id)["Parts"]
        assert [(p["PartNumber"], p["ETag"]) for p in listed] == [(1, etags[0]), (2, etags[1])]
        _complete(s3_other, bucket, "moved.bin", upload_id, etags)
    finally:
        s3_other.close()
    assert s3.get_object(Bucket=bucket, Key="moved.bin")["Body"].read() == b"".join(parts)


def test_multipart_upload_survives_a_gateway_restart(start_gateway, credentials: Credentials, s3, bucket: str) -> None:
    parts = _parts()
    before = start_gateway()
    client = boto3_client(before.url, credentials)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="restart.bin")["UploadId"]
    first = client.upload_part(Bucket=bucket, Key="restart.bin", UploadId=upload_id, PartNumber=1, Body=parts[0])[
        "ETag"
    ]
    client.close()
    before.stop()

    after = start_gateway()
    client = boto3_client(after.url, credentials)
    try:
        second = client.upload_part(Bucket=bucket, Key="restart.bin", UploadId=upload_id, PartNumber=2, Body=parts[1])[
            "ETag"
        ]
        _complete(client, bucket, "restart.bin", upload_id, [first, second])
    finally:
        client.close()
    assert s3.get_object(Bucket=bucket, Key="restart.bin")["Body"].read() == b"".join(parts)
