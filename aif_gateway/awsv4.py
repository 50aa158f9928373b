"""What the S3 server (``s3/``) and the S3 client (``client/``) share: the maths of AWS
Signature Version 4 and the S3 XML namespace, in one place below both."""

from __future__ import annotations

import functools
import hashlib
import hmac
from urllib.parse import quote

__all__ = ["ALGORITHM", "S3_NAMESPACE", "credential_scope", "derive_signing_key", "hmac_sha256", "uri_encode"]

ALGORITHM = "AWS4-HMAC-SHA256"
S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"


def hmac_sha256(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


# A client signs with one key per day and region: caching the derivation saves four HMACs on
# nearly every request (server and client alike). Bounded, since the server's inputs come from
# requests.
@functools.lru_cache(maxsize=1024)
def derive_signing_key(secret_key: str, date: str, region: str, service: str = "s3") -> bytes:
    key = hmac_sha256(("AWS4" + secret_key).encode("utf-8"), date)
    for part in (region, service, "aws4_request"):
        key = hmac_sha256(key, part)
    return key


def uri_encode(value: str | bytes) -> str:
    """SigV4's URI encoding: RFC 3986 unreserved characters stay, everything else is %XX with
    upper-case hex (a str is encoded as UTF-8 first)."""
    return quote(value, safe="-_.~")


def credential_scope(date: str, region: str, service: str = "s3") -> str:
    return f"{date}/{region}/{service}/aws4_request"
