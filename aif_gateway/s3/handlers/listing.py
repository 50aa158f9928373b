"""ListObjects (V1 and V2) and ListMultipartUploads: query parsing and result documents.

The store does the walking (binary UTF-8 order, delimiter grouping, ``start_after``); this
module turns S3's three paging dialects into ``start_after`` and back:
- V1: ``marker`` in; ``NextMarker`` out only when a delimiter was given (AWS documents that
  clients use the last key otherwise).
- V2: an opaque ``continuation-token`` (base64 of the last key or common prefix returned)
  that wins over ``start-after``; ``StartAfter`` is echoed as sent.
- Uploads: ``key-marker`` / ``upload-id-marker`` in, ``NextKeyMarker`` /
  ``NextUploadIdMarker`` out.

Public helpers shared with the other handlers: ``int_param`` and ``owner_xml``. The per-key
rendering (``contents``, ``last_modified``, ``url_encode``) is public for its tests.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote

from aiohttp import web

from ...errors import S3Error
from ...store.base import ListPage, ObjectInfo, UploadInfo
from ..context import S3Request
from ..responses import iso8601, xml_response
from ..xmlio import Fragment, XmlChildren, escape_text, render, to_xml

__all__ = [
    "MAX_LIST",
    "STORAGE_CLASS",
    "contents",
    "decode_continuation_token",
    "encode_continuation_token",
    "int_param",
    "last_modified",
    "list_multipart_uploads",
    "list_objects_v1",
    "list_objects_v2",
    "make_encoder",
    "owner_xml",
    "url_encode",
    "url_encoding_requested",
]

MAX_LIST = 1000
# The largest integer S3 accepts for max-keys and friends (Java's Integer.MAX_VALUE).
_MAX_INT_PARAM = 2**31 - 1
STORAGE_CLASS = "STANDARD"

Encoder = Callable[[str], str]


def int_param(query: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """An integer query parameter with S3's errors; callers clamp the upper end themselves."""
    raw = query.get(name)
    if raw is None:
        return default
    extra = {"ArgumentName": name, "ArgumentValue": raw}
    try:
        value = int(raw)
    except ValueError:
        raise S3Error(
            "InvalidArgument", f"Provided {name} not an integer or within integer range", extra=extra
        ) from None
    if not minimum <= value <= _MAX_INT_PARAM:
        raise S3Error(
            "InvalidArgument", f"Argument {name} must be an integer between {minimum} and {_MAX_INT_PARAM}", extra=extra
        )
    return value


def url_encoding_requested(query: Mapping[str, str]) -> bool:
    """``encoding-type=url``; S3 knows no other value."""
    value = query.get("encoding-type")
    if value is None:
        return False
    if value.lower() != "url":
        raise S3Error(
            "InvalidArgument",
            "Invalid Encoding Method specified in Request",
            extra={"ArgumentName": "encoding-type", "ArgumentValue": value},
        )
    return True


def url_encode(text: str) -> str:
    """S3's URL encoding: ``/`` kept, everything else outside the unreserved set encoded
    (space → ``%20``, ``+`` → ``%2B``), which is ``quote`` with ``/`` safe."""
    return quote(text, safe="/")


def make_encoder(url: bool) -> Encoder:
    """The text transform for keys and prefixes: identity, or ``url_encode``."""
    if not url:
        return lambda text: text
    return url_encode


def encode_continuation_token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode("utf-8")).decode("ascii")


def decode_continuation_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise S3Error(
            "InvalidArgument",
            "The continuation token provided is incorrect",
            extra={"ArgumentName": "continuation-token"},
        ) from None


def owner_xml(owner: str | None) -> XmlChildren | None:
    """The ``Owner``/``Initiator`` content; None (element left out) when the owner is unknown."""
    if owner is None:
        return None
    return [("ID", owner), ("DisplayName", owner)]


_MILLIS = [f"{millis:03d}Z" for millis in range(1000)]
# Formatted seconds, for the event loop thread only. Keys listed together were mostly written in
# the same few seconds: each is formatted once (strftime costs more than the rest of an entry).
_SECONDS: dict[int, str] = {}
_SECONDS_KEPT = 4096


def last_modified(mtime_ns: int) -> str:
    """``responses.iso8601(mtime_ns)``, at a fraction of the cost: a page formats 1,000."""
    seconds, millis = divmod(mtime_ns // 1_000_000, 1000)
    text = _SECONDS.get(seconds)
    if text is None:
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        text = _SECONDS[seconds] = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
    return text + _MILLIS[millis]


def contents(objects: list[ObjectInfo], encode: Encoder | None, owner: XmlChildren | None) -> Fragment:
    """The ``Contents`` elements of a listing, each rendered by one f-string.

    This is the per-key cost of every ListObjects response, so it skips the generic renderer;
    the output is byte for byte what ``to_xml`` makes of one ``("Contents", entry)`` per object
    (``encode`` None: keys as they are), where ``entry`` is::

        [("Key", key), ("LastModified", iso8601), ("ETag", '"etag"'),
         ("ChecksumAlgorithm", name)..., ("ChecksumType", type) if checksums,
         ("Size", size), ("Owner", owner), ("StorageClass", STORAGE_CLASS)]
    """
    tail = f"{render([('Owner', owner)])}<StorageClass>{STORAGE_CLASS}</StorageClass></Contents>"
    out = []
    for info in objects:
        key = escape_text(encode(info.key) if encode is not None else info.key)
        checksums = ""
        if info.checksums:
            # Clients that validate downloads look here to learn which algorithm the object carries.
            checksums = "".join(
                f"<ChecksumAlgorithm>{escape_text(name)}</ChecksumAlgorithm>" for name in info.checksums
            )
            if info.checksum_type:
                checksums += f"<ChecksumType>{escape_text(f'{info.checksum_type}')}</ChecksumType>"
        # f"{...}": a record written by something else may hold a number where a string belongs.
        out.append(
            f"<Contents><Key>{key}</Key><LastModified>{last_modified(info.mtime_ns)}</LastModified>"
            f"<ETag>&quot;{escape_text(f'{info.etag}')}&quot;</ETag>{checksums}<Size>{info.size}</Size>{tail}"
        )
    return Fragment("".join(out))


async def _bucket_owner(req: S3Request) -> XmlChildren | None:
    assert req.bucket is not None
    return owner_xml((await req.store.head_bucket(req.bucket)).owner)


async def _list_page(req: S3Request, *, start_after: str, max_keys: int) -> ListPage:
    assert req.bucket is not None
    return await req.store.list_objects(
        req.bucket,
        prefix=req.query.get("prefix", ""),
        delimiter=req.query.get("delimiter", ""),
        start_after=start_after,
        max_keys=max_keys,
    )


async def list_objects_v1(req: S3Request) -> web.StreamResponse:
    query = req.query
    url = url_encoding_requested(query)
    encode = make_encoder(url)
    max_keys = min(int_param(query, "max-keys", MAX_LIST), MAX_LIST)
    marker = query.get("marker", "")
    delimiter = query.get("delimiter", "")
    owner = await _bucket_owner(req)
    page = await _list_page(req, start_after=marker, max_keys=max_keys)
    children: XmlChildren = [
        ("Name", req.bucket),
        ("Prefix", encode(query.get("prefix", ""))),
        ("Marker", encode(marker)),
        ("MaxKeys", max_keys),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("IsTruncated", page.is_truncated),
    ]
    if delimiter and page.is_truncated and page.next_marker is not None:
        children.append(("NextMarker", encode(page.next_marker)))
    children.append(contents(page.objects, url_encode if url else None, owner))
    children.extend(("CommonPrefixes", [("Prefix", encode(p))]) for p in page.common_prefixes)
    if url:
        children.append(("EncodingType", "url"))
    return xml_response(to_xml("ListBucketResult", children))


async def list_objects_v2(req: S3Request) -> web.StreamResponse:
    query = req.query
    url = url_encoding_requested(query)
    encode = make_encoder(url)
    max_keys = min(int_param(query, "max-keys", MAX_LIST), MAX_LIST)
    token = query.get("continuation-token")
    start_after = query.get("start-after")
    if token is not None:
        resume_after = decode_continuation_token(token)
    else:
        resume_after = start_after or ""
    delimiter = query.get("delimiter", "")
    fetch_owner = query.get("fetch-owner", "").lower() == "true"
    owner = await _bucket_owner(req) if fetch_owner else None
    page = await _list_page(req, start_after=resume_after, max_keys=max_keys)
    children: XmlChildren = [
        ("Name", req.bucket),
        ("Prefix", encode(query.get("prefix", ""))),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("MaxKeys", max_keys),
        ("KeyCount", len(page.objects) + len(page.common_prefixes)),
        ("IsTruncated", page.is_truncated),
        ("ContinuationToken", token),
        ("StartAfter", encode(start_after) if start_after is not None else None),
    ]
    if page.is_truncated and page.next_marker is not None:
        children.append(("NextContinuationToken", encode_continuation_token(page.next_marker)))
    children.append(contents(page.objects, url_encode if url else None, owner))
    children.extend(("CommonPrefixes", [("Prefix", encode(p))]) for p in page.common_prefixes)
    if url:
        children.append(("EncodingType", "url"))
    return xml_response(to_xml("ListBucketResult", children))


def _upload_entry(upload: UploadInfo, encode: Encoder) -> XmlChildren:
    owner = owner_xml(upload.owner)
    return [
        ("Key", encode(upload.key)),
        ("UploadId", upload.upload_id),
        ("Initiator", owner),
        ("Owner", owner),
        ("StorageClass", STORAGE_CLASS),
        ("Initiated", iso8601(upload.initiated_ns)),
        ("ChecksumAlgorithm", upload.checksum_algorithm),
        ("ChecksumType", upload.checksum_type),
    ]


async def list_multipart_uploads(req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    query = req.query
    url = url_encoding_requested(query)
    encode = make_encoder(url)
    max_uploads = min(int_param(query, "max-uploads", MAX_LIST), MAX_LIST)
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    key_marker = query.get("key-marker", "")
    # S3 ignores upload-id-marker unless key-marker is given.
    upload_id_marker = query.get("upload-id-marker", "") if key_marker else ""
    page = await req.store.list_uploads(
        req.bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        upload_id_marker=upload_id_marker,
        max_uploads=max_uploads,
    )
    children: XmlChildren = [
        ("Bucket", req.bucket),
        ("KeyMarker", encode(key_marker)),
        ("UploadIdMarker", upload_id_marker),
        ("NextKeyMarker", encode(page.next_key_marker) if page.next_key_marker is not None else None),
        ("NextUploadIdMarker", page.next_upload_id_marker),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("Prefix", encode(prefix)),
        ("MaxUploads", max_uploads),
        ("IsTruncated", page.is_truncated),
    ]
    children.extend(("Upload", _upload_entry(upload, encode)) for upload in page.uploads)
    children.extend(("CommonPrefixes", [("Prefix", encode(p))]) for p in page.common_prefixes)
    if url:
        children.append(("EncodingType", "url"))
    return xml_response(to_xml("ListMultipartUploadsResult", children))
