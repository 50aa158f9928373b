"""What a metadata record read back from disk may hold, checked before anything uses it.

Records live where users can reach them: any owner of a file can set its ``user.aifgw.meta``
xattr (``setfattr``), and sidecars sit in the bucket's tree. Whatever a record says ends up in
response headers and XML, so a record is accepted only when it could have been written by the
gateway itself: every field of the right type, response headers limited to those S3 lets an
object carry, names and values that are valid HTTP, and sizes bounded before anything is
expanded (``part_sizes`` is run-length encoded: one run of 10**8 would otherwise become a tuple
of 10**8 ints). A record that fails is treated like an unreadable one: the file is served as a
foreign file. Never an error, never a header the record chose.

The checks work on the decoded JSON dict without building anything, so the listing's fast path
(``meta.listed_info``) runs them on every listed key; they cost a few dict and type tests for
the records the gateway writes.
"""

from __future__ import annotations

import re
from typing import Any

from .base import CHECKSUM_ALGORITHMS, MAX_PARTS, MAX_TAGS, STORED_HEADERS

__all__ = ["MAX_RECORD_BYTES", "valid_blob_name", "valid_object_record", "valid_part_record", "valid_tags"]

# Records (and tag sets) longer than this are not parsed at all.
# The largest record the gateway writes: 10,000 parts of distinct sizes (about 120 KiB as runs)
# plus 2 KiB of user metadata and a few stored headers. Linux caps one xattr at 64 KiB; larger
# records go to blobs, whose reads stop here.
MAX_RECORD_BYTES = 256 * 1024
CHECKSUM_TYPES = frozenset({"COMPOSITE", "FULL_OBJECT"})

_ALGORITHMS = frozenset(CHECKSUM_ALGORITHMS)
_HEADER_NAMES = frozenset(STORED_HEADERS)
# An ETag as the gateway makes them (hex, "-N" suffixes) fits this: visible ASCII without the
# quote that delimits it in the header.
_ETAG = re.compile(r"[!#-~]{1,128}")
# A base64 digest, with the "-N" part count of a COMPOSITE multipart checksum.
_CHECKSUM = re.compile(r"[A-Za-z0-9+/]{1,120}={0,2}(-[0-9]{1,5})?")
# RFC 9110 token characters, lower case: x-amz-meta-* names are lower-cased when stored.
_META_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]{1,256}")
# Control characters cannot appear in a header value (CR and LF would start a new header).
_NOT_IN_FIELD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BLOB_NAME = re.compile(r"[0-9a-f]{32}")


def _field_value(value: Any) -> bool:
    return type(value) is str and _NOT_IN_FIELD_VALUE.search(value) is None


def _valid_checksums(checksums: Any) -> bool:
    if type(checksums) is not dict:
        return False
    for algorithm, value in checksums.items():
        if algorithm not in _ALGORITHMS or type(value) is not str or _CHECKSUM.fullmatch(value) is None:
            return False
    return True


def _valid_headers(headers: Any) -> bool:
    if type(headers) is not dict:
        return False
    for name, value in headers.items():
        if name not in _HEADER_NAMES or not _field_value(value):
            return False
    return True


def _valid_user_meta(user_meta: Any) -> bool:
    if type(user_meta) is not dict:
        return False
    for name, value in user_meta.items():
        if type(name) is not str or _META_NAME.fullmatch(name) is None or not _field_value(value):
            return False
    return True


def _valid_parts(runs: Any, size: int) -> bool:
    """``[[part size, count], ...]``: at most MAX_PARTS parts in all, adding up to ``size``."""
    if type(runs) is not list or len(runs) > MAX_PARTS:
        return False
    count = total = 0
    for run in runs:
        if type(run) is not list or len(run) != 2:
            return False
        part_size, repeat = run
        # type() rather than isinstance: True is an int too, and no size.
        if type(part_size) is not int or type(repeat) is not int or part_size < 0 or repeat < 1:
            return False
        count += repeat
        if count > MAX_PARTS:
            return False
        total += part_size * repeat
    return total == size


def valid_object_record(raw: dict[str, Any]) -> bool:
    """Whether ``raw``, the parsed JSON of an ``ObjectRecord`` (its keys already known to be
    ObjectRecord's), may be believed."""
    size, etag, get = raw["size"], raw["etag"], raw.get
    if type(size) is not int or size < 0 or type(raw["mtime_ns"]) is not int:
        return False
    if type(etag) is not str or _ETAG.fullmatch(etag) is None:
        return False
    if "checksums" in raw and not _valid_checksums(raw["checksums"]):
        return False
    checksum_type = get("checksum_type")
    if checksum_type is not None and (type(checksum_type) is not str or checksum_type not in CHECKSUM_TYPES):
        return False
    if type(get("dir_marker", False)) is not bool:
        return False
    if "content_type" in raw and not _field_value(raw["content_type"]):
        return False
    if "headers" in raw and not _valid_headers(raw["headers"]):
        return False
    if "user_meta" in raw and not _valid_user_meta(raw["user_meta"]):
        return False
    parts = get("part_sizes")
    return parts is None or _valid_parts(parts, size)


def valid_tags(raw: Any) -> bool:
    """A stored tag set: a dict of at most ``MAX_TAGS`` str -> str."""
    return (
        type(raw) is dict
        and len(raw) <= MAX_TAGS
        and all(type(name) is str and type(value) is str for name, value in raw.items())
    )


def valid_blob_name(name: str) -> bool:
    """The digest a blob pointer names (hex; no path)."""
    return _BLOB_NAME.fullmatch(name) is not None


_PART_FILE = re.compile(r"(data|part-[0-9]{5}\.[0-9a-f]{12})")
_MD5_HEX = re.compile(r"[0-9a-f]{32}")


def valid_part_record(raw: Any, name: str) -> bool:
    """A multipart part's record, read from the file ``name`` of its upload's directory, which its
    uploader may rewrite by hand: it may name only files of that upload (``data`` or
    ``part-NNNNN.<token>``)."""
    if type(raw) is not dict:
        return False
    number, file, etag = raw.get("part_number"), raw.get("file"), raw.get("etag")
    if type(number) is not int or f"part-{number:05d}.json" != name:
        return False
    if type(file) is not str or _PART_FILE.fullmatch(file) is None:
        return False
    if type(etag) is not str or _MD5_HEX.fullmatch(etag) is None:
        return False
    if any(type(raw.get(n, 0)) is not int or raw.get(n, 0) < 0 for n in ("size", "mtime_ns", "offset")):
        return False
    return "size" in raw and "mtime_ns" in raw and _valid_checksums(raw.get("checksums"))
