"""Object actions: GetObject, HeadObject, PutObject, DeleteObject.

GET and HEAD share one plan (conditions, Range or partNumber, headers); GET then sends the
planned bytes from the open reader in ``send_object_bytes``: zero-copy (``..transport``) where
the connection allows, else copied through the reader's chunks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from ...errors import S3Error
from ...store.base import MAX_PARTS, ObjectInfo, ObjectReader
from ..body import write_body
from ..conditions import check_read_conditions, write_conditions
from ..context import S3Request
from ..headers import apply_response_overrides, attrs_from_headers, checksum_mode_enabled, object_headers
from ..limits import part_number
from ..ranges import parse_range
from ..transport import send_zero_copy

__all__ = ["delete_object", "get_object", "head_object", "put_object"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadPlan:
    status: int
    headers: dict[str, str]
    first: int
    last: int  # inclusive; last < first for an empty body


def _object(req: S3Request) -> tuple[str, str]:
    assert req.bucket is not None and req.key is not None, "the router sends only object requests here"
    return req.bucket, req.key


def _part_number(req: S3Request) -> int | None:
    value = req.query.get("partNumber")
    if value is None:
        return None
    # Reads address parts of objects that exist: S3's range, whatever uploads are limited to now.
    number = part_number(value, MAX_PARTS)
    if "Range" in req.http.headers:
        raise S3Error("InvalidRequest", "Cannot specify both Range header and partNumber query parameter")
    return number


def _part_bounds(info: ObjectInfo, part_number: int) -> tuple[int, int, int]:
    """(first, last, parts count) of one part; an object not made by multipart is one part."""
    sizes = info.part_sizes or (info.size,)
    if part_number > len(sizes):
        raise S3Error("InvalidPartNumber")
    first = sum(sizes[: part_number - 1])
    return first, first + sizes[part_number - 1] - 1, len(sizes)


def plan_read(req: S3Request, info: ObjectInfo) -> ReadPlan:
    """Status, headers and byte span of a GET or HEAD of ``info``; raises for failed conditions."""
    check_read_conditions(req.http.headers, info)
    checksum_mode = checksum_mode_enabled(req.http.headers)
    part_number = _part_number(req)
    if part_number is not None:
        first, last, count = _part_bounds(info, part_number)
        multipart = info.part_sizes is not None
        headers = object_headers(
            info, checksum_mode=checksum_mode, partial=multipart, parts_count=count if multipart else None
        )
        span: tuple[int, int] | None = (first, last) if multipart else None
    else:
        span = parse_range(req.http.headers.get("Range"), info.size)
        headers = object_headers(info, checksum_mode=checksum_mode, partial=span is not None)
    apply_response_overrides(headers, req.query)
    if span is None:
        return ReadPlan(200, headers, 0, info.size - 1)
    first, last = span
    headers["Content-Range"] = f"bytes {first}-{last}/{info.size}"
    headers["Content-Length"] = str(last - first + 1)
    return ReadPlan(206, headers, first, last)


async def send_object_bytes(
    http: web.Request, response: web.StreamResponse, reader: ObjectReader, first: int, last: int
) -> None:
    """Sends bytes ``first..last``: zero-copy where the connection allows, else copied.

    Never raises once the status line has gone out: a body that cannot be completed ends with a
    cut connection (shorter than Content-Length), the only honest signal left by then.
    """
    count = last - first + 1
    sent = 0
    try:
        # Inside the try: a client that hung up before the headers went out is as ordinary as
        # one that hangs up mid-body.
        writer = await response.prepare(http)
        assert writer is not None, "a fresh response"
        sent_zero_copy = await send_zero_copy(http, writer, reader, first, count)
        if sent_zero_copy is None:
            async for chunk in reader.chunks(first, last):
                await response.write(chunk)
                sent += len(chunk)
        else:
            sent = sent_zero_copy
            if sent < count:
                raise S3Error("InternalError", "The object shrank while it was being read.")
        await response.write_eof()
    except (ConnectionError, TimeoutError) as exc:
        log.debug("GET %s: the client went away (%s)", http.raw_path, exc)
        _cut(http)
    except S3Error as err:
        log.warning("GET %s: %s Sent %d of %d bytes.", http.raw_path, err.message, sent, count)
        _cut(http)
    except Exception:
        log.exception("GET %s failed after %d of %d bytes", http.raw_path, sent, count)
        _cut(http)


def _cut(http: web.Request) -> None:
    if http.transport is not None:
        http.transport.abort()


async def get_object(req: S3Request) -> web.StreamResponse:
    bucket, key = _object(req)
    reader = await req.store.open_object(bucket, key)
    try:
        plan = plan_read(req, reader.info)
        response = web.StreamResponse(status=plan.status, headers=plan.headers)
        response.content_length = plan.last - plan.first + 1
        await send_object_bytes(req.http, response, reader, plan.first, plan.last)
    finally:
        await reader.close()
    return response


async def head_object(req: S3Request) -> web.StreamResponse:
    bucket, key = _object(req)
    plan = plan_read(req, await req.store.head_object(bucket, key))
    return web.Response(status=plan.status, headers=plan.headers)


async def put_object(req: S3Request) -> web.StreamResponse:
    bucket, key = _object(req)
    attrs = attrs_from_headers(req.http.headers)
    if_match, if_none_match = write_conditions(req.http.headers)
    upload = write_body(req, max_size=req.limits.max_object_size, if_match=if_match, if_none_match=if_none_match)
    # A key ending in "/" with an empty body is a directory marker; the store decides how.
    info = await req.store.put_object(bucket, key, upload.stream, attrs, upload.options)
    # A single PUT's checksum is always of the whole object.
    headers = {"ETag": f'"{info.etag}"', **upload.response_headers(info.checksums, checksum_type="FULL_OBJECT")}
    return web.Response(status=200, headers=headers)


async def delete_object(req: S3Request) -> web.StreamResponse:
    bucket, key = _object(req)
    await req.store.delete_object(bucket, key)
    return web.Response(status=204)
