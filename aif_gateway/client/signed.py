"""Signed S3 requests without botocore: the fast path for listing and reading objects, and
for the checkpoint writer's PUTs and parts.

botocore spends about 3 ms of CPU on each request (hooks, user agent, endpoint rules, parsing,
dateutil for every LastModified of a listing), which caps a stage of many small objects at a few
hundred files a second per core. A GET, a HEAD, a ListObjectsV2 page or a PUT from memory needs
none of it: ``SignedS3`` signs them (``signing``: SigV4, path-style) and sends them with
``http.Pool`` from its callers' worker threads. Where flags or environment variables give the
endpoint and keys, that is all it needs (``from_environment``); otherwise aiobotocore resolves
the endpoint, region and credentials (profiles, config files, instance roles...: ``create``), so
both paths talk to the same place as the same user. Callers fall back to botocore (the slow
path, compared in the tests) when a constructor gives None (an endpoint with a path, or not
enough given to go without botocore), for keys whose path a client library could normalise
(``names.usable_key``), and when they choose to (stage's ``AIF_STAGE_S3_GET=botocore``).

Errors: a non-2xx answer raises ``botocore.exceptions.ClientError`` built from the S3 error
document (``errors.client_error``); transport failures raise ``ConnectionError`` /
``TimeoutError`` / ``errors.TruncatedBody``; ``create`` raises ``errors.NoCredentials``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from .errors import NoCredentials, client_error
from .http import Endpoint, Pool, Response
from .names import object_path
from .settings import S3Options, configured_endpoint
from .signing import EMPTY_SHA256, canonical_query, sign
from .xml import parse_list_page

__all__ = ["SignedS3"]

_ERROR_BODY_LIMIT = 1 << 20
_LIST_BODY_LIMIT = 64 << 20


class SignedS3:
    def __init__(self, endpoint: str, region: str, credentials: Any, connections: int) -> None:
        self._endpoint = Endpoint(endpoint, os.environ.get("AWS_CA_BUNDLE"))
        self._region = region
        self._credentials = credentials
        self._frozen: Any = None
        self._pool = Pool(self._endpoint, connections)

    @classmethod
    async def create(cls, client: Any, options: S3Options, connections: int) -> SignedS3 | None:
        """A reader for the endpoint, region and credentials ``client`` uses; None where the fast
        path does not apply (then ``client`` does the work)."""
        endpoint = client.meta.endpoint_url
        if urlsplit(endpoint).path not in ("", "/"):
            return None
        if options.access_key is not None:
            credentials: Any = _Static(options.access_key, options.secret_key or "")
        else:
            from aiobotocore.session import AioSession

            credentials = await AioSession(profile=options.profile).get_credentials()
            if credentials is None:
                raise NoCredentials(endpoint)
        reader = cls(endpoint, client.meta.region_name, credentials, connections)
        await reader.refresh()
        return reader

    @classmethod
    def from_environment(cls, options: S3Options, connections: int) -> SignedS3 | None:
        """A reader set up from the flags and the environment alone, without botocore (which
        takes half a second to load and configure: much of a short stage). Only where nothing
        botocore would read could change the outcome: endpoint and keys given (flags, or
        AWS_ENDPOINT_URL[_S3] and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), no profile named,
        and the region given or no AWS config file that could name one. Else None (``create``)."""
        env = os.environ
        if options.profile or env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE"):
            return None
        if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
            return None
        endpoint = configured_endpoint(options)
        access_key: str | None
        secret_key: str | None
        token: str | None
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
    def with_keys(
        cls, endpoint: str, region: str, access_key: str, secret_key: str, token: str | None, connections: int
    ) -> SignedS3:
        """A client for fixed keys, usable at once (no event loop needed)."""
        client = cls(endpoint, region, _Static(access_key, secret_key, token), connections)
        client._frozen = client._credentials._frozen
        return client

    def send(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        operation: str,
        body: Sequence[memoryview | bytes | bytearray] = (),
        payload_hash: str = EMPTY_SHA256,
    ) -> Response:
        """One signed request (``path`` from ``names.object_path``); a 2xx response, else ClientError."""
        frozen = self._frozen
        signed = sign(
            method=method,
            access_key=frozen.access_key,
            secret_key=frozen.secret_key,
            token=frozen.token,
            region=self._region,
            host=self._endpoint.netloc,
            path=path,
            query=query,
            headers=headers,
            amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            payload_hash=payload_hash,
        )
        target = path + ("?" + canonical_query(query) if query else "")
        response = self._pool.request(method, target, signed, body)
        if response.status >= 300:
            with response:
                error_body = b"" if method == "HEAD" else response.read_all(_ERROR_BODY_LIMIT)
            raise client_error(response.status, error_body, response.reason, operation)
        return response

    def get(self, bucket: str, key: str, *, range_header: str | None = None, if_match: str | None = None) -> Response:
        headers = {}
        if range_header:
            headers["range"] = range_header
        if if_match:
            headers["if-match"] = if_match
        return self.send("GET", object_path(bucket, key), {}, headers, "GetObject")

    def head(self, bucket: str, key: str, *, if_match: str | None = None, checksums: bool = False) -> dict[str, str]:
        """The response headers of HEAD (with ``x-amz-checksum-mode: ENABLED`` when ``checksums``)."""
        headers = {}
        if if_match:
            headers["if-match"] = if_match
        if checksums:
            headers["x-amz-checksum-mode"] = "ENABLED"
        with self.send("HEAD", object_path(bucket, key), {}, headers, "HeadObject") as response:
            return response.headers

    def list_page(self, bucket: str, prefix: str, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One ListObjectsV2 page: objects as botocore gives them (Key, Size, ETag, LastModified)
        and the continuation token of the next page (None after the last)."""
        query = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
        if token:
            query["continuation-token"] = token
        with self.send("GET", object_path(bucket), query, {}, "ListObjectsV2") as response:
            body = response.read_all(_LIST_BODY_LIMIT)
        return parse_list_page(body)

    def close(self) -> None:
        self._pool.close()

    def abort(self) -> None:
        """Close, and end the requests in flight (a stopping stage does not wait for them)."""
        self._pool.abort()


class _Static:
    """Credentials given as options, in the shape botocore's credential objects have."""

    def __init__(self, access_key: str, secret_key: str, token: str | None = None) -> None:
        self._frozen = _Frozen(access_key, secret_key, token)

    async def get_frozen_credentials(self) -> _Frozen:
        return self._frozen


class _Frozen:
    def __init__(self, access_key: str, secret_key: str, token: str | None) -> None:
        self.access_key, self.secret_key, self.token = access_key, secret_key, token
