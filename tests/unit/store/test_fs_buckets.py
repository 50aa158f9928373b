"""Buckets: naming, ownership, listing, deletion rules, mapped directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from aif_gateway.errors import S3Error
from aif_gateway.store.base import ObjectAttrs
from aif_gateway.store.fs import FsStore
from aif_gateway.store.meta import SIDECAR, XATTR
from aif_gateway.store.paths import INTERNAL_DIR

from ..store_support import get, put, run


@pytest.fixture(params=[XATTR, SIDECAR])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FsStore:
    return FsStore(tmp_path / "root", meta_backend=request.param)


def error_code(action: object) -> str:
    with pytest.raises(S3Error) as exc:
        run(action)  # type: ignore[arg-type]
    return exc.value.code


def test_create_head_and_list(store: FsStore) -> None:
    run(store.create_bucket("beta", "bob"))
    run(store.create_bucket("alpha", "alice"))
    head = run(store.head_bucket("alpha"))
    assert (head.name, head.owner) == ("alpha", "alice")
    assert head.created_ns > 0
    assert [(b.name, b.owner) for b in run(store.list_buckets())] == [("alpha", "alice"), ("beta", "bob")]


def test_creating_an_existing_bucket_says_whose_it_is(store: FsStore) -> None:
    run(store.create_bucket("data", "alice"))
    assert error_code(store.create_bucket("data", "alice")) == "BucketAlreadyOwnedByYou"
    assert error_code(store.create_bucket("data", "bob")) == "BucketAlreadyExists"


def test_invalid_names_are_refused_at_creation_and_absent_otherwise(store: FsStore) -> None:
    assert error_code(store.create_bucket("Bad_Name", "alice")) == "InvalidBucketName"
    assert error_code(store.create_bucket(INTERNAL_DIR, "alice")) == "InvalidBucketName"
    assert error_code(store.head_bucket("..")) == "NoSuchBucket"
    assert error_code(store.head_object("..", "etc/passwd")) == "NoSuchBucket"


def test_directories_made_outside_the_gateway_are_buckets(store: FsStore) -> None:
    (store.root / "hpc-results").mkdir(parents=True)
    (store.root / "Not_A_Bucket").mkdir()
    (store.root / "a-file").write_text("x")
    assert [b.name for b in run(store.list_buckets())] == ["hpc-results"]
    assert run(store.head_bucket("hpc-results")).owner is None


def test_delete_refuses_objects_and_uploads_then_succeeds(store: FsStore) -> None:
    run(store.create_bucket("data", "alice"))
    put(store, "k", b"x", bucket="data")
    assert error_code(store.delete_bucket("data")) == "BucketNotEmpty"
    run(store.delete_object("data", "k"))
    upload_id = run(store.create_multipart("data", "big", ObjectAttrs()))
    assert error_code(store.delete_bucket("data")) == "BucketNotEmpty"
    run(store.abort_multipart("data", "big", upload_id))
    run(store.delete_bucket("data"))
    assert error_code(store.head_bucket("data")) == "NoSuchBucket"
    assert not (store.root / "data").exists()
    run(store.create_bucket("data", "bob"))  # the name is free again, with a new owner
    assert run(store.head_bucket("data")).owner == "bob"


def test_delete_of_a_missing_bucket(store: FsStore) -> None:
    assert error_code(store.delete_bucket("missing")) == "NoSuchBucket"


def test_mapped_buckets_expose_a_directory_in_place(tmp_path: Path) -> None:
    tree = tmp_path / "scratch" / "project"
    tree.mkdir(parents=True)
    (tree / "input.csv").write_text("a,b\n")
    store = FsStore(tmp_path / "root", {"project": tree})
    assert [b.name for b in run(store.list_buckets())] == ["project"]
    assert get(store, "input.csv", bucket="project") == b"a,b\n"
    put(store, "out/result.txt", b"done", bucket="project")
    assert (tree / "out" / "result.txt").read_bytes() == b"done"
    assert error_code(store.create_bucket("project", "alice")) == "BucketAlreadyExists"
    run(store.delete_object("project", "out/result.txt"))
    run(store.delete_object("project", "input.csv"))
    assert error_code(store.delete_bucket("project")) == "MethodNotAllowed"
    assert tree.is_dir()
