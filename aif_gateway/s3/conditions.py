"""Conditional requests: reads (RFC 7232 order), copy sources, and writes.

A read's and a copy source's conditions are evaluated in RFC 7232 section 6 order, which is also
S3's documented behaviour: a true If-Match overrides a false If-Unmodified-Since, a false
If-None-Match overrides a true If-Modified-Since. A write's become ``WriteOptions``, which the
store checks as it publishes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

from ..errors import NotModified, S3Error
from ..store.base import ObjectInfo

__all__ = ["check_copy_source_conditions", "check_read_conditions", "etag_matches", "write_conditions"]


def _strip_etag(tag: str) -> str:
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    if len(tag) >= 2 and tag[0] == tag[-1] == '"':
        tag = tag[1:-1]
    return tag


def etag_matches(header_value: str, etag: str) -> bool:
    """Whether ``header_value``, a list of (possibly weak, possibly unquoted) entity tags or ``*``,
    matches ``etag`` (unquoted)."""
    candidates = [_strip_etag(part) for part in header_value.split(",")]
    return "*" in candidates or etag in candidates


def _parse_http_date(value: str | None) -> int | None:
    """Seconds since the epoch, or None for a missing or unparseable date (RFC 7232 ignores it)."""
    if not value:
        return None
    try:
        moment: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp())


# The names under which _evaluate reports which condition decided the outcome.
IF_MATCH, IF_UNMODIFIED_SINCE = "If-Match", "If-Unmodified-Since"
IF_NONE_MATCH, IF_MODIFIED_SINCE = "If-None-Match", "If-Modified-Since"
_NOT_MODIFIED_CONDITIONS = (IF_NONE_MATCH, IF_MODIFIED_SINCE)


def _evaluate(
    info: ObjectInfo,
    if_match: str | None,
    if_unmodified_since: str | None,
    if_none_match: str | None,
    if_modified_since: str | None,
) -> str | None:
    """None when the request may proceed, else the name of the condition that stops it."""
    # Last-Modified has one-second resolution; compare in the same unit the client saw.
    mtime_s = info.mtime_ns // 1_000_000_000
    if if_match is not None:
        if not etag_matches(if_match, info.etag):
            return IF_MATCH
    else:
        since = _parse_http_date(if_unmodified_since)
        if since is not None and mtime_s > since:
            return IF_UNMODIFIED_SINCE
    if if_none_match is not None:
        if etag_matches(if_none_match, info.etag):
            return IF_NONE_MATCH
    else:
        since = _parse_http_date(if_modified_since)
        if since is not None and mtime_s <= since:
            return IF_MODIFIED_SINCE
    return None


def check_read_conditions(headers: Mapping[str, str], info: ObjectInfo) -> None:
    """If-Match / If-Unmodified-Since fail with ``PreconditionFailed`` (412); If-None-Match /
    If-Modified-Since raise ``errors.NotModified`` (304)."""
    stopped_by = _evaluate(
        info,
        headers.get(IF_MATCH),
        headers.get(IF_UNMODIFIED_SINCE),
        headers.get(IF_NONE_MATCH),
        headers.get(IF_MODIFIED_SINCE),
    )
    if stopped_by in _NOT_MODIFIED_CONDITIONS:
        raise NotModified(info.etag, info.mtime_ns)
    if stopped_by is not None:
        raise S3Error("PreconditionFailed", extra={"Condition": stopped_by})


def check_copy_source_conditions(headers: Mapping[str, str], info: ObjectInfo) -> None:
    """The ``x-amz-copy-source-if-*`` headers, in the same order as a read's; every failure is
    ``PreconditionFailed``. Suitable as ``functools.partial(check_copy_source_conditions, headers)``
    for ``check_source``."""
    stopped_by = _evaluate(
        info,
        headers.get("x-amz-copy-source-if-match"),
        headers.get("x-amz-copy-source-if-unmodified-since"),
        headers.get("x-amz-copy-source-if-none-match"),
        headers.get("x-amz-copy-source-if-modified-since"),
    )
    if stopped_by is not None:
        raise S3Error("PreconditionFailed", extra={"Condition": "x-amz-copy-source-" + stopped_by.lower()})


def _not_implemented_header(header: str) -> S3Error:
    return S3Error(
        "NotImplemented",
        extra={
            "Header": header,
            "additionalMessage": f"We don't accept the provided value of {header} header for this API",
        },
    )


def write_conditions(headers: Mapping[str, str]) -> tuple[str | None, bool]:
    """``(if_match, if_none_match)`` for ``WriteOptions`` (PutObject, CompleteMultipartUpload,
    CopyObject destination). ``If-None-Match`` accepts only ``*``; anything else, or both headers
    together, is ``NotImplemented`` naming the header, as S3 answers."""
    if_match = headers.get("If-Match")
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        if if_none_match.strip() != "*" or if_match is not None:
            raise _not_implemented_header("If-None-Match")
        return None, True
    if if_match is not None:
        value = if_match.strip()
        return (value if value == "*" else _strip_etag(value)), False
    return None, False
