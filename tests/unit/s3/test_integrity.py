"""The one verdict on a body's digests, and the declarations it is checked against."""

from __future__ import annotations

import base64
import hashlib

import pytest

from aif_gateway.checksums import ALGORITHMS, b64, digest_of
from aif_gateway.errors import S3Error
from aif_gateway.s3.integrity import (
    DeclaredChecksums,
    check_digests,
    checksum_header,
    declared_checksums,
    has_integrity_header,
)

DATA = b"integrity " * 1000
OTHER = b"something else"


def digests(data: bytes = DATA) -> dict[str, bytes]:
    """What the store computes while writing: MD5 always, and every checksum algorithm."""
    return {"MD5": hashlib.md5(data).digest(), **{a: digest_of(a, data) for a in ALGORITHMS}}


def verdict(declared: DeclaredChecksums, trailers: dict[str, str] | None = None) -> S3Error | None:
    try:
        check_digests(declared, digests(), trailers or {})
    except S3Error as err:
        return err
    return None


def test_nothing_declared_passes() -> None:
    assert verdict(DeclaredChecksums()) is None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_checksum_header_of_every_algorithm_is_compared(algorithm: str) -> None:
    assert verdict(DeclaredChecksums(algorithm=algorithm, checksum=digest_of(algorithm, DATA))) is None
    err = verdict(DeclaredChecksums(algorithm=algorithm, checksum=digest_of(algorithm, OTHER)))
    assert err is not None
    assert (err.code, err.status) == ("BadDigest", 400)
    assert err.message == f"The {checksum_header(algorithm)} you specified did not match the calculated checksum."


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_trailer_of_every_algorithm_is_compared(algorithm: str) -> None:
    trailer = checksum_header(algorithm)
    declared = DeclaredChecksums(algorithm=algorithm, trailer=trailer)
    assert verdict(declared, {trailer: b64(digest_of(algorithm, DATA))}) is None
    err = verdict(declared, {trailer: b64(digest_of(algorithm, OTHER))})
    assert err is not None and err.code == "BadDigest"


def test_an_algorithm_named_without_a_value_is_not_compared() -> None:
    assert verdict(DeclaredChecksums(algorithm="CRC32")) is None


def test_a_trailer_declared_but_not_sent_or_malformed_is_invalid() -> None:
    declared = DeclaredChecksums(algorithm="CRC32", trailer="x-amz-checksum-crc32")
    missing = verdict(declared)
    assert missing is not None
    assert (missing.code, missing.message) == (
        "InvalidRequest",
        "The x-amz-checksum-crc32 trailer was declared but not sent.",
    )
    malformed = verdict(declared, {"x-amz-checksum-crc32": "not base64"})
    assert malformed is not None
    assert (malformed.code, malformed.message) == (
        "InvalidRequest",
        "Value for x-amz-checksum-crc32 trailing header is invalid.",
    )


def test_content_md5_mismatch_is_bad_digest() -> None:
    assert verdict(DeclaredChecksums(content_md5=hashlib.md5(DATA).digest())) is None
    err = verdict(DeclaredChecksums(content_md5=hashlib.md5(OTHER).digest()))
    assert err is not None
    assert (err.code, err.message) == ("BadDigest", "The Content-MD5 you specified did not match what we received.")


def test_signed_payload_mismatch_names_both_hashes() -> None:
    assert verdict(DeclaredChecksums(content_sha256=hashlib.sha256(DATA).hexdigest())) is None
    claimed = hashlib.sha256(OTHER).hexdigest()
    err = verdict(DeclaredChecksums(content_sha256=claimed))
    assert err is not None
    assert err.code == "XAmzContentSHA256Mismatch"
    assert err.extra == {
        "ClientComputedContentSHA256": claimed,
        "S3ComputedContentSHA256": hashlib.sha256(DATA).hexdigest(),
    }


def test_content_md5_is_judged_before_the_checksum_and_its_trailer() -> None:
    declared = DeclaredChecksums(
        content_md5=hashlib.md5(OTHER).digest(),
        content_sha256=hashlib.sha256(OTHER).hexdigest(),
        algorithm="CRC32",
        trailer="x-amz-checksum-crc32",
    )
    err = verdict(declared)
    assert err is not None and err.message.startswith("The Content-MD5")


# -- declarations ----------------------------------------------------------------------------
def declare(
    headers: dict[str, str], streaming: bool = False, content_sha256: str | None = None, checksum_headers: bool = True
) -> DeclaredChecksums:
    return declared_checksums(
        headers, streaming=streaming, content_sha256=content_sha256, checksum_headers=checksum_headers
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_checksum_header_is_the_objects_checksum(algorithm: str) -> None:
    value = digest_of(algorithm, DATA)
    declared = declare({checksum_header(algorithm): b64(value)})
    assert (declared.algorithm, declared.checksum, declared.trailer) == (algorithm, value, None)
    assert declared.hash_algorithms == frozenset({algorithm})
    assert declared.verify_algorithms == frozenset()


def test_the_signed_payload_hash_is_verified_but_not_kept() -> None:
    declared = declare({}, content_sha256="ab" * 32)
    assert declared.hash_algorithms == frozenset()
    assert declared.verify_algorithms == frozenset({"SHA256"})
    with_sha256 = declare({"x-amz-checksum-sha256": b64(digest_of("SHA256", DATA))}, content_sha256="ab" * 32)
    assert with_sha256.verify_algorithms == frozenset()


def test_a_trailer_names_the_algorithm_and_waits_for_the_value() -> None:
    declared = declare({"x-amz-trailer": "X-Amz-Checksum-CRC32C"}, streaming=True)
    assert (declared.algorithm, declared.checksum, declared.trailer) == ("CRC32C", None, "x-amz-checksum-crc32c")


def test_checksum_headers_can_be_left_out() -> None:
    assert declare({"x-amz-checksum-crc32": "not even base64"}, checksum_headers=False) == DeclaredChecksums()


@pytest.mark.parametrize(
    ("headers", "streaming", "message"),
    [
        (
            {"x-amz-checksum-crc32": b64(b"\0" * 4), "x-amz-checksum-sha1": b64(b"\0" * 20)},
            False,
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        ),
        ({"x-amz-checksum-crc32": "not-base64"}, False, "Value for x-amz-checksum-crc32 header is invalid."),
        (
            {"x-amz-trailer": "x-amz-checksum-crc32"},
            False,
            "x-amz-trailer requires an aws-chunked (STREAMING-*) payload.",
        ),
        (
            {"x-amz-trailer": "x-amz-checksum-md5"},
            True,
            "The value specified in the x-amz-trailer header is not supported",
        ),
        (
            {"x-amz-trailer": "x-amz-checksum-crc32", "x-amz-checksum-crc32": b64(b"\0" * 4)},
            True,
            "Expecting a single x-amz-checksum- header",
        ),
        (
            {"x-amz-checksum-crc32": b64(b"\0" * 4), "x-amz-sdk-checksum-algorithm": "SHA256"},
            False,
            "Value for x-amz-sdk-checksum-algorithm header is invalid.",
        ),
    ],
)
def test_contradictory_or_malformed_declarations_are_invalid_requests(headers, streaming, message) -> None:
    with pytest.raises(S3Error) as info:
        declare(headers, streaming=streaming)
    assert (info.value.code, info.value.message) == ("InvalidRequest", message)


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_malformed_content_md5_is_invalid_digest(value: str) -> None:
    with pytest.raises(S3Error) as info:
        declare({"Content-MD5": value})
    assert info.value.code == "InvalidDigest"


def test_integrity_headers() -> None:
    assert has_integrity_header({"Content-MD5": "x"})
    assert has_integrity_header({"x-amz-checksum-crc32c": "x"})
    assert has_integrity_header({"x-amz-trailer": "x-amz-checksum-crc64nvme"})
    assert not has_integrity_header({"x-amz-checksum-mode": "ENABLED", "Content-Length": "3"})
