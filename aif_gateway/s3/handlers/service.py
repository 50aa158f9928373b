"""Service-level actions: ListBuckets."""

from __future__ import annotations

from aiohttp import web

from ..context import S3Request
from ..responses import iso8601, xml_response
from ..xmlio import XmlChildren, to_xml

__all__ = ["list_buckets"]


def owner_xml(name: str) -> XmlChildren:
    # There are no AWS canonical ids here: the identity's name serves as both.
    return [("ID", name), ("DisplayName", name)]


async def list_buckets(req: S3Request) -> web.StreamResponse:
    """Every bucket, optionally filtered by ``prefix`` (the whole list fits one page)."""
    prefix = req.query.get("prefix", "")
    buckets = sorted(await req.store.list_buckets(), key=lambda b: b.name)
    entries: XmlChildren = [
        ("Bucket", [("Name", b.name), ("CreationDate", iso8601(b.created_ns))])
        for b in buckets
        if b.name.startswith(prefix)
    ]
    children: XmlChildren = [
        ("Owner", owner_xml(req.auth.identity.name)),
        ("Buckets", entries),
        ("Prefix", prefix if "prefix" in req.query else None),
    ]
    return xml_response(to_xml("ListAllMyBucketsResult", children))
