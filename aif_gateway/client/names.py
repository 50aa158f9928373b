"""How S3 names things, seen from a client: ``s3://bucket/key`` URLs, request paths, ETags.

``is_s3_url`` is the one test of whether a user's string names S3; everything that needs the
bucket and key parses it once with ``S3Url.parse``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["S3Url", "is_s3_url", "object_path", "strip_etag", "usable_key"]

_SCHEME = "s3://"


def is_s3_url(text: str) -> bool:
    return text.startswith(_SCHEME)


@dataclass(frozen=True)
class S3Url:
    bucket: str
    key: str  # an object's key or a prefix, exactly as written after the bucket

    @classmethod
    def parse(cls, text: str) -> S3Url:
        """``s3://BUCKET/KEY``; ValueError (saying what is wrong) for anything else."""
        if not is_s3_url(text):
            raise ValueError(f"not an s3:// URL: {text}")
        bucket, _, key = text[len(_SCHEME) :].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {text} (expected s3://BUCKET/PREFIX)")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"{_SCHEME}{self.bucket}/{self.key}"


def object_path(bucket: str, key: str = "") -> str:
    """The path-style request path of ``key`` in ``bucket`` (URI-encoded, slashes kept)."""
    return "/" + quote(bucket, safe="") + "/" + quote(key, safe="/~")


def usable_key(key: str) -> bool:
    """Whether ``key`` goes on the wire exactly as signed (no segment a URL library may rewrite)."""
    parts = key.split("/")
    return "" not in parts[:-1] and not any(p in (".", "..") for p in parts)


def strip_etag(value: str | None) -> str | None:
    """An ETag without its quotes."""
    return value.strip('"') if value else None
