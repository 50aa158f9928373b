"""A user's source strings parsed once into types (stage/sources/source.py), and what each says of itself."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from aif_gateway.stage.errors import StageError
from aif_gateway.stage.options import StageOptions
from aif_gateway.stage.sources import FilesystemPath, Manifest, S3Prefix, SourceLine, parse_source
from aif_gateway.stage.sources.s3 import S3Listing


def test_each_kind_of_spec_parses_into_its_type() -> None:
    assert parse_source("s3://b/p/") == S3Prefix("s3://b/p/")
    assert parse_source("@list.txt") == Manifest("list.txt")
    assert parse_source("data/x") == FilesystemPath("data/x")


def test_only_filesystem_sources_have_a_local_path_and_walk_directories() -> None:
    tree, s3, manifest = FilesystemPath("~/t"), S3Prefix("s3://b/p"), Manifest("m")
    assert tree.local_path() == os.path.expanduser("~/t")
    assert s3.local_path() is None and manifest.local_path() is None
    assert tree.names_from_readdir and not s3.names_from_readdir
    assert s3.needs_s3 and not tree.needs_s3 and not manifest.needs_s3


def test_cache_identity_names_the_endpoint_of_an_s3_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with_endpoint = StageOptions(endpoint_url="http://h:9000/")
    assert S3Prefix("s3://b/p/").cache_identity(with_endpoint) == "s3 http://h:9000 s3://b/p"
    assert S3Prefix("s3://b/p").cache_identity(StageOptions(profile="x")) == "s3 profile:x s3://b/p"
    assert FilesystemPath("/").cache_identity(StageOptions()) == "path /"


def test_a_manifest_stands_for_its_lines_resolved_against_its_directory(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("s3://b/k out/k etag=abc\nrel/f\n/abs/g\n")
    assert Manifest(str(listing)).lines() == [
        SourceLine(S3Prefix("s3://b/k"), "out/k", None, "abc"),
        SourceLine(FilesystemPath(str(tmp_path / "rel/f")), None, None, None),
        SourceLine(FilesystemPath("/abs/g"), None, None, None),
    ]
    assert FilesystemPath("/x").lines() == [SourceLine(FilesystemPath("/x"), None, None, None)]


def test_a_malformed_s3_url_is_a_usage_error_when_listed() -> None:
    with pytest.raises(StageError) as caught:
        asyncio.run(parse_source("s3://").list_entries(None, StageOptions(), S3Listing(None, None, lambda: None)))
    assert caught.value.kind == "usage"
