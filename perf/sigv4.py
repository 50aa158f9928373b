"""A minimal AWS Signature Version 4 signer for the benchmark's own HTTP driver.

Written here, not imported from the gateway, so that a signing bug in the gateway cannot hide
behind the same bug in its client; and not botocore, whose per-request cost (~1 ms of Python)
would compete with the servers for the machine's two cores. Payloads go as UNSIGNED-PAYLOAD:
hashing the body on the client would measure the client.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

REGION = "us-east-1"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """S3's URI encoding: everything but unreserved characters (and '/' in paths) escaped."""
    return quote(text, safe="-_.~/" if keep_slash else "-_.~")


class Signer:
    def __init__(self, access_key: str, secret_key: str, host: str) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.host = host
        self._day = ""
        self._key = b""

    def _signing_key(self, day: str) -> bytes:
        # Cached per day: the HMAC chain is four hashes that would otherwise run per request.
        if day != self._day:
            key = _hmac(f"AWS4{self.secret_key}".encode(), day)
            for part in (REGION, "s3", "aws4_request"):
                key = _hmac(key, part)
            self._day, self._key = day, key
        return self._key

    def headers(self, method: str, path: str, query: dict[str, str] | None = None) -> dict[str, str]:
        """Headers that sign ``method path?query`` (``path`` already URI-encoded)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = stamp[:8]
        canonical_query = "&".join(
            f"{uri_encode(k, keep_slash=False)}={uri_encode(v, keep_slash=False)}"
            for k, v in sorted((query or {}).items())
        )
        signed = "host;x-amz-content-sha256;x-amz-date"
        canonical = "\n".join(
            [
                method,
                path,
                canonical_query,
                f"host:{self.host}",
                f"x-amz-content-sha256:{UNSIGNED_PAYLOAD}",
                f"x-amz-date:{stamp}",
                "",
                signed,
                UNSIGNED_PAYLOAD,
            ]
        )
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        return {
            "x-amz-date": stamp,
            "x-amz-content-sha256": UNSIGNED_PAYLOAD,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}",
        }
