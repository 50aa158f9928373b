import asyncio
import base64
import hashlib
import zlib

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import MultiDict, MultiDictProxy

from aif_gateway.checksums import MultiHasher, b64
from aif_gateway.errors import S3Error
from aif_gateway.identity import Identity
from aif_gateway.s3.body import UploadBody, read_body_bytes, write_body
from aif_gateway.s3.context import S3Request
from aif_gateway.s3.sigv4 import AuthContext

DATA = b"hello, aws-chunked world\n" * 100
CRC32_B64 = base64.b64encode(zlib.crc32(DATA).to_bytes(4, "big")).decode()
MD5_B64 = base64.b64encode(hashlib.md5(DATA).digest()).decode()
WRONG_CRC32_B64 = base64.b64encode(b"\0\0\0\0").decode()


def make_request(headers, body, payload="UNSIGNED-PAYLOAD", content_sha256=None, method="PUT"):
    """A real aiohttp request whose body is an asyncio stream holding ``body``."""

    async def build():
        reader = asyncio.StreamReader()
        reader.feed_data(body)
        reader.feed_eof()
        http = make_mocked_request(method, "/b/k", headers=headers, payload=reader)
        auth = AuthContext(
            identity=Identity(name="alice", access_key="AK"),
            payload=payload,
            content_sha256=content_sha256,
            signing_key=b"",
            amz_date="20250101T000000Z",
            scope="20250101/us-east-1/s3/aws4_request",
            seed_signature="",
        )
        return S3Request(http, "b", "k", MultiDictProxy(MultiDict()), auth, store=None, request_id="R")

    return build()


def store_like(upload: UploadBody):
    """What a store does with the body: read it all, hash it, verify before publishing; then
    (received bytes, the checksums it keeps: base64 by algorithm)."""

    async def consume():
        hasher = MultiHasher(upload.options.computed_algorithms)
        received = b""
        async for chunk in upload.stream:
            hasher.update(chunk)
            received += chunk
        digests = hasher.digests()
        upload.options.verify(digests)
        return received, {name: b64(digests[name]) for name in upload.options.hash_algorithms}

    return consume()


def put(headers, body, **auth):
    """(upload, received bytes, checksums the store kept)."""

    async def go():
        upload = write_body(await make_request(headers, body, **auth), max_size=5 << 30)
        return (upload, *await store_like(upload))

    return asyncio.run(go())


def error_of(headers, body, **auth):
    with pytest.raises(S3Error) as info:
        put(headers, body, **auth)
    return info.value


def aws_chunked(data, trailers=""):
    return f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n" + trailers.encode() + b"\r\n"


def test_plain_body_with_length():
    upload, received, kept = put({"Content-Length": str(len(DATA))}, DATA)
    assert received == DATA
    assert upload.options.expected_size == len(DATA)
    assert upload.response_headers(kept) == {}


def test_plain_put_without_content_length_is_411():
    err = error_of({}, DATA)
    assert (err.code, err.status) == ("MissingContentLength", 411)


def test_content_md5_is_verified():
    put({"Content-Length": str(len(DATA)), "Content-MD5": MD5_B64}, DATA)
    err = error_of({"Content-Length": "2", "Content-MD5": MD5_B64}, b"no")
    assert err.code == "BadDigest"


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_malformed_content_md5_is_invalid_digest(value):
    assert error_of({"Content-Length": "2", "Content-MD5": value}, b"no").code == "InvalidDigest"


def test_signed_payload_sha256_is_verified():
    good = hashlib.sha256(DATA).hexdigest()
    put({"Content-Length": str(len(DATA))}, DATA, payload="SHA256", content_sha256=good)
    err = error_of({"Content-Length": "2"}, b"no", payload="SHA256", content_sha256=good)
    assert err.code == "XAmzContentSHA256Mismatch"
    assert err.extra["ClientComputedContentSHA256"] == good


def test_signed_payload_sha256_is_verified_but_not_a_stored_checksum():
    good = hashlib.sha256(DATA).hexdigest()
    upload, _, kept = put({"Content-Length": str(len(DATA))}, DATA, payload="SHA256", content_sha256=good)
    assert upload.options.hash_algorithms == frozenset()
    assert upload.options.verify_algorithms == frozenset({"SHA256"})
    assert upload.response_headers(kept) == {}


def test_a_sha256_checksum_header_with_a_signed_payload_is_stored():
    good = hashlib.sha256(DATA).hexdigest()
    sha256_b64 = base64.b64encode(hashlib.sha256(DATA).digest()).decode()
    headers = {"Content-Length": str(len(DATA)), "x-amz-checksum-sha256": sha256_b64}
    upload, _, kept = put(headers, DATA, payload="SHA256", content_sha256=good)
    assert upload.options.hash_algorithms == frozenset({"SHA256"})
    assert upload.options.verify_algorithms == frozenset()
    assert upload.response_headers(kept) == {"x-amz-checksum-sha256": sha256_b64}


def test_checksum_header_is_verified_and_echoed():
    headers = {"Content-Length": str(len(DATA)), "x-amz-checksum-crc32": CRC32_B64}
    upload, _, kept = put(headers, DATA)
    assert upload.options.hash_algorithms == frozenset({"CRC32"})
    assert upload.response_headers(kept) == {"x-amz-checksum-crc32": CRC32_B64}
    assert upload.response_headers(kept, checksum_type="FULL_OBJECT") == {
        "x-amz-checksum-crc32": CRC32_B64,
        "x-amz-checksum-type": "FULL_OBJECT",
    }
    err = error_of({**headers, "x-amz-checksum-crc32": WRONG_CRC32_B64}, DATA)
    assert err.code == "BadDigest"
    assert err.message == "The x-amz-checksum-crc32 you specified did not match the calculated checksum."


def test_sdk_algorithm_alone_is_computed_and_echoed():
    upload, _, kept = put({"Content-Length": str(len(DATA)), "x-amz-sdk-checksum-algorithm": "crc32"}, DATA)
    assert upload.response_headers(kept)["x-amz-checksum-crc32"] == CRC32_B64


@pytest.mark.parametrize(
    "headers",
    [
        {"x-amz-checksum-crc32": CRC32_B64, "x-amz-checksum-sha1": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="},
        {"x-amz-checksum-crc32": "not-base64"},
        {"x-amz-checksum-crc32": CRC32_B64, "x-amz-sdk-checksum-algorithm": "SHA256"},
        {"x-amz-sdk-checksum-algorithm": "MD4"},
        {"x-amz-trailer": "x-amz-checksum-crc32"},
    ],
)
def test_contradictory_or_malformed_checksum_headers_are_invalid_requests(headers):
    assert error_of({"Content-Length": str(len(DATA)), **headers}, DATA).code == "InvalidRequest"


STREAMING_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def chunked_headers(**extra):
    return {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(DATA)),
        "x-amz-trailer": "x-amz-checksum-crc32",
        **extra,
    }


def test_aws_chunked_with_trailer_is_decoded_verified_and_echoed():
    body = aws_chunked(DATA, f"x-amz-checksum-crc32:{CRC32_B64}\r\n")
    upload, received, kept = put(chunked_headers(), body, payload=STREAMING_TRAILER)
    assert received == DATA
    assert upload.options.expected_size == len(DATA)
    assert upload.response_headers(kept)["x-amz-checksum-crc32"] == CRC32_B64


def test_aws_chunked_trailer_mismatch_is_bad_digest():
    body = aws_chunked(DATA, f"x-amz-checksum-crc32:{WRONG_CRC32_B64}\r\n")
    assert error_of(chunked_headers(), body, payload=STREAMING_TRAILER).code == "BadDigest"


def test_trailer_and_checksum_header_together_are_invalid():
    body = aws_chunked(DATA, f"x-amz-checksum-crc32:{CRC32_B64}\r\n")
    headers = chunked_headers(**{"x-amz-checksum-crc32": CRC32_B64})
    assert error_of(headers, body, payload=STREAMING_TRAILER).code == "InvalidRequest"


def test_aws_chunked_needs_the_decoded_length():
    headers = chunked_headers()
    del headers["x-amz-decoded-content-length"]
    body = aws_chunked(DATA, f"x-amz-checksum-crc32:{CRC32_B64}\r\n")
    assert error_of(headers, body, payload=STREAMING_TRAILER).code == "MissingContentLength"


def read_small(headers, body, limit=1024, **auth):
    async def go():
        return await read_body_bytes(await make_request(headers, body, method="POST", **auth), limit=limit)

    return asyncio.run(go())


def test_small_body_is_read_and_verified():
    xml = b"<Delete><Object><Key>a</Key></Object></Delete>"
    md5 = base64.b64encode(hashlib.md5(xml).digest()).decode()
    assert read_small({"Content-Length": str(len(xml)), "Content-MD5": md5}, xml) == xml
    with pytest.raises(S3Error) as info:
        read_small({"Content-Length": str(len(xml)), "Content-MD5": MD5_B64}, xml)
    assert info.value.code == "BadDigest"


def test_small_body_over_the_limit_is_refused():
    with pytest.raises(S3Error) as info:
        read_small({"Content-Length": "2048"}, b"x" * 2048)
    assert info.value.code == "MaxMessageLengthExceeded"
    with pytest.raises(S3Error) as info:
        read_small({}, b"x" * 2048)
    assert info.value.code == "MaxMessageLengthExceeded"
