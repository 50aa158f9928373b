"""One file to stage (``Entry``), and what is computed over the list of them.

``Entry(rel_path, size, mtime_ns, etag, checksum, url, from_s3)``: ``rel_path`` is where it
lands under the destination; ``etag`` is the S3 ETag (None for filesystem files); ``checksum`` an
expected digest from a manifest, ``(algorithm, hex)`` with algorithm one of ``XXH3_64``,
``SHA256``, ``MD5``; ``url`` is ``s3://bucket/key`` or an absolute path; ``from_s3`` says which
(set by the listing that made the entry). ``source_id`` identifies the version of the source
(ETag, else mtime).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii as _quote
from typing import NamedTuple

from ..errors import StageError
from ..state.statedir import STATE_DIR

__all__ = ["Entry", "fingerprint", "join_rel", "safe_rel_path"]


class Entry(NamedTuple):
    # A tuple, not a frozen dataclass: made once per file of a tree, at a tenth of the cost.
    rel_path: str
    size: int
    mtime_ns: int
    etag: str | None
    checksum: tuple[str, str] | None
    url: str
    # Set by the listing that made the entry (an S3 listing), never read back from ``url``.
    from_s3: bool = False

    @property
    def source_id(self) -> str:
        return f"etag:{self.etag}" if self.etag else f"mtime:{self.mtime_ns}"


def fingerprint(entries: Sequence[Entry]) -> str:
    """sha256 over the sorted (rel_path, size, ETag or mtime): changes when any source file does."""
    # The bytes of json.dumps([rel_path, size, etag or mtime_ns]) + "\n" per entry (cache keys and
    # completion markers depend on them), formatted directly: a tenth of the cost per file.
    lines = [
        f"[{_quote(e.rel_path)}, {e.size:d}, {_quote(e.etag) if e.etag else format(e.mtime_ns, 'd')}]\n"
        for e in sorted(entries, key=lambda e: e.rel_path)
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def safe_rel_path(rel: str, where: str) -> str:
    """``rel`` when it is a plain relative path that stays under the destination."""
    parts = rel.split("/")
    if (
        not rel
        or rel.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or parts[0] == STATE_DIR
        or "\0" in rel
    ):
        raise StageError(
            "usage",
            f"cannot stage {where}: {rel!r} is not a safe relative path (empty, '.', '..' or '{STATE_DIR}' components)",
            where,
        )
    return rel


def join_rel(prefix: str | None, rel: str) -> str:
    return f"{prefix}/{rel}" if prefix else rel
