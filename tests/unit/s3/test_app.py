"""The app's middleware: how failures that escape a handler are answered."""

from __future__ import annotations

import asyncio
from xml.etree import ElementTree as ET

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from aif_gateway.errors import S3Error
from aif_gateway.s3.app import CLIENT_GONE, request_id_middleware
from aif_gateway.s3.transport import CLOSE_AFTER_RESPONSE


def _run(handler, request=None) -> web.StreamResponse:
    request = request or make_mocked_request("GET", "/bucket/key")
    return asyncio.run(request_id_middleware(request, handler))


def test_a_client_that_went_away_is_answered_quietly() -> None:
    async def handler(_request):
        raise ConnectionResetError("Cannot write to closing transport")

    response = _run(handler)
    assert response.status == CLIENT_GONE  # returned, not raised: aiohttp logs no traceback


def test_s3_errors_become_xml_documents_with_the_request_id() -> None:
    async def handler(_request):
        raise S3Error("NoSuchKey", resource="/bucket/key")

    response = _run(handler)
    assert response.status == 404
    root = ET.fromstring(response.body)
    assert root.findtext("Code") == "NoSuchKey"
    assert len(root.findtext("RequestId") or "") == 16


def test_unexpected_errors_are_internal_errors() -> None:
    async def handler(_request):
        raise RuntimeError("bug")

    response = _run(handler)
    assert response.status == 500
    assert ET.fromstring(response.body).findtext("Code") == "InternalError"


def test_a_body_read_around_aiohttp_closes_the_connection() -> None:
    async def handler(request):
        request[CLOSE_AFTER_RESPONSE] = True
        return web.Response(status=200)

    response = _run(handler)
    assert response.status == 200 and response.keep_alive is False


def test_other_responses_keep_the_connection_choice_to_aiohttp() -> None:
    async def handler(_request):
        return web.Response(status=200)

    assert _run(handler).keep_alive is None
