"""S3 actions by name: the router picks a name, this table gives the handler.

Each handler takes an :class:`~aif_gateway.s3.context.S3Request` and returns an aiohttp
response or raises ``S3Error``. Modules are split by resource and verb family.
"""

from __future__ import annotations

from ..context import Handler
from . import bucket, copy, delete_objects, listing, multipart, object, service, tagging

__all__ = ["HANDLERS"]

HANDLERS: dict[str, Handler] = {
    "list_buckets": service.list_buckets,
    "create_bucket": bucket.create_bucket,
    "head_bucket": bucket.head_bucket,
    "delete_bucket": bucket.delete_bucket,
    "get_bucket_location": bucket.get_bucket_location,
    "get_bucket_versioning": bucket.get_bucket_versioning,
    "list_objects_v1": listing.list_objects_v1,
    "list_objects_v2": listing.list_objects_v2,
    "list_multipart_uploads": listing.list_multipart_uploads,
    "delete_objects": delete_objects.delete_objects,
    "get_object": object.get_object,
    "head_object": object.head_object,
    "put_object": object.put_object,
    "delete_object": object.delete_object,
    "copy_object": copy.copy_object,
    "get_object_tagging": tagging.get_object_tagging,
    "put_object_tagging": tagging.put_object_tagging,
    "delete_object_tagging": tagging.delete_object_tagging,
    "create_multipart_upload": multipart.create_multipart_upload,
    "upload_part": multipart.upload_part,
    "upload_part_copy": multipart.upload_part_copy,
    "complete_multipart_upload": multipart.complete_multipart_upload,
    "abort_multipart_upload": multipart.abort_multipart_upload,
    "list_parts": multipart.list_parts,
}
