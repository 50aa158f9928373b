"""S3 access for staging: one aiobotocore client per stage, retries, and error translation.

Public API
- ``parse_s3_url("s3://bucket/prefix") -> (bucket, prefix)``; ``s3_url(bucket, key)``.
- ``open_client(options, connections)``: async context manager yielding an aiobotocore S3 client
  (path-style addressing, so it works with the gateway and MinIO; botocore's own retries off,
  because ``with_retries`` retries and counts).
- ``with_retries(call, retries, on_retry)``: run ``await call()``, again after transient errors
  (5xx, throttling, timeouts, dropped connections) with exponential backoff;
  ``with_retries_sync(call, retries, on_retry, stop)``: the same for a worker thread.
- ``s3_error(exc, url, doing) -> StageError``: a non-transient failure as a stage error.
- ``list_objects(client, bucket, prefix, retries, on_retry)``: every object under ``prefix``.
- ``strip_etag(value)``: an ETag without its quotes.
- ``s3_errors()``: the exception types an S3 call raises; ``is_transient(exc)``; ``TruncatedBody``.

Endpoint, keys, profile and region come from ``StageOptions`` when set, else from what botocore
reads itself (AWS_ENDPOINT_URL[_S3], AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws/config...).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

from botocore import exceptions as bexc

from .errors import StageError
from .options import StageOptions

T = TypeVar("T")

_TRANSIENT_CODES = {
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed",
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "BadGateway", "GatewayTimeout",
}
_MISSING_CODES = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}
_DENIED_CODES = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"}
_BAD_KEYS_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
_CHANGED_CODES = {"PreconditionFailed", "412"}
_BACKOFF_BASE_S = 0.2
_BACKOFF_MAX_S = 10.0


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise StageError("usage", f"not an s3:// URL: {url}")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise StageError("usage", f"no bucket in {url} (expected s3://BUCKET/PREFIX)")
    return bucket, prefix


def s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def strip_etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


def _endpoint(options: StageOptions) -> str | None:
    return options.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


@asynccontextmanager
async def open_client(options: StageOptions, connections: int) -> AsyncIterator[Any]:
    # Imported here: aiobotocore and aiohttp take a third of a second to load, which a stage
    # whose endpoint and keys come from flags or the environment never needs (see fastget).
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession
    from botocore.config import Config

    # Checksums are ours to compute (native code, off the event loop); botocore's would run per
    # chunk. botocore before 1.36 has neither these options nor default checksums.
    no_client_checksums = (
        {"request_checksum_calculation": "when_required", "response_checksum_validation": "when_required"}
        if "request_checksum_calculation" in Config.OPTION_DEFAULTS else {}
    )
    config = AioConfig(
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=connections,
        connect_timeout=20,
        read_timeout=120,
        tcp_keepalive=True,
        **no_client_checksums,
    )
    async with AsyncExitStack() as stack:
        try:
            session = AioSession(profile=options.profile)
            region = (options.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                      or session.get_config_variable("region") or "us-east-1")
            client = await stack.enter_async_context(session.create_client(
                "s3", endpoint_url=_endpoint(options), region_name=region,
                aws_access_key_id=options.access_key, aws_secret_access_key=options.secret_key, config=config,
            ))
        except bexc.ProfileNotFound as exc:
            raise StageError("usage", f"{exc}: check --profile / AWS_PROFILE and ~/.aws/config") from None
        yield client


def _code(exc: bexc.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: bexc.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


class TruncatedBody(Exception):
    """A response body that ended before its Content-Length (retried like a dropped connection)."""


# What an S3 call can raise besides our own errors: catch these, let programming errors through.
_S3_ERRORS = (bexc.BotoCoreError, bexc.ClientError, asyncio.TimeoutError, OSError, TruncatedBody)


def s3_errors() -> tuple[type[BaseException], ...]:
    """The exception types an S3 call can raise; aiohttp's too once it is loaded (aiobotocore
    loads it; the fast path never does, and then no call can raise them)."""
    aiohttp = sys.modules.get("aiohttp")
    return _S3_ERRORS + (aiohttp.ClientError,) if aiohttp is not None else _S3_ERRORS


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, bexc.ClientError):
        return _code(exc) in _TRANSIENT_CODES or _status(exc) >= 500
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
        return True
    return isinstance(exc, (
        bexc.HTTPClientError, bexc.EndpointConnectionError, bexc.ConnectTimeoutError, bexc.IncompleteReadError,
        asyncio.TimeoutError, ConnectionError, TruncatedBody,
    ))


def s3_error(exc: BaseException, url: str, doing: str) -> StageError:
    """A stage error naming ``url`` for an S3 failure that retrying will not fix."""
    if isinstance(exc, StageError):
        return exc
    if isinstance(exc, (bexc.NoCredentialsError, bexc.PartialCredentialsError)):
        return StageError("usage", f"no S3 credentials for {url}: set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / --profile", url)
    if isinstance(exc, bexc.ClientError):
        code, message = _code(exc), exc.response.get("Error", {}).get("Message", "")
        if code in _MISSING_CODES:
            what = "bucket does not exist" if code == "NoSuchBucket" else "object not found"
            return StageError("source_missing", f"{what}: {url} ({code}, while {doing})", url)
        if code in _DENIED_CODES:
            return StageError("permission", f"access denied to {url} (while {doing}): check the "
                              "credentials' permissions on this bucket", url)
        if code in _BAD_KEYS_CODES:
            return StageError("permission", f"the S3 endpoint refused the credentials for {url} ({code}): "
                              "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / --profile", url)
        if code in _CHANGED_CODES:
            return StageError("verify", f"{url} changed during the stage (its ETag no longer matches the "
                              "listing): re-run to stage the new version", url)
        return StageError("transfer", f"{url}: {code or _status(exc)} {message} (while {doing})", url)
    if isinstance(exc, bexc.EndpointConnectionError):
        return StageError("transfer", f"cannot reach the S3 endpoint for {url}: {exc} (check "
                          "--endpoint-url / AWS_ENDPOINT_URL)", url)
    return StageError("transfer", f"{url}: {type(exc).__name__}: {exc} (while {doing})", url)


def backoff_s(attempt: int) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max, base * 2^attempt))."""
    return random.uniform(0, min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * (2 ** attempt)))


def with_retries_sync(call: Callable[[], T], retries: int, on_retry: Callable[[], None],
                      stop: threading.Event) -> T:
    """``with_retries`` for a worker thread: the backoff ends early (with the last error) once
    ``stop`` is set, so a stopping stage does not wait for it."""
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if attempt >= retries or not is_transient(exc) or stop.is_set():
                raise
            on_retry()
            if stop.wait(backoff_s(attempt)):
                raise
        attempt += 1


async def with_retries(call: Callable[[], Awaitable[T]], retries: int, on_retry: Callable[[], None]) -> T:
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            if attempt >= retries or not is_transient(exc):
                raise
        on_retry()
        await asyncio.sleep(backoff_s(attempt))
        attempt += 1


async def list_objects(
    client: Any, bucket: str, prefix: str, retries: int, on_retry: Callable[[], None],
) -> AsyncIterator[dict[str, Any]]:
    """Each object under ``prefix`` (ListObjectsV2 pages; a page is retried, not the listing)."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = await with_retries(lambda: client.list_objects_v2(**kwargs), retries, on_retry)
        for obj in page.get("Contents", ()):
            yield obj
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return
