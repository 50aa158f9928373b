"""Bucket and key names, and key -> path resolution that never leaves the bucket."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aif_gateway.errors import S3Error
from aif_gateway.store.paths import INTERNAL_DIR, BucketPaths, open_checked, validate_bucket_name, validate_key

from ..store_support import bucket_paths


@pytest.mark.parametrize("name", ["abc", "my-bucket", "data.v2", "a" * 63, "0bucket9"])
def test_valid_bucket_names(name: str) -> None:
    validate_bucket_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "a" * 64,
        "MyBucket",
        "-abc",
        "abc-",
        ".abc",
        "abc.",
        "a..b",
        "a_b",
        "192.168.1.1",
        "xn--abc",
        "abc-s3alias",
        "a b",
        "",
    ],
)
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(S3Error) as exc:
        validate_bucket_name(name)
    assert exc.value.code == "InvalidBucketName"


@pytest.mark.parametrize(
    ("key", "segments"),
    [
        ("a", ["a"]),
        ("a/b/c.txt", ["a", "b", "c.txt"]),
        ("dir/", ["dir"]),
        ("a b/ü\n", ["a b", "ü\n"]),
        (".hidden/..x/...", [".hidden", "..x", "..."]),
        ("x" * 255, ["x" * 255]),
    ],
)
def test_valid_keys_split_into_segments(key: str, segments: list[str]) -> None:
    assert validate_key(key) == segments


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("", "empty"),
        ("/a", "empty segment"),
        ("a//b", "empty segment"),
        ("a/./b", "'.' or '..'"),
        ("../a", "'.' or '..'"),
        ("a/..", "'.' or '..'"),
        ("a\x00b", "NUL"),
        ("x" * 256, "255 bytes"),
        ("é" * 128, "255 bytes"),
        (f"{INTERNAL_DIR}/tmp/x", "reserved"),
        (f"{INTERNAL_DIR}/", "reserved"),
        ("a\udcffb", "UTF-8"),
    ],
)
def test_invalid_keys_name_the_rule(key: str, rule: str) -> None:
    with pytest.raises(S3Error) as exc:
        validate_key(key)
    assert exc.value.code == "InvalidArgument"
    assert rule in exc.value.message


def test_key_over_1024_bytes_is_too_long() -> None:
    longest = "/".join(["k" * 204] * 5)
    assert len(longest) == 1024
    validate_key(longest)
    with pytest.raises(S3Error) as exc:
        validate_key(longest + "k")
    assert exc.value.code == "KeyTooLongError"


@pytest.fixture
def bucket(tmp_path: Path) -> BucketPaths:
    (tmp_path / "bkt").mkdir()
    return bucket_paths(tmp_path, "bkt")


def test_resolve_maps_keys_below_the_bucket(bucket: BucketPaths) -> None:
    assert bucket.resolve("a/b") == bucket.dir / "a" / "b"
    assert bucket.resolve("a/b/") == bucket.dir / "a" / "b"
    assert bucket.key_of(bucket.resolve("a/b")) == "a/b"


def test_resolve_follows_symlinks_that_stay_inside(bucket: BucketPaths) -> None:
    (bucket.dir / "real").mkdir()
    os.symlink("real", bucket.dir / "alias")
    assert bucket.resolve("alias/f") == bucket.dir / "real" / "f"


@pytest.mark.parametrize("target_kind", ["file", "dir", "dangling"])
def test_resolve_refuses_symlinks_that_leave_the_bucket(tmp_path: Path, bucket: BucketPaths, target_kind: str) -> None:
    outside = tmp_path / "outside"
    if target_kind == "file":
        outside.write_text("secret")
    elif target_kind == "dir":
        outside.mkdir()
    os.symlink(outside, bucket.dir / "link")
    for key in ("link", "link/x"):
        with pytest.raises(S3Error) as exc:
            bucket.resolve(key)
        assert exc.value.code == "AccessDenied"


def test_resolve_refuses_symlinks_into_the_internal_directory(bucket: BucketPaths) -> None:
    (bucket.dir / INTERNAL_DIR).mkdir()  # where a mapped bucket on another filesystem keeps its state
    os.symlink(INTERNAL_DIR, bucket.dir / "sneaky")
    with pytest.raises(S3Error) as exc:
        bucket.resolve("sneaky/locks")
    assert exc.value.code == "AccessDenied"


def test_open_checked_refuses_a_final_symlink(tmp_path: Path, bucket: BucketPaths) -> None:
    (tmp_path / "outside").write_text("secret")
    os.symlink(tmp_path / "outside", bucket.dir / "link")
    with pytest.raises(S3Error) as exc:
        open_checked(str(bucket.dir), str(bucket.dir / "link"), os.O_RDONLY)
    assert exc.value.code == "AccessDenied"


def test_open_checked_refuses_a_parent_swapped_for_an_outside_symlink(tmp_path: Path, bucket: BucketPaths) -> None:
    # The race the check guards against: "sub" was a directory when resolved, then became a link.
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f").write_text("secret")
    path = bucket.resolve("sub/f")
    os.symlink(tmp_path / "outside", bucket.dir / "sub")
    with pytest.raises(S3Error) as exc:
        open_checked(str(bucket.dir), str(path), os.O_RDONLY)
    assert exc.value.code == "AccessDenied"
