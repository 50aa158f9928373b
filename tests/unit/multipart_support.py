"""Helpers shared by the multipart store tests: a bucket on disk and fresh upload managers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aif_gateway.store.meta import meta_store_for
from aif_gateway.store.multipart import MultipartUploads

from .store_support import bucket_paths

BUCKET = "bkt"


def run(coro):
    return asyncio.run(coro)


async def stream(data: bytes, chunk: int = 1 << 20) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


def uploads(root: Path) -> MultipartUploads:
    """A fresh instance, as any gateway process would build it: nothing shared but the disk."""
    bucket = bucket_paths(root, BUCKET)
    return MultipartUploads(bucket, meta_store_for(bucket))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / BUCKET).mkdir()
    return tmp_path
