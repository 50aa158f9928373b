"""DeleteObjects: the request document, the integrity requirement, per-key outcomes."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest

from aif_gateway.checksums import b64
from aif_gateway.errors import S3Error
from aif_gateway.s3.handlers import delete_objects
from aif_gateway.store.base import BucketInfo

from ...s3_handler_support import call, s3_request, store_with, xml_of


def delete_doc(*keys: str, quiet: bool = False) -> bytes:
    objects = "".join(f"<Object><Key>{k}</Key></Object>" for k in keys)
    flag = "<Quiet>true</Quiet>" if quiet else ""
    return f'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{flag}{objects}</Delete>'.encode()


def md5_header(body: bytes) -> dict[str, str]:
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def test_parse_delete_reads_keys_verbatim_and_quiet() -> None:
    request = delete_objects.parse_delete(delete_doc(" spaced ", "line&#xA;break", quiet=True))
    assert request.quiet is True
    assert [e.key for e in request.entries] == [" spaced ", "line\nbreak"]


@pytest.mark.parametrize(
    "body",
    [
        b"<Delete/>",
        b"<Delete><Object/></Delete>",
        b"<Other><Object><Key>a</Key></Object></Other>",
        delete_doc(*[f"k{i}" for i in range(1001)]),
    ],
)
def test_malformed_delete_documents(body: bytes) -> None:
    with pytest.raises(S3Error) as exc:
        delete_objects.parse_delete(body)
    assert exc.value.code == "MalformedXML"


def test_a_thousand_keys_are_accepted() -> None:
    assert len(delete_objects.parse_delete(delete_doc(*[f"k{i}" for i in range(1000)])).entries) == 1000


def deleting_store(deleted: list[str]):
    async def delete_object(self, bucket, key):
        if key.startswith("bad"):
            raise S3Error("InvalidArgument", "unsafe key")
        deleted.append(key)

    async def head_bucket(self, bucket):
        return BucketInfo(name=bucket, created_ns=0)

    return store_with(delete_object=delete_object, head_bucket=head_bucket)


def test_each_key_gets_its_own_outcome_in_request_order() -> None:
    deleted: list[str] = []
    body = delete_doc("a", "bad/..", "b")
    req = s3_request("POST", "/bkt?delete", deleting_store(deleted), bucket="bkt", body=body, headers=md5_header(body))
    response = call(delete_objects.delete_objects, req)
    assert response.status == 200
    root = xml_of(response)
    assert root.tag == "DeleteResult"
    assert [d.findtext("Key") for d in root.findall("Deleted")] == ["a", "b"]
    errors = root.findall("Error")
    assert [(e.findtext("Key"), e.findtext("Code")) for e in errors] == [("bad/..", "InvalidArgument")]
    assert sorted(deleted) == ["a", "b"]


def test_quiet_mode_reports_only_errors() -> None:
    body = delete_doc("a", "bad", quiet=True)
    req = s3_request("POST", "/bkt?delete", deleting_store([]), bucket="bkt", body=body, headers=md5_header(body))
    root = xml_of(call(delete_objects.delete_objects, req))
    assert root.findall("Deleted") == []
    assert [e.findtext("Key") for e in root.findall("Error")] == ["bad"]


def test_a_crc_header_is_enough_integrity() -> None:
    body = delete_doc("a")
    headers = {"x-amz-checksum-crc32": b64(zlib.crc32(body).to_bytes(4, "big"))}
    req = s3_request("POST", "/bkt?delete", deleting_store([]), bucket="bkt", body=body, headers=headers)
    assert call(delete_objects.delete_objects, req).status == 200


def test_no_integrity_header_is_invalid_request() -> None:
    body = delete_doc("a")
    req = s3_request("POST", "/bkt?delete", deleting_store([]), bucket="bkt", body=body)
    with pytest.raises(S3Error) as exc:
        call(delete_objects.delete_objects, req)
    assert exc.value.code == "InvalidRequest"
    assert "Content-MD5" in exc.value.message


def test_wrong_content_md5_is_bad_digest_and_deletes_nothing() -> None:
    deleted: list[str] = []
    body = delete_doc("a")
    req = s3_request(
        "POST", "/bkt?delete", deleting_store(deleted), bucket="bkt", body=body, headers=md5_header(b"other")
    )
    with pytest.raises(S3Error) as exc:
        call(delete_objects.delete_objects, req)
    assert exc.value.code == "BadDigest"
    assert deleted == []


def test_version_ids_other_than_null_are_per_key_errors() -> None:
    body = (
        b"<Delete><Object><Key>a</Key><VersionId>v1</VersionId></Object>"
        b"<Object><Key>b</Key><VersionId>null</VersionId></Object></Delete>"
    )
    req = s3_request("POST", "/bkt?delete", deleting_store([]), bucket="bkt", body=body, headers=md5_header(body))
    root = xml_of(call(delete_objects.delete_objects, req))
    assert root.findtext("Error/Key") == "a"
    assert root.findtext("Error/Code") == "NotImplemented"
    assert root.findtext("Deleted/Key") == "b"
    assert root.findtext("Deleted/VersionId") == "null"
