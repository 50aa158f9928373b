"""AWS Signature Version 4 for S3: the Authorization header and presigned URLs.

:func:`authenticate` rebuilds the canonical request from what arrived on the wire, recomputes
the signature with the caller's secret and returns an :class:`AuthContext`: who is calling and
how the body is protected (a hex SHA-256 to check later, aws-chunked signatures, or nothing).
Checking the body against that promise is the body reader's job (``chunked.py``, the PUT path).

A signature covers only the headers it names, so a request is refused when it carries an
``x-amz-*`` header outside SignedHeaders: those headers choose what the server does
(``x-amz-copy-source`` turns a PUT into a copy), and a presigned URL or a captured request
must not be extended with them. The credential scope must name the gateway's region.

Error codes and messages follow what AWS S3 answers, because SDKs and users search for them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote_to_bytes

from ..awsv4 import ALGORITHM, credential_scope, derive_signing_key, uri_encode
from ..config import DEFAULT_REGION
from ..errors import S3Error
from ..identity import Identity

__all__ = [
    "AuthContext",
    "EMPTY_SHA256",
    "SIGNED_PAYLOAD",
    "STREAMING_MODES",
    "STREAMING_SIGNED",
    "STREAMING_SIGNED_TRAILER",
    "STREAMING_UNSIGNED_TRAILER",
    "MAX_CLOCK_SKEW_S",
    "MAX_PRESIGN_EXPIRES_S",
    "PRESIGNED",
    "UNSIGNED_PAYLOAD",
    "authenticate",
    "lookup_identity",
    "one_mechanism_only",
    "parse_amz_date",
    "server_time",
    "canonical_query",
    "canonical_uri",
    "signatures_equal",
]

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_MODES = (STREAMING_SIGNED, STREAMING_UNSIGNED_TRAILER, STREAMING_SIGNED_TRAILER)
# AuthContext.payload for a hex digest the body must match.
SIGNED_PAYLOAD = "SHA256"
# AuthContext.payload for a presigned URL whose body is not covered by the signature.
PRESIGNED = "PRESIGNED"

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_CLOCK_SKEW_S = 15 * 60
MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600

_AMZ_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z", re.ASCII)
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_UNSUPPORTED_MECHANISM = "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
# x-amz-* headers a request may carry outside SignedHeaders. x-amz-content-sha256 is the
# payload hash line of the canonical request, so the signature covers its value anyway; AWS
# accepts it unsigned and some clients send it so (botocore's presigner never lists it).
_COVERED_WITHOUT_LISTING = frozenset({"x-amz-content-sha256"})
_PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)


@dataclass(frozen=True)
class AuthContext:
    identity: Identity
    payload: str  # UNSIGNED-PAYLOAD, SHA256, PRESIGNED or one of STREAMING_MODES
    content_sha256: str | None  # lower-case hex the body must match when payload == "SHA256"
    signing_key: bytes  # for aws-chunked chunk and trailer signatures
    amz_date: str  # yyyymmddThhmmssZ
    scope: str  # date/region/service/aws4_request
    seed_signature: str  # the request's signature: the first chunk's "previous signature"

    @property
    def region(self) -> str:
        """The region of the credential scope: the gateway's own, once authenticated."""
        return self.scope.split("/")[1]


@dataclass(frozen=True)
class _Credential:
    access_key: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return credential_scope(self.date, self.region, self.service)


def signatures_equal(expected: str, provided: str) -> bool:
    # compare_digest refuses non-ASCII str; a garbled signature must fail, not crash.
    return hmac.compare_digest(expected.encode(), provided.encode("utf-8", "replace"))


# -- canonical request ------------------------------------------------------------------------


def _unquote(raw: str) -> bytes:
    # The bytes as sent: aiohttp decodes a byte that is not UTF-8 as a lone surrogate, which
    # plain UTF-8 cannot encode (found by tests/unit/s3/test_sigv4_fuzz.py).
    return unquote_to_bytes(raw.encode("utf-8", "surrogateescape"))


def canonical_uri(raw_path: str) -> str:
    """Each segment decoded once and re-encoded once: S3 does not double-encode."""
    if not raw_path:
        return "/"
    return "/".join(uri_encode(_unquote(segment)) for segment in raw_path.split("/"))


def _query_pairs(raw_query: str) -> list[tuple[bytes, bytes]]:
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        # In a query string "+" is a space (form encoding); clients that mean "+" send %2B.
        pairs.append((_unquote(name.replace("+", " ")), _unquote(value.replace("+", " "))))
    return pairs


def canonical_query(pairs: list[tuple[bytes, bytes]], exclude: bytes | None = None) -> str:
    encoded = sorted((uri_encode(n), uri_encode(v)) for n, v in pairs if n != exclude)
    return "&".join(f"{n}={v}" for n, v in encoded)


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [] if value is None else [value]


def canonical_headers(headers: Mapping[str, str], signed_headers: list[str]) -> str:
    lines = []
    for name in signed_headers:
        # Repeated headers are joined with commas; inner whitespace runs collapse to one space.
        value = ",".join(" ".join(v.split()) for v in _header_values(headers, name))
        lines.append(f"{name}:{value}\n")
    return "".join(lines)


def string_to_sign(
    method: str,
    uri: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: str,
    payload_hash: str,
    amz_date: str,
    scope: str,
) -> tuple[str, str]:
    """(canonical request, string to sign); both go into SignatureDoesNotMatch for debugging."""
    canonical_request = "\n".join(
        [method, uri, query, canonical_headers(headers, signed_headers.split(";")), signed_headers, payload_hash]
    )
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    return canonical_request, f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


# -- parsing helpers --------------------------------------------------------------------------


def _parse_credential(value: str) -> _Credential | None:
    parts = value.rsplit("/", 4)
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts[:4]):
        return None
    access_key, date, region, service, _ = parts
    # The date and region go into the signing key's HMACs: ASCII only (a header byte that is
    # not UTF-8 arrives as a lone surrogate, which cannot be encoded; "٢" is a digit to isdigit).
    if service != "s3" or not (len(date) == 8 and date.isascii() and date.isdigit()) or not region.isascii():
        return None
    return _Credential(access_key, date, region, service)


def parse_amz_date(value: str) -> float | None:
    # Fixed widths (yyyymmddThhmmssZ); datetime checks the ranges. strptime did the same at
    # ten times the cost, on every request.
    match = _AMZ_DATE.fullmatch(value)
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = map(int, match.groups())
        when = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    return when.timestamp()


def _valid_signed_headers(value: str) -> bool:
    names = value.split(";")
    return all(names) and all(n == n.lower() for n in names) and "host" in names


def _unsigned_amz_headers(headers: Mapping[str, str], signed_headers: str) -> list[str]:
    """The x-amz-* headers present but not signed, lower-case, in order of arrival."""
    signed = set(signed_headers.split(";")) | _COVERED_WITHOUT_LISTING
    unsigned: list[str] = []
    for name in headers.keys():  # a repeated header appears once per occurrence
        lower = name.lower()
        if lower.startswith("x-amz-") and lower not in signed and lower not in unsigned:
            unsigned.append(lower)
    return unsigned


def _refuse_unsigned_amz_headers(headers: Mapping[str, str], signed_headers: str) -> None:
    unsigned = _unsigned_amz_headers(headers, signed_headers)
    if unsigned:
        raise S3Error(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            extra={"HeadersNotSigned": ", ".join(unsigned)},
        )


def _payload_mode(content_sha256: str) -> tuple[str, str | None]:
    if content_sha256 in (UNSIGNED_PAYLOAD, *STREAMING_MODES):
        return content_sha256, None
    if _HEX_SHA256.fullmatch(content_sha256):
        return SIGNED_PAYLOAD, content_sha256.lower()
    raise S3Error(
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER "
        "or a valid sha256 value.",
        extra={"ArgumentName": "x-amz-content-sha256", "ArgumentValue": content_sha256},
    )


def server_time(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def _verify(
    identity: Identity,
    credential: _Credential,
    provided: str,
    method: str,
    raw_path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: str,
    content_sha256: str,
    amz_date: str,
) -> bytes:
    """The signing key when ``provided`` is the request's signature, else SignatureDoesNotMatch.

    ``query`` is the canonical query: header auth signs all of it, presigned URLs all but
    X-Amz-Signature.
    """
    canonical_request, sts = string_to_sign(
        method, canonical_uri(raw_path), query, headers, signed_headers, content_sha256, amz_date, credential.scope
    )
    key = derive_signing_key(identity.secret_key, credential.date, credential.region, credential.service)
    expected = hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()
    if not signatures_equal(expected, provided):
        raise S3Error(
            "SignatureDoesNotMatch",
            extra={
                "AWSAccessKeyId": credential.access_key,
                "StringToSign": sts,
                "SignatureProvided": provided,
                "CanonicalRequest": canonical_request,
            },
        )
    return key


def lookup_identity(lookup: Callable[[str], Identity | None], access_key: str) -> Identity:
    identity = lookup(access_key)
    if identity is None:
        raise S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": access_key})
    return identity


# -- entry point ------------------------------------------------------------------------------


def authenticate(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    lookup: Callable[[str], Identity | None],
    *,
    region: str = DEFAULT_REGION,
    now: float | None = None,
) -> AuthContext:
    """Verify a SigV4 request; ``raw_path`` and ``raw_query`` exactly as sent (still encoded).

    ``region`` is the gateway's: the only one a credential scope may name.
    """
    now = time.time() if now is None else now
    pairs = _query_pairs(raw_query)
    names = {name for name, _ in pairs}
    authorization = headers.get("Authorization")
    presigned = b"X-Amz-Algorithm" in names
    if authorization is not None and presigned:
        raise one_mechanism_only()
    if authorization is not None:
        return _authenticate_header(method, raw_path, pairs, headers, authorization, lookup, region, now)
    if presigned:
        return _authenticate_presigned(method, raw_path, pairs, headers, lookup, region, now)
    if b"AWSAccessKeyId" in names or b"Signature" in names:
        raise S3Error("InvalidRequest", _UNSUPPORTED_MECHANISM)
    raise S3Error("AccessDenied", "Anonymous access is not allowed; sign requests with AWS SigV4.")


def _authenticate_header(
    method: str,
    raw_path: str,
    pairs: list[tuple[bytes, bytes]],
    headers: Mapping[str, str],
    authorization: str,
    lookup: Callable[[str], Identity | None],
    region: str,
    now: float,
) -> AuthContext:
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme != ALGORITHM:
        raise S3Error("InvalidRequest", _UNSUPPORTED_MECHANISM)
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    if not all(fields.get(k) for k in ("Credential", "SignedHeaders", "Signature")):
        raise S3Error(
            "AuthorizationHeaderMalformed",
            "The authorization header is malformed; it must contain Credential, SignedHeaders and Signature.",
        )
    credential = _parse_credential(fields["Credential"])
    if credential is None:
        raise S3Error(
            "AuthorizationHeaderMalformed",
            "The authorization header is malformed; the Credential is mal-formed; expecting "
            '"<YOUR-AKID>/YYYYMMDD/REGION/s3/aws4_request".',
        )
    if credential.region != region:
        raise S3Error(
            "AuthorizationHeaderMalformed",
            f"The authorization header is malformed; {_wrong_region(credential, region)}",
            extra={"Region": region},
        )
    signed_headers = fields["SignedHeaders"]
    if not _valid_signed_headers(signed_headers):
        raise S3Error(
            "AuthorizationHeaderMalformed",
            "The authorization header is malformed; SignedHeaders must be lower-case names "
            "separated by ';' and include host.",
        )
    content_sha256 = headers.get("x-amz-content-sha256")
    if content_sha256 is None:
        raise S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
    content_sha256 = content_sha256.strip()
    payload, digest = _payload_mode(content_sha256)

    # Every SigV4 client sends x-amz-date; the HTTP Date header is not accepted in its place.
    amz_date = headers.get("x-amz-date", "").strip()
    request_time = parse_amz_date(amz_date)
    if request_time is None:
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    if credential.date != amz_date[:8]:
        raise S3Error(
            "AuthorizationHeaderMalformed",
            "The authorization header is malformed; Invalid credential date. Date is not the same as X-Amz-Date.",
        )
    identity = lookup_identity(lookup, credential.access_key)
    if abs(now - request_time) > MAX_CLOCK_SKEW_S:
        raise S3Error(
            "RequestTimeTooSkewed",
            extra={
                "RequestTime": amz_date,
                "ServerTime": server_time(now),
                "MaxAllowedSkewMilliseconds": str(MAX_CLOCK_SKEW_S * 1000),
            },
        )
    signature = fields["Signature"]
    key = _verify(
        identity,
        credential,
        signature,
        method,
        raw_path,
        canonical_query(pairs),
        headers,
        signed_headers,
        content_sha256,
        amz_date,
    )
    _refuse_unsigned_amz_headers(headers, signed_headers)
    return AuthContext(identity, payload, digest, key, amz_date, credential.scope, signature)


def one_mechanism_only() -> S3Error:
    """A request signed twice (header and query), whatever the signature versions: AWS's answer."""
    return S3Error(
        "InvalidArgument",
        "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
        "Signature query string parameter or the Authorization header should be specified",
    )


def _query_error(message: str, extra: dict[str, str] | None = None) -> S3Error:
    return S3Error("AuthorizationQueryParametersError", message, extra=extra)


def _wrong_region(credential: _Credential, region: str) -> str:
    # AWS's wording, which SDK users search for; the Region element tells SDKs where to sign.
    return f"the region '{credential.region}' is wrong; expecting '{region}'"


def _authenticate_presigned(
    method: str,
    raw_path: str,
    pairs: list[tuple[bytes, bytes]],
    headers: Mapping[str, str],
    lookup: Callable[[str], Identity | None],
    region: str,
    now: float,
) -> AuthContext:
    params = {n.decode("utf-8", "replace"): v.decode("utf-8", "replace") for n, v in pairs}
    if not all(params.get(name) for name in _PRESIGN_PARAMS):
        raise _query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
            "X-Amz-Expires parameters."
        )
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise _query_error('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    credential = _parse_credential(params["X-Amz-Credential"])
    if credential is None:
        raise _query_error(
            'Error parsing the X-Amz-Credential parameter; expecting "<YOUR-AKID>/YYYYMMDD/REGION/s3/aws4_request".'
        )
    if credential.region != region:
        raise _query_error(
            f"Error parsing the X-Amz-Credential parameter; {_wrong_region(credential, region)}",
            extra={"Region": region},
        )
    expires_text = params["X-Amz-Expires"]
    # ASCII digits only ("²" is a digit to isdigit, not to int), and no more than int() takes
    # (4,300 digits): both were a 500 (found by tests/unit/s3/test_sigv4_fuzz.py).
    if not (expires_text.isascii() and expires_text.isdigit()):
        raise _query_error("X-Amz-Expires should be a number")
    digits = expires_text.lstrip("0")
    expires = int(digits or "0") if len(digits) <= 20 else MAX_PRESIGN_EXPIRES_S + 1
    if expires < 1:
        raise _query_error("X-Amz-Expires must be non-negative")
    if expires > MAX_PRESIGN_EXPIRES_S:
        raise _query_error("X-Amz-Expires must be less than a week (in seconds) that is 604800")
    amz_date = params["X-Amz-Date"]
    request_time = parse_amz_date(amz_date)
    if request_time is None:
        raise _query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    if credential.date != amz_date[:8]:
        raise _query_error(
            "Error parsing the X-Amz-Credential parameter; Invalid credential date. Date is not the same as X-Amz-Date."
        )
    signed_headers = params["X-Amz-SignedHeaders"]
    if not _valid_signed_headers(signed_headers):
        raise _query_error("X-Amz-SignedHeaders must be lower-case names separated by ';' and include host.")
    identity = lookup_identity(lookup, credential.access_key)
    if now < request_time - MAX_CLOCK_SKEW_S:
        raise S3Error("AccessDenied", "Request is not valid yet")
    if now > request_time + expires:
        raise S3Error(
            "AccessDenied",
            "Request has expired",
            extra={
                "X-Amz-Expires": expires_text,
                "Expires": server_time(request_time + expires),
                "ServerTime": server_time(now),
            },
        )
    # The body is unsigned unless the client put a hash in a header or in the query.
    content_sha256 = headers.get("x-amz-content-sha256") or params.get("X-Amz-Content-Sha256")
    content_sha256 = content_sha256.strip() if content_sha256 else UNSIGNED_PAYLOAD
    payload, digest = _payload_mode(content_sha256)
    signature = params["X-Amz-Signature"]
    key = _verify(
        identity,
        credential,
        signature,
        method,
        raw_path,
        canonical_query(pairs, exclude=b"X-Amz-Signature"),
        headers,
        signed_headers,
        content_sha256,
        amz_date,
    )
    _refuse_unsigned_amz_headers(headers, signed_headers)
    if payload == UNSIGNED_PAYLOAD:
        payload = PRESIGNED
    return AuthContext(identity, payload, digest, key, amz_date, credential.scope, signature)
