"""What the S3 server (``s3/``) and the S3 clients (``stage/``, ``ckpt/``) share: the maths of AWS
Signature Version 4 and the S3 XML namespace, in one place below both.

Public API: ``ALGORITHM``, ``S3_NAMESPACE``, ``hmac_sha256(key, message)``,
``derive_signing_key(secret_key, date, region, service="s3")``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

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
