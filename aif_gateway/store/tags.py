"""Object tags: S3's limits, and reading or replacing the tag set of an existing object.

``read_tags`` and ``write_tags`` raise NoSuchKey when ``key`` is no object. Writers that create
objects attach tags through ``publish`` instead, in the same step as the bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TypeVar

from ..errors import S3Error
from .base import MAX_TAGS
from .locks import key_lock
from .meta import MetaStore
from .paths import BucketPaths
from .reader import meta_key, object_info

__all__ = ["read_tags", "validate_tags", "write_tags"]

MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256

T = TypeVar("T")


def validate_tags(tags: dict[str, str]) -> None:
    """S3's limits on a tag set, else InvalidTag."""
    if len(tags) > MAX_TAGS:
        raise S3Error("InvalidTag", f"Object tags cannot be greater than {MAX_TAGS}")
    for tag_key, value in tags.items():
        if not 1 <= len(tag_key) <= MAX_TAG_KEY:
            raise S3Error("InvalidTag", f"The TagKey you have provided is invalid: 1 to {MAX_TAG_KEY} characters.")
        if len(value) > MAX_TAG_VALUE:
            raise S3Error(
                "InvalidTag", f"The TagValue you have provided is invalid: at most {MAX_TAG_VALUE} characters."
            )
        if tag_key.startswith("aws:"):
            raise S3Error("InvalidTag", "Your TagKey cannot be prefixed with aws:")


def _on_object(bucket: BucketPaths, meta: MetaStore, key: str, action: Callable[[Path, str], T], *, lock: bool) -> T:
    path = bucket.resolve(key)
    with key_lock(bucket.state, key) if lock else nullcontext():
        object_info(bucket, meta, key, path)
        return action(path, meta_key(bucket, key, path))


def read_tags(bucket: BucketPaths, meta: MetaStore, key: str) -> dict[str, str]:
    """The object's tag set (blocking)."""
    return _on_object(bucket, meta, key, meta.read_tags, lock=False)


def write_tags(bucket: BucketPaths, meta: MetaStore, key: str, tags: dict[str, str] | None) -> None:
    """Replace the object's tag set (already validated), ``None`` removes it (blocking); under the
    key lock, so the object cannot be replaced between the check and the write."""
    _on_object(bucket, meta, key, lambda path, mkey: meta.write_tags(path, mkey, tags), lock=True)
