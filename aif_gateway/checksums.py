"""Checksums S3 knows: MD5 (ETags), CRC32, CRC32C, CRC64NVME, SHA1, SHA256.

Pure computation, shared by the protocol layer (verifying headers and trailers) and the storage
layer (hashing while writing). Digests are raw bytes; CRCs are big-endian integers of 4 or 8
bytes, because that is what S3 base64-encodes in ``x-amz-checksum-*``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable

from awscrt import checksums as crt

from .fsio.engine import Hasher

__all__ = [
    "ALGORITHMS",
    "DIGEST_SIZES",
    "MultiHasher",
    "b64",
    "composite_checksum",
    "decode_checksum",
    "digest_of",
    "full_object_crc",
    "multipart_etag",
]

ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")

DIGEST_SIZES: dict[str, int] = {"MD5": 16, "CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}

# (crc of A, crc of B, length of B) -> crc of A || B.
_CRC_COMBINE: dict[str, Callable[[int, int, int], int]] = {
    "CRC32": crt.combine_crc32,
    "CRC32C": crt.combine_crc32c,
    "CRC64NVME": crt.combine_crc64nvme,
}


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in DIGEST_SIZES:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}")


# Feeds every buffer to MD5 plus the requested algorithms in one pass: ``update(buffer)``,
# ``digests() -> {name: raw digest}``. The data-path engine's Hasher (C with the GIL released
# when the extension is built); it also knows XXH3_64, which S3 does not.
MultiHasher = Hasher


def digest_of(algorithm: str, data: bytes | memoryview) -> bytes:
    """The raw digest of one buffer."""
    hasher = MultiHasher([algorithm])
    hasher.update(data)
    return hasher.digests()[algorithm]


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def decode_checksum(algorithm: str, value: str) -> bytes | None:
    """The raw digest in an ``x-amz-checksum-*`` value, or None when it is not one.

    None covers both bad base64 and a digest of the wrong length for the algorithm, which S3
    rejects before looking at the body.
    """
    _check_algorithm(algorithm)
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == DIGEST_SIZES[algorithm] else None


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag of a multipart object (unquoted): md5 of the concatenated part MD5s, then -N."""
    return hashlib.md5(b"".join(part_md5s)).hexdigest() + f"-{len(part_md5s)}"


def composite_checksum(algorithm: str, part_digests: list[bytes]) -> str:
    """A COMPOSITE multipart checksum: the checksum of the concatenated part digests, then -N."""
    return b64(digest_of(algorithm, b"".join(part_digests))) + f"-{len(part_digests)}"


def full_object_crc(algorithm: str, parts: list[tuple[bytes, int]]) -> str:
    """A FULL_OBJECT multipart checksum from (part CRC digest, part length) pairs.

    CRCs combine arithmetically, so the whole object's CRC comes without rereading the data.
    """
    if algorithm not in _CRC_COMBINE:
        raise ValueError(f"{algorithm} cannot be combined into a full-object checksum")
    combine = _CRC_COMBINE[algorithm]
    total = 0
    for digest, length in parts:
        total = combine(total, int.from_bytes(digest, "big"), length)
    return b64(total.to_bytes(DIGEST_SIZES[algorithm], "big"))
