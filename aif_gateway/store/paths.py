"""Bucket and key names, and mapping keys to paths that never leave their bucket.

Symlinks: keys are resolved with ``os.path.realpath``, so a symlink inside the bucket that points
inside the bucket is followed and one that points outside (or into ``.aifgw``) is refused with
``AccessDenied``, for reads and writes alike. The check alone is a time-of-check/time-of-use
race (someone with write access to the tree could swap a directory for a symlink between the
check and the use), so every open is resolved again beneath a descriptor of the bucket directory,
refusing any symlink on the way (``open_checked``), its descriptor is re-checked through
``/proc/self/fd``, and publishes rename relative to a verified parent-directory descriptor. What
remains: ``os.makedirs`` for a new key's parents may create empty directories through a symlink
swapped in at that instant; the publish then refuses (the parent fd fails the
check), so no data lands outside, at worst an empty directory does.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import S3Error
from ..fsio.engine import RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, open_beneath

__all__ = [
    "BucketPaths",
    "INTERNAL_DIR",
    "MAX_KEY_BYTES",
    "MAX_SEGMENT_BYTES",
    "check_inside",
    "conflict_error",
    "is_dir_key",
    "open_checked",
    "open_parent_checked",
    "validate_bucket_name",
    "validate_key",
]

# The gateway's hidden state directory, in the root (and in a mapped bucket on another
# filesystem); a reserved name in every bucket.
INTERNAL_DIR = ".aifgw"
MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 255

_BUCKET_CHARS = re.compile(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")


def validate_bucket_name(name: str) -> None:
    """S3's naming rules for buckets, else ``InvalidBucketName``."""

    def bad(why: str) -> S3Error:
        return S3Error("InvalidBucketName", f"The specified bucket is not valid: {why}.", resource=name)

    if not 3 <= len(name) <= 63:
        raise bad("a bucket name must be 3 to 63 characters long")
    if not _BUCKET_CHARS.match(name):
        raise bad("use lowercase letters, digits, '.' and '-', starting and ending with a letter or digit")
    if ".." in name:
        raise bad("a bucket name must not contain two adjacent periods")
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or name.endswith(("-s3alias", "--ol-s3", "--x-s3")):
        raise bad("the name uses a prefix or suffix reserved by S3")
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return
    raise bad("a bucket name must not be formatted as an IP address")


def is_dir_key(key: str) -> bool:
    """The key names a directory marker object (it ends in ``/``)."""
    return key.endswith("/")


def validate_key(key: str) -> list[str]:
    """The key's path segments (a trailing ``/`` yields no empty last segment), else
    ``InvalidArgument`` / ``KeyTooLongError``."""

    def bad(why: str) -> S3Error:
        return S3Error("InvalidArgument", f"Invalid object key: {why}.", resource=key)

    if not key:
        raise bad("the key must not be empty")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise bad("the key is not valid UTF-8") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", f"Your key is too long: {len(encoded)} bytes, the limit is {MAX_KEY_BYTES}.")
    if "\x00" in key:
        raise bad("the key must not contain a NUL byte")
    segments = (key[:-1] if is_dir_key(key) else key).split("/")
    for segment in segments:
        if segment == "":
            raise bad("the key must not start with '/' or contain an empty segment ('//')")
        if segment in (".", ".."):
            raise bad("the key must not contain a '.' or '..' segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise bad(f"a key segment (between '/') must be at most {MAX_SEGMENT_BYTES} bytes")
    if segments[0] == INTERNAL_DIR:
        raise bad(f"keys under '{INTERNAL_DIR}/' are reserved for the gateway")
    return segments


def conflict_error(key: str) -> S3Error:
    """The error for a key that collides with a file or prefix (``a`` and ``a/b``)."""
    return S3Error(
        "InvalidArgument",
        "The key conflicts with an existing object or prefix: a file cannot also be a directory "
        "(for example 'a' and 'a/b') on this filesystem-backed gateway.",
        resource=key,
    )


def check_inside(bucket_real: str, path: str) -> None:
    """``path`` must be the bucket directory or below it, and not in its internal directory
    (``AccessDenied`` otherwise)."""
    try:
        inside = os.path.commonpath([bucket_real, path]) == bucket_real
    except ValueError:  # mixes absolute and relative paths
        inside = False
    if inside:
        rel = os.path.relpath(path, bucket_real)
        if rel.split(os.sep, 1)[0] != INTERNAL_DIR:
            return
    raise S3Error("AccessDenied", "Access Denied: the key resolves (through a symlink) outside its bucket.")


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)")


# ``path`` was resolved (realpath) just before: a symlink or a way out met now is a race.
_RESOLVED = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS


def open_checked(bucket_real: str, path: str, flags: int, mode: int = 0o666) -> int:
    """Open a resolved ``path`` beneath the bucket directory with ``openat2(RESOLVE_BENEATH |
    RESOLVE_NO_SYMLINKS)`` (or the engine's ``O_NOFOLLOW`` walk), so no component swapped for a
    symlink since it was resolved is followed; the fd is re-verified to lie inside the bucket and
    outside its internal directory."""
    rel = os.path.relpath(path, bucket_real)
    if rel == ".." or rel.startswith("../"):
        raise S3Error("AccessDenied", "Access Denied: the key resolves (through a symlink) outside its bucket.")
    bucket_fd = os.open(bucket_real, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_beneath(bucket_fd, rel, flags, mode, _RESOLVED)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EXDEV):  # a component became a symlink after it was resolved
            raise S3Error("AccessDenied", "Access Denied: the key changed into a symlink while being opened.") from None
        raise
    finally:
        os.close(bucket_fd)
    try:
        check_inside(bucket_real, _fd_path(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_parent_checked(bucket_real: str, path: str) -> int:
    """A verified fd of ``path``'s parent directory, for ``os.replace``/``os.link`` with
    ``dst_dir_fd`` (a race-free publish target)."""
    return open_checked(bucket_real, os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)


@dataclass(frozen=True)
class BucketPaths:
    """One bucket's directories. ``dir`` is a realpath, so containment checks compare like with
    like; ``state`` is the bucket's internal state directory (``store.internal``: where and why).
    ``at`` builds one, resolving ``path`` to its realpath."""

    name: str
    dir: Path
    state: Path

    @classmethod
    def at(cls, name: str, path: Path, state: Path) -> BucketPaths:
        return cls(name, Path(os.path.realpath(path)), Path(state))

    @property
    def tmp(self) -> Path:
        return self.state / "tmp"

    @property
    def uploads(self) -> Path:
        return self.state / "uploads"

    @property
    def meta(self) -> Path:
        return self.state / "meta"

    @property
    def tags(self) -> Path:
        return self.state / "tags"

    def resolve(self, key: str) -> Path:
        """The real path of ``key`` (validated, symlinks resolved, checked to stay inside).

        A directory marker key ``a/b/`` maps to the directory ``a/b``. The path may not exist.
        """
        segments = validate_key(key)
        real = os.path.realpath(os.path.join(self.dir, *segments))
        check_inside(str(self.dir), real)
        if real == str(self.dir):
            raise S3Error("AccessDenied", "Access Denied: the key resolves to the bucket itself.", resource=key)
        return Path(real)

    def key_of(self, path: Path) -> str:
        """The key of a real path inside the bucket (inverse of :meth:`resolve` for files)."""
        return os.path.relpath(path, self.dir).replace(os.sep, "/")
