"""AWS Signature Version 2: ``Authorization: AWS <key>:<signature>`` and the presigned form
``?AWSAccessKeyId=..&Expires=..&Signature=..``, which boto3's ``generate_presigned_url`` makes by
default against a custom endpoint, and which older tools (``s3cmd --signature-v2``) send.

The signature is HMAC-SHA1 over the method, Content-MD5, Content-Type, the date (the Date header,
empty when x-amz-date is sent; for the presigned form, Expires), the x-amz-* headers, and the
resource: the path as sent (with the bucket first when it came in the Host), plus the
sub-resources of the query that S3 signs. The body is not covered (Content-MD5 is, and is then
checked against the body like any other). Same clock rules as SigV4 where they apply: 15 minutes
of skew for the header form; a presigned URL at most a week ahead, refused once expired.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from ..errors import S3Error
from ..identity import Identity
from .sigv4 import (
    MAX_CLOCK_SKEW_S,
    MAX_PRESIGN_EXPIRES_S,
    PRESIGNED,
    UNSIGNED_PAYLOAD,
    AuthContext,
    lookup_identity,
    one_mechanism_only,
    parse_amz_date,
    server_time,
    signatures_equal,
)

__all__ = ["authenticate_v2", "signed_with_v2"]

_HEADER_SCHEME = "AWS"
_QUERY_PARAMS = ("AWSAccessKeyId", "Expires", "Signature")
# The query parameters S3 puts in the signed resource (as botocore's HmacV1Auth lists them).
_SIGNED_SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber", "policy",
        "requestPayment", "torrent", "versioning", "versionId", "versions", "website", "uploads", "uploadId",
        "response-content-type", "response-content-language", "response-expires", "response-cache-control",
        "response-content-disposition", "response-content-encoding", "delete", "lifecycle", "tagging", "restore",
        "storageClass", "notification", "replication", "analytics", "metrics", "inventory", "select",
        "select-type", "object-lock",
    }
)  # fmt: skip


def signed_with_v2(headers: Mapping[str, str], raw_query: str) -> bool:
    """Whether the request carries a Signature Version 2 (header or presigned)."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        return authorization.strip().startswith(_HEADER_SCHEME + " ")
    names = {pair.partition("=")[0] for pair in raw_query.split("&") if pair}
    return "AWSAccessKeyId" in names and "X-Amz-Algorithm" not in names


def authenticate_v2(
    method: str,
    resource_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    lookup: Callable[[str], Identity | None],
    *,
    region: str,
    now: float | None = None,
) -> AuthContext:
    """Verify a SigV2 request. ``resource_path``: the path as sent (still encoded), with
    ``/bucket`` in front when the bucket came in the Host header."""
    now = time.time() if now is None else now
    params = _query_params(raw_query)
    authorization = headers.get("Authorization")
    if authorization is not None:
        if "Signature" in params or "X-Amz-Signature" in params:
            raise one_mechanism_only()
        access_key, sep, signature = authorization.strip()[len(_HEADER_SCHEME) + 1 :].strip().rpartition(":")
        if not sep or not access_key or not signature:
            raise S3Error(
                "AuthorizationHeaderMalformed", "The authorization header is malformed; expecting AWS KEY:SIG."
            )
        date_lines = _checked_header_date(headers, now)
        payload = UNSIGNED_PAYLOAD
    else:
        if not all(params.get(name) for name in _QUERY_PARAMS):
            raise S3Error(
                "AccessDenied",
                "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
            )
        access_key, signature = params["AWSAccessKeyId"], params["Signature"]
        date_lines = [_checked_expires(params["Expires"], now)]
        payload = PRESIGNED
    identity = lookup_identity(lookup, access_key)
    # A bucket-level request in path style (/bucket) is signed as /bucket/ by botocore, as it
    # is in the Host style (the path "/" after /bucket); both are the same resource.
    resources = [resource_path]
    if resource_path.count("/") == 1 and len(resource_path) > 1:
        resources.append(resource_path + "/")
    if not any(
        signatures_equal(
            _sign(identity.secret_key, _string_to_sign(method, headers, line, resource, raw_query)), signature
        )
        for line in date_lines
        for resource in resources
    ):
        raise S3Error("SignatureDoesNotMatch")
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    # No SigV4 scope: the gateway's own region, and "sigv2" where SigV4 says aws4_request.
    return AuthContext(identity, payload, None, b"", amz_date, f"{amz_date[:8]}/{region}/s3/sigv2", signature)


def _query_params(raw_query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in raw_query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            params.setdefault(unquote(name), unquote(value))
    return params


def _checked_header_date(headers: Mapping[str, str], now: float) -> list[str]:
    """The date lines the string to sign may have, once the request's time is within the allowed
    skew: AWS's rule (empty when x-amz-date is sent: x-amz-date is signed among the x-amz-*
    headers), and, where a Date header is sent too, that header, as botocore's V2 signer signs it."""
    amz_date = headers.get("x-amz-date")
    text = amz_date if amz_date is not None else headers.get("Date")
    when = parse_amz_date(text.strip()) if text else None  # yyyymmddThhmmssZ, as SigV4 sends it
    if when is None and text:
        try:
            when = parsedate_to_datetime(text.strip()).timestamp()  # RFC 1123, as the Date header is
        except (TypeError, ValueError, IndexError):
            when = None
    if when is None:
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    if abs(now - when) > MAX_CLOCK_SKEW_S:
        raise S3Error(
            "RequestTimeTooSkewed",
            extra={
                "RequestTime": text.strip() if text else "",
                "ServerTime": server_time(now),
                "MaxAllowedSkewMilliseconds": str(MAX_CLOCK_SKEW_S * 1000),
            },
        )
    if amz_date is None:
        return [(text or "").strip()]
    date = headers.get("Date")
    return [""] if date is None else ["", date.strip()]


def _checked_expires(text: str, now: float) -> str:
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise S3Error("AccessDenied", "Expires must be a number of seconds since the epoch")
    expires = int(text)
    if now > expires:
        raise S3Error(
            "AccessDenied",
            "Request has expired",
            extra={"Expires": server_time(expires), "ServerTime": server_time(now)},
        )
    if expires > now + MAX_PRESIGN_EXPIRES_S + MAX_CLOCK_SKEW_S:
        raise S3Error("AccessDenied", "Expires must be less than a week (604800 seconds) ahead")
    return text


def _string_to_sign(method: str, headers: Mapping[str, str], date_line: str, path: str, raw_query: str) -> str:
    amz: dict[str, list[str]] = {}
    for name, value in _items(headers):
        lower = name.lower()
        if lower.startswith("x-amz-"):
            amz.setdefault(lower, []).append(value.strip())
    lines = [
        method.upper(),
        headers.get("Content-MD5", "").strip(),
        headers.get("Content-Type", "").strip(),
        date_line,
        *(f"{name}:{','.join(values)}" for name, values in sorted(amz.items())),
    ]
    return "\n".join(lines) + "\n" + _canonical_resource(path, raw_query)


def _items(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    # Every value of a repeated header (aiohttp's CIMultiDict), in order.
    items = getattr(headers, "items", None)
    return list(items()) if items is not None else []


def _canonical_resource(path: str, raw_query: str) -> str:
    signed = []
    for pair in raw_query.split("&"):
        name, sep, value = pair.partition("=")
        if name in _SIGNED_SUBRESOURCES:
            signed.append((name, f"{name}={unquote(value)}" if sep else name))
    signed.sort(key=lambda item: item[0])
    return path + ("?" + "&".join(text for _, text in signed) if signed else "")


def _sign(secret_key: str, string_to_sign: str) -> str:
    digest = hmac.new(secret_key.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")
