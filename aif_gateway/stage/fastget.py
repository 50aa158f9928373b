"""Signed S3 reads without botocore: the fast path for listing and reading objects while staging.

botocore spends about 3 ms of CPU on each request (hooks, user agent, endpoint rules, parsing,
dateutil for every LastModified of a listing), which caps a stage of many small objects at a few
hundred files a second per core. A GET, a HEAD or a ListObjectsV2 page needs none of it: this
module signs them (SigV4, path-style, empty payload) and sends them with ``rawhttp`` from the
stage's worker threads. Where flags or environment variables give the endpoint and keys, that is
all it needs; otherwise aiobotocore resolves the endpoint, region and credentials (profiles,
config files, instance roles...), so both paths talk to the same place as the same user.
aiobotocore also does the uploads of ``stage out``. ``s3get`` and ``sources`` fall back to botocore (the slow
twin, compared in the tests) when ``AIF_STAGE_S3_GET=botocore``, when the endpoint has a path,
and ``s3get`` also for keys whose path a client library could normalise (``.``/``..``
segments, ``//``).

Public API: ``SignedS3.from_environment(options, connections) -> SignedS3 | None`` (no botocore
at all), ``SignedS3.create(client, options, connections) -> SignedS3 | None``,
``SignedS3.with_keys(endpoint, region, access_key, secret_key, token, connections)``; on it (from
worker threads) ``get(bucket, key, range_header=None, if_match=None) -> rawhttp.Response`` (2xx;
else ``botocore.exceptions.ClientError`` built from the S3 error document), ``head(...)``,
``list_page(bucket, prefix, token) -> (objects, next_token)``, ``send(method, path, query,
headers, operation, body=(), payload_hash=EMPTY_SHA256)`` (any request: the checkpoint writer's
PUTs and parts go through it), ``object_path(bucket, key)``; ``await refresh()`` (renewed
credentials, from the event loop), ``close()``, ``abort()``. ``usable_key(key)``, ``sign(...)``,
``sign_get(...)`` (pure).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree

from botocore import exceptions as bexc

from ..awsv4 import ALGORITHM, S3_NAMESPACE, derive_signing_key
from .errors import StageError
from .options import StageOptions
from .rawhttp import Endpoint, Pool, Response

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_S3_NS = f"{{{S3_NAMESPACE}}}"
_ERROR_BODY_LIMIT = 1 << 20
_LIST_BODY_LIMIT = 64 << 20


def usable_key(key: str) -> bool:
    """Whether ``key`` goes on the wire exactly as signed (no segment a URL library may rewrite)."""
    parts = key.split("/")
    return "" not in parts[:-1] and not any(p in (".", "..") for p in parts)


def _uri(value: str) -> str:
    return quote(value, safe="-_.~")


def sign(*, method: str, access_key: str, secret_key: str, token: str | None, region: str, host: str, path: str,
         query: dict[str, str], headers: dict[str, str], amz_date: str,
         payload_hash: str = EMPTY_SHA256) -> dict[str, str]:
    """The headers that sign ``method path?query`` (path already URI-encoded; query values raw)
    with ``headers`` (lower-case names; all of them are signed), plus the signing headers.
    ``payload_hash``: the body's SHA-256, or ``UNSIGNED-PAYLOAD``."""
    signed = dict(headers)
    signed["host"] = host
    signed["x-amz-content-sha256"] = payload_hash
    signed["x-amz-date"] = amz_date
    if token:
        signed["x-amz-security-token"] = token
    names = sorted(signed)
    canonical = "\n".join([
        method, path, canonical_query(query),
        "".join(f"{name}:{' '.join(signed[name].split())}\n" for name in names),
        ";".join(names), payload_hash,
    ])
    day = amz_date[:8]
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(derive_signing_key(secret_key, day, region), to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (f"{ALGORITHM} Credential={access_key}/{scope}, "
                               f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return signed


def canonical_query(query: dict[str, str]) -> str:
    return "&".join(f"{_uri(k)}={_uri(v)}" for k, v in sorted(query.items()))


def sign_get(*, access_key: str, secret_key: str, token: str | None, region: str, host: str, path: str,
             headers: dict[str, str], amz_date: str) -> dict[str, str]:
    """``sign`` for a GET without a query."""
    return sign(method="GET", access_key=access_key, secret_key=secret_key, token=token, region=region, host=host,
                path=path, query={}, headers=headers, amz_date=amz_date)


def client_error(status: int, body: bytes, reason: str, operation: str) -> bexc.ClientError:
    code, message = str(status), reason
    try:
        root = ElementTree.fromstring(body)
        code = root.findtext("Code") or code
        message = root.findtext("Message") or message
    except ElementTree.ParseError:
        pass  # HEAD-like empty bodies, or a proxy's HTML
    return bexc.ClientError({"Error": {"Code": code, "Message": message},
                             "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class SignedS3:
    def __init__(self, endpoint: str, region: str, credentials: Any, connections: int) -> None:
        self._endpoint = Endpoint(endpoint, os.environ.get("AWS_CA_BUNDLE"))
        self._region = region
        self._credentials = credentials
        self._frozen: Any = None
        self._pool = Pool(self._endpoint, connections)

    @classmethod
    async def create(cls, client: Any, options: StageOptions, connections: int) -> SignedS3 | None:
        """A reader for the endpoint, region and credentials ``client`` uses; None where the fast
        path does not apply (then ``client`` does the work)."""
        if os.environ.get("AIF_STAGE_S3_GET", "").lower() == "botocore":
            return None
        endpoint = client.meta.endpoint_url
        if urlsplit(endpoint).path not in ("", "/"):
            return None
        if options.access_key is not None:
            credentials: Any = _Static(options.access_key, options.secret_key or "")
        else:
            from aiobotocore.session import AioSession

            credentials = await AioSession(profile=options.profile).get_credentials()
            if credentials is None:
                raise StageError("usage", f"no S3 credentials for {endpoint}: set AWS_ACCESS_KEY_ID and "
                                 "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / --profile")
        reader = cls(endpoint, client.meta.region_name, credentials, connections)
        await reader.refresh()
        return reader

    @classmethod
    def from_environment(cls, options: StageOptions, connections: int) -> SignedS3 | None:
        """A reader set up from the flags and the environment alone, without botocore (which
        takes half a second to load and configure: much of a short stage). Only where nothing
        botocore would read could change the outcome: endpoint and keys given (flags, or
        AWS_ENDPOINT_URL[_S3] and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), no profile named,
        and the region given or no AWS config file that could name one. Else None (``create``)."""
        env = os.environ
        if env.get("AIF_STAGE_S3_GET", "").lower() == "botocore":
            return None
        if options.profile or env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE"):
            return None
        if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
            return None
        endpoint = options.endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        if options.access_key is not None:
            access_key, secret_key, token = options.access_key, options.secret_key or "", None
        else:
            access_key, secret_key = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
            token = env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN")
        if not endpoint or not access_key or not secret_key or urlsplit(endpoint).path not in ("", "/"):
            return None
        region = options.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if region is None:
            config = env.get("AWS_CONFIG_FILE") or os.path.expanduser("~/.aws/config")
            if os.path.exists(config):
                return None  # its default profile may name a region: botocore reads it
            region = "us-east-1"  # open_client's default too
        return cls.with_keys(endpoint, region, access_key, secret_key, token, connections)

    async def refresh(self) -> None:
        """Take the credentials as they are now (temporary ones renew themselves in here)."""
        self._frozen = await self._credentials.get_frozen_credentials()

    @classmethod
    def with_keys(cls, endpoint: str, region: str, access_key: str, secret_key: str, token: str | None,
                  connections: int) -> SignedS3:
        """A client for fixed keys, usable at once (no event loop needed)."""
        client = cls(endpoint, region, _Static(access_key, secret_key, token), connections)
        client._frozen = client._credentials._frozen
        return client

    def send(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], operation: str,
             body: Sequence[memoryview | bytes] = (), payload_hash: str = EMPTY_SHA256) -> Response:
        """One signed request (``path`` from ``object_path``); a 2xx response, else ClientError."""
        frozen = self._frozen
        signed = sign(method=method, access_key=frozen.access_key, secret_key=frozen.secret_key,
                      token=frozen.token, region=self._region, host=self._endpoint.netloc, path=path,
                      query=query, headers=headers, amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                      payload_hash=payload_hash)
        target = path + ("?" + canonical_query(query) if query else "")
        response = self._pool.request(method, target, signed, body)
        if response.status >= 300:
            with response:
                body = b"" if method == "HEAD" else response.read_all(_ERROR_BODY_LIMIT)
            raise client_error(response.status, body, response.reason, operation)
        return response

    @staticmethod
    def object_path(bucket: str, key: str = "") -> str:
        return "/" + quote(bucket, safe="") + "/" + quote(key, safe="/~")

    def get(self, bucket: str, key: str, *, range_header: str | None = None,
            if_match: str | None = None) -> Response:
        headers = {}
        if range_header:
            headers["range"] = range_header
        if if_match:
            headers["if-match"] = if_match
        return self.send("GET", self.object_path(bucket, key), {}, headers, "GetObject")

    def head(self, bucket: str, key: str, *, if_match: str | None = None, checksums: bool = False) -> dict[str, str]:
        """The response headers of HEAD (with ``x-amz-checksum-mode: ENABLED`` when ``checksums``)."""
        headers = {}
        if if_match:
            headers["if-match"] = if_match
        if checksums:
            headers["x-amz-checksum-mode"] = "ENABLED"
        with self.send("HEAD", self.object_path(bucket, key), {}, headers, "HeadObject") as response:
            return response.headers

    def list_page(self, bucket: str, prefix: str, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One ListObjectsV2 page: objects as botocore gives them (Key, Size, ETag, LastModified)
        and the continuation token of the next page (None after the last)."""
        query = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
        if token:
            query["continuation-token"] = token
        with self.send("GET", self.object_path(bucket), query, {}, "ListObjectsV2") as response:
            body = response.read_all(_LIST_BODY_LIMIT)
        return parse_list_page(body)

    def close(self) -> None:
        self._pool.close()

    def abort(self) -> None:
        """Close, and end the requests in flight (a stopping stage does not wait for them)."""
        self._pool.abort()


def parse_list_page(body: bytes) -> tuple[list[dict[str, Any]], str | None]:
    root = ElementTree.fromstring(body)
    ns = _S3_NS if root.tag.startswith(_S3_NS) else ""
    url_encoded = root.findtext(f"{ns}EncodingType") == "url"
    objects = []
    for item in root.iterfind(f"{ns}Contents"):
        key = item.findtext(f"{ns}Key") or ""
        objects.append({
            "Key": unquote_plus(key) if url_encoded else key,  # as botocore decodes it
            "Size": int(item.findtext(f"{ns}Size") or 0),
            "ETag": item.findtext(f"{ns}ETag"),
            "LastModified": datetime.fromisoformat((item.findtext(f"{ns}LastModified") or "").replace("Z", "+00:00")),
        })
    truncated = (root.findtext(f"{ns}IsTruncated") or "").lower() == "true"
    token = root.findtext(f"{ns}NextContinuationToken")
    return objects, token if truncated and token else None


class _Static:
    """Credentials given as options, in the shape botocore's credential objects have."""

    def __init__(self, access_key: str, secret_key: str, token: str | None = None) -> None:
        self._frozen = _Frozen(access_key, secret_key, token)

    async def get_frozen_credentials(self) -> _Frozen:
        return self._frozen


class _Frozen:
    def __init__(self, access_key: str, secret_key: str, token: str | None) -> None:
        self.access_key, self.secret_key, self.token = access_key, secret_key, token
