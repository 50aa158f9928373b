"""Hand-made S3 requests for what real clients refuse or normalise away.

Signatures come from botocore's own SigV4 signer (``S3SigV4Auth``, which signs the path exactly
as given), so a rejected request is rejected for the reason the test names, not for a signing
slip. Only the aws-chunked framing and its chunk signatures are built here, from the AWS spec.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import urllib.parse
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from email.message import Message

from botocore.auth import SIGV4_TIMESTAMP, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from .gateway import Credentials

REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
SIGNED_STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_STREAMING_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"


@dataclass
class RawResponse:
    status: int
    headers: Message
    body: bytes

    def error(self) -> dict[str, str]:
        """The S3 error document's fields; asserts it has the four every error must carry."""
        assert self.body, f"HTTP {self.status} without an error body"
        root = ET.fromstring(self.body)
        assert root.tag == "Error", self.body[:500]
        fields = {child.tag: child.text or "" for child in root}
        for name in ("Code", "Message", "Resource", "RequestId"):
            assert name in fields, f"error document lacks {name}: {self.body[:500]!r}"
        assert fields["RequestId"] == self.headers.get("x-amz-request-id"), fields
        return fields


class _Signer(S3SigV4Auth):
    """botocore's S3 signer with a chosen clock and a chosen x-amz-content-sha256 value."""

    def __init__(self, credentials: Credentials, when: dt.datetime, content_sha256: str | None, region: str):
        super().__init__(BotoCredentials(credentials.access_key, credentials.secret_key), "s3", region)
        self._when = when
        self._content_sha256 = content_sha256

    def payload(self, request: AWSRequest) -> str:
        return self._content_sha256 or super().payload(request)

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._when.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        self.last_signature = self.signature(self.string_to_sign(request, canonical), request)
        self._inject_signature_to_request(request, self.last_signature)


@dataclass
class SignedHeaders:
    headers: dict[str, str]
    seed_signature: str
    timestamp: str
    scope: str
    signing_key: bytes


def canonical_path(raw_path: str) -> str:
    """The SigV4 canonical URI of a path as sent: each segment decoded, then encoded once."""
    return "/".join(
        urllib.parse.quote(urllib.parse.unquote_to_bytes(segment), safe="-_.~") for segment in raw_path.split("/")
    )


def sign(
    credentials: Credentials,
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    content_sha256: str | None = None,
    when: dt.datetime | None = None,
    region: str = REGION,
) -> SignedHeaders:
    """SigV4 headers for ``url`` (already percent-encoded, signed exactly as written)."""
    when = when or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body)
    signer = _Signer(credentials, when, content_sha256, region)
    signer.add_auth(request)
    timestamp = when.strftime(SIGV4_TIMESTAMP)
    scope = f"{timestamp[:8]}/{region}/s3/aws4_request"
    return SignedHeaders(
        headers=dict(request.headers.items()),
        seed_signature=signer.last_signature,
        timestamp=timestamp,
        scope=scope,
        signing_key=_signing_key(credentials.secret_key, timestamp[:8], region),
    )


def _signing_key(secret: str, day: str, region: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def send(port: int, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> RawResponse:
    """One HTTP/1.1 request with exactly these headers (plus Content-Length)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest(method, target, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body or method in ("PUT", "POST"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        return RawResponse(resp.status, resp.msg, resp.read())
    finally:
        conn.close()


def signed_request(
    port: int,
    credentials: Credentials,
    method: str,
    path: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    content_sha256: str | None = None,
    when: dt.datetime | None = None,
    host: str | None = None,
    region: str = REGION,
) -> RawResponse:
    """Sign and send; ``path`` and ``query`` are sent byte for byte as given.

    The signature covers the canonical form of the path, as a correct client computes it, so a
    path with needless escapes (``%2E%2E``) is judged on its key, not refused for its signature.
    """
    host = host or f"127.0.0.1:{port}"
    target = path + (f"?{query}" if query else "")
    signed_url = f"http://{host}{canonical_path(path)}" + (f"?{query}" if query else "")
    signed = sign(
        credentials,
        method,
        signed_url,
        {"Host": host, **(headers or {})},
        body,
        content_sha256=content_sha256,
        when=when,
        region=region,
    )
    return send(port, method, target, signed.headers, body)


# -- aws-chunked bodies -------------------------------------------------------------------


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def chunks_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] + [b""]


def unsigned_chunked_body(data: bytes, chunk_size: int, trailer: dict[str, str]) -> bytes:
    """``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` framing: hex size, data, final 0 chunk, trailer."""
    out = bytearray()
    for chunk in chunks_of(data, chunk_size):
        out += f"{len(chunk):x}\r\n".encode()
        if chunk:
            out += chunk + b"\r\n"
    for name, value in trailer.items():
        out += f"{name}:{value}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def signed_chunked_body(
    data: bytes, chunk_size: int, signed: SignedHeaders, trailer: dict[str, str] | None = None
) -> bytes:
    """``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``: each chunk signed, chained from the seed."""
    out = bytearray()
    previous = signed.seed_signature
    for chunk in chunks_of(data, chunk_size):
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                signed.timestamp,
                signed.scope,
                previous,
                EMPTY_SHA256,
                hashlib.sha256(chunk).hexdigest(),
            ]
        )
        previous = hmac.new(signed.signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        out += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    if trailer is not None:
        trailer_text = "".join(f"{name}:{value}\n" for name, value in trailer.items())
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-TRAILER",
                signed.timestamp,
                signed.scope,
                previous,
                hashlib.sha256(trailer_text.encode()).hexdigest(),
            ]
        )
        trailer_sig = hmac.new(signed.signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        out = out[:-2]  # the final 0-size chunk is followed by the trailer, not a blank line
        out += trailer_text.replace("\n", "\r\n").encode()
        out += f"x-amz-trailer-signature:{trailer_sig}\r\n\r\n".encode()
    return bytes(out)


def put_signed_chunked(
    port: int,
    credentials: Credentials,
    path: str,
    data: bytes,
    chunk_size: int,
    trailer: dict[str, str] | None = None,
    tamper=None,
) -> RawResponse:
    """PUT ``data`` to ``path`` as a signed aws-chunked body (with a signed trailer when
    ``trailer`` is given), Content-Length signed as real SDKs do; ``tamper(body) -> body`` alters
    the framed body after signing."""
    mode = SIGNED_STREAMING_TRAILER if trailer is not None else SIGNED_STREAMING
    host = f"127.0.0.1:{port}"
    headers = {"Host": host, "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))}
    if trailer:
        headers["x-amz-trailer"] = ",".join(trailer)
    # The body's length depends on the signatures only through their fixed width: a dry framing gives it.
    probe = sign(credentials, "PUT", f"http://{host}{path}", headers, content_sha256=mode)
    headers["Content-Length"] = str(len(signed_chunked_body(data, chunk_size, probe, trailer)))
    signed = sign(credentials, "PUT", f"http://{host}{path}", headers, content_sha256=mode)
    body = signed_chunked_body(data, chunk_size, signed, trailer)
    if tamper:
        body = tamper(body)
    del signed.headers["Content-Length"]  # send() adds the real one
    return send(port, "PUT", path, signed.headers, body)
