"""Sources on S3: every object under a prefix (``S3Prefix``), listed by the fast reader's
ListObjectsV2 pages (``aif_gateway.client.SignedS3``) or by botocore where it cannot be used.

A prefix ending in ``/`` (or empty) is merged into the destination; ``s3://b/data`` takes the
object ``data`` itself (landing as ``DEST/data``) and the objects under ``data/``, not ``data2/x``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import StageError
from ..options import StageOptions
from .entry import Entry, join_rel
from .source import ListedSource

__all__ = ["S3Listing", "S3Prefix", "open_s3_listing"]


@dataclass
class S3Listing:
    """The stage's S3 clients for listing: the fast reader, else botocore's client."""

    client: Any
    fast: Any
    on_retry: Callable[[], None]


@contextlib.asynccontextmanager
async def open_s3_listing(
    options: StageOptions, connections: int, on_retry: Callable[[], None]
) -> AsyncIterator[S3Listing]:
    # Imported here: a filesystem-only stage does not pay for importing the S3 client.
    from ...client import SignedS3, open_client
    from ..client_failures import client_setup
    from ..options import fast_s3_reads

    async with contextlib.AsyncExitStack() as stack:
        client = None  # botocore's, only where the fast reader cannot do the work
        fast = SignedS3.from_environment(options, connections) if fast_s3_reads() else None
        if fast is None:
            with client_setup():
                client = await stack.enter_async_context(open_client(options, options.jobs))
                if fast_s3_reads():
                    fast = await SignedS3.create(client, options, connections)
        if fast is not None:
            stack.callback(fast.close)
        yield S3Listing(client, fast, on_retry)


async def _objects(s3: S3Listing, bucket: str, prefix: str, options: StageOptions) -> AsyncIterator[dict[str, Any]]:
    """Each object under the prefix: by the fast reader's ListObjectsV2 pages in a worker thread
    (botocore's parsing of a page of 1,000 keys costs a tenth of a second), else by botocore."""
    from ...client import list_objects, with_retries_sync

    fast, on_retry = s3.fast, s3.on_retry
    if fast is None:
        async for obj in list_objects(s3.client, bucket, prefix, options.retries, on_retry):
            yield obj
        return
    loop = asyncio.get_running_loop()
    token: str | None = None
    never = threading.Event()
    while True:
        page, token = await asyncio.to_thread(
            with_retries_sync,
            lambda t=token: fast.list_page(bucket, prefix, t),
            options.retries,
            lambda: loop.call_soon_threadsafe(on_retry),
            never,
        )
        for obj in page:
            yield obj
        if token is None:
            return


@dataclass(frozen=True)
class S3Prefix(ListedSource):
    # As given: its bucket is checked when it is listed (a usage error then, as for any source).
    spec: str

    needs_s3 = True

    def __str__(self) -> str:
        return self.spec

    def normal(self) -> str:
        return self.spec.rstrip("/")

    def cache_identity(self, options: StageOptions) -> str:
        from ...client import configured_endpoint

        # The same bucket name on two endpoints is two datasets.
        # (An endpoint set only inside a profile's config is named by the profile.)
        endpoint = configured_endpoint(options) or f"profile:{options.profile or ''}"
        return f"s3 {endpoint.rstrip('/')} {self.spec.rstrip('/')}"

    async def list_entries(self, dest_rel: str | None, options: StageOptions, s3: Any = None) -> list[Entry]:
        from ...client import S3Url, s3_errors, strip_etag
        from ..client_failures import parse_s3_url, s3_error

        assert isinstance(s3, S3Listing)
        bucket, prefix = parse_s3_url(self.spec)
        entries = []
        try:
            async for obj in _objects(s3, bucket, prefix, options):
                key: str = obj["Key"]
                if key.endswith("/"):
                    continue  # a directory marker
                if not prefix or prefix.endswith("/"):
                    rel = join_rel(dest_rel, key[len(prefix) :])
                elif key == prefix:
                    rel = dest_rel or key.rsplit("/", 1)[-1]
                elif key.startswith(prefix + "/"):
                    rel = join_rel(dest_rel, key[len(prefix) + 1 :])
                else:
                    continue  # "data2/x" under the prefix "data"
                mtime_ns = int(obj["LastModified"].timestamp() * 1_000_000_000)
                entries.append(
                    Entry(
                        rel,
                        int(obj["Size"]),
                        mtime_ns,
                        strip_etag(obj.get("ETag")),
                        None,
                        str(S3Url(bucket, key)),
                        True,
                    )
                )
        except s3_errors() as exc:
            raise s3_error(exc, self.spec, "listing the source") from None
        if not entries:
            raise StageError("source_missing", f"no objects at {self.spec}: check the bucket and prefix", self.spec)
        return entries
