"""Bucket-level actions: CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation and the
GetBucketVersioning answer that says, truthfully, that nothing is versioned."""

from __future__ import annotations

import re

from aiohttp import web

from ...errors import S3Error
from ..body import read_body_bytes
from ..context import S3Request
from ..responses import xml_response
from ..xmlio import parse_xml, to_xml

__all__ = ["create_bucket", "delete_bucket", "get_bucket_location", "get_bucket_versioning", "head_bucket"]

# S3's general-purpose bucket naming rules: 3-63 characters of lower-case letters, digits,
# dots and hyphens, starting and ending with a letter or digit, no "..", not an IPv4 address.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d+\.\d+\.\d+\.\d+")
MAX_CONFIGURATION_BYTES = 64 * 1024
_US_EAST_1 = "us-east-1"


def valid_bucket_name(name: str) -> bool:
    return bool(_BUCKET_NAME.fullmatch(name)) and ".." not in name and not _IPV4.fullmatch(name)


def _bucket(req: S3Request) -> str:
    assert req.bucket is not None, "the router sends only bucket requests here"
    return req.bucket


async def create_bucket(req: S3Request) -> web.StreamResponse:
    bucket = _bucket(req)
    if not valid_bucket_name(bucket):
        raise S3Error("InvalidBucketName", extra={"BucketName": bucket})
    body = await read_body_bytes(req, limit=MAX_CONFIGURATION_BYTES)
    if body.strip():
        # The LocationConstraint is not used (one location), but the document must be valid.
        root = parse_xml(body)
        if root.tag != "CreateBucketConfiguration":
            raise S3Error("MalformedXML")
    await req.store.create_bucket(bucket, req.auth.identity.name)
    return web.Response(status=200, headers={"Location": f"/{bucket}"})


async def head_bucket(req: S3Request) -> web.StreamResponse:
    await req.store.head_bucket(_bucket(req))
    # Authentication accepted only the gateway's region, so the one the client signed for is it.
    return web.Response(status=200, headers={"x-amz-bucket-region": req.auth.region})


async def delete_bucket(req: S3Request) -> web.StreamResponse:
    await req.store.delete_bucket(_bucket(req))
    return web.Response(status=204)


async def get_bucket_location(req: S3Request) -> web.StreamResponse:
    await req.store.head_bucket(_bucket(req))
    region = req.auth.region
    # us-east-1 is spelled as an empty constraint, as S3 does.
    constraint = "" if region == _US_EAST_1 else region
    return xml_response(to_xml("LocationConstraint", constraint))


async def get_bucket_versioning(req: S3Request) -> web.StreamResponse:
    await req.store.head_bucket(_bucket(req))
    return xml_response(to_xml("VersioningConfiguration", []))
