"""What a stage copies: the sources a user names (``parse_source``: an ``s3://`` prefix, a
filesystem path or an ``@manifest``), each listed by its own type into ``Entry`` values, one
per file, merged into a flat list sorted by destination path (listing.py)."""

from .entry import Entry, fingerprint, safe_rel_path
from .filesystem import LOCAL_KINDS, FilesystemPath, on_local_fs, walk_tree
from .listing import alist_sources, list_entries, list_sources
from .manifest_file import Manifest, ManifestLine, parse_manifest_line
from .parse import parse_source
from .s3 import S3Prefix
from .source import Source, SourceLine

__all__ = [
    "LOCAL_KINDS",
    "Entry",
    "FilesystemPath",
    "Manifest",
    "ManifestLine",
    "S3Prefix",
    "Source",
    "SourceLine",
    "alist_sources",
    "fingerprint",
    "list_entries",
    "list_sources",
    "on_local_fs",
    "parse_manifest_line",
    "parse_source",
    "safe_rel_path",
    "walk_tree",
]
