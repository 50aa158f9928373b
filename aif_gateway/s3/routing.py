"""Where a request goes: bucket and key from the raw URL, then the S3 action.

The key is never normalised: the store, not the URL parser, decides which keys it can map
safely.

Only the sub-resources below decide the action; other query parameters (``prefix``,
``x-id`` that SDKs add, ``response-content-type``...) belong to the handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote_to_bytes

from multidict import MultiDict, MultiDictProxy

from ..errors import S3Error

__all__ = ["action_for", "locate", "parse_query", "split_raw_path", "virtual_host_bucket"]

MAX_KEY_BYTES = 1024

# Sub-resources S3 defines that this gateway does not implement. Listing them (rather than
# answering NotImplemented for any unknown parameter) keeps harmless extras such as x-id working.
UNSUPPORTED_SUBRESOURCES = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "attributes",
        "cors",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "lifecycle",
        "logging",
        "metadataConfiguration",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "policy",
        "policyStatus",
        "publicAccessBlock",
        "renameObject",
        "replication",
        "requestPayment",
        "restore",
        "retention",
        "select",
        "session",
        "torrent",
        "versions",
        "website",
    }
)
# Bucket tagging is a different API from object tagging and is not served.
UNSUPPORTED_BUCKET_SUBRESOURCES = UNSUPPORTED_SUBRESOURCES | {"tagging"}


def split_raw_path(raw_path: str) -> tuple[str, str]:
    """``(path, raw_query)``: aiohttp's ``raw_path`` holds both."""
    path, _, raw_query = raw_path.partition("?")
    return path, raw_query


def _decode(raw: str, what: str) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", f"The {what} is not valid UTF-8 once percent-decoded.") from None


def parse_query(raw_query: str) -> MultiDictProxy[str]:
    """The query, decoded once (``+`` is a space)."""
    pairs: MultiDict[str] = MultiDict()
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.add(_decode(name.replace("+", " "), "query"), _decode(value.replace("+", " "), "query"))
    return MultiDictProxy(pairs)


def _strip_port(host: str) -> str:
    if host.startswith("["):  # IPv6 literal: [::1]:9000
        return host.partition("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


def virtual_host_bucket(host: str | None, domain: str | None) -> str | None:
    """The bucket a virtual-host style request names in its Host (``bucket.<domain>``), else None."""
    if not host or not domain:
        return None
    name = _strip_port(host.strip()).lower().rstrip(".")
    suffix = "." + domain.lower().strip(".")
    if name.endswith(suffix) and len(name) > len(suffix):
        return name[: -len(suffix)]
    return None


def _checked_key(raw: str) -> str | None:
    if not raw:
        return None
    key = _decode(raw, "object key")
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", extra={"Size": str(size), "MaxSizeAllowed": str(MAX_KEY_BYTES)})
    return key


def locate(path: str, host: str | None, domain: str | None) -> tuple[str | None, str | None]:
    """``(bucket, key)``, either None, from path style ``/bucket/key`` or virtual-host style
    ``Host: bucket.<domain>``. The key is the raw remainder decoded once with no normalisation:
    ``a//b``, ``a/../b`` and ``%2F`` reach the store as sent, and the store rejects what it cannot
    map safely."""
    if not path.startswith("/"):
        raise S3Error("InvalidURI")
    bucket = virtual_host_bucket(host, domain)
    if bucket is not None:
        return bucket, _checked_key(path[1:])
    bucket_raw, _, key_raw = path[1:].partition("/")
    if not bucket_raw:
        return None, None
    return _decode(bucket_raw, "bucket name"), _checked_key(key_raw)


def _unsupported(query: Mapping[str, str], names: frozenset[str]) -> None:
    for name in query:
        if name in names:
            raise S3Error("NotImplemented", f"The ?{name} sub-resource is not implemented by this gateway.")


def _method_not_allowed(method: str, level: str) -> S3Error:
    return S3Error(
        "MethodNotAllowed",
        extra={"Method": method, "ResourceType": level},
        headers={"Allow": "GET, HEAD, PUT, POST, DELETE"},
    )


def _service_action(method: str) -> str:
    if method == "GET":
        return "list_buckets"
    raise _method_not_allowed(method, "SERVICE")


def _bucket_action(method: str, query: Mapping[str, str]) -> str:
    _unsupported(query, UNSUPPORTED_BUCKET_SUBRESOURCES)
    if method == "GET":
        if "uploads" in query:
            return "list_multipart_uploads"
        if "location" in query:
            return "get_bucket_location"
        if "versioning" in query:
            return "get_bucket_versioning"
        return "list_objects_v2" if query.get("list-type") == "2" else "list_objects_v1"
    if method == "HEAD":
        return "head_bucket"
    if method == "PUT":
        if "versioning" in query:
            raise S3Error("NotImplemented", "Versioning is not implemented by this gateway.")
        return "create_bucket"
    if method == "DELETE":
        return "delete_bucket"
    if method == "POST":
        if "delete" in query:
            return "delete_objects"
        raise S3Error("NotImplemented", "POST object uploads (browser forms) are not implemented.")
    raise _method_not_allowed(method, "BUCKET")


def _object_action(method: str, query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    _unsupported(query, UNSUPPORTED_SUBRESOURCES | {"versioning"})
    version_id = query.get("versionId")
    if version_id is not None and version_id != "null":
        # Nothing here is versioned; "null" is the one version every object has.
        raise S3Error(
            "InvalidArgument",
            "Invalid version id specified",
            extra={"ArgumentName": "versionId", "ArgumentValue": version_id},
        )
    multipart = "uploadId" in query
    if method == "GET":
        if "tagging" in query:
            return "get_object_tagging"
        return "list_parts" if multipart else "get_object"
    if method == "HEAD":
        return "head_object"
    if method == "PUT":
        if "tagging" in query:
            return "put_object_tagging"
        copy = "x-amz-copy-source" in headers
        if multipart or "partNumber" in query:
            return "upload_part_copy" if copy else "upload_part"
        return "copy_object" if copy else "put_object"
    if method == "POST":
        if "uploads" in query:
            return "create_multipart_upload"
        if multipart:
            return "complete_multipart_upload"
        raise _method_not_allowed(method, "OBJECT")
    if method == "DELETE":
        if "tagging" in query:
            return "delete_object_tagging"
        return "abort_multipart_upload" if multipart else "delete_object"
    raise _method_not_allowed(method, "OBJECT")


def action_for(
    method: str, bucket: str | None, key: str | None, query: Mapping[str, str], headers: Mapping[str, str]
) -> str:
    """The handler name (a key of ``handlers.HANDLERS``); ``NotImplemented`` for sub-resources this
    gateway does not serve, ``MethodNotAllowed`` for a method a resource does not take."""
    if bucket is None:
        return _service_action(method)
    if key is None:
        return _bucket_action(method, query)
    return _object_action(method, query, headers)
