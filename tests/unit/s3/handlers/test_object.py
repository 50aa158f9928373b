"""PutObject and HeadObject through the handlers onto a real FsStore: which checksums an object
keeps and which the responses show."""

from __future__ import annotations

import base64
import hashlib
import zlib
from pathlib import Path

import pytest

from aif_gateway.s3.handlers import object as object_handlers
from aif_gateway.s3.sigv4 import SIGNED_PAYLOAD
from aif_gateway.store.fs import FsStore

from ...s3_handler_support import call, s3_request
from ...store_support import new_store, run

DATA = b"checkpoint shard\n" * 64
SHA256_HEX = hashlib.sha256(DATA).hexdigest()
SHA256_B64 = base64.b64encode(hashlib.sha256(DATA).digest()).decode()
CRC32_B64 = base64.b64encode(zlib.crc32(DATA).to_bytes(4, "big")).decode()
CHECKSUM_MODE = {"x-amz-checksum-mode": "ENABLED"}


@pytest.fixture
def store(tmp_path: Path) -> FsStore:
    return new_store(tmp_path)


def put(store: FsStore, key: str, headers: dict[str, str], **auth: str):
    req = s3_request("PUT", f"/bkt/{key}", store, bucket="bkt", key=key, body=DATA, headers=headers, **auth)
    return call(object_handlers.put_object, req)


def head(store: FsStore, key: str):
    req = s3_request("HEAD", f"/bkt/{key}", store, bucket="bkt", key=key, headers=CHECKSUM_MODE)
    return call(object_handlers.head_object, req)


def test_a_signed_payload_hash_is_verified_but_not_kept_as_a_checksum(store: FsStore) -> None:
    response = put(store, "signed", {}, payload=SIGNED_PAYLOAD, content_sha256=SHA256_HEX)
    assert response.status == 200
    assert not any(name.lower().startswith("x-amz-checksum-") for name in response.headers)
    assert run(store.head_object("bkt", "signed")).checksums == {}
    assert "x-amz-checksum-sha256" not in head(store, "signed").headers


def test_a_sha256_checksum_header_is_kept_with_or_without_a_signed_payload(store: FsStore) -> None:
    headers = {"x-amz-checksum-sha256": SHA256_B64}
    put(store, "signed", headers, payload=SIGNED_PAYLOAD, content_sha256=SHA256_HEX)
    put(store, "unsigned", headers)
    for key in ("signed", "unsigned"):
        assert run(store.head_object("bkt", key)).checksums == {"SHA256": SHA256_B64}
        assert head(store, key).headers["x-amz-checksum-sha256"] == SHA256_B64


def test_put_echoes_its_checksum_as_a_full_object_one(store: FsStore) -> None:
    response = put(store, "k", {"x-amz-checksum-crc32": CRC32_B64})
    assert response.headers["x-amz-checksum-crc32"] == CRC32_B64
    assert response.headers["x-amz-checksum-type"] == "FULL_OBJECT"


def test_put_without_a_checksum_echoes_no_checksum_type(store: FsStore) -> None:
    assert "x-amz-checksum-type" not in put(store, "k", {}).headers
