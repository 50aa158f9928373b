"""Object tagging: ``GET``/``PUT``/``DELETE ?tagging`` with the ``Tagging`` document both ways.

S3's tag rules (at most 10, unique keys, lengths) live in ``headers.validate_tags`` so that
the ``x-amz-tagging`` header and this document cannot disagree.
"""

from __future__ import annotations

from aiohttp import web

from ...errors import S3Error
from ..body import read_body_bytes
from ..context import S3Request
from ..headers import validate_tags
from ..responses import xml_response
from ..xmlio import MAX_XML_SIZE, XmlChildren, child_text, parse_xml, to_xml

__all__ = ["delete_object_tagging", "get_object_tagging", "parse_tagging", "put_object_tagging", "tagging_document"]


def parse_tagging(body: bytes) -> dict[str, str]:
    """``<Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging>`` → tags."""
    root = parse_xml(body)
    tag_set = root.find("TagSet")
    if root.tag != "Tagging" or tag_set is None:
        raise S3Error("MalformedXML")
    pairs: list[tuple[str, str]] = []
    for tag in tag_set.findall("Tag"):
        key, value = child_text(tag, "Key"), child_text(tag, "Value")
        if key is None or value is None:
            raise S3Error("MalformedXML")
        pairs.append((key, value))
    return validate_tags(pairs)


def tagging_document(tags: dict[str, str]) -> bytes:
    tag_set: XmlChildren = [("Tag", [("Key", key), ("Value", value)]) for key, value in tags.items()]
    return to_xml("Tagging", [("TagSet", tag_set)])


async def get_object_tagging(req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None and req.key is not None
    tags = await req.store.get_tags(req.bucket, req.key)
    return xml_response(tagging_document(tags))


async def put_object_tagging(req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None and req.key is not None
    tags = parse_tagging(await read_body_bytes(req, limit=MAX_XML_SIZE))
    await req.store.put_tags(req.bucket, req.key, tags)
    return web.Response(status=200)


async def delete_object_tagging(req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None and req.key is not None
    await req.store.delete_tags(req.bucket, req.key)
    return web.Response(status=204)
