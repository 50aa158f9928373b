"""Object metadata between HTTP headers and the store's values.

A request's headers become the ``ObjectAttrs`` a write stores; an ``ObjectInfo`` becomes the
headers of a GET or HEAD response.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from ..errors import S3Error
from ..store.base import STORED_HEADERS, ObjectAttrs, ObjectInfo
from ..store.tags import validate_tags as check_tag_limits
from .responses import http_date

__all__ = [
    "apply_response_overrides",
    "attrs_from_headers",
    "checksum_mode_enabled",
    "object_headers",
    "parse_tagging_header",
    "validate_tags",
]

META_PREFIX = "x-amz-meta-"
MAX_USER_META_BYTES = 2048

RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def _content_encoding_without_aws_chunked(value: str) -> str | None:
    # aws-chunked describes this request's framing, not the object: S3 does not store it.
    codings = [c.strip() for c in value.split(",") if c.strip() and c.strip().lower() != "aws-chunked"]
    return ", ".join(codings) or None


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def validate_tags(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Tag pairs as a client sent them (header or Tagging XML) → a dict: unique keys, plus the
    store's tag limits (``store.tags.validate_tags``)."""
    tags: dict[str, str] = {}
    for key, value in pairs:
        if key in tags:
            raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key")
        tags[key] = value
    # Checked here too so a bad tag set fails before any body byte is received.
    check_tag_limits(tags)
    return tags


def parse_tagging_header(value: str) -> dict[str, str]:
    """The ``x-amz-tagging`` form alone: ``InvalidArgument`` when it is not URL-encoded, else
    checked by ``validate_tags``."""
    try:
        pairs = parse_qsl(value, keep_blank_values=True, strict_parsing=bool(value))
    except ValueError:
        raise S3Error(
            "InvalidArgument",
            "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query "
            "parameters without tag name duplicates.",
        ) from None
    return validate_tags(pairs)


def attrs_from_headers(headers: Mapping[str, str]) -> ObjectAttrs:
    """Content-Type, the stored standard headers (Cache-Control, Content-Disposition,
    Content-Encoding without ``aws-chunked``, Content-Language, Expires), ``x-amz-meta-*`` (names
    lower-cased; more than 2 KiB in all is ``MetadataTooLarge``) and ``x-amz-tagging``
    (URL-encoded; ``InvalidTag`` when bad)."""
    stored: dict[str, str] = {}
    for name in STORED_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        if name == "Content-Encoding":
            value = _content_encoding_without_aws_chunked(value)
            if value is None:
                continue
        stored[name] = value
    user_meta: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if not lower.startswith(META_PREFIX):
            continue
        meta_name = lower[len(META_PREFIX) :]
        # A repeated x-amz-meta header is joined, as HTTP folds repeated fields.
        user_meta[meta_name] = f"{user_meta[meta_name]},{value}" if meta_name in user_meta else value
    meta_bytes = sum(_utf8_size(name) + _utf8_size(value) for name, value in user_meta.items())
    if meta_bytes > MAX_USER_META_BYTES:
        raise S3Error("MetadataTooLarge", extra={"Size": str(meta_bytes), "MaxSizeAllowed": str(MAX_USER_META_BYTES)})
    tagging = headers.get("x-amz-tagging")
    return ObjectAttrs(
        content_type=headers.get("Content-Type"),
        headers=stored,
        user_meta=user_meta,
        tags=parse_tagging_header(tagging) if tagging is not None else None,
    )


def checksum_mode_enabled(headers: Mapping[str, str]) -> bool:
    """Whether the request sent ``x-amz-checksum-mode: ENABLED``."""
    return headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"


def object_headers(
    info: ObjectInfo, *, checksum_mode: bool = False, partial: bool = False, parts_count: int | None = None
) -> dict[str, str]:
    """The response headers of GET/HEAD.

    Quoted ETag, Last-Modified, Content-Length (the whole object: adjust for ranges),
    Content-Type, stored headers, ``x-amz-meta-*``, ``x-amz-tagging-count``, ``Accept-Ranges``,
    ``x-amz-mp-parts-count`` when ``parts_count`` is given, and with ``checksum_mode`` the stored
    ``x-amz-checksum-*`` plus ``x-amz-checksum-type``, except when ``partial`` (a range or a part):
    a whole-object checksum on a slice makes SDKs fail their validation.
    """
    out = {
        "ETag": f'"{info.etag}"',
        "Last-Modified": http_date(info.mtime_ns),
        "Content-Length": str(info.size),
        "Content-Type": info.content_type,
        "Accept-Ranges": "bytes",
    }
    out.update(info.headers)
    for name, value in info.user_meta.items():
        out[META_PREFIX + name] = value
    if info.tag_count:
        out["x-amz-tagging-count"] = str(info.tag_count)
    if parts_count is not None:
        out["x-amz-mp-parts-count"] = str(parts_count)
    if checksum_mode and not partial and info.checksums:
        for algorithm, value in info.checksums.items():
            out[f"x-amz-checksum-{algorithm.lower()}"] = value
        out["x-amz-checksum-type"] = info.checksum_type or "FULL_OBJECT"
    return out


def apply_response_overrides(headers: dict[str, str], query: Mapping[str, str]) -> None:
    """``response-content-type`` and friends from the query replace the matching headers, in
    place."""
    for param, header in RESPONSE_OVERRIDES.items():
        value = query.get(param)
        if value is not None:
            headers[header] = value
