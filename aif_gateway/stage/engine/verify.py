"""How a staged file is checked, and against what.

Every staged file gets an xxh3-64 (the manifest's): computed from the very bytes written, as
they pass through the stager on their way from the source, or by re-reading the file once all
its ranges landed (``fscopy.reread``: files split into ranges that were not all copied in order
by one worker in this run). It is then compared with
whatever the source says the content is:
- an expected digest from a ``@manifest`` line (xxh3, sha256 or md5);
- an S3 object's ETag when that is a plain MD5 (single-part upload, no SSE-KMS/SSE-C);
- for range-split S3 objects, a full-object ``x-amz-checksum-*`` from HEAD (ChecksumMode);
- for filesystem sources, the xxh3 of each range as it was read from the source (re-read
  files) and the source's size and mtime before and after reading (a file that changed while
  it was copied fails).
S3 reads also carry ``If-Match: <listed ETag>``, so a changed object fails instead of mixing
versions, and each body must have exactly the requested length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import xxhash

from ...fsio import engine
from ..errors import StageError
from ..sources import Entry

__all__ = ["ContentHasher", "Expectation", "XXH3", "algorithms_for", "check", "expectations", "method"]

# The manifest's algorithm, under the name ``digests`` gives it.
XXH3 = "XXH3_64"
_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
_S3_CHECKSUMS = ("CRC64NVME", "CRC32C", "CRC32", "SHA256", "SHA1")


class ContentHasher:
    """xxh3-64 always (python-xxhash, which releases the GIL), plus other algorithms only when a
    comparison needs them: the engine's Hasher always adds MD5, ten times slower than xxh3."""

    def __init__(self, algorithms: Iterable[str] = ()) -> None:
        extra = {name for name in algorithms if name != XXH3}
        self._xxh3 = xxhash.xxh3_64()
        self._other = engine.Hasher(sorted(extra)) if extra else None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._xxh3.update(data)
        if self._other is not None:
            self._other.update(data)

    def digests(self) -> dict[str, bytes]:
        """Algorithm -> raw digest, ``XXH3`` included."""
        out = dict(self._other.digests()) if self._other is not None else {}
        out[XXH3] = self._xxh3.digest()
        return out

    def xxh3_hex(self) -> str:
        return self._xxh3.hexdigest()


@dataclass(frozen=True)
class Expectation:
    """A digest the content must have: one of what ``expectations`` finds."""

    algorithm: str
    digest: bytes
    origin: str  # for messages: "the manifest's sha256", "its ETag (MD5)"...


def expectations(
    entry: Entry, *, sse: str | None = None, s3_checksums: dict[str, str] | None = None
) -> list[Expectation]:
    """What ``entry``'s content must hash to. ``sse``: the object's ServerSideEncryption (an
    SSE-KMS ETag is not an MD5); ``s3_checksums``: algorithm -> x-amz-checksum value."""
    if entry.checksum is None and not entry.from_s3:
        return []  # a local file without a manifest checksum: the common case of a large tree
    found = []
    if entry.checksum is not None:
        algorithm, value = entry.checksum
        found.append(Expectation(algorithm, bytes.fromhex(value), f"the manifest's {algorithm.lower()}"))
    if entry.from_s3 and entry.etag and _PLAIN_MD5.match(entry.etag) and not (sse or "").startswith("aws:kms"):
        found.append(Expectation("MD5", bytes.fromhex(entry.etag), "its ETag (MD5)"))
    if s3_checksums:
        # Imported here: aif_gateway.checksums loads awscrt, which a stage without S3 checksums
        # (every stage from files) never needs.
        from ...checksums import decode_checksum
    for algorithm in _S3_CHECKSUMS:
        encoded = (s3_checksums or {}).get(algorithm)
        raw = decode_checksum(algorithm, encoded) if encoded and "-" not in encoded else None
        if raw is not None:
            found.append(Expectation(algorithm, raw, f"its x-amz-checksum-{algorithm.lower()}"))
            break  # one full-object checksum is enough
    return found


def algorithms_for(found: Iterable[Expectation]) -> set[str]:
    """What a ``ContentHasher`` must compute to check ``found``: their algorithms, and ``XXH3``."""
    return {e.algorithm for e in found} | {XXH3}


def check(found: Iterable[Expectation], digests: dict[str, bytes], entry: Entry) -> None:
    """A StageError "verify" unless ``digests`` has every digest ``found`` expects."""
    for expected in found:
        got = digests.get(expected.algorithm)
        if got != expected.digest:
            raise StageError(
                "verify",
                f"{entry.url}: the staged copy of {entry.rel_path} does not match {expected.origin} "
                f"(expected {expected.digest.hex()}, got {got.hex() if got else 'nothing'}); the copy was "
                "discarded: re-run to fetch it again",
                entry.url,
            )


def method(found: list[Expectation], entry: Entry) -> str:
    """How a file was verified, for the report: "manifest", "md5", "checksum", or without any
    of those "size+etag" (S3: the length, and If-Match on every read) or "source" (a local file:
    its size and mtime unchanged while it was copied, and for files split into ranges each
    range's bytes read back as they were written)."""
    if not found:
        return "size+etag" if entry.from_s3 else "source"
    origin = found[0].origin
    return "manifest" if "manifest" in origin else ("md5" if found[0].algorithm == "MD5" else "checksum")
