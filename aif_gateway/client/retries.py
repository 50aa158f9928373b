"""Retrying S3 calls: which failures are transient, and the backoff between attempts.

``with_retries`` runs ``await call()`` again after transient errors (5xx, throttling, timeouts,
dropped connections, truncated bodies) with full-jitter exponential backoff;
``with_retries_sync`` does the same on a worker thread and gives up at once when told to stop.
botocore's own retries are off (``boto.open_client``), so every retry is counted here.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from botocore import exceptions as bexc

from .errors import TruncatedBody, classify, http_status

__all__ = ["backoff_s", "is_transient", "s3_errors", "with_retries", "with_retries_sync"]

T = TypeVar("T")

_BACKOFF_BASE_S = 0.2
_BACKOFF_MAX_S = 10.0

# What an S3 call can raise besides our own errors: catch these, let programming errors through.
_S3_ERRORS = (bexc.BotoCoreError, bexc.ClientError, asyncio.TimeoutError, OSError, TruncatedBody)


def s3_errors() -> tuple[type[BaseException], ...]:
    """The exception types an S3 call can raise; aiohttp's too once it is loaded (aiobotocore
    loads it; the fast path never does, and then no call can raise them)."""
    aiohttp = sys.modules.get("aiohttp")
    return _S3_ERRORS + (aiohttp.ClientError,) if aiohttp is not None else _S3_ERRORS


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, bexc.ClientError):
        return classify(exc) == "transient" or http_status(exc) >= 500
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
        return True
    return isinstance(
        exc,
        (
            bexc.HTTPClientError,
            bexc.EndpointConnectionError,
            bexc.ConnectTimeoutError,
            bexc.IncompleteReadError,
            asyncio.TimeoutError,
            ConnectionError,
            TruncatedBody,
        ),
    )


def backoff_s(attempt: int) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max, base * 2^attempt))."""
    return random.uniform(0, min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * (2**attempt)))


def with_retries_sync(call: Callable[[], T], retries: int, on_retry: Callable[[], None], stop: threading.Event) -> T:
    """``with_retries`` for a worker thread: the backoff ends early (with the last error) once
    ``stop`` is set, so a stopping caller does not wait for it."""
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
