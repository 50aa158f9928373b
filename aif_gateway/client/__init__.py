"""The one S3 client of aif-gateway's own tools (``stage/``, ``ckpt/``): signing, blocking
HTTP/1.1, retries, the XML of the operations it sends, and the aiobotocore set-up for what it
leaves to botocore. It knows nothing of its callers: failures are S3's (botocore's
``ClientError``), the transport's (``OSError``) or its own (``errors``), and callers turn them
into messages of their own.

Modules: ``names`` (s3:// URLs, request paths, ETags), ``settings`` (endpoint and credentials
options), ``signing`` (SigV4), ``http`` (connection pool), ``signed`` (``SignedS3``: signed
requests on that pool), ``xml``, ``errors``, ``retries``, ``boto`` (aiobotocore).
"""

from __future__ import annotations

from ..lazy_exports import lazy_exports

# Names load on first use (PEP 562): parsing an s3:// URL does not import botocore, and nothing
# here imports aiobotocore until a botocore client is opened.
_HOMES = {
    "S3Url": "names",
    "is_s3_url": "names",
    "object_path": "names",
    "strip_etag": "names",
    "usable_key": "names",
    "ClientOptions": "settings",
    "S3Options": "settings",
    "configured_endpoint": "settings",
    "EMPTY_SHA256": "signing",
    "UNSIGNED_PAYLOAD": "signing",
    "canonical_query": "signing",
    "sign": "signing",
    "sign_get": "signing",
    "Endpoint": "http",
    "FileError": "http",
    "Pool": "http",
    "Response": "http",
    "SignedS3": "signed",
    "complete_upload_body": "xml",
    "parse_error": "xml",
    "parse_list_page": "xml",
    "parse_upload_id": "xml",
    "NoCredentials": "errors",
    "SetupError": "errors",
    "TruncatedBody": "errors",
    "UnknownProfile": "errors",
    "classify": "errors",
    "client_error": "errors",
    "error_code": "errors",
    "error_message": "errors",
    "http_status": "errors",
    "backoff_s": "retries",
    "is_transient": "retries",
    "s3_errors": "retries",
    "with_retries": "retries",
    "with_retries_sync": "retries",
    "list_objects": "boto",
    "open_client": "boto",
}
__all__ = sorted(_HOMES)  # noqa: PLE0605 (the names load on first use, from _HOMES)

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
