"""boto3, in its default checksum mode and with checksums only when required."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from .helpers import MiB, file_sha256, list_keys, random_bytes, unique_bucket_name, write_random_file


@pytest.fixture
def bucket_for(any_s3, request: pytest.FixtureRequest) -> str:
    name = unique_bucket_name(request)
    any_s3.create_bucket(Bucket=name)
    return name


def test_put_get_list_delete_roundtrip(any_s3, bucket_for: str) -> None:
    data = random_bytes(100_000)
    put = any_s3.put_object(
        Bucket=bucket_for,
        Key="dir/obj.bin",
        Body=data,
        ContentType="application/x-test",
        Metadata={"purpose": "roundtrip"},
    )
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'

    got = any_s3.get_object(Bucket=bucket_for, Key="dir/obj.bin")
    assert got["Body"].read() == data
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"purpose": "roundtrip"}
    assert got["ETag"] == put["ETag"]

    assert list_keys(any_s3, bucket_for) == ["dir/obj.bin"]
    any_s3.delete_object(Bucket=bucket_for, Key="dir/obj.bin")
    assert list_keys(any_s3, bucket_for) == []
    with pytest.raises(ClientError) as exc:
        any_s3.head_object(Bucket=bucket_for, Key="dir/obj.bin")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_multipart_upload_above_threshold_reads_back_byte_exact(any_s3, bucket_for: str, tmp_path: Path) -> None:
    # 20 MiB with the default 8 MiB threshold and part size: three parts, the last one short.
    source = tmp_path / "big.bin"
    digest = write_random_file(source, 20 * MiB)
    any_s3.upload_file(str(source), bucket_for, "big/big.bin")

    head = any_s3.head_object(Bucket=bucket_for, Key="big/big.bin")
    assert head["ContentLength"] == 20 * MiB
    assert head["ETag"].endswith('-3"')

    target = tmp_path / "back.bin"
    any_s3.download_file(bucket_for, "big/big.bin", str(target))
    assert file_sha256(target) == digest


def test_bucket_lifecycle(any_s3, bucket_for: str) -> None:
    names = [b["Name"] for b in any_s3.list_buckets()["Buckets"]]
    assert bucket_for in names
    any_s3.head_bucket(Bucket=bucket_for)

    any_s3.put_object(Bucket=bucket_for, Key="keep", Body=b"x")
    with pytest.raises(ClientError) as exc:
        any_s3.delete_bucket(Bucket=bucket_for)
    assert exc.value.response["Error"]["Code"] == "BucketNotEmpty"

    any_s3.delete_object(Bucket=bucket_for, Key="keep")
    any_s3.delete_bucket(Bucket=bucket_for)
    with pytest.raises(ClientError) as exc:
        any_s3.head_bucket(Bucket=bucket_for)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_create_existing_bucket_is_already_owned(any_s3, bucket_for: str) -> None:
    with pytest.raises(ClientError) as exc:
        any_s3.create_bucket(Bucket=bucket_for)
    assert exc.value.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"


def test_invalid_bucket_name_is_refused(any_s3) -> None:
    with pytest.raises(ClientError) as exc:
        any_s3.create_bucket(Bucket="Bad_Name")
    assert exc.value.response["Error"]["Code"] == "InvalidBucketName"


def test_get_missing_key_is_no_such_key(any_s3, bucket_for: str) -> None:
    with pytest.raises(ClientError) as exc:
        any_s3.get_object(Bucket=bucket_for, Key="absent")
    assert exc.value.response["Error"]["Code"] == "NoSuchKey"


def test_bucket_location(any_s3, bucket_for: str) -> None:
    location = any_s3.get_bucket_location(Bucket=bucket_for)["LocationConstraint"]
    assert location in (None, "us-east-1")
