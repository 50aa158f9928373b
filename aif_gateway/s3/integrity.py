"""What a client declares about a body's integrity, and the one verdict on the bytes received.

A write carries up to three declarations, read from its headers before the body
(``declared_checksums``) and compared, all in ``check_digests``, with the digests the store
computed while writing, after the last byte and before anything is published:
- Content-MD5: ``InvalidDigest`` up front when it is not base64 of 16 bytes, ``BadDigest`` on
  mismatch;
- the hex ``x-amz-content-sha256`` of a signed payload: ``XAmzContentSHA256Mismatch``;
- one ``x-amz-checksum-<algorithm>`` value, from a header or from the aws-chunked trailer:
  ``BadDigest``. Two checksum headers, a header and a trailer, or a malformed value are
  ``InvalidRequest`` up front; a trailer declared but not sent, or not decodable, at the end.
The checksum the client names (also by ``x-amz-sdk-checksum-algorithm`` alone) is the
object's (``hash_algorithms``); the signed payload's SHA-256 is computed to check the transfer
only (``verify_algorithms``), so an object does not carry a checksum its client never asked for.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from ..checksums import ALGORITHMS, decode_checksum
from ..errors import S3Error
from ..store.base import Digests

__all__ = [
    "CHECKSUM_PREFIX",
    "DeclaredChecksums",
    "check_digests",
    "checksum_header",
    "declared_checksums",
    "has_integrity_header",
    "trailer_names",
]

CHECKSUM_PREFIX = "x-amz-checksum-"


@dataclass(frozen=True)
class DeclaredChecksums:
    """What the client declared; compared with the digests by ``check_digests``."""

    content_md5: bytes | None = None  # Content-MD5, decoded
    content_sha256: str | None = None  # hex SHA-256 of a signed payload
    algorithm: str | None = None  # the checksum the client asked for (upper-case)
    checksum: bytes | None = None  # its value from the x-amz-checksum-<algorithm> header, decoded
    trailer: str | None = None  # the lower-case trailer that will carry the value instead

    @property
    def hash_algorithms(self) -> frozenset[str]:
        """The object's checksums: computed, verified and stored."""
        return frozenset([self.algorithm] if self.algorithm is not None else [])

    @property
    def verify_algorithms(self) -> frozenset[str]:
        """Computed to check the transfer only, never stored."""
        return frozenset(["SHA256"] if self.content_sha256 is not None else []) - self.hash_algorithms


def checksum_header(algorithm: str) -> str:
    """``CRC32`` -> ``x-amz-checksum-crc32``."""
    return CHECKSUM_PREFIX + algorithm.lower()


def _algorithm_of(name: str) -> str | None:
    """``x-amz-checksum-crc32`` -> ``CRC32``; None for anything else (``-mode``, ``-type``...)."""
    if not name.lower().startswith(CHECKSUM_PREFIX):
        return None
    algorithm = name[len(CHECKSUM_PREFIX) :].upper()
    return algorithm if algorithm in ALGORITHMS else None


def trailer_names(headers: Mapping[str, str]) -> list[str]:
    """The lower-case names promised in ``x-amz-trailer``."""
    value = headers.get("x-amz-trailer", "")
    return [name.strip().lower() for name in value.split(",") if name.strip()]


def has_integrity_header(headers: Mapping[str, str]) -> bool:
    """Content-MD5 or an ``x-amz-checksum-*`` header or trailer is present (DeleteObjects
    requires one)."""
    return (
        "Content-MD5" in headers
        or any(_algorithm_of(name) for name in headers)
        or any(_algorithm_of(name) for name in trailer_names(headers))
    )


def declared_checksums(
    headers: Mapping[str, str], *, streaming: bool, content_sha256: str | None, checksum_headers: bool = True
) -> DeclaredChecksums:
    """The declarations of a request's headers; S3Error for contradictory or malformed ones.

    ``streaming``: the body is aws-chunked (only then may it have trailers). ``content_sha256``:
    the hex SHA-256 a signed payload promised. ``checksum_headers=False`` leaves the
    ``x-amz-checksum-*`` headers out: CompleteMultipartUpload's describe the object it builds,
    not the part list."""
    in_headers = [a for a in ALGORITHMS if checksum_header(a) in headers] if checksum_headers else []
    trailers = trailer_names(headers)
    algorithm: str | None = None
    checksum: bytes | None = None
    trailer: str | None = None
    if len(in_headers) > 1:
        raise S3Error(
            "InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    if trailers:
        if not streaming:
            raise S3Error("InvalidRequest", "x-amz-trailer requires an aws-chunked (STREAMING-*) payload.")
        if len(trailers) > 1 or _algorithm_of(trailers[0]) is None:
            raise S3Error("InvalidRequest", "The value specified in the x-amz-trailer header is not supported")
        if in_headers:
            raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header")
        algorithm, trailer = _algorithm_of(trailers[0]), trailers[0]
    elif in_headers:
        algorithm = in_headers[0]
        checksum = decode_checksum(algorithm, headers[checksum_header(algorithm)])
        if checksum is None:
            raise S3Error("InvalidRequest", f"Value for {checksum_header(algorithm)} header is invalid.")
    sdk_algorithm = headers.get("x-amz-sdk-checksum-algorithm")
    if sdk_algorithm is not None:
        sdk_algorithm = sdk_algorithm.strip().upper()
        if sdk_algorithm not in ALGORITHMS or algorithm not in (None, sdk_algorithm):
            raise S3Error("InvalidRequest", "Value for x-amz-sdk-checksum-algorithm header is invalid.")
        # Named without a value: compute it so the response can echo it.
        algorithm = sdk_algorithm
    return DeclaredChecksums(_content_md5(headers), content_sha256, algorithm, checksum, trailer)


def _content_md5(headers: Mapping[str, str]) -> bytes | None:
    value = headers.get("Content-MD5")
    if value is None:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise S3Error("InvalidDigest")
    return raw


def check_digests(declared: DeclaredChecksums, digests: Digests, trailers: Mapping[str, str]) -> None:
    """The verdict: returns when the received bytes (``digests``, keyed ``MD5``, ``SHA256``,
    ``CRC32``...) match every declaration, else raises the S3Error the client is answered with.
    ``trailers`` are those the aws-chunked body ended with (empty for any other body)."""
    if declared.content_md5 is not None and digests["MD5"] != declared.content_md5:
        raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")
    if declared.content_sha256 is not None and digests["SHA256"].hex() != declared.content_sha256:
        raise S3Error(
            "XAmzContentSHA256Mismatch",
            extra={
                "ClientComputedContentSHA256": declared.content_sha256,
                "S3ComputedContentSHA256": digests["SHA256"].hex(),
            },
        )
    algorithm = declared.algorithm
    expected = declared.checksum if declared.trailer is None else _trailer_checksum(declared, trailers)
    if expected is not None and algorithm is not None and digests[algorithm] != expected:
        raise S3Error(
            "BadDigest", f"The {checksum_header(algorithm)} you specified did not match the calculated checksum."
        )


def _trailer_checksum(declared: DeclaredChecksums, trailers: Mapping[str, str]) -> bytes:
    assert declared.trailer is not None and declared.algorithm is not None
    value = trailers.get(declared.trailer)
    if value is None:
        raise S3Error("InvalidRequest", f"The {declared.trailer} trailer was declared but not sent.")
    raw = decode_checksum(declared.algorithm, value)
    if raw is None:
        raise S3Error("InvalidRequest", f"Value for {declared.trailer} trailing header is invalid.")
    return raw
