import pytest
from multidict import CIMultiDict

from aif_gateway.errors import S3Error
from aif_gateway.s3.headers import (
    apply_response_overrides,
    attrs_from_headers,
    checksum_mode_enabled,
    object_headers,
    validate_tags,
)
from aif_gateway.store.base import ObjectInfo


def test_attrs_take_standard_headers_meta_and_tags():
    headers = CIMultiDict(
        {
            "Content-Type": "text/plain",
            "cache-control": "no-cache",
            "Content-Disposition": "attachment",
            "Content-Language": "en",
            "Expires": "Wed, 01 Jan 2025 00:00:00 GMT",
            "X-Amz-Meta-Color": "Blue",
            "x-amz-tagging": "a=1&b=two%20words&empty=",
            "Authorization": "not metadata",
        }
    )
    attrs = attrs_from_headers(headers)
    assert attrs.content_type == "text/plain"
    assert attrs.headers == {
        "Cache-Control": "no-cache",
        "Content-Disposition": "attachment",
        "Content-Language": "en",
        "Expires": "Wed, 01 Jan 2025 00:00:00 GMT",
    }
    assert attrs.user_meta == {"color": "Blue"}
    assert attrs.tags == {"a": "1", "b": "two words", "empty": ""}


@pytest.mark.parametrize(
    ("encoding", "stored"),
    [("aws-chunked", None), ("aws-chunked,gzip", "gzip"), ("gzip, aws-chunked", "gzip"), ("gzip", "gzip")],
)
def test_aws_chunked_is_not_stored_as_content_encoding(encoding, stored):
    attrs = attrs_from_headers(CIMultiDict({"Content-Encoding": encoding}))
    assert attrs.headers.get("Content-Encoding") == stored


def test_no_tagging_header_means_no_tags():
    assert attrs_from_headers(CIMultiDict()).tags is None


def test_metadata_over_two_kib_is_too_large():
    attrs_from_headers(CIMultiDict({"x-amz-meta-a": "x" * 2047}))
    with pytest.raises(S3Error) as info:
        attrs_from_headers(CIMultiDict({"x-amz-meta-a": "x" * 1024, "x-amz-meta-b": "y" * 1024}))
    assert info.value.code == "MetadataTooLarge"


@pytest.mark.parametrize(
    "pairs",
    [
        [("k", "1"), ("k", "2")],
        [(f"k{i}", "v") for i in range(11)],
        [("", "v")],
        [("k" * 129, "v")],
        [("k", "v" * 257)],
    ],
)
def test_invalid_tags(pairs):
    with pytest.raises(S3Error) as info:
        validate_tags(pairs)
    assert info.value.code == "InvalidTag"


def test_duplicate_tag_in_header_is_invalid():
    with pytest.raises(S3Error) as info:
        attrs_from_headers(CIMultiDict({"x-amz-tagging": "a=1&a=2"}))
    assert info.value.code == "InvalidTag"


INFO = ObjectInfo(
    key="k",
    size=10,
    mtime_ns=1_735_732_800_123_000_000,
    etag="abc-2",
    content_type="text/plain",
    headers={"Cache-Control": "no-cache"},
    user_meta={"color": "blue"},
    checksums={"CRC32": "AAAAAA=="},
    checksum_type="COMPOSITE",
    tag_count=2,
)


def test_object_headers():
    headers = object_headers(INFO)
    assert headers == {
        "ETag": '"abc-2"',
        "Last-Modified": "Wed, 01 Jan 2025 12:00:00 GMT",
        "Content-Length": "10",
        "Content-Type": "text/plain",
        "Accept-Ranges": "bytes",
        "Cache-Control": "no-cache",
        "x-amz-meta-color": "blue",
        "x-amz-tagging-count": "2",
    }


def test_checksums_only_in_checksum_mode_and_never_for_a_slice():
    full = object_headers(INFO, checksum_mode=True)
    assert full["x-amz-checksum-crc32"] == "AAAAAA=="
    assert full["x-amz-checksum-type"] == "COMPOSITE"
    sliced = object_headers(INFO, checksum_mode=True, partial=True, parts_count=2)
    assert not any(name.startswith("x-amz-checksum") for name in sliced)
    assert sliced["x-amz-mp-parts-count"] == "2"


def test_checksum_mode_header():
    assert checksum_mode_enabled(CIMultiDict({"x-amz-checksum-mode": "ENABLED"}))
    assert not checksum_mode_enabled(CIMultiDict())


def test_response_overrides_replace_headers():
    headers = object_headers(INFO)
    apply_response_overrides(
        headers, {"response-content-type": "image/png", "response-content-disposition": "inline", "prefix": "x"}
    )
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == "inline"
