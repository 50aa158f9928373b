"""Helpers for calling S3 handlers directly: a request as the router would build it, and a
store double that answers only the calls a test expects (any other call fails the test).

The handlers are the code under test; the store is a stand-in with canned answers, and the
aiohttp request is real (``make_mocked_request``) with a real body reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any
from xml.etree import ElementTree as ET

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from aif_gateway.awsv4 import S3_NAMESPACE
from aif_gateway.identity import Identity
from aif_gateway.s3.context import S3Request
from aif_gateway.s3.sigv4 import AuthContext
from aif_gateway.store.base import Store

ALICE = Identity(name="alice", access_key="AKALICE", secret_key="secret")


class BodyReader:
    """The part of ``aiohttp.StreamReader`` body readers use, over fixed bytes."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = len(self._data)
        chunk, self._data = self._data[:n], self._data[n:]
        return chunk


def store_with(**methods: Callable[..., Coroutine[Any, Any, Any]]) -> Store:
    """A Store whose listed methods are the given coroutines (``self`` first)."""

    async def unexpected(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the handler made a store call this test did not expect")

    namespace: dict[str, Any] = {name: unexpected for name in Store.__abstractmethods__}
    namespace.update(methods)
    return type("StoreDouble", (Store,), namespace)()


def s3_request(
    method: str,
    path: str,
    store: Store,
    *,
    bucket: str | None,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    payload: str = "UNSIGNED-PAYLOAD",
    content_sha256: str | None = None,
) -> S3Request:
    """``payload`` and ``content_sha256`` as SigV4 verification left them (``"SHA256"`` and the
    hex digest for a signed payload)."""
    all_headers = {"Host": "gw.example:9000", **(headers or {})}
    if body and "Content-Length" not in all_headers:
        all_headers["Content-Length"] = str(len(body))
    http = make_mocked_request(method, path, headers=all_headers, payload=BodyReader(body))
    auth = AuthContext(
        identity=ALICE,
        payload=payload,
        content_sha256=content_sha256,
        signing_key=b"",
        amz_date="20250101T000000Z",
        scope="20250101/us-east-1/s3/aws4_request",
        seed_signature="",
    )
    return S3Request(http=http, bucket=bucket, key=key, query=http.query, auth=auth, store=store, request_id="REQ")


def call(handler: Callable[[S3Request], Coroutine[Any, Any, web.StreamResponse]], req: S3Request) -> web.Response:
    response = asyncio.run(handler(req))
    assert isinstance(response, web.Response)
    return response


def xml_of(response: web.Response) -> ET.Element:
    """The response document with the S3 namespace stripped from tags, for ``find``."""
    assert response.body is not None
    root = ET.fromstring(response.body)
    for element in root.iter():
        element.tag = element.tag.removeprefix("{" + S3_NAMESPACE + "}")
    return root
