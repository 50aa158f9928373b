"""Object actions beyond PUT/GET: DeleteObjects, CopyObject, tagging, presigned URLs, multipart rules."""

from __future__ import annotations

import urllib.request

import pytest
from botocore.exceptions import ClientError

from .helpers import MiB, list_keys, random_bytes


def test_delete_objects_verbose_reports_every_key(s3, bucket: str) -> None:
    for key in ("a", "b/c"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    # The default client sends a CRC32 checksum, not Content-MD5: it must be accepted.
    resp = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b/c"}, {"Key": "never-existed"}]}
    )
    assert sorted(d["Key"] for d in resp["Deleted"]) == ["a", "b/c", "never-existed"]
    assert "Errors" not in resp
    assert list_keys(s3, bucket) == []


def test_delete_objects_quiet_reports_nothing_on_success(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="q", Body=b"x")
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "q"}], "Quiet": True})
    assert "Deleted" not in resp and "Errors" not in resp
    assert list_keys(s3, bucket) == []


def test_copy_object_keeps_metadata_with_copy_directive(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"payload", ContentType="text/x-src", Metadata={"m": "1"})
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"payload"
    assert got["ContentType"] == "text/x-src"
    assert got["Metadata"] == {"m": "1"}


def test_copy_object_replaces_metadata_with_replace_directive(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"payload", Metadata={"m": "1"})
    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        ContentType="application/x-new",
        Metadata={"n": "2"},
    )
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["ContentType"] == "application/x-new"
    assert head["Metadata"] == {"n": "2"}
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"m": "1"}


def test_copy_onto_itself_replaces_metadata_in_place(s3, bucket: str, bucket_dir) -> None:
    s3.put_object(Bucket=bucket, Key="self", Body=b"same bytes", Metadata={"v": "old"})
    inode = (bucket_dir / "self").stat().st_ino
    s3.copy_object(
        Bucket=bucket,
        Key="self",
        CopySource={"Bucket": bucket, "Key": "self"},
        MetadataDirective="REPLACE",
        Metadata={"v": "new"},
    )
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Metadata"] == {"v": "new"}
    assert got["Body"].read() == b"same bytes"
    assert (bucket_dir / "self").stat().st_ino == inode


def test_copy_onto_itself_without_replace_is_invalid_request(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="self", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"})
    assert exc.value.response["Error"]["Code"] == "InvalidRequest"


def test_copy_source_conditions(s3, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="src", Body=b"x")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceIfMatch='"00000000000000000000000000000000"',
        )
    assert exc.value.response["Error"]["Code"] == "PreconditionFailed"
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}, CopySourceIfMatch=etag)
    assert list_keys(s3, bucket) == ["dst", "src"]


def test_object_tagging_round_trip(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="team=ml&stage=raw")
    tags = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("stage", "raw"), ("team", "ml")]
    assert s3.get_object(Bucket=bucket, Key="t")["TagCount"] == 2

    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "k", "Value": "v"}]

    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []


def test_presigned_put_then_presigned_get(s3, bucket: str) -> None:
    params = {"Bucket": bucket, "Key": "p/q.bin"}
    put_url = s3.generate_presigned_url("put_object", Params=params, ExpiresIn=300)
    data = random_bytes(5000)
    with urllib.request.urlopen(urllib.request.Request(put_url, data=data, method="PUT"), timeout=30) as resp:
        assert resp.status == 200
    get_url = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=300)
    with urllib.request.urlopen(get_url, timeout=30) as resp:
        assert resp.read() == data


def _complete(s3, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]):
    return s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
    )


def test_upload_part_copy_with_range(s3, bucket: str) -> None:
    source = random_bytes(6 * MiB)
    s3.put_object(Bucket=bucket, Key="source", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    first = s3.upload_part_copy(
        Bucket=bucket,
        Key="assembled",
        UploadId=upload_id,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "source"},
        CopySourceRange=f"bytes=0-{5 * MiB - 1}",
    )["CopyPartResult"]["ETag"]
    second = s3.upload_part(Bucket=bucket, Key="assembled", UploadId=upload_id, PartNumber=2, Body=b"tail")["ETag"]
    _complete(s3, bucket, "assembled", upload_id, [(1, first), (2, second)])
    assert s3.get_object(Bucket=bucket, Key="assembled")["Body"].read() == source[: 5 * MiB] + b"tail"


def test_multipart_rules_are_enforced(s3, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="rules")["UploadId"]
    small = [
        s3.upload_part(Bucket=bucket, Key="rules", UploadId=upload_id, PartNumber=n, Body=b"tiny")["ETag"]
        for n in (1, 2)
    ]

    def code_of(parts: list[tuple[int, str]]) -> str:
        with pytest.raises(ClientError) as exc:
            _complete(s3, bucket, "rules", upload_id, parts)
        return exc.value.response["Error"]["Code"]

    assert code_of([(1, small[0]), (2, small[1])]) == "EntityTooSmall"
    assert code_of([(2, small[1]), (1, small[0])]) == "InvalidPartOrder"
    assert code_of([(1, small[0]), (3, small[1])]) == "InvalidPart"
    assert code_of([(1, '"00000000000000000000000000000000"')]) == "InvalidPart"

    s3.abort_multipart_upload(Bucket=bucket, Key="rules", UploadId=upload_id)
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="rules", UploadId=upload_id)
    assert exc.value.response["Error"]["Code"] == "NoSuchUpload"
    assert list_keys(s3, bucket) == []


def test_complete_is_idempotent_for_a_retried_request(s3, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="retry")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="retry", UploadId=upload_id, PartNumber=1, Body=b"only")["ETag"]
    first = _complete(s3, bucket, "retry", upload_id, [(1, etag)])
    again = _complete(s3, bucket, "retry", upload_id, [(1, etag)])
    assert first["ETag"] == again["ETag"]
    assert s3.get_object(Bucket=bucket, Key="retry")["Body"].read() == b"only"
