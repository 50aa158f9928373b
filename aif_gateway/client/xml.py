"""The XML of the S3 operations the client sends itself: ListObjectsV2 pages,
CreateMultipartUpload and CompleteMultipartUpload, and S3 error documents."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from ..awsv4 import S3_NAMESPACE

__all__ = ["complete_upload_body", "parse_error", "parse_list_page", "parse_upload_id"]

_S3_NS = f"{{{S3_NAMESPACE}}}"


def parse_list_page(body: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """One ListObjectsV2 page: objects as botocore gives them (Key, Size, ETag, LastModified)
    and the continuation token of the next page (None after the last)."""
    root = ElementTree.fromstring(body)
    ns = _S3_NS if root.tag.startswith(_S3_NS) else ""
    url_encoded = root.findtext(f"{ns}EncodingType") == "url"
    objects = []
    for item in root.iterfind(f"{ns}Contents"):
        key = item.findtext(f"{ns}Key") or ""
        objects.append(
            {
                "Key": unquote_plus(key) if url_encoded else key,  # as botocore decodes it
                "Size": int(item.findtext(f"{ns}Size") or 0),
                "ETag": item.findtext(f"{ns}ETag"),
                "LastModified": datetime.fromisoformat(
                    (item.findtext(f"{ns}LastModified") or "").replace("Z", "+00:00")
                ),
            }
        )
    truncated = (root.findtext(f"{ns}IsTruncated") or "").lower() == "true"
    token = root.findtext(f"{ns}NextContinuationToken")
    return objects, token if truncated and token else None


def parse_upload_id(body: bytes) -> str | None:
    """The UploadId of a CreateMultipartUpload answer."""
    return ElementTree.fromstring(body).findtext(f"{_S3_NS}UploadId")


def complete_upload_body(parts: Iterable[tuple[int, str, Mapping[str, str]]]) -> bytes:
    """CompleteMultipartUpload's request body: (part number, ETag without quotes, checksum
    elements such as ``{"ChecksumCRC64NVME": base64}``) per part, in order."""
    return (
        "<CompleteMultipartUpload>"
        + "".join(
            f'<Part><PartNumber>{number}</PartNumber><ETag>"{escape(etag)}"</ETag>'
            + "".join(f"<{name}>{value}</{name}>" for name, value in checksums.items())
            + "</Part>"
            for number, etag, checksums in parts
        )
        + "</CompleteMultipartUpload>"
    ).encode()


def parse_error(body: bytes) -> tuple[str | None, str | None]:
    """(Code, Message) of an S3 error document; (None, None) for anything else (HEAD's empty
    bodies, a proxy's HTML)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None, None
    return root.findtext("Code"), root.findtext("Message")
