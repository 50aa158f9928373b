"""Where a checkpoint goes, and through which door.

``open_door(dest, ...)`` takes what a training script names (``s3://bucket/prefix``, or a path)
and opens the fastest door to it:

- ``s3://bucket/prefix`` with the gateway's root mounted on this node (``root=`` or
  ``AIF_GATEWAY_ROOT``) and the bucket's directory there: straight to the filesystem, as objects
  (``BucketDoor``);
- ``s3://bucket/prefix`` otherwise: S3 to ``endpoint`` (or ``AWS_ENDPOINT_URL``) (``S3Door``);
- a path inside a gateway bucket (a directory the gateway keeps state for, or its record names): as objects
  (``BucketDoor``); any other path: a plain directory (``PathDoor``).

``door="filesystem"`` or ``door="s3"`` forces one (an error when it cannot be used).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..client import S3Url, is_s3_url
from ..errors import S3Error
from ..store.direct import DirectBucket
from ..store.internal import bucket_state_dir
from ..store.meta import BUCKET_XATTR, bucket_record_file
from ..store.paths import INTERNAL_DIR, validate_bucket_name
from .doors import BucketDoor, Door, MiB, PathDoor, S3Door
from .s3io import S3Bucket, S3Settings

ROOT_ENV = "AIF_GATEWAY_ROOT"


@dataclass(frozen=True)
class DoorOptions:
    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str | None = None
    root: str | os.PathLike[str] | None = None
    bucket_map: dict[str, Path] = field(default_factory=dict)
    door: str = "auto"  # auto | filesystem | s3
    threads: int = 8
    part_size: int = 32 * MiB
    md5: bool = False  # direct writes: MD5-based ETags (as a multipart upload gives) at MD5's speed
    checksum: bool = False  # direct writes: a FULL_OBJECT CRC64NVME per object (~0.17 s CPU per GB)
    fsync: bool = False
    meta_backend: str | None = None  # direct writes: "xattr" or "sidecar" when the gateway forces one


def split_s3(dest: str) -> tuple[str, str]:
    try:
        url = S3Url.parse(dest)
    except ValueError:
        raise ValueError(f"no bucket in {dest!r}: use s3://bucket/prefix") from None
    return url.bucket, url.key.strip("/")


def _enclosing_bucket(path: Path) -> tuple[Path, str] | None:
    """The bucket directory (one with the gateway's internal directory) above ``path``, and the
    key prefix of ``path`` in it."""
    real = Path(os.path.realpath(path))
    for candidate in [real, *real.parents]:
        if _is_bucket(candidate):
            return candidate, real.relative_to(candidate).as_posix()
    return None


def _is_bucket(directory: Path) -> bool:
    # A bucket the gateway made carries its record (an xattr, or a file in the root's internal
    # directory); one it has written to has a state directory (``store.internal``).
    if (directory / INTERNAL_DIR / "tmp").is_dir() or bucket_state_dir(directory.parent, directory.name, directory).is_dir():
        return True
    if directory.parent == directory or not directory.is_dir():
        return False
    try:
        os.getxattr(directory, BUCKET_XATTR)
        return True
    except OSError:
        return bucket_record_file(directory.parent, directory.name).is_file()


def open_door(dest: str | os.PathLike[str], options: DoorOptions | None = None) -> Door:
    o = options or DoorOptions()
    if o.door not in ("auto", "filesystem", "s3"):
        raise ValueError(f"door must be auto, filesystem or s3, not {o.door!r}")
    text = os.fspath(dest)
    sizes = {"threads": o.threads, "part_size": o.part_size}
    if is_s3_url(text):
        bucket, prefix = split_s3(text)
        try:
            validate_bucket_name(bucket)
        except S3Error as exc:
            raise ValueError(f"{text}: {exc}") from None
        root = o.root if o.root is not None else os.environ.get(ROOT_ENV)
        if o.door != "s3" and (root or o.bucket_map):
            try:
                direct = DirectBucket.open(Path(root or "/nonexistent"), bucket, o.bucket_map, o.meta_backend)
            except (FileNotFoundError, ValueError):
                direct = None
            if direct is not None:
                return BucketDoor(direct, prefix, md5=o.md5, checksum=o.checksum, fsync=o.fsync, **sizes)
        if o.door == "filesystem":
            raise FileNotFoundError(f"{text}: bucket {bucket!r} is not mounted here: pass root= (or set "
                                    f"{ROOT_ENV}) to the gateway's root directory")
        settings = S3Settings.resolve(o.endpoint, o.access_key, o.secret_key, o.region)
        return S3Door(S3Bucket(settings, bucket, o.threads * 2), prefix, **sizes)
    if o.door == "s3":
        raise ValueError(f"{text}: door='s3' needs an s3://bucket/prefix destination")
    path = Path(text)
    found = _enclosing_bucket(path)
    if found is not None:
        bucket_dir, prefix = found
        direct = DirectBucket.open(bucket_dir.parent, bucket_dir.name, {bucket_dir.name: bucket_dir}, o.meta_backend)
        return BucketDoor(direct, prefix, md5=o.md5, checksum=o.checksum, fsync=o.fsync, **sizes)
    return PathDoor(path, fsync=o.fsync, **sizes)
