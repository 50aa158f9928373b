"""Where a checkpoint goes: from what a training script names to the target that stores it.

``open_target(dest, ...)`` takes what a training script names (``s3://bucket/prefix``, or a path)
and opens the fastest target for it:

- ``s3://bucket/prefix`` with the gateway's root mounted on this node (``root=`` or
  ``AIF_GATEWAY_ROOT``) and the bucket's directory there: straight to the filesystem, as objects
  (``BucketTarget``);
- ``s3://bucket/prefix`` otherwise: S3 to ``endpoint`` (or ``AWS_ENDPOINT_URL``) (``S3Target``);
- a path inside a gateway bucket (``store.direct.DirectBucket.enclosing`` finds it): as objects
  (``BucketTarget``); any other path: a plain directory (``DirectoryTarget``).

``via="filesystem"`` or ``via="s3"`` forces one (an error when it cannot be used).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client import S3Url, is_s3_url
from ..store.direct import DirectBucket, check_bucket_name
from .s3io import S3Bucket, S3Settings
from .targets import BucketTarget, CheckpointTarget, DirectoryTarget, MiB, S3Target

__all__ = ["ROOT_ENV", "TargetOptions", "open_target"]

ROOT_ENV = "AIF_GATEWAY_ROOT"


@dataclass(frozen=True)
class TargetOptions:
    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str | None = None
    root: str | os.PathLike[str] | None = None
    bucket_map: dict[str, Path] = field(default_factory=dict)
    via: str = "auto"  # auto | filesystem | s3
    threads: int = 8
    part_size: int = 32 * MiB
    md5: bool = False  # direct writes: MD5-based ETags (as a multipart upload gives) at MD5's speed
    checksum: bool = False  # direct writes: a FULL_OBJECT CRC64NVME per object (~0.17 s CPU per GB)
    fsync: bool = False
    meta_backend: str | None = None  # direct writes: "xattr" or "sidecar" when the gateway forces one

    @classmethod
    def from_keywords(cls, **keywords: Any) -> TargetOptions:
        """The options a caller passed on as keywords (``save(..., via="s3")``); ``door=``, the
        old name of ``via=``, still works and warns."""
        if "door" in keywords:
            warnings.warn("the door= option is deprecated: use via=", DeprecationWarning, stacklevel=3)
            if "via" in keywords:
                raise TypeError("pass via= only: door= is its old name")
            keywords["via"] = keywords.pop("door")
        return cls(**keywords)


def split_s3(dest: str) -> tuple[str, str]:
    try:
        url = S3Url.parse(dest)
    except ValueError:
        raise ValueError(f"no bucket in {dest!r}: use s3://bucket/prefix") from None
    return url.bucket, url.key.strip("/")


def open_target(dest: str | os.PathLike[str], options: TargetOptions | None = None) -> CheckpointTarget:
    o = options or TargetOptions()
    if o.via not in ("auto", "filesystem", "s3"):
        raise ValueError(f"via must be auto, filesystem or s3, not {o.via!r}")
    text = os.fspath(dest)
    sizes = {"threads": o.threads, "part_size": o.part_size}
    if is_s3_url(text):
        bucket, prefix = split_s3(text)
        try:
            check_bucket_name(bucket)
        except ValueError as exc:
            raise ValueError(f"{text}: {exc}") from None
        root = o.root if o.root is not None else os.environ.get(ROOT_ENV)
        if o.via != "s3" and (root or o.bucket_map):
            try:
                direct = DirectBucket.open(Path(root or "/nonexistent"), bucket, o.bucket_map, o.meta_backend)
            except (FileNotFoundError, ValueError):
                direct = None
            if direct is not None:
                return BucketTarget(direct, prefix, md5=o.md5, checksum=o.checksum, fsync=o.fsync, **sizes)
        if o.via == "filesystem":
            raise FileNotFoundError(
                f"{text}: bucket {bucket!r} is not mounted here: pass root= (or set "
                f"{ROOT_ENV}) to the gateway's root directory"
            )
        settings = S3Settings.resolve(o.endpoint, o.access_key, o.secret_key, o.region)
        return S3Target(S3Bucket(settings, bucket, o.threads * 2), prefix, **sizes)
    if o.via == "s3":
        raise ValueError(f"{text}: via='s3' needs an s3://bucket/prefix destination")
    found = DirectBucket.enclosing(text, o.meta_backend)
    if found is not None:
        direct, prefix = found
        return BucketTarget(direct, prefix, md5=o.md5, checksum=o.checksum, fsync=o.fsync, **sizes)
    return DirectoryTarget(Path(text), fsync=o.fsync, **sizes)
