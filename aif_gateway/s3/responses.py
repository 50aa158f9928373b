"""Rendering answers: the single place an ``S3Error`` becomes an XML error document.

Also what every answer carries: the request id, and S3's two ways of writing a time.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import MutableMapping
from datetime import UTC, datetime
from email.utils import formatdate

from aiohttp import web

from ..errors import NotModified, S3Error
from .xmlio import XmlChildren, to_xml

__all__ = [
    "error_response",
    "http_date",
    "iso8601",
    "new_request_id",
    "not_modified_response",
    "stamp_request_id",
    "xml_response",
]

XML_CONTENT_TYPE = "application/xml"
SERVER_NAME = "aif-gateway"


def new_request_id() -> str:
    """The id of one request, for ``stamp_request_id``."""
    return secrets.token_hex(8).upper()


def stamp_request_id(headers: MutableMapping[str, str], request_id: str) -> None:
    """The id every answer carries (``x-amz-request-id``, ``x-amz-id-2``), with the ``Server``
    header: the app stamps every response it prepares, ``connection`` the answers to requests it
    could not parse."""
    headers["x-amz-request-id"] = request_id
    headers["x-amz-id-2"] = request_id
    headers["Server"] = SERVER_NAME


def xml_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """``body`` is the bytes of a document (from ``xmlio.to_xml``); Content-Type application/xml."""
    response = web.Response(body=body, status=status, headers=headers)
    response.content_type = XML_CONTENT_TYPE
    return response


# C0 controls XML 1.0 cannot carry even as references (tab, LF and CR it can).
_NOT_XML_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _parseable(text: str) -> str:
    # Every client must be able to parse an error, so a key holding such a byte is shown
    # percent-encoded here (listings keep S3's references; they have encoding-type=url).
    return _NOT_XML_CHARS.sub(lambda m: f"%{ord(m.group()):02X}", text)


def _resource_of(err: S3Error, request_resource: str) -> str:
    # An error about another resource (a copy source) names its "/bucket/key"; the storage
    # layer only names a bare key or bucket, and the request's own resource says that better.
    if err.resource and err.resource.startswith("/"):
        return err.resource
    return request_resource


def error_response(err: S3Error, request_id: str, resource: str, head: bool) -> web.Response:
    """The ``<Error><Code/><Message/>...extra...<Resource/><RequestId/></Error>`` document with the
    code's HTTP status and the error's extra headers; a HEAD answer has the status and no body.

    ``Resource`` is the request's ``/bucket/key`` unless ``err.resource`` is itself such a path;
    characters XML 1.0 cannot carry are percent-encoded so that every client can parse it.
    """
    headers = dict(err.headers)
    if head:
        # HEAD has no body to carry the code; S3 answers with the bare status.
        return web.Response(status=err.status, headers=headers)
    fields = [
        ("Code", err.code),
        ("Message", err.message),
        *err.extra.items(),
        ("Resource", _resource_of(err, resource)),
        ("RequestId", request_id),
    ]
    children: XmlChildren = [(name, _parseable(value)) for name, value in fields]
    return xml_response(to_xml("Error", children, namespace=False), status=err.status, headers=headers)


def http_date(mtime_ns: int) -> str:
    """An RFC 1123 GMT date, as ``Last-Modified`` has it."""
    return formatdate(mtime_ns // 1_000_000_000, usegmt=True)


def iso8601(mtime_ns: int) -> str:
    """``2025-01-01T00:00:00.000Z``, as S3 writes times in XML."""
    moment = datetime.fromtimestamp(mtime_ns // 1_000_000_000, tz=UTC)
    millis = mtime_ns // 1_000_000 % 1000
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def not_modified_response(exc: NotModified) -> web.Response:
    """The 304 for ``errors.NotModified``, with the ETag and Last-Modified RFC 7232 asks for."""
    return web.Response(status=304, headers={"ETag": f'"{exc.etag}"', "Last-Modified": http_date(exc.last_modified_ns)})
