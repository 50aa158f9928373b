"""Multipart: part numbers, checksum settings, copy ranges, the Complete document, results."""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from aif_gateway.checksums import b64
from aif_gateway.errors import S3Error
from aif_gateway.s3.handlers import multipart
from aif_gateway.store.base import ExpectedObject, ObjectAttrs, ObjectInfo, PartInfo, PartsPage, UploadInfo

from ...s3_handler_support import call, s3_request, store_with, xml_of

T0 = 1_735_689_600_000_000_000


# -- parsing --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, (None, None)),
        ({"x-amz-checksum-algorithm": "CRC64NVME"}, ("CRC64NVME", "FULL_OBJECT")),
        ({"x-amz-checksum-algorithm": "crc32"}, ("CRC32", "COMPOSITE")),
        ({"x-amz-checksum-algorithm": "SHA256"}, ("SHA256", "COMPOSITE")),
        ({"x-amz-checksum-algorithm": "CRC32C", "x-amz-checksum-type": "FULL_OBJECT"}, ("CRC32C", "FULL_OBJECT")),
    ],
)
def test_checksum_settings_defaults(headers: dict[str, str], expected: tuple[str | None, str | None]) -> None:
    assert multipart.checksum_settings(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {"x-amz-checksum-algorithm": "SHA1", "x-amz-checksum-type": "FULL_OBJECT"},
        {"x-amz-checksum-algorithm": "CRC64NVME", "x-amz-checksum-type": "COMPOSITE"},
        {"x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-type": "PARTIAL"},
        {"x-amz-checksum-type": "COMPOSITE"},
        {"x-amz-checksum-algorithm": "MD5"},
    ],
)
def test_impossible_checksum_settings_are_invalid_request(headers: dict[str, str]) -> None:
    with pytest.raises(S3Error) as exc:
        multipart.checksum_settings(headers)
    assert exc.value.code == "InvalidRequest"


def test_copy_source_range_syntax() -> None:
    assert multipart.parse_copy_source_range(None) is None
    assert multipart.parse_copy_source_range("bytes=0-9") == (0, 9)
    for bad in ["0-9", "bytes=0-", "bytes=-5", "bytes=0-1,3-4", "bytes=a-b", "bytes 0-9"]:
        with pytest.raises(S3Error) as exc:
            multipart.parse_copy_source_range(bad)
        assert exc.value.code == "InvalidArgument"


def test_copy_range_must_lie_inside_the_source() -> None:
    multipart.check_range_within((0, 9), 10)
    multipart.check_range_within(None, 0)
    for bad in [(0, 10), (5, 4), (10, 10)]:
        with pytest.raises(S3Error) as exc:
            multipart.check_range_within(bad, 10)
        assert exc.value.code == "InvalidArgument"
        assert exc.value.message == "Range specified is not valid for source object of size: 10"


def complete_doc(*parts: str) -> bytes:
    return ("<CompleteMultipartUpload>" + "".join(parts) + "</CompleteMultipartUpload>").encode()


def test_parse_complete_strips_quotes_and_reads_checksums() -> None:
    parts = multipart.parse_complete(
        complete_doc(
            '<Part><PartNumber>1</PartNumber><ETag>"aa"</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part>',
            "<Part><ETag>&quot;bb&quot;</ETag><PartNumber>3</PartNumber></Part>",
            "<Part><PartNumber>4</PartNumber><ETag>cc</ETag></Part>",
        )
    )
    assert [(p.part_number, p.etag, p.checksums) for p in parts] == [
        (1, "aa", {"CRC32": "AAAAAA=="}),
        (3, "bb", {}),
        (4, "cc", {}),
    ]


@pytest.mark.parametrize(
    "body",
    [
        complete_doc(),
        complete_doc("<Part><ETag>aa</ETag></Part>"),
        complete_doc("<Part><PartNumber>x</PartNumber><ETag>aa</ETag></Part>"),
        b"<Other><Part><PartNumber>1</PartNumber><ETag>aa</ETag></Part></Other>",
    ],
)
def test_malformed_complete_documents(body: bytes) -> None:
    with pytest.raises(S3Error) as exc:
        multipart.parse_complete(body)
    assert exc.value.code == "MalformedXML"


@pytest.mark.parametrize("numbers", [(2, 1), (1, 1)])
def test_parts_out_of_order_or_repeated_are_invalid_part_order(numbers: tuple[int, int]) -> None:
    body = complete_doc(*(f"<Part><PartNumber>{n}</PartNumber><ETag>e</ETag></Part>" for n in numbers))
    with pytest.raises(S3Error) as exc:
        multipart.parse_complete(body)
    assert exc.value.code == "InvalidPartOrder"


# -- handlers -------------------------------------------------------------------------------
def test_create_upload_passes_attrs_and_echoes_checksum_settings() -> None:
    calls: list[tuple[Any, ...]] = []

    async def create_multipart(self, bucket, key, attrs, algorithm=None, checksum_type=None, owner=None):
        calls.append((bucket, key, attrs, algorithm, checksum_type, owner))
        return "UPLOAD-1"

    headers = {"Content-Type": "text/csv", "x-amz-checksum-algorithm": "CRC32"}
    req = s3_request(
        "POST", "/b/k?uploads", store_with(create_multipart=create_multipart), bucket="b", key="k", headers=headers
    )
    response = call(multipart.create_multipart_upload, req)
    root = xml_of(response)
    assert root.tag == "InitiateMultipartUploadResult"
    assert (root.findtext("Bucket"), root.findtext("Key"), root.findtext("UploadId")) == ("b", "k", "UPLOAD-1")
    assert response.headers["x-amz-checksum-algorithm"] == "CRC32"
    assert response.headers["x-amz-checksum-type"] == "COMPOSITE"
    assert calls[0][2].content_type == "text/csv"
    assert calls[0][3:] == ("CRC32", "COMPOSITE", "alice")


def test_upload_part_streams_the_body_and_echoes_its_checksum() -> None:
    received: list[bytes] = []
    data = b"part data"

    async def upload_part(self, bucket, key, upload_id, number, body, options):
        async for chunk in body:
            received.append(chunk)
        assert options.verify is not None
        digests = {"MD5": b"", "CRC32": zlib.crc32(data).to_bytes(4, "big")}
        options.verify(digests)
        # As a store does: the part keeps the checksums it was asked to (the echo is read from them).
        kept = {name: b64(digests[name]) for name in options.hash_algorithms}
        return PartInfo(part_number=number, size=len(data), etag="pe", mtime_ns=T0, checksums=kept)

    crc = b64(zlib.crc32(data).to_bytes(4, "big"))
    req = s3_request(
        "PUT",
        "/b/k?partNumber=2&uploadId=U",
        store_with(upload_part=upload_part),
        bucket="b",
        key="k",
        body=data,
        headers={"x-amz-checksum-crc32": crc},
    )
    response = call(multipart.upload_part, req)
    assert b"".join(received) == data
    assert response.headers["ETag"] == '"pe"'
    assert response.headers["x-amz-checksum-crc32"] == crc
    assert "x-amz-checksum-type" not in response.headers  # a part has no checksum type


def test_upload_part_copy_checks_range_against_source_size() -> None:
    source = ObjectInfo(key="s", size=10, mtime_ns=T0, etag="se")

    async def upload_part_copy(self, bucket, key, upload_id, number, src_bucket, src_key, src_range, check_source=None):
        assert (src_bucket, src_key, src_range) == ("src", "s", (0, 20))
        check_source(source)
        raise AssertionError("check_source should have refused the range")

    req = s3_request(
        "PUT",
        "/b/k?partNumber=1&uploadId=U",
        store_with(upload_part_copy=upload_part_copy),
        bucket="b",
        key="k",
        headers={"x-amz-copy-source": "src/s", "x-amz-copy-source-range": "bytes=0-20"},
    )
    with pytest.raises(S3Error) as exc:
        call(multipart.upload_part_copy, req)
    assert exc.value.code == "InvalidArgument"


def test_upload_part_copy_result() -> None:
    async def upload_part_copy(self, bucket, key, upload_id, number, src_bucket, src_key, src_range, check_source=None):
        check_source(ObjectInfo(key="s", size=10, mtime_ns=T0, etag="se"))
        return PartInfo(part_number=number, size=5, etag="ce", mtime_ns=T0, checksums={"CRC32C": "AAAAAA=="})

    req = s3_request(
        "PUT",
        "/b/k?partNumber=1&uploadId=U",
        store_with(upload_part_copy=upload_part_copy),
        bucket="b",
        key="k",
        headers={"x-amz-copy-source": "src/s", "x-amz-copy-source-range": "bytes=5-9"},
    )
    root = xml_of(call(multipart.upload_part_copy, req))
    assert root.tag == "CopyPartResult"
    assert root.findtext("ETag") == '"ce"'
    assert root.findtext("ChecksumCRC32C") == "AAAAAA=="


def test_complete_result_and_write_conditions() -> None:
    calls: list[Any] = []

    async def complete_multipart(self, bucket, key, upload_id, parts, options, expected):
        calls.append((upload_id, parts, options, expected))
        return ObjectInfo(
            key=key, size=10, mtime_ns=T0, etag="x-2", checksums={"CRC32": "AAAAAA==-2"}, checksum_type="COMPOSITE"
        )

    body = complete_doc(*(f"<Part><PartNumber>{n}</PartNumber><ETag>e{n}</ETag></Part>" for n in (1, 2)))
    req = s3_request(
        "POST",
        "/b/dir/k%20?uploadId=U",
        store_with(complete_multipart=complete_multipart),
        bucket="b",
        key="dir/k ",
        body=body,
        headers={"If-None-Match": "*"},
    )
    root = xml_of(call(multipart.complete_multipart_upload, req))
    assert root.tag == "CompleteMultipartUploadResult"
    assert root.findtext("Location") == "http://gw.example:9000/b/dir/k%20"
    assert root.findtext("ETag") == '"x-2"'
    assert root.findtext("ChecksumCRC32") == "AAAAAA==-2"
    assert root.findtext("ChecksumType") == "COMPOSITE"
    upload_id, parts, options, expected = calls[0]
    assert upload_id == "U" and [p.etag for p in parts] == ["e1", "e2"]
    assert options.if_none_match is True
    assert expected == ExpectedObject()


def complete_with(headers: dict[str, str]) -> list[Any]:
    """The ``expected`` argument a Complete with ``headers`` hands the store."""
    calls: list[Any] = []

    async def complete_multipart(self, bucket, key, upload_id, parts, options, expected):
        calls.append(expected)
        return ObjectInfo(
            key=key, size=5, mtime_ns=T0, etag="x-1", checksums={"CRC32": CRC32_HELLO}, checksum_type="FULL_OBJECT"
        )

    body = complete_doc("<Part><PartNumber>1</PartNumber><ETag>e1</ETag></Part>")
    req = s3_request(
        "POST",
        "/b/k?uploadId=U",
        store_with(complete_multipart=complete_multipart),
        bucket="b",
        key="k",
        body=body,
        headers=headers,
    )
    root = xml_of(call(multipart.complete_multipart_upload, req))
    assert (root.findtext("ChecksumCRC32"), root.findtext("ChecksumType")) == (CRC32_HELLO, "FULL_OBJECT")
    return calls


CRC32_HELLO = b64(zlib.crc32(b"hello").to_bytes(4, "big"))


def test_complete_passes_the_object_claims_of_its_headers_to_the_store() -> None:
    # The checksum header is the object's, not the part list's: it is not checked against the body.
    headers = {"x-amz-checksum-crc32": CRC32_HELLO, "x-amz-checksum-type": "full_object", "x-amz-mp-object-size": "5"}
    assert complete_with(headers) == [
        ExpectedObject(checksum_algorithm="CRC32", checksum=CRC32_HELLO, checksum_type="FULL_OBJECT", size=5)
    ]
    composite = {"x-amz-checksum-sha256": b64(bytes(32)) + "-3", "x-amz-checksum-type": "COMPOSITE"}
    assert complete_with(composite) == [
        ExpectedObject(checksum_algorithm="SHA256", checksum=b64(bytes(32)) + "-3", checksum_type="COMPOSITE")
    ]


@pytest.mark.parametrize(
    "headers, code",
    [
        ({"x-amz-checksum-crc32": "not-base64"}, "InvalidRequest"),
        ({"x-amz-checksum-crc32": b64(bytes(8))}, "InvalidRequest"),  # a CRC64's length
        ({"x-amz-checksum-crc32": CRC32_HELLO + "-x"}, "InvalidRequest"),
        ({"x-amz-checksum-crc32": CRC32_HELLO, "x-amz-checksum-crc32c": CRC32_HELLO}, "InvalidRequest"),
        ({"x-amz-checksum-type": "PARTIAL"}, "InvalidRequest"),
        ({"x-amz-mp-object-size": "-5"}, "InvalidArgument"),
    ],
)
def test_malformed_complete_claims_are_refused_before_the_store_is_called(headers, code) -> None:
    with pytest.raises(S3Error) as info:
        complete_with(headers)
    assert info.value.code == code


def test_abort_is_204() -> None:
    async def abort_multipart(self, bucket, key, upload_id):
        assert upload_id == "U"

    req = s3_request("DELETE", "/b/k?uploadId=U", store_with(abort_multipart=abort_multipart), bucket="b", key="k")
    assert call(multipart.abort_multipart_upload, req).status == 204


def test_list_parts_paging_and_document() -> None:
    calls: list[Any] = []
    upload = UploadInfo(
        bucket="b",
        key="k",
        upload_id="U",
        initiated_ns=T0,
        attrs=ObjectAttrs(),
        checksum_algorithm="CRC32",
        checksum_type="COMPOSITE",
        owner="alice",
    )

    async def list_parts(self, bucket, key, upload_id, part_number_marker=0, max_parts=1000):
        calls.append((part_number_marker, max_parts))
        parts = [PartInfo(part_number=3, size=5, etag="p3", mtime_ns=T0, checksums={"CRC32": "AAAAAA=="})]
        return PartsPage(upload, parts, is_truncated=True, next_part_number_marker=3)

    req = s3_request(
        "GET",
        "/b/k?uploadId=U&part-number-marker=2&max-parts=1",
        store_with(list_parts=list_parts),
        bucket="b",
        key="k",
    )
    root = xml_of(call(multipart.list_parts, req))
    assert calls == [(2, 1)]
    assert root.tag == "ListPartsResult"
    assert root.findtext("PartNumberMarker") == "2"
    assert root.findtext("NextPartNumberMarker") == "3"
    assert root.findtext("IsTruncated") == "true"
    assert root.findtext("Part/PartNumber") == "3"
    assert root.findtext("Part/ETag") == '"p3"'
    assert root.findtext("Part/ChecksumCRC32") == "AAAAAA=="
    assert root.findtext("Initiator/ID") == "alice"
    assert root.findtext("ChecksumAlgorithm") == "CRC32"
