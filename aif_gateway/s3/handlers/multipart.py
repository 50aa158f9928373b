"""Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts.

Part bytes go straight to the store as a stream (via ``body.write_body``, the same decoder
and verdict PutObject uses). Everything parsed here is the small stuff around them: part
numbers, the copy-source range, the checksum algorithm and type, and the
``CompleteMultipartUpload`` document with what its headers assert about the object
(``x-amz-checksum-<algo>``, ``x-amz-checksum-type``, ``x-amz-mp-object-size``), which the store
checks before publishing.

Checksum echoes follow S3: UploadPart returns the part's ``x-amz-checksum-<algo>`` without a
type (a part has none); Complete names the upload's type in its result document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

from aiohttp import web

from ...checksums import ALGORITHMS, decode_checksum
from ...errors import S3Error
from ...store.base import MAX_PARTS, CompletedPart, ExpectedObject, ObjectInfo, PartInfo, WriteOptions
from ..body import parse_length, read_body_bytes, write_body
from ..conditions import check_copy_source_conditions, write_conditions
from ..context import S3Request
from ..headers import attrs_from_headers
from ..integrity import checksum_header
from ..limits import part_number
from ..numbers import DECIMAL, decimal
from ..responses import iso8601, xml_response
from ..xmlio import MAX_XML_SIZE, XmlChildren, child_text, parse_items, to_xml
from .copy import COPY_SOURCE, checksum_fields, parse_copy_source, requested_checksum_algorithm
from .listing import MAX_LIST, STORAGE_CLASS, int_param, owner_xml

__all__ = [
    "abort_multipart_upload",
    "check_range_within",
    "checksum_settings",
    "complete_multipart_upload",
    "create_multipart_upload",
    "list_parts",
    "parse_complete",
    "parse_copy_source_range",
    "upload_part",
    "upload_part_copy",
]

CHECKSUM_TYPES = ("COMPOSITE", "FULL_OBJECT")
# CRCs combine into a whole-object value; SHA digests do not, so they can only be COMPOSITE.
_FULL_OBJECT_CAPABLE = ("CRC32", "CRC32C", "CRC64NVME")
_COPY_SOURCE_RANGE = "x-amz-copy-source-range"
_MP_OBJECT_SIZE = "x-amz-mp-object-size"
_RANGE_SYNTAX = re.compile(rf"bytes=({DECIMAL})-({DECIMAL})")


# -- request parsing ------------------------------------------------------------------------
def required_upload_id(query: Mapping[str, str]) -> str:
    value = query.get("uploadId")
    if not value:
        raise S3Error("NoSuchUpload")
    return value


def checksum_settings(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(algorithm, type) for CreateMultipartUpload, with S3's defaults and refusals."""
    algorithm = requested_checksum_algorithm(headers)
    requested_type = headers.get("x-amz-checksum-type")
    if requested_type is None:
        if algorithm is None:
            return None, None
        return algorithm, "FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE"
    checksum_type = requested_type.upper()
    if checksum_type not in CHECKSUM_TYPES:
        raise S3Error("InvalidRequest", "Value for x-amz-checksum-type header is invalid.")
    if algorithm is None:
        raise S3Error(
            "InvalidRequest",
            "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.",
        )
    if checksum_type == "FULL_OBJECT" and algorithm not in _FULL_OBJECT_CAPABLE:
        raise S3Error(
            "InvalidRequest",
            f"The FULL_OBJECT checksum type cannot be used with the {algorithm.lower()} checksum algorithm.",
        )
    if checksum_type == "COMPOSITE" and algorithm == "CRC64NVME":
        raise S3Error(
            "InvalidRequest", "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm."
        )
    return algorithm, checksum_type


def parse_copy_source_range(value: str | None) -> tuple[int, int] | None:
    """``bytes=first-last`` (both required, inclusive); the only form UploadPartCopy takes."""
    if value is None:
        return None
    match = _RANGE_SYNTAX.fullmatch(value.strip())
    if match is None:
        raise S3Error(
            "InvalidArgument",
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and "
            "last are the zero-based offsets of the first and last bytes to copy",
            extra={"ArgumentName": _COPY_SOURCE_RANGE, "ArgumentValue": value},
        )
    return int(match.group(1)), int(match.group(2))


def check_range_within(src_range: tuple[int, int] | None, size: int) -> None:
    """Unlike GET, a copy range is never clamped: it must lie inside the source."""
    if src_range is None:
        return
    first, last = src_range
    if first > last or last >= size:
        raise S3Error(
            "InvalidArgument",
            f"Range specified is not valid for source object of size: {size}",
            extra={"ArgumentName": _COPY_SOURCE_RANGE, "ArgumentValue": f"bytes={first}-{last}"},
        )


def _strip_quotes(etag: str) -> str:
    etag = etag.strip()
    if len(etag) >= 2 and etag[0] == etag[-1] == '"':
        return etag[1:-1]
    return etag


def parse_complete(body: bytes, max_parts: int = MAX_PARTS) -> list[CompletedPart]:
    """The ``CompleteMultipartUpload`` document: at most ``max_parts`` parts (MalformedXML
    beyond), in strictly ascending order. A number no upload accepts names no part: InvalidPart
    (the store's answer)."""
    _, elements = parse_items(body, "CompleteMultipartUpload", "Part", max_parts)
    parts: list[CompletedPart] = []
    for element in elements:
        number, etag = child_text(element, "PartNumber"), child_text(element, "ETag")
        if number is None or etag is None or decimal(number) is None:
            raise S3Error("MalformedXML")
        checksums = {
            child.tag.removeprefix("Checksum").upper(): (child.text or "").strip()
            for child in element
            if child.tag.startswith("Checksum") and child.tag != "ChecksumType"
        }
        parts.append(CompletedPart(int(number), _strip_quotes(etag), checksums))
    for previous, current in zip(parts, parts[1:]):
        if current.part_number <= previous.part_number:
            raise S3Error("InvalidPartOrder")
    return parts


def expected_object(headers: Mapping[str, str]) -> ExpectedObject:
    """What CompleteMultipartUpload's headers assert about the object; the store checks it."""
    algorithms = [a for a in ALGORITHMS if checksum_header(a) in headers]
    if len(algorithms) > 1:
        raise S3Error(
            "InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    algorithm = algorithms[0] if algorithms else None
    checksum = None
    if algorithm is not None:
        checksum = headers[checksum_header(algorithm)].strip()
        digest, dash, parts = checksum.partition("-")  # a COMPOSITE value may end in -<parts>
        if decode_checksum(algorithm, digest) is None or (dash and decimal(parts) is None):
            raise S3Error("InvalidRequest", f"Value for {checksum_header(algorithm)} header is invalid.")
    checksum_type = headers.get("x-amz-checksum-type")
    if checksum_type is not None:
        checksum_type = checksum_type.strip().upper()
        if checksum_type not in CHECKSUM_TYPES:
            raise S3Error("InvalidRequest", "Value for x-amz-checksum-type header is invalid.")
    size = parse_length(headers.get(_MP_OBJECT_SIZE), _MP_OBJECT_SIZE)
    return ExpectedObject(checksum_algorithm=algorithm, checksum=checksum, checksum_type=checksum_type, size=size)


# -- documents ------------------------------------------------------------------------------
def _part_checksum_fields(part: PartInfo) -> XmlChildren:
    return [(f"Checksum{algorithm}", value) for algorithm, value in part.checksums.items()]


def _location(req: S3Request) -> str:
    assert req.bucket is not None and req.key is not None
    return f"{req.http.scheme}://{req.http.host}/{req.bucket}/{quote(req.key, safe='/')}"


# -- handlers -------------------------------------------------------------------------------
async def create_multipart_upload(req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None and req.key is not None
    headers = req.http.headers
    attrs = attrs_from_headers(headers)
    algorithm, checksum_type = checksum_settings(headers)
    new_upload_id = await req.store.create_multipart(
        req.bucket, req.key, attrs, algorithm, checksum_type, owner=req.auth.identity.name
    )
    response_headers = {}
    if algorithm is not None and checksum_type is not None:
        response_headers = {"x-amz-checksum-algorithm": algorithm, "x-amz-checksum-type": checksum_type}
    document = to_xml(
        "InitiateMultipartUploadResult", [("Bucket", req.bucket), ("Key", req.key), ("UploadId", new_upload_id)]
    )
    return xml_response(document, headers=response_headers)


async def upload_part(req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None and req.key is not None
    number = part_number(req.query.get("partNumber"), req.limits.max_parts)
    body = write_body(req, max_size=req.limits.max_part_size)
    part = await req.store.upload_part(
        req.bucket, req.key, required_upload_id(req.query), number, body.stream, body.options
    )
    return web.Response(status=200, headers={"ETag": f'"{part.etag}"', **body.response_headers(part.checksums)})


async def upload_part_copy(req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None and req.key is not None
    headers = req.http.headers
    number = part_number(req.query.get("partNumber"), req.limits.max_parts)
    src_bucket, src_key = parse_copy_source(headers[COPY_SOURCE])
    src_range = parse_copy_source_range(headers.get(_COPY_SOURCE_RANGE))

    def check_source(info: ObjectInfo) -> None:
        check_copy_source_conditions(headers, info)
        check_range_within(src_range, info.size)

    part = await req.store.upload_part_copy(
        req.bucket, req.key, required_upload_id(req.query), number, src_bucket, src_key, src_range, check_source
    )
    children: XmlChildren = [("ETag", f'"{part.etag}"'), ("LastModified", iso8601(part.mtime_ns))]
    children.extend(_part_checksum_fields(part))
    return xml_response(to_xml("CopyPartResult", children))


async def complete_multipart_upload(req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None and req.key is not None
    if_match, if_none_match = write_conditions(req.http.headers)
    expected = expected_object(req.http.headers)
    parts = parse_complete(await read_body_bytes(req, limit=MAX_XML_SIZE, checksum_headers=False), req.limits.max_parts)
    options = WriteOptions(if_match=if_match, if_none_match=if_none_match)
    info = await req.store.complete_multipart(
        req.bucket, req.key, required_upload_id(req.query), parts, options, expected
    )
    children: XmlChildren = [
        ("Location", _location(req)),
        ("Bucket", req.bucket),
        ("Key", req.key),
        ("ETag", f'"{info.etag}"'),
    ]
    children.extend(checksum_fields(info))
    return xml_response(to_xml("CompleteMultipartUploadResult", children))


async def abort_multipart_upload(req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None and req.key is not None
    await req.store.abort_multipart(req.bucket, req.key, required_upload_id(req.query))
    return web.Response(status=204)


async def list_parts(req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None and req.key is not None
    marker = int_param(req.query, "part-number-marker", 0)
    max_parts = min(int_param(req.query, "max-parts", MAX_LIST), MAX_LIST)
    page = await req.store.list_parts(req.bucket, req.key, required_upload_id(req.query), marker, max_parts)
    owner = owner_xml(page.upload.owner)
    children: XmlChildren = [
        ("Bucket", req.bucket),
        ("Key", req.key),
        ("UploadId", page.upload.upload_id),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", page.next_part_number_marker),
        ("MaxParts", max_parts),
        ("IsTruncated", page.is_truncated),
        ("Initiator", owner),
        ("Owner", owner),
        ("StorageClass", STORAGE_CLASS),
        ("ChecksumAlgorithm", page.upload.checksum_algorithm),
        ("ChecksumType", page.upload.checksum_type),
    ]
    for part in page.parts:
        entry: XmlChildren = [
            ("PartNumber", part.part_number),
            ("LastModified", iso8601(part.mtime_ns)),
            ("ETag", f'"{part.etag}"'),
            ("Size", part.size),
        ]
        entry.extend(_part_checksum_fields(part))
        children.append(("Part", entry))
    return xml_response(to_xml("ListPartsResult", children))
