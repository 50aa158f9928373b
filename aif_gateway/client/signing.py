"""SigV4 request signing for the client's own requests (path-style; the body's hash given).

The key derivation, the scope and the URI encoding are ``aif_gateway.awsv4``'s, shared with
the server's verifier (``s3/sigv4.py``).
"""

from __future__ import annotations

import hashlib
import hmac

from ..awsv4 import ALGORITHM, credential_scope, derive_signing_key, uri_encode

__all__ = ["EMPTY_SHA256", "UNSIGNED_PAYLOAD", "canonical_query", "sign", "sign_get"]

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def sign(
    *,
    method: str,
    access_key: str,
    secret_key: str,
    token: str | None,
    region: str,
    host: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    amz_date: str,
    payload_hash: str = EMPTY_SHA256,
) -> dict[str, str]:
    """The headers that sign ``method path?query`` (path already URI-encoded; query values raw)
    with ``headers`` (lower-case names; all of them are signed), plus the signing headers.
    ``payload_hash``: the body's SHA-256, or ``UNSIGNED_PAYLOAD``."""
    signed = dict(headers)
    signed["host"] = host
    signed["x-amz-content-sha256"] = payload_hash
    signed["x-amz-date"] = amz_date
    if token:
        signed["x-amz-security-token"] = token
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            path,
            canonical_query(query),
            "".join(f"{name}:{' '.join(signed[name].split())}\n" for name in names),
            ";".join(names),
            payload_hash,
        ]
    )
    day = amz_date[:8]
    scope = credential_scope(day, region)
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(derive_signing_key(secret_key, day, region), to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return signed


def canonical_query(query: dict[str, str]) -> str:
    return "&".join(f"{uri_encode(k)}={uri_encode(v)}" for k, v in sorted(query.items()))


def sign_get(
    *,
    access_key: str,
    secret_key: str,
    token: str | None,
    region: str,
    host: str,
    path: str,
    headers: dict[str, str],
    amz_date: str,
) -> dict[str, str]:
    """``sign`` for a GET without a query."""
    return sign(
        method="GET",
        access_key=access_key,
        secret_key=secret_key,
        token=token,
        region=region,
        host=host,
        path=path,
        query={},
        headers=headers,
        amz_date=amz_date,
    )
