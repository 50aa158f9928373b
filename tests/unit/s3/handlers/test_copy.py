"""CopyObject: the copy-source header, directives, the self-copy rule and the result."""

from __future__ import annotations

from typing import Any

import pytest

from aif_gateway.errors import S3Error
from aif_gateway.s3.handlers import copy
from aif_gateway.store.base import ObjectAttrs, ObjectInfo

from ...s3_handler_support import call, s3_request, store_with, xml_of

T0 = 1_735_689_600_000_000_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("src/key", ("src", "key")),
        ("/src/dir/key", ("src", "dir/key")),
        ("src/a%20b%2Bc%3Fd", ("src", "a b+c?d")),
        ("src/k?versionId=null", ("src", "k")),
        ("src//double", ("src", "/double")),
    ],
)
def test_parse_copy_source(value: str, expected: tuple[str, str]) -> None:
    assert copy.parse_copy_source(value) == expected


@pytest.mark.parametrize("value", ["src", "src/", "/", "", "/src"])
def test_copy_source_without_bucket_and_key_is_invalid_argument(value: str) -> None:
    with pytest.raises(S3Error) as exc:
        copy.parse_copy_source(value)
    assert exc.value.code == "InvalidArgument"
    assert exc.value.extra["ArgumentName"] == "x-amz-copy-source"


def test_copy_source_version_is_not_implemented() -> None:
    with pytest.raises(S3Error) as exc:
        copy.parse_copy_source("src/k?versionId=3HL4kqtJlcpXroDTDmJ")
    assert exc.value.code == "NotImplemented"


def test_unknown_directive_is_invalid_argument() -> None:
    with pytest.raises(S3Error) as exc:
        copy.directive({"x-amz-metadata-directive": "MERGE"}, "x-amz-metadata-directive", "metadata")
    assert exc.value.code == "InvalidArgument"
    assert exc.value.message == "Unknown metadata directive."


def test_invalid_checksum_algorithm_is_invalid_request() -> None:
    with pytest.raises(S3Error) as exc:
        copy.requested_checksum_algorithm({"x-amz-checksum-algorithm": "MD4"})
    assert exc.value.code == "InvalidRequest"
    assert copy.requested_checksum_algorithm({"x-amz-checksum-algorithm": "crc32c"}) == "CRC32C"


def copy_store(calls: list[dict[str, Any]], source: ObjectInfo | None = None):
    async def copy_object(self, src_bucket, src_key, dst_bucket, dst_key, attrs, options, check_source=None):
        calls.append(dict(src=(src_bucket, src_key), dst=(dst_bucket, dst_key), attrs=attrs, options=options))
        if source is not None and check_source is not None:
            check_source(source)
        return ObjectInfo(
            key=dst_key, size=3, mtime_ns=T0, etag="e1", checksums={"CRC32": "AAAAAA=="}, checksum_type="FULL_OBJECT"
        )

    async def head_object(self, bucket, key):
        return ObjectInfo(
            key=key,
            size=3,
            mtime_ns=T0,
            etag="e0",
            content_type="text/plain",
            headers={"Cache-Control": "no-cache"},
            user_meta={"a": "1"},
        )

    return store_with(copy_object=copy_object, head_object=head_object)


def test_copy_default_keeps_source_metadata_and_returns_result() -> None:
    calls: list[dict[str, Any]] = []
    req = s3_request(
        "PUT", "/dst/k2", copy_store(calls), bucket="dst", key="k2", headers={"x-amz-copy-source": "/src/k%201"}
    )
    root = xml_of(call(copy.copy_object, req))
    assert root.tag == "CopyObjectResult"
    assert root.findtext("ETag") == '"e1"'
    assert root.findtext("LastModified") == "2025-01-01T00:00:00.000Z"
    assert root.findtext("ChecksumCRC32") == "AAAAAA=="
    assert calls[0]["src"] == ("src", "k 1") and calls[0]["dst"] == ("dst", "k2")
    assert calls[0]["attrs"] is None


def test_copy_replace_takes_metadata_from_request_and_keeps_source_tags() -> None:
    calls: list[dict[str, Any]] = []
    headers = {
        "x-amz-copy-source": "src/k",
        "x-amz-metadata-directive": "REPLACE",
        "Content-Type": "image/png",
        "x-amz-meta-Color": "blue",
        "x-amz-tagging": "t=1",
    }
    call(copy.copy_object, s3_request("PUT", "/dst/k", copy_store(calls), bucket="dst", key="k", headers=headers))
    attrs = calls[0]["attrs"]
    assert isinstance(attrs, ObjectAttrs)
    assert attrs.content_type == "image/png"
    assert attrs.user_meta == {"color": "blue"}
    assert attrs.tags is None  # tagging directive COPY: the source's tags


def test_copy_tagging_replace_alone_keeps_source_metadata_with_new_tags() -> None:
    calls: list[dict[str, Any]] = []
    headers = {"x-amz-copy-source": "src/k", "x-amz-tagging-directive": "REPLACE", "x-amz-tagging": "t=1&u="}
    call(copy.copy_object, s3_request("PUT", "/dst/k", copy_store(calls), bucket="dst", key="k", headers=headers))
    attrs = calls[0]["attrs"]
    assert attrs == ObjectAttrs(
        content_type="text/plain", headers={"Cache-Control": "no-cache"}, user_meta={"a": "1"}, tags={"t": "1", "u": ""}
    )


def test_copy_onto_itself_without_change_is_invalid_request() -> None:
    req = s3_request("PUT", "/b/k", copy_store([]), bucket="b", key="k", headers={"x-amz-copy-source": "b/k"})
    with pytest.raises(S3Error) as exc:
        call(copy.copy_object, req)
    assert exc.value.code == "InvalidRequest"
    assert "copy an object to itself" in exc.value.message


def test_copy_onto_itself_with_replace_is_allowed() -> None:
    calls: list[dict[str, Any]] = []
    headers = {"x-amz-copy-source": "b/k", "x-amz-metadata-directive": "REPLACE"}
    call(copy.copy_object, s3_request("PUT", "/b/k", copy_store(calls), bucket="b", key="k", headers=headers))
    assert len(calls) == 1


def test_copy_passes_destination_conditions_and_checksum_algorithm() -> None:
    calls: list[dict[str, Any]] = []
    headers = {"x-amz-copy-source": "src/k", "If-None-Match": "*", "x-amz-checksum-algorithm": "SHA256"}
    call(copy.copy_object, s3_request("PUT", "/dst/k", copy_store(calls), bucket="dst", key="k", headers=headers))
    options = calls[0]["options"]
    assert options.if_none_match is True
    assert options.hash_algorithms == frozenset({"SHA256"})


def test_copy_source_conditions_reach_the_store() -> None:
    source = ObjectInfo(key="k", size=3, mtime_ns=T0, etag="other")
    headers = {"x-amz-copy-source": "src/k", "x-amz-copy-source-if-match": '"e0"'}
    req = s3_request("PUT", "/dst/k", copy_store([], source), bucket="dst", key="k", headers=headers)
    with pytest.raises(S3Error) as exc:
        call(copy.copy_object, req)
    assert exc.value.code == "PreconditionFailed"
