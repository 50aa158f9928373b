"""GET and HEAD semantics: ranges, conditional requests, checksum mode, overrides, partNumber."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import pytest
from botocore.exceptions import ClientError

from .gateway import Credentials, GatewayProcess
from .helpers import MiB, random_bytes
from .rawhttp import crc32_b64, signed_request

DATA = bytes(range(100))


@pytest.fixture
def hundred(s3, bucket: str) -> str:
    s3.put_object(Bucket=bucket, Key="hundred", Body=DATA)
    return bucket


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-10", 10, 10),
        ("bytes=90-", 90, 99),
        ("bytes=-10", 90, 99),
        ("bytes=95-200", 95, 99),
        ("bytes=-500", 0, 99),
    ],
)
def test_range_forms_answer_206_with_content_range(s3, hundred: str, header: str, first: int, last: int) -> None:
    got = s3.get_object(Bucket=hundred, Key="hundred", Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {first}-{last}/100"
    assert got["ContentLength"] == last - first + 1
    assert got["Body"].read() == DATA[first : last + 1]


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=150-160"])
def test_range_starting_at_or_past_the_end_is_invalid_range(s3, hundred: str, header: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=hundred, Key="hundred", Range=header)
    assert exc.value.response["Error"]["Code"] == "InvalidRange"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_any_range_of_an_empty_object_is_invalid_range(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    for header in ("bytes=0-0", "bytes=0-", "bytes=-1"):
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket, Key="empty", Range=header)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416, header
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""


def _status(gw: GatewayProcess, creds: Credentials, bucket: str, headers: dict[str, str]) -> int:
    return signed_request(gw.port, creds, "GET", f"/{bucket}/hundred", headers=headers).status


def test_conditional_gets(gateway: GatewayProcess, credentials: Credentials, s3, hundred: str) -> None:
    etag = s3.head_object(Bucket=hundred, Key="hundred")["ETag"]
    past = "Mon, 01 Jan 2001 00:00:00 GMT"
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    expectations = [
        ({"If-Match": etag}, 200),
        ({"If-Match": '"00000000000000000000000000000000"'}, 412),
        ({"If-None-Match": etag}, 304),
        ({"If-None-Match": '"00000000000000000000000000000000"'}, 200),
        ({"If-Modified-Since": past}, 200),
        ({"If-Modified-Since": future}, 304),
        ({"If-Unmodified-Since": past}, 412),
        ({"If-Unmodified-Since": future}, 200),
        # S3 rules when both of a pair are present: If-Match true wins over a false
        # If-Unmodified-Since; If-None-Match false wins over a true If-Modified-Since.
        ({"If-Match": etag, "If-Unmodified-Since": past}, 200),
        ({"If-None-Match": etag, "If-Modified-Since": past}, 304),
    ]
    answers = [(h, _status(gateway, credentials, hundred, h)) for h, _ in expectations]
    assert answers == expectations


def test_checksum_mode_returns_stored_checksums(s3, bucket: str) -> None:
    data = random_bytes(10_000)
    s3.put_object(Bucket=bucket, Key="c32", Body=data, ChecksumAlgorithm="CRC32")
    s3.put_object(Bucket=bucket, Key="s256", Body=data, ChecksumAlgorithm="SHA256")

    head = s3.head_object(Bucket=bucket, Key="c32", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc32_b64(data)
    got = s3.get_object(Bucket=bucket, Key="s256", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert got["Body"].read() == data


def test_ranged_get_does_not_claim_the_whole_objects_checksum(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str
) -> None:
    data = random_bytes(10_000)
    s3.put_object(Bucket=bucket, Key="obj", Body=data, ChecksumAlgorithm="CRC32")
    resp = signed_request(
        gateway.port,
        credentials,
        "GET",
        f"/{bucket}/obj",
        headers={"Range": "bytes=0-99", "x-amz-checksum-mode": "ENABLED"},
    )
    assert resp.status == 206
    assert resp.headers.get("x-amz-checksum-crc32") != crc32_b64(data)
    # And the default client, which validates what it is given, reads the range fine.
    got = s3.get_object(Bucket=bucket, Key="obj", Range="bytes=0-99", ChecksumMode="ENABLED")
    assert got["Body"].read() == data[:100]


def test_response_header_overrides(s3, hundred: str) -> None:
    got = s3.get_object(
        Bucket=hundred,
        Key="hundred",
        ResponseContentType="text/plain",
        ResponseContentDisposition='attachment; filename="h.bin"',
        ResponseCacheControl="no-cache",
    )
    assert got["ContentType"] == "text/plain"
    assert got["ContentDisposition"] == 'attachment; filename="h.bin"'
    assert got["CacheControl"] == "no-cache"


def test_part_number_reads_one_part_of_a_multipart_object(s3, bucket: str) -> None:
    parts = [random_bytes(5 * MiB), random_bytes(1000)]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etags = [
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=n, Body=p)["ETag"]
        for n, p in enumerate(parts, 1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    second = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert second["PartsCount"] == 2
    assert second["ContentLength"] == 1000
    assert second["Body"].read() == parts[1]
    assert s3.head_object(Bucket=bucket, Key="mp", PartNumber=1)["ContentLength"] == 5 * MiB
