"""The aiohttp application: request ids, error rendering, routing, authentication.

``make_app(store, identities, *, domain=None, region="us-east-1", limits=Limits(), posix_ids=None)
-> web.Application``. One catch-all route sends every S3 request through ``_dispatch`` (locate
bucket and key, authenticate for ``region``, pick the action);
the middleware around it stamps request ids on every response and turns ``S3Error`` into the
XML error document. ``GET /_aif/health`` answers without authentication.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from ..config import DEFAULT_REGION
from ..errors import NotModified, S3Error
from ..identity import IdentityTable
from ..posix_ids import PosixIdMap
from ..store.base import CALLER, Store
from . import sigv2, sigv4
from .connection import PARSER_LIMITS
from .context import S3Request
from .handlers import HANDLERS
from .limits import Limits
from .responses import error_response, new_request_id, not_modified_response, stamp_request_id
from .routing import action_for, locate, parse_query, split_raw_path, virtual_host_bucket
from .transport import BYTES_AROUND_PARSER, CLOSE_AFTER_RESPONSE, settle_body

__all__ = ["CLIENT_GONE", "IDENTITIES_KEY", "POSIX_IDS_KEY", "make_app", "request_id_middleware"]

log = logging.getLogger(__name__)

HEALTH_PATH = "/_aif/health"
# S3's bound on a request's header section. Sections that outgrow aiohttp's per-line limits or
# the connection's bound (``connection``) are refused there, with the same error.
MAX_HEADER_SECTION_BYTES = 16 * 1024
# The access log's status for a request whose client went away before an answer was sent.
CLIENT_GONE = 499

STORE_KEY = web.AppKey("store", Store)
IDENTITIES_KEY = web.AppKey("identities", IdentityTable)
POSIX_IDS_KEY = web.AppKey("posix_ids", PosixIdMap)
DOMAIN_KEY = web.AppKey("domain", str)
REGION_KEY = web.AppKey("region", str)
LIMITS_KEY = web.AppKey("limits", Limits)
SIGNATURE_V2_KEY = web.AppKey("signature_v2", bool)
REQUEST_ID = web.RequestKey("request_id", str)
RESOURCE = web.RequestKey("resource", str)
ACTION = web.RequestKey("action", str)
USER = web.RequestKey("user", str)
UID = web.RequestKey("uid", int)
ERROR_CODE = web.RequestKey("error_code", str)

# Its own logger name, so a site can route or silence per-request lines (AIF_LOG_LEVEL=warning).
access_log = logging.getLogger("aif_gateway.access")


def _header_section_size(request: web.BaseRequest) -> int:
    return sum(len(name) + len(value) + 4 for name, value in request.raw_headers)


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One structured line per request, after the response (streamed bodies included) is sent."""
    started = time.perf_counter()
    status, sent = CLIENT_GONE, 0
    try:
        response = await handler(request)
        status, sent = response.status, response.body_length
        return response
    finally:
        access_log.info(
            "%s %s %s",
            request.method,
            request.get(RESOURCE, request.path),
            status,
            extra={
                "request_id": request.get(REQUEST_ID),
                "action": request.get(ACTION),
                "status": status,
                "error": request.get(ERROR_CODE),
                "user": request.get(USER),
                "uid": request.get(UID),
                "bytes_in": request.content.total_bytes + request.get(BYTES_AROUND_PARSER, 0),
                "bytes_out": sent,
                "ms": round((time.perf_counter() - started) * 1000, 3),
                "remote": request.remote,
            },
        )


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Gives each request an id and renders whatever the handler raised as S3 does."""
    request_id = new_request_id()
    request[REQUEST_ID] = request_id
    try:
        response = await _render_errors(request, handler, request_id)
    finally:
        settle_body(request)  # before the response promises keep-alive or not
    if request.get(CLOSE_AFTER_RESPONSE):
        # The body was read around aiohttp's parser (transport.request_body): say so, then close.
        response.force_close()
    return response


async def _render_errors(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    try:
        return await handler(request)
    except S3Error as err:
        request[ERROR_CODE] = err.code
        resource = request.get(RESOURCE) or split_raw_path(request.raw_path)[0]
        return error_response(err, request_id, resource, head=request.method == "HEAD")
    except NotModified as exc:
        return not_modified_response(exc)
    except web.HTTPException:
        raise  # aiohttp's own answer
    except ConnectionError as exc:
        # The client went away: nothing can reach it. Answering (rather than raising) keeps
        # aiohttp from logging an ordinary hang-up as an unhandled error with a traceback;
        # its write then fails quietly. 499 is what the access log records for it.
        log.debug("%s %s: the client went away (%s)", request.method, request.raw_path, exc)
        return web.Response(status=CLIENT_GONE)
    except Exception:
        request[ERROR_CODE] = "InternalError"
        log.exception("request %s %s failed (request id %s)", request.method, request.raw_path, request_id)
        resource = request.get(RESOURCE) or "/"
        return error_response(S3Error("InternalError"), request_id, resource, head=request.method == "HEAD")


async def _stamp_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Runs as every response is prepared, streamed GETs and 304s included."""
    stamp_request_id(response.headers, request.get(REQUEST_ID) or new_request_id())


async def _health(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


def _authenticate(request: web.Request, path: str, raw_query: str) -> sigv4.AuthContext:
    app = request.app
    lookup, region = app[IDENTITIES_KEY].lookup, app[REGION_KEY]
    if app[SIGNATURE_V2_KEY] and sigv2.signed_with_v2(request.headers, raw_query):
        # SigV2 signs the path with the bucket first, also when the bucket came in the Host.
        host_bucket = virtual_host_bucket(request.headers.get("Host"), app[DOMAIN_KEY] or None)
        resource = path if host_bucket is None else f"/{host_bucket}{path}"
        return sigv2.authenticate_v2(request.method, resource, raw_query, request.headers, lookup, region=region)
    return sigv4.authenticate(request.method, path, raw_query, request.headers, lookup, region=region)


async def _dispatch(request: web.Request) -> web.StreamResponse:
    app = request.app
    if _header_section_size(request) > MAX_HEADER_SECTION_BYTES:
        raise S3Error("RequestHeaderSectionTooLarge", extra={"MaxSizeAllowed": str(MAX_HEADER_SECTION_BYTES)})
    path, raw_query = split_raw_path(request.raw_path)
    bucket, key = locate(path, request.headers.get("Host"), app[DOMAIN_KEY] or None)
    request[RESOURCE] = "/" if bucket is None else f"/{bucket}" + (f"/{key}" if key is not None else "")
    query = parse_query(raw_query)
    auth = _authenticate(request, path, raw_query)
    request[USER] = auth.identity.name
    # From here on, the request's filesystem work runs with this user's ids (store.base.CALLER).
    ids = app[POSIX_IDS_KEY].ids_for(auth.identity)
    CALLER.set(ids)
    if ids is not None:
        request[UID] = ids.uid
    action = action_for(request.method, bucket, key, query, request.headers)
    request[ACTION] = action
    s3_request = S3Request(
        http=request,
        bucket=bucket,
        key=key,
        query=query,
        auth=auth,
        store=app[STORE_KEY],
        request_id=request[REQUEST_ID],
        limits=app[LIMITS_KEY],
    )
    return await HANDLERS[action](s3_request)


def make_app(
    store: Store,
    identities: IdentityTable,
    *,
    domain: str | None = None,
    region: str = DEFAULT_REGION,
    limits: Limits = Limits(),
    posix_ids: PosixIdMap | None = None,
    signature_v2: bool = True,
) -> web.Application:
    """``posix_ids``: whom each user acts as on the filesystem (default: everyone as the gateway);
    ``signature_v2``: accept Signature Version 2 besides SigV4."""
    app = web.Application(
        middlewares=[access_log_middleware, request_id_middleware],
        # Bodies are streamed from request.content; nothing is read whole by aiohttp.
        client_max_size=0,
        handler_args={
            **PARSER_LIMITS,
            # S3 stores a Content-Encoding: gzip body as sent; aiohttp would inflate it.
            "auto_decompress": False,
        },
    )
    app[STORE_KEY] = store
    app[IDENTITIES_KEY] = identities
    app[POSIX_IDS_KEY] = posix_ids or PosixIdMap({})
    app[DOMAIN_KEY] = domain or ""
    app[REGION_KEY] = region
    app[SIGNATURE_V2_KEY] = signature_v2
    app[LIMITS_KEY] = limits
    app.on_response_prepare.append(_stamp_headers)
    app.router.add_get(HEALTH_PATH, _health)
    # "[\s\S]" rather than ".": keys may hold newlines, and "." stops at them.
    app.router.add_route("*", r"/{tail:[\s\S]*}", _dispatch)
    return app
