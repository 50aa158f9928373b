"""A user's source string, parsed once into the type that stands for it."""

from __future__ import annotations

from ...client import is_s3_url
from .filesystem import FilesystemPath
from .manifest_file import Manifest
from .s3 import S3Prefix
from .source import Source

__all__ = ["parse_source"]


def parse_source(spec: str) -> Source:
    """``s3://BUCKET/PREFIX``, ``@MANIFEST`` or a filesystem path."""
    if is_s3_url(spec):
        return S3Prefix(spec)
    if spec.startswith("@"):
        return Manifest(spec[1:])
    return FilesystemPath(spec)
