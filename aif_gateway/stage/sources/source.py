"""What a source is: a user's string parsed once into a ``Source`` (``parse.parse_source`` is the
one place that tells an ``s3://`` prefix, a ``@manifest`` and a filesystem path apart); the rest
of the stage asks the ``Source`` (how to list it, how to name it) instead of testing the string.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..options import StageOptions
    from .entry import Entry

__all__ = ["ListedSource", "Source", "SourceLine"]


class Source(ABC):
    # Whether a listing's names below a directory came from readdir (so only the first can be
    # unsafe); S3 keys and manifest paths can be anything.
    names_from_readdir: ClassVar[bool] = False
    # Whether listing it needs an S3 client (opened once for all such sources of a stage).
    needs_s3: ClassVar[bool] = False

    @abstractmethod
    def normal(self) -> str:
        """The source as its listed entry's ``url`` names it (a single file or object)."""

    def local_path(self) -> str | None:
        """The file or directory on this machine, for filesystem sources; else None."""
        return None

    @abstractmethod
    def cache_identity(self, options: StageOptions) -> str:
        """A string that names the same data wherever it is staged from (site cache keys)."""

    @abstractmethod
    def lines(self) -> list[SourceLine]:
        """What it stands for: itself, or a manifest's lines."""


class ListedSource(Source):
    """A source that lists its own files (a filesystem path, an S3 prefix), as opposed to a
    manifest, which stands for the sources of its lines."""

    def lines(self) -> list[SourceLine]:
        return [SourceLine(self, None, None, None)]

    @abstractmethod
    async def list_entries(self, dest_rel: str | None, options: StageOptions, s3: Any = None) -> list[Entry]:
        """Its files (``s3``: the stage's S3 listing client, when ``needs_s3``)."""


@dataclass(frozen=True)
class SourceLine:
    """One source to list, where it lands (``dest_rel``) and what it must match, as a manifest
    line gives them (a plain source: only the source)."""

    source: ListedSource  # a manifest names files and S3 objects, never another manifest
    dest_rel: str | None
    checksum: tuple[str, str] | None
    etag: str | None
