"""Object tagging: the Tagging document both ways and S3's tag rules."""

from __future__ import annotations

import base64
import hashlib

import pytest

from aif_gateway.errors import S3Error
from aif_gateway.s3.handlers import tagging

from ...s3_handler_support import call, s3_request, store_with, xml_of


def document(*pairs: tuple[str, str]) -> bytes:
    tags = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in pairs)
    return f'<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>{tags}</TagSet></Tagging>'.encode()


def test_parse_tagging_reads_pairs_with_or_without_namespace() -> None:
    assert tagging.parse_tagging(document(("a", "1"), ("b", ""))) == {"a": "1", "b": ""}
    assert tagging.parse_tagging(b"<Tagging><TagSet/></Tagging>") == {}


def test_duplicate_keys_are_invalid_tag() -> None:
    with pytest.raises(S3Error) as exc:
        tagging.parse_tagging(document(("a", "1"), ("a", "2")))
    assert exc.value.code == "InvalidTag"


def test_more_than_ten_tags_are_invalid_tag() -> None:
    with pytest.raises(S3Error) as exc:
        tagging.parse_tagging(document(*[(f"k{i}", "v") for i in range(11)]))
    assert exc.value.code == "InvalidTag"


@pytest.mark.parametrize(
    "body",
    [
        b"<Tagging/>",
        b"<Other><TagSet/></Other>",
        b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>",
        b"not xml",
    ],
)
def test_malformed_documents_are_malformed_xml(body: bytes) -> None:
    with pytest.raises(S3Error) as exc:
        tagging.parse_tagging(body)
    assert exc.value.code == "MalformedXML"


def test_tagging_document_round_trips_awkward_text() -> None:
    tags = {"a&b": "<v>", "line": "x\ny"}
    assert tagging.parse_tagging(tagging.tagging_document(tags)) == tags


def test_get_object_tagging_renders_the_store_tags() -> None:
    async def get_tags(self, bucket, key):
        assert (bucket, key) == ("b", "k")
        return {"team": "ml"}

    req = s3_request("GET", "/b/k?tagging", store_with(get_tags=get_tags), bucket="b", key="k")
    root = xml_of(call(tagging.get_object_tagging, req))
    assert root.findtext("TagSet/Tag/Key") == "team"
    assert root.findtext("TagSet/Tag/Value") == "ml"


def test_put_object_tagging_verifies_content_md5_then_stores() -> None:
    stored = []

    async def put_tags(self, bucket, key, tags):
        stored.append(tags)

    body = document(("a", "1"))
    good = s3_request(
        "PUT",
        "/b/k?tagging",
        store_with(put_tags=put_tags),
        bucket="b",
        key="k",
        body=body,
        headers={"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()},
    )
    assert call(tagging.put_object_tagging, good).status == 200
    assert stored == [{"a": "1"}]
    bad = s3_request(
        "PUT",
        "/b/k?tagging",
        store_with(put_tags=put_tags),
        bucket="b",
        key="k",
        body=body,
        headers={"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
    )
    with pytest.raises(S3Error) as exc:
        call(tagging.put_object_tagging, bad)
    assert exc.value.code == "BadDigest"
    assert len(stored) == 1


def test_delete_object_tagging_is_204() -> None:
    async def delete_tags(self, bucket, key):
        return None

    req = s3_request("DELETE", "/b/k?tagging", store_with(delete_tags=delete_tags), bucket="b", key="k")
    assert call(tagging.delete_object_tagging, req).status == 204
