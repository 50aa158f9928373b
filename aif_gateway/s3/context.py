"""What every S3 handler receives, and the handler signature.

The router parses the bucket, key and decoded query once and authenticates the request; a
handler gets an :class:`S3Request` and returns an aiohttp response or raises ``S3Error``.
Exactly one place (``s3/responses.py``) turns an ``S3Error`` into the XML error document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from multidict import MultiDictProxy

from ..store.base import Store
from .limits import Limits
from .sigv4 import AuthContext

__all__ = ["Handler", "S3Request"]


@dataclass
class S3Request:
    http: web.Request
    bucket: str | None  # None for service-level requests (ListBuckets)
    key: str | None  # None for bucket-level requests; decoded UTF-8 key otherwise
    query: MultiDictProxy[str]  # decoded query parameters
    auth: AuthContext
    store: Store
    request_id: str
    limits: Limits = Limits()

    @property
    def resource(self) -> str:
        """The Resource field of error documents: /bucket/key as the client named it."""
        if self.bucket is None:
            return "/"
        return f"/{self.bucket}/{self.key}" if self.key is not None else f"/{self.bucket}"


Handler = Callable[[S3Request], Awaitable[web.StreamResponse]]
