"""Body encodings and integrity checks: aws-chunked in every mode, digests, header limits.

Plain-HTTP clients send checksums in headers (botocore only streams trailers over TLS), so the
aws-chunked modes are exercised with hand-framed bodies. A refused write must leave the old
object in place and nothing new in the tree.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from botocore.exceptions import ClientError

from .gateway import Credentials, GatewayProcess
from .helpers import random_bytes, snapshot, unique_bucket_name
from .rawhttp import UNSIGNED_TRAILER, crc32_b64, put_signed_chunked, signed_request, unsigned_chunked_body

DATA = random_bytes(200_000)
CHUNK = 64 * 1024


@pytest.fixture
def victim(isolated_s3, request: pytest.FixtureRequest) -> str:
    bucket = unique_bucket_name(request)
    isolated_s3.create_bucket(Bucket=bucket)
    isolated_s3.put_object(Bucket=bucket, Key="obj", Body=b"original")
    return bucket


def _chunked_headers(decoded_length: int, trailer: str | None) -> dict[str, str]:
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(decoded_length)}
    if trailer:
        headers["x-amz-trailer"] = trailer
    return headers


def _put_unsigned_chunked(
    gw: GatewayProcess,
    creds: Credentials,
    bucket: str,
    body: bytes,
    decoded_length: int = len(DATA),
    extra: dict[str, str] | None = None,
):
    headers = {**_chunked_headers(decoded_length, "x-amz-checksum-crc32"), **(extra or {})}
    return signed_request(
        gw.port, creds, "PUT", f"/{bucket}/obj", headers=headers, body=body, content_sha256=UNSIGNED_TRAILER
    )


def _put_signed_chunked(
    gw: GatewayProcess, creds: Credentials, bucket: str, data: bytes, trailer: dict[str, str] | None, tamper=None
):
    return put_signed_chunked(gw.port, creds, f"/{bucket}/obj", data, CHUNK, trailer, tamper)


def _assert_unchanged(isolated_s3, bucket: str) -> None:
    assert isolated_s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"original"


# -- well-formed streaming uploads ----------------------------------------------------------


def test_unsigned_trailer_upload_stores_exactly_the_decoded_bytes(
    isolated_gateway, credentials, isolated_s3, victim: str
) -> None:
    body = unsigned_chunked_body(DATA, CHUNK, {"x-amz-checksum-crc32": crc32_b64(DATA)})
    resp = _put_unsigned_chunked(isolated_gateway, credentials, victim, body)
    assert resp.status == 200, resp.body
    assert isolated_s3.get_object(Bucket=victim, Key="obj")["Body"].read() == DATA
    head = isolated_s3.head_object(Bucket=victim, Key="obj", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc32_b64(DATA)


def test_signed_streaming_upload_stores_exactly_the_decoded_bytes(
    isolated_gateway, credentials, isolated_s3, victim: str
) -> None:
    resp = _put_signed_chunked(isolated_gateway, credentials, victim, DATA, None)
    assert resp.status == 200, resp.body
    assert isolated_s3.get_object(Bucket=victim, Key="obj")["Body"].read() == DATA


def test_signed_streaming_upload_with_trailer_stores_exactly_the_decoded_bytes(
    isolated_gateway, credentials, isolated_s3, victim: str
) -> None:
    resp = _put_signed_chunked(isolated_gateway, credentials, victim, DATA, {"x-amz-checksum-crc32": crc32_b64(DATA)})
    assert resp.status == 200, resp.body
    assert isolated_s3.get_object(Bucket=victim, Key="obj")["Body"].read() == DATA


# -- refused streaming uploads --------------------------------------------------------------


def _flip_last_chunk_signature_digit(body: bytes) -> bytes:
    marker = body.rindex(b"chunk-signature=") + len(b"chunk-signature=")
    flipped = b"0" if body[marker : marker + 1] != b"0" else b"1"
    return body[:marker] + flipped + body[marker + 1 :]


def test_bad_chunk_signature_is_refused(isolated_gateway, credentials, isolated_s3, victim: str) -> None:
    before = snapshot(isolated_gateway.root)
    resp = _put_signed_chunked(
        isolated_gateway, credentials, victim, DATA, None, tamper=_flip_last_chunk_signature_digit
    )
    assert resp.status == 403, resp.body
    assert resp.error()["Code"] == "SignatureDoesNotMatch"
    _assert_unchanged(isolated_s3, victim)
    assert snapshot(isolated_gateway.root) == before


def _drop_crlf_after_first_chunk(good: bytes) -> bytes:
    data_start = good.index(b"\r\n") + 2
    return good[: data_start + CHUNK] + good[data_start + CHUNK + 2 :]


BAD_FRAMINGS = {
    "size larger than data": lambda good: good.replace(f"{CHUNK:x}\r\n".encode(), f"{CHUNK + 5:x}\r\n".encode(), 1),
    "non-hex size": lambda good: b"zz" + good[good.index(b"\r\n") :],
    "missing CRLF after data": _drop_crlf_after_first_chunk,
    "no final chunk": lambda good: good[: good.rindex(b"\r\n0\r\n") + 2],
    "truncated": lambda good: good[: len(good) // 2],
}


@pytest.mark.parametrize("damage", BAD_FRAMINGS.values(), ids=BAD_FRAMINGS.keys())
def test_bad_aws_chunked_framing_is_refused(isolated_gateway, credentials, isolated_s3, victim: str, damage) -> None:
    before = snapshot(isolated_gateway.root)
    good = unsigned_chunked_body(DATA, CHUNK, {"x-amz-checksum-crc32": crc32_b64(DATA)})
    resp = _put_unsigned_chunked(isolated_gateway, credentials, victim, damage(good))
    assert resp.status == 400, resp.body
    assert resp.error()["Code"] in {"IncompleteBody", "InvalidRequest", "InvalidArgument", "BadDigest"}
    _assert_unchanged(isolated_s3, victim)
    assert snapshot(isolated_gateway.root) == before


def test_decoded_length_mismatch_is_refused(isolated_gateway, credentials, isolated_s3, victim: str) -> None:
    body = unsigned_chunked_body(DATA, CHUNK, {"x-amz-checksum-crc32": crc32_b64(DATA)})
    resp = _put_unsigned_chunked(isolated_gateway, credentials, victim, body, decoded_length=len(DATA) + 1)
    assert resp.status == 400, resp.body
    assert resp.error()["Code"] in {"IncompleteBody", "InvalidRequest", "InvalidArgument"}
    _assert_unchanged(isolated_s3, victim)


def test_wrong_trailer_checksum_is_bad_digest(isolated_gateway, credentials, isolated_s3, victim: str) -> None:
    before = snapshot(isolated_gateway.root)
    body = unsigned_chunked_body(DATA, CHUNK, {"x-amz-checksum-crc32": crc32_b64(b"other")})
    resp = _put_unsigned_chunked(isolated_gateway, credentials, victim, body)
    assert resp.status == 400, resp.body
    assert resp.error()["Code"] in {"BadDigest", "InvalidRequest"}
    _assert_unchanged(isolated_s3, victim)
    assert snapshot(isolated_gateway.root) == before


def test_trailer_and_checksum_header_together_are_invalid(
    isolated_gateway, credentials, isolated_s3, victim: str
) -> None:
    body = unsigned_chunked_body(DATA, CHUNK, {"x-amz-checksum-crc32": crc32_b64(DATA)})
    resp = _put_unsigned_chunked(
        isolated_gateway, credentials, victim, body, extra={"x-amz-checksum-crc32": crc32_b64(DATA)}
    )
    assert resp.status == 400, resp.body
    assert resp.error()["Code"] in {"InvalidRequest", "InvalidArgument"}
    _assert_unchanged(isolated_s3, victim)


# -- digests in headers ---------------------------------------------------------------------


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


@pytest.mark.parametrize(
    ("header", "value", "code"),
    [
        ("Content-MD5", _b64(hashlib.md5(b"other").digest()), "BadDigest"),
        ("Content-MD5", "not-base64-md5", "InvalidDigest"),
        ("x-amz-checksum-crc32", crc32_b64(b"other"), "BadDigest"),
        ("x-amz-checksum-sha256", _b64(hashlib.sha256(b"other").digest()), "BadDigest"),
    ],
    ids=["wrong-md5", "malformed-md5", "wrong-crc32", "wrong-sha256"],
)
def test_wrong_digest_header_is_refused_and_old_object_survives(
    isolated_gateway, credentials, isolated_s3, victim: str, header: str, value: str, code: str
) -> None:
    before = snapshot(isolated_gateway.root)
    resp = signed_request(
        isolated_gateway.port, credentials, "PUT", f"/{victim}/obj", body=DATA, headers={header: value}
    )
    assert resp.status == 400, resp.body
    assert resp.error()["Code"] == code
    _assert_unchanged(isolated_s3, victim)
    assert snapshot(isolated_gateway.root) == before


def test_boto3_wrong_checksum_is_bad_digest(isolated_s3, victim: str) -> None:
    with pytest.raises(ClientError) as exc:
        isolated_s3.put_object(Bucket=victim, Key="obj", Body=DATA, ChecksumCRC32=crc32_b64(b"x"))
    assert exc.value.response["Error"]["Code"] == "BadDigest"
    _assert_unchanged(isolated_s3, victim)


# -- header limits --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16 * 1024, 64 * 1024])
def test_oversized_header_section_is_refused(
    isolated_gateway, credentials, isolated_s3, victim: str, size: int
) -> None:
    before = snapshot(isolated_gateway.root)
    resp = signed_request(
        isolated_gateway.port, credentials, "PUT", f"/{victim}/obj", body=b"evil", headers={"x-padding": "p" * size}
    )
    assert resp.status == 400, (resp.status, resp.body[:300])
    assert resp.error()["Code"] == "RequestHeaderSectionTooLarge"
    _assert_unchanged(isolated_s3, victim)
    assert snapshot(isolated_gateway.root) == before
    assert isolated_gateway.health_status() == 200


def test_user_metadata_over_2_kib_is_metadata_too_large(
    isolated_gateway, credentials, isolated_s3, victim: str
) -> None:
    resp = signed_request(
        isolated_gateway.port,
        credentials,
        "PUT",
        f"/{victim}/obj",
        body=b"evil",
        headers={"x-amz-meta-big": "m" * 3000},
    )
    assert resp.status == 400, resp.body
    assert resp.error()["Code"] == "MetadataTooLarge"
    _assert_unchanged(isolated_s3, victim)
