"""A manifest as a source (``@FILE``): one source per line,
``SRC [DEST_REL] [xxh3=HEX|sha256=HEX|md5=HEX|etag=ETAG]``, ``#`` comments, shell quoting;
relative SRCs are relative to the manifest's directory. A checksum or ETag needs a single file
or object, which must match it.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from ...client import is_s3_url
from ..errors import StageError, from_os_error
from ..options import StageOptions
from .filesystem import FilesystemPath
from .s3 import S3Prefix
from .source import ListedSource, Source, SourceLine

__all__ = ["Manifest", "ManifestLine", "parse_manifest_line"]

_CHECKSUM_KEYS = {"xxh3": ("XXH3_64", 16), "sha256": ("SHA256", 64), "md5": ("MD5", 32)}


@dataclass(frozen=True)
class ManifestLine:
    src: str
    dest_rel: str | None
    checksum: tuple[str, str] | None
    etag: str | None


def parse_manifest_line(line: str) -> ManifestLine | None:
    """One manifest line, or None for blanks and comments; ValueError for a malformed one."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        raise ValueError(f"cannot parse {line!r}: {exc}") from None
    if not words:
        return None
    src, rest = words[0], words[1:]
    dest_rel = checksum = etag = None
    for word in rest:
        key, eq, value = word.partition("=")
        if eq and key.lower() in _CHECKSUM_KEYS:
            algorithm, length = _CHECKSUM_KEYS[key.lower()]
            value = value.lower()
            if len(value) != length or any(c not in "0123456789abcdef" for c in value):
                raise ValueError(f"{key}= needs {length} hex digits, not {value!r}")
            checksum = (algorithm, value)
        elif eq and key.lower() == "etag":
            etag = value.strip('"')
        elif dest_rel is None:
            dest_rel = word.strip("/")
        else:
            raise ValueError(f"unexpected {word!r} (expected SRC [DEST_REL] [xxh3=HEX|sha256=HEX|md5=HEX|etag=ETAG])")
    return ManifestLine(src, dest_rel, checksum, etag)


@dataclass(frozen=True)
class Manifest(Source):
    path: str  # as given, without the "@"

    def __str__(self) -> str:
        return f"@{self.path}"

    def normal(self) -> str:
        return os.path.abspath(os.path.expanduser(self.path))

    def cache_identity(self, options: StageOptions) -> str:
        return f"manifest {os.path.realpath(self.path)}"

    def lines(self) -> list[SourceLine]:
        path = Path(self.path).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise from_os_error(exc, str(path), "reading the manifest", source=True) from None
        lines = []
        for number, raw in enumerate(text.splitlines(), 1):
            try:
                parsed = parse_manifest_line(raw)
            except ValueError as exc:
                raise StageError("usage", f"{path}:{number}: {exc}", str(path)) from None
            if parsed is None:
                continue
            # A manifest names S3 objects and files, not other manifests.
            source: ListedSource
            if is_s3_url(parsed.src):
                source = S3Prefix(parsed.src)
            elif os.path.isabs(parsed.src):
                source = FilesystemPath(parsed.src)
            else:
                source = FilesystemPath(str(path.parent / parsed.src))
            lines.append(SourceLine(source, parsed.dest_rel, parsed.checksum, parsed.etag))
        if not lines:
            raise StageError("usage", f"manifest {path} names no sources", str(path))
        return lines
