"""CopyObject, and the ``x-amz-copy-source`` parsing it shares with UploadPartCopy.

Directives decide where the destination's metadata comes from:
- ``x-amz-metadata-directive``: COPY (default) keeps the source's headers and user metadata;
  REPLACE takes them from this request.
- ``x-amz-tagging-directive``: COPY (default) keeps the source's tags; REPLACE takes
  ``x-amz-tagging`` (none when absent).

Store contract used here: ``copy_object(attrs=None)`` keeps all of the source's metadata and
tags; with ``ObjectAttrs``, ``attrs.tags is None`` keeps the source's tags and a dict (even
empty) replaces them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import replace
from urllib.parse import unquote

from aiohttp import web

from ...checksums import ALGORITHMS
from ...errors import S3Error
from ...store.base import ObjectAttrs, ObjectInfo, WriteOptions
from ..conditions import check_copy_source_conditions, write_conditions
from ..context import S3Request
from ..headers import attrs_from_headers, parse_tagging_header
from ..responses import iso8601, xml_response
from ..xmlio import XmlChildren, to_xml

__all__ = [
    "COPY_SOURCE",
    "checksum_fields",
    "copy_object",
    "directive",
    "parse_copy_source",
    "requested_checksum_algorithm",
]

COPY_SOURCE = "x-amz-copy-source"
_DIRECTIVES = ("COPY", "REPLACE")
# Request headers that change an object in a way a same-object copy may ask for; without one
# of them (or REPLACE), copying an object onto itself would change nothing and S3 refuses it.
_SELF_COPY_CHANGES = (
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-customer-algorithm",
)
_SELF_COPY_MESSAGE = (
    "This copy request is illegal because it is trying to copy an object to itself without "
    "changing the object's metadata, storage class, website redirect location or encryption "
    "attributes."
)


def parse_copy_source(value: str) -> tuple[str, str]:
    """``bucket/key`` (URL-encoded, optional leading ``/``, optional ``?versionId=``)."""
    path, _, query = value.partition("?")
    if query:
        name, _, version = query.partition("=")
        # Without versioning every object's only version is "null".
        if name != "versionId" or unquote(version) != "null":
            raise S3Error("NotImplemented", "Copying a specific object version is not implemented by this gateway.")
    bucket, _, key = unquote(path).removeprefix("/").partition("/")
    if not bucket or not key:
        raise S3Error(
            "InvalidArgument",
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            extra={"ArgumentName": COPY_SOURCE, "ArgumentValue": value},
        )
    return bucket, key


def directive(headers: Mapping[str, str], name: str, what: str) -> str:
    value = headers.get(name, "COPY")
    if value not in _DIRECTIVES:
        raise S3Error(
            "InvalidArgument", f"Unknown {what} directive.", extra={"ArgumentName": name, "ArgumentValue": value}
        )
    return value


def requested_checksum_algorithm(headers: Mapping[str, str]) -> str | None:
    """``x-amz-checksum-algorithm`` (CopyObject, CreateMultipartUpload), upper-cased."""
    value = headers.get("x-amz-checksum-algorithm")
    if value is None:
        return None
    algorithm = value.upper()
    if algorithm not in ALGORITHMS:
        raise S3Error("InvalidRequest", "Value for x-amz-checksum-algorithm header is invalid.")
    return algorithm


def source_check(headers: Mapping[str, str]) -> Callable[[ObjectInfo], None]:
    """``check_source`` for the store: the ``x-amz-copy-source-if-*`` conditions."""
    return functools.partial(check_copy_source_conditions, headers)


def checksum_fields(info: ObjectInfo) -> XmlChildren:
    """``ChecksumCRC32``... and ``ChecksumType`` as S3 puts them in result documents."""
    fields: XmlChildren = [(f"Checksum{algorithm}", value) for algorithm, value in info.checksums.items()]
    if info.checksums and info.checksum_type:
        fields.append(("ChecksumType", info.checksum_type))
    return fields


def _attrs_from_source(info: ObjectInfo) -> ObjectAttrs:
    return ObjectAttrs(content_type=info.content_type, headers=dict(info.headers), user_meta=dict(info.user_meta))


async def _destination_attrs(req: S3Request, metadata: str, src_bucket: str, src_key: str) -> ObjectAttrs | None:
    headers = req.http.headers
    tagging = directive(headers, "x-amz-tagging-directive", "tagging")
    tagging_header = headers.get("x-amz-tagging")
    new_tags = parse_tagging_header(tagging_header) if tagging_header is not None else {}
    if metadata == "REPLACE":
        attrs = attrs_from_headers(headers)
        return replace(attrs, tags=new_tags if tagging == "REPLACE" else None)
    if tagging == "REPLACE":
        # Keep the source's metadata but not its tags: spell the metadata out. The source may
        # change before the copy; S3 gives no stronger promise across two requests either.
        source = await req.store.head_object(src_bucket, src_key)
        return replace(_attrs_from_source(source), tags=new_tags)
    return None


async def copy_object(req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None and req.key is not None
    headers = req.http.headers
    src_bucket, src_key = parse_copy_source(headers[COPY_SOURCE])
    metadata = directive(headers, "x-amz-metadata-directive", "metadata")
    same_object = (src_bucket, src_key) == (req.bucket, req.key)
    if same_object and metadata == "COPY" and not any(name in headers for name in _SELF_COPY_CHANGES):
        raise S3Error("InvalidRequest", _SELF_COPY_MESSAGE)
    attrs = await _destination_attrs(req, metadata, src_bucket, src_key)
    if_match, if_none_match = write_conditions(headers)
    algorithm = requested_checksum_algorithm(headers)
    options = WriteOptions(
        hash_algorithms=frozenset([algorithm] if algorithm else []), if_match=if_match, if_none_match=if_none_match
    )
    info = await req.store.copy_object(
        src_bucket, src_key, req.bucket, req.key, attrs, options, check_source=source_check(headers)
    )
    children: XmlChildren = [("ETag", f'"{info.etag}"'), ("LastModified", iso8601(info.mtime_ns))]
    children.extend(checksum_fields(info))
    return xml_response(to_xml("CopyObjectResult", children))
