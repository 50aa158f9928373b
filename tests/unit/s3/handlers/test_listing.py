"""ListObjects V1/V2 and ListMultipartUploads: parameters in, documents out."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import MultiDict

from aif_gateway.errors import S3Error
from aif_gateway.s3.handlers import listing
from aif_gateway.store.base import BucketInfo, ListPage, ObjectAttrs, ObjectInfo, UploadInfo, UploadsPage

from ...s3_handler_support import call, s3_request, store_with, xml_of

T0 = 1_735_689_600_123_000_000  # 2025-01-01T00:00:00.123Z


def obj(key: str, **kw: Any) -> ObjectInfo:
    return ObjectInfo(key=key, size=kw.pop("size", 3), mtime_ns=T0, etag="abc", **kw)


def listing_store(page: ListPage, calls: list[dict[str, Any]]):
    async def list_objects(self, bucket, **kw):
        calls.append({"bucket": bucket, **kw})
        return page

    async def head_bucket(self, bucket):
        return BucketInfo(name=bucket, created_ns=T0, owner="alice")

    return store_with(list_objects=list_objects, head_bucket=head_bucket)


# -- parameters -----------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["abc", "1.5", "", "99999999999"])
def test_int_param_rejects_non_integers_and_out_of_range(raw: str) -> None:
    with pytest.raises(S3Error) as exc:
        listing.int_param(MultiDict({"max-keys": raw}), "max-keys", 1000)
    assert exc.value.code == "InvalidArgument"
    assert exc.value.extra["ArgumentName"] == "max-keys"


def test_int_param_rejects_negative_values() -> None:
    with pytest.raises(S3Error) as exc:
        listing.int_param(MultiDict({"max-keys": "-1"}), "max-keys", 1000)
    assert exc.value.code == "InvalidArgument"


def test_int_param_default_and_value() -> None:
    assert listing.int_param(MultiDict(), "max-keys", 1000) == 1000
    assert listing.int_param(MultiDict({"max-keys": "0"}), "max-keys", 1000) == 0


def test_encoding_type_other_than_url_is_invalid_argument() -> None:
    with pytest.raises(S3Error) as exc:
        listing.url_encoding_requested(MultiDict({"encoding-type": "base64"}))
    assert exc.value.code == "InvalidArgument"
    assert listing.url_encoding_requested(MultiDict({"encoding-type": "url"}))
    assert not listing.url_encoding_requested(MultiDict())


def test_url_encoder_keeps_slash_and_encodes_space_and_plus() -> None:
    encode = listing.make_encoder(True)
    assert encode("a b+c/d\n\u00e9") == "a%20b%2Bc/d%0A%C3%A9"
    assert listing.make_encoder(False)("a b+c") == "a b+c"


def test_continuation_token_round_trips_any_key() -> None:
    key = "dir/with space+plus/\n\u00e9/"
    assert listing.decode_continuation_token(listing.encode_continuation_token(key)) == key


def test_garbage_continuation_token_is_invalid_argument() -> None:
    with pytest.raises(S3Error) as exc:
        listing.decode_continuation_token("%%%not-base64")
    assert exc.value.code == "InvalidArgument"


# -- ListObjectsV2 --------------------------------------------------------------------------
def test_v2_document_counts_keys_and_prefixes_and_offers_a_token() -> None:
    calls: list[dict[str, Any]] = []
    page = ListPage([obj("a/1"), obj("b")], ["c/"], is_truncated=True, next_marker="c/")
    req = s3_request("GET", "/bkt?list-type=2&delimiter=/&max-keys=3", listing_store(page, calls), bucket="bkt")
    root = xml_of(call(listing.list_objects_v2, req))
    assert root.tag == "ListBucketResult"
    assert root.findtext("KeyCount") == "3"
    assert root.findtext("IsTruncated") == "true"
    assert root.findtext("MaxKeys") == "3"
    assert root.findtext("Delimiter") == "/"
    assert [c.findtext("Key") for c in root.findall("Contents")] == ["a/1", "b"]
    assert root.findtext("Contents/LastModified") == "2025-01-01T00:00:00.123Z"
    assert root.findtext("Contents/ETag") == '"abc"'
    assert root.findtext("Contents/StorageClass") == "STANDARD"
    assert root.find("Contents/Owner") is None  # only with fetch-owner
    assert [p.text for p in root.findall("CommonPrefixes/Prefix")] == ["c/"]
    token = root.findtext("NextContinuationToken")
    assert token is not None and listing.decode_continuation_token(token) == "c/"
    assert calls == [{"bucket": "bkt", "prefix": "", "delimiter": "/", "start_after": "", "max_keys": 3}]


def test_v2_continuation_token_wins_over_start_after_which_is_echoed() -> None:
    calls: list[dict[str, Any]] = []
    token = listing.encode_continuation_token("m")
    req = s3_request(
        "GET",
        f"/bkt?list-type=2&start-after=zzz&continuation-token={token}",
        listing_store(ListPage([], [], False, None), calls),
        bucket="bkt",
    )
    root = xml_of(call(listing.list_objects_v2, req))
    assert calls[0]["start_after"] == "m"
    assert root.findtext("StartAfter") == "zzz"
    assert root.findtext("ContinuationToken") == token
    assert root.find("NextContinuationToken") is None
    assert root.findtext("KeyCount") == "0"


def test_v2_start_after_used_without_token_and_max_keys_clamped() -> None:
    calls: list[dict[str, Any]] = []
    req = s3_request(
        "GET",
        "/bkt?list-type=2&start-after=k&max-keys=5000",
        listing_store(ListPage([], [], False, None), calls),
        bucket="bkt",
    )
    call(listing.list_objects_v2, req)
    assert calls[0]["start_after"] == "k"
    assert calls[0]["max_keys"] == 1000


def test_v2_fetch_owner_adds_owner() -> None:
    page = ListPage([obj("a")], [], False, None)
    req = s3_request("GET", "/bkt?list-type=2&fetch-owner=true", listing_store(page, []), bucket="bkt")
    root = xml_of(call(listing.list_objects_v2, req))
    assert root.findtext("Contents/Owner/ID") == "alice"


def test_v2_url_encoding_encodes_keys_prefixes_and_start_after() -> None:
    page = ListPage([obj("a b+c")], ["p q/"], False, None)
    req = s3_request(
        "GET",
        "/bkt?list-type=2&encoding-type=url&prefix=a%20&start-after=a%2B&delimiter=/",
        listing_store(page, []),
        bucket="bkt",
    )
    root = xml_of(call(listing.list_objects_v2, req))
    assert root.findtext("Contents/Key") == "a%20b%2Bc"
    assert root.findtext("CommonPrefixes/Prefix") == "p%20q/"
    assert root.findtext("Prefix") == "a%20"
    assert root.findtext("StartAfter") == "a%2B"
    assert root.findtext("EncodingType") == "url"


def test_control_characters_in_keys_survive_as_references() -> None:
    page = ListPage([obj("line\nbreak\r")], [], False, None)
    req = s3_request("GET", "/bkt?list-type=2", listing_store(page, []), bucket="bkt")
    response = call(listing.list_objects_v2, req)
    assert response.body is not None and b"line&#xA;break&#xD;" in response.body
    assert xml_of(response).findtext("Contents/Key") == "line\nbreak\r"


def test_checksum_algorithm_listed_for_objects_that_have_one() -> None:
    page = ListPage([obj("a", checksums={"CRC32": "AAAAAA=="}, checksum_type="FULL_OBJECT")], [], False, None)
    req = s3_request("GET", "/bkt?list-type=2", listing_store(page, []), bucket="bkt")
    root = xml_of(call(listing.list_objects_v2, req))
    assert root.findtext("Contents/ChecksumAlgorithm") == "CRC32"
    assert root.findtext("Contents/ChecksumType") == "FULL_OBJECT"


# -- ListObjects V1 -------------------------------------------------------------------------
def test_v1_next_marker_only_with_delimiter() -> None:
    page = ListPage([obj("a"), obj("b")], [], True, "b")
    req = s3_request("GET", "/bkt?marker=0", listing_store(page, []), bucket="bkt")
    plain = xml_of(call(listing.list_objects_v1, req))
    assert plain.find("NextMarker") is None
    assert plain.findtext("Marker") == "0"
    assert plain.findtext("IsTruncated") == "true"
    assert plain.findtext("Contents/Owner/ID") == "alice"
    grouped = xml_of(
        call(listing.list_objects_v1, s3_request("GET", "/bkt?delimiter=/", listing_store(page, []), bucket="bkt"))
    )
    assert grouped.findtext("NextMarker") == "b"


def test_v1_marker_becomes_start_after() -> None:
    calls: list[dict[str, Any]] = []
    store = listing_store(ListPage([], [], False, None), calls)
    req = s3_request("GET", "/bkt?marker=k1&prefix=k", store, bucket="bkt")
    call(listing.list_objects_v1, req)
    assert calls[0]["start_after"] == "k1"
    assert calls[0]["prefix"] == "k"


# -- ListMultipartUploads -------------------------------------------------------------------
def test_list_uploads_document_and_markers() -> None:
    calls: list[dict[str, Any]] = []
    upload = UploadInfo(
        bucket="bkt",
        key="big file",
        upload_id="U1",
        initiated_ns=T0,
        attrs=ObjectAttrs(),
        checksum_algorithm="CRC32",
        checksum_type="COMPOSITE",
        owner="alice",
    )

    async def list_uploads(self, bucket, **kw):
        calls.append(kw)
        return UploadsPage([upload], ["dir/"], True, "big file", "U1")

    req = s3_request(
        "GET",
        "/bkt?uploads&key-marker=a&upload-id-marker=U0&max-uploads=2&encoding-type=url",
        store_with(list_uploads=list_uploads),
        bucket="bkt",
    )
    root = xml_of(call(listing.list_multipart_uploads, req))
    assert root.tag == "ListMultipartUploadsResult"
    assert calls == [{"prefix": "", "delimiter": "", "key_marker": "a", "upload_id_marker": "U0", "max_uploads": 2}]
    assert root.findtext("Upload/Key") == "big%20file"
    assert root.findtext("Upload/UploadId") == "U1"
    assert root.findtext("Upload/Initiator/ID") == "alice"
    assert root.findtext("Upload/ChecksumAlgorithm") == "CRC32"
    assert root.findtext("NextKeyMarker") == "big%20file"
    assert root.findtext("NextUploadIdMarker") == "U1"
    assert root.findtext("IsTruncated") == "true"
    assert root.findtext("CommonPrefixes/Prefix") == "dir/"


def test_list_uploads_ignores_upload_id_marker_without_key_marker() -> None:
    calls: list[dict[str, Any]] = []

    async def list_uploads(self, bucket, **kw):
        calls.append(kw)
        return UploadsPage([], [], False, None, None)

    req = s3_request("GET", "/bkt?uploads&upload-id-marker=U0", store_with(list_uploads=list_uploads), bucket="bkt")
    call(listing.list_multipart_uploads, req)
    assert calls[0]["upload_id_marker"] == ""
