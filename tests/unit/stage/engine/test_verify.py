"""What a staged file is compared with, and the hasher that computes it."""

from __future__ import annotations

import base64
import hashlib

import pytest
import xxhash

from aif_gateway.checksums import digest_of
from aif_gateway.stage.engine.verify import XXH3, ContentHasher, check, expectations, method
from aif_gateway.stage.errors import StageError
from aif_gateway.stage.sources import Entry

DATA = b"staged bytes " * 1000
MD5 = hashlib.md5(DATA).hexdigest()


def s3_entry(etag: str | None, checksum: tuple[str, str] | None = None) -> Entry:
    return Entry("k", len(DATA), 1, etag, checksum, "s3://b/k", True)


def test_content_hasher_matches_reference_digests() -> None:
    hasher = ContentHasher({"MD5", "SHA256", "CRC32C"})
    for piece in (DATA[:7], DATA[7:5000], DATA[5000:]):
        hasher.update(memoryview(piece))
    digests = hasher.digests()
    assert digests[XXH3] == xxhash.xxh3_64(DATA).digest() and hasher.xxh3_hex() == xxhash.xxh3_64_hexdigest(DATA)
    assert digests["MD5"] == hashlib.md5(DATA).digest()
    assert digests["SHA256"] == hashlib.sha256(DATA).digest()
    assert digests["CRC32C"] == digest_of("CRC32C", DATA)
    assert set(ContentHasher().digests()) == {XXH3}


def test_a_plain_md5_etag_is_checked_but_not_a_multipart_or_kms_one() -> None:
    assert [e.algorithm for e in expectations(s3_entry(MD5))] == ["MD5"]
    assert expectations(s3_entry(MD5 + "-3")) == []
    assert expectations(s3_entry(MD5), sse="aws:kms") == []
    assert expectations(Entry("k", 1, 1, None, None, "/fs/k")) == []


def test_manifest_checksums_come_first_and_s3_checksums_need_a_full_object_value() -> None:
    wanted = xxhash.xxh3_64_hexdigest(DATA)
    found = expectations(s3_entry(None, ("XXH3_64", wanted)))
    entry = s3_entry(None, ("XXH3_64", wanted))
    assert [(e.algorithm, e.digest.hex()) for e in found] == [("XXH3_64", wanted)]
    assert method(found, entry) == "manifest"
    crc = base64.b64encode(digest_of("CRC32C", DATA)).decode()
    found = expectations(s3_entry("x-1"), s3_checksums={"CRC32C": crc})
    assert [e.algorithm for e in found] == ["CRC32C"] and method(found, s3_entry("x-1")) == "checksum"
    assert expectations(s3_entry("x-1"), s3_checksums={"CRC32C": crc + "-4"}) == []
    assert method([], s3_entry("x-1")) == "size+etag"
    assert method([], Entry("k", 1, 1, None, None, "/fs/k")) == "source"


def test_check_passes_matching_content_and_names_the_file_otherwise() -> None:
    entry = s3_entry(MD5)
    found = expectations(entry)
    hasher = ContentHasher({"MD5"})
    hasher.update(DATA)
    check(found, hasher.digests(), entry)
    bad = ContentHasher({"MD5"})
    bad.update(DATA[:-1] + b"!")
    with pytest.raises(StageError) as caught:
        check(found, bad.digests(), entry)
    assert caught.value.kind == "verify" and caught.value.exit_code == 1
    assert "s3://b/k" in str(caught.value) and "ETag" in str(caught.value)
