"""DeleteObjects: ``POST /bucket?delete`` with up to 1,000 keys in one document.

Every key gets its own outcome: a key the store refuses (unsafe, too long, permission) is an
``<Error>`` entry in a 200 answer, never a failed request. A missing key counts as deleted,
as in S3. Quiet mode leaves the ``<Deleted>`` entries out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from ...errors import S3Error
from ...store.base import Store
from ..body import read_body_bytes
from ..context import S3Request
from ..integrity import has_integrity_header
from ..responses import xml_response
from ..xmlio import MAX_XML_SIZE, XmlChildren, child_text, parse_items, to_xml

__all__ = ["delete_objects", "parse_delete"]

MAX_KEYS = 1000
# Deletes in flight at once: parallel filesystems serve metadata operations concurrently, and
# a bound keeps one request from flooding the executor.
_CONCURRENCY = 32
_NO_VERSIONS = "null"


@dataclass(frozen=True)
class DeleteEntry:
    key: str
    version_id: str | None


@dataclass(frozen=True)
class DeleteRequest:
    quiet: bool
    entries: list[DeleteEntry]


def parse_delete(body: bytes) -> DeleteRequest:
    """``<Delete><Quiet/><Object><Key/><VersionId/></Object>...</Delete>``."""
    root, elements = parse_items(body, "Delete", "Object", MAX_KEYS)
    entries = []
    for element in elements:
        key = child_text(element, "Key")
        if key is None:
            raise S3Error("MalformedXML")
        entries.append(DeleteEntry(key, child_text(element, "VersionId")))
    quiet = (child_text(root, "Quiet") or "false").strip().lower() == "true"
    return DeleteRequest(quiet, entries)


async def _delete_one(store: Store, bucket: str, entry: DeleteEntry, limit: asyncio.Semaphore) -> S3Error | None:
    if entry.version_id is not None and entry.version_id != _NO_VERSIONS:
        return S3Error("NotImplemented", "Deleting a specific object version is not implemented by this gateway.")
    async with limit:
        try:
            await store.delete_object(bucket, entry.key)
        except S3Error as err:
            return err
    return None


def result_document(request: DeleteRequest, outcomes: list[S3Error | None]) -> bytes:
    children: XmlChildren = []
    for entry, error in zip(request.entries, outcomes):
        if error is None:
            if not request.quiet:
                children.append(("Deleted", [("Key", entry.key), ("VersionId", entry.version_id)]))
        else:
            children.append(
                (
                    "Error",
                    [
                        ("Key", entry.key),
                        ("VersionId", entry.version_id),
                        ("Code", error.code),
                        ("Message", error.message),
                    ],
                )
            )
    return to_xml("DeleteResult", children)


async def delete_objects(req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    if not has_integrity_header(req.http.headers):
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5")
    request = parse_delete(await read_body_bytes(req, limit=MAX_XML_SIZE))
    # A missing bucket fails the whole request, not each key.
    await req.store.head_bucket(req.bucket)
    limit = asyncio.Semaphore(_CONCURRENCY)
    outcomes = await asyncio.gather(*(_delete_one(req.store, req.bucket, entry, limit) for entry in request.entries))
    return xml_response(result_document(request, list(outcomes)))
