"""The aiobotocore client: what the fast path (``signed.SignedS3``) leaves to botocore, namely
endpoints with a path, profiles and roles, keys a URL library could rewrite, and uploads.

One client per caller, path-style (so it works with the gateway and MinIO), botocore's own
retries off (``retries.with_retries`` retries and counts) and its checksums off (callers compute
theirs in native code, off the event loop).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from botocore import exceptions as bexc

from .errors import UnknownProfile
from .retries import with_retries
from .settings import S3Options, configured_endpoint

__all__ = ["list_objects", "open_client"]


@asynccontextmanager
async def open_client(options: S3Options, connections: int) -> AsyncIterator[Any]:
    """An aiobotocore S3 client; UnknownProfile when the options name a profile that is not there."""
    # Imported here: aiobotocore and aiohttp take a third of a second to load, which a caller
    # whose endpoint and keys come from flags or the environment never needs (see signed.py).
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession
    from botocore.config import Config

    # botocore before 1.36 has neither these options nor default checksums.
    no_client_checksums = (
        {"request_checksum_calculation": "when_required", "response_checksum_validation": "when_required"}
        if "request_checksum_calculation" in Config.OPTION_DEFAULTS
        else {}
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
            region = (
                options.region
                or os.environ.get("AWS_REGION")
                or os.environ.get("AWS_DEFAULT_REGION")
                or session.get_config_variable("region")
                or "us-east-1"
            )
            client = await stack.enter_async_context(
                session.create_client(
                    "s3",
                    endpoint_url=configured_endpoint(options),
                    region_name=region,
                    aws_access_key_id=options.access_key,
                    aws_secret_access_key=options.secret_key,
                    config=config,
                )
            )
        except bexc.ProfileNotFound as exc:
            raise UnknownProfile(str(exc)) from None
        yield client


async def list_objects(
    client: Any, bucket: str, prefix: str, retries: int, on_retry: Callable[[], None]
) -> AsyncIterator[dict[str, Any]]:
    """Each object under ``prefix`` (ListObjectsV2 pages; a page is retried, not the listing)."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = await with_retries(lambda: client.list_objects_v2(**kwargs), retries, on_retry)  # noqa: B023 (awaited here)
        for obj in page.get("Contents", ()):
            yield obj
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return
