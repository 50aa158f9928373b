"""Helpers for driving a real ``FsStore`` on ``tmp_path`` from synchronous tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from aif_gateway.store.base import ObjectAttrs, ObjectInfo, WriteOptions
from aif_gateway.store.fs import FsStore
from aif_gateway.store.internal import bucket_state_dir, prepare_state
from aif_gateway.store.paths import BucketPaths

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def failing_stream(*chunks: bytes) -> AsyncIterator[bytes]:
    """Yields ``chunks`` then fails, as a client disconnecting mid-upload does."""
    for chunk in chunks:
        yield chunk
    raise ConnectionResetError("client went away")


def state_dir(root: Path, bucket: str) -> Path:
    """Where the store keeps bucket ``bucket``'s internal state (store/internal.py)."""
    return bucket_state_dir(root, bucket, root / bucket)


def bucket_paths(root: Path, bucket: str) -> BucketPaths:
    """The paths of bucket ``root/bucket``, its state directory made as the store makes it."""
    paths = BucketPaths.at(bucket, root / bucket, state_dir(root, bucket))
    prepare_state(paths.state)
    return paths


def new_store(root: Path, backend: str | None = None, **kwargs: Any) -> FsStore:
    store = FsStore(root, meta_backend=backend, **kwargs)
    run(store.create_bucket("bkt", "alice"))
    return store


def put(
    store: FsStore,
    key: str,
    data: bytes,
    attrs: ObjectAttrs | None = None,
    options: WriteOptions | None = None,
    bucket: str = "bkt",
) -> ObjectInfo:
    return run(store.put_object(bucket, key, stream(data), attrs or ObjectAttrs(), options or WriteOptions()))


def get(store: FsStore, key: str, bucket: str = "bkt") -> bytes:
    async def read() -> bytes:
        reader = await store.open_object(bucket, key)
        try:
            return b"".join([chunk async for chunk in reader.chunks(0, reader.info.size - 1)])
        finally:
            await reader.close()

    return run(read())


def files_under(directory: Path) -> list[str]:
    """Every file below ``directory`` (relative paths), internal state included."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
