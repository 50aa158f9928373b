"""ListObjects v1/v2: binary order, any delimiter, paging, URL encoding, awkward keys."""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET

import pytest

from .gateway import Credentials, GatewayProcess
from .helpers import list_keys
from .rawhttp import signed_request

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _put_all(s3, bucket: str, keys: list[str]) -> None:
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())


def test_keys_come_back_in_binary_utf8_order(s3, bucket: str) -> None:
    # A directory walk visits "a" (as a dir) before "a.b" and "a-b"; bytes say '-' < '.' < '/'.
    keys = ["a/b", "a.b", "a-b", "a0", "ab", "B", "z", "é", "a/c/d", "a/b.c", "a/c.d"]
    _put_all(s3, bucket, keys)
    expected = sorted(keys, key=lambda k: k.encode())
    assert list_keys(s3, bucket) == expected
    assert list_keys(s3, bucket, PaginationConfig={"PageSize": 3}) == expected


def test_slash_delimiter_groups_common_prefixes_in_order(s3, bucket: str) -> None:
    _put_all(s3, bucket, ["a/1", "a/2", "a.b", "a-b", "b/x/y", "c"])
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in page["Contents"]] == ["a-b", "a.b", "c"]
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["a/", "b/"]
    assert page["KeyCount"] == 5

    nested = s3.list_objects_v2(Bucket=bucket, Delimiter="/", Prefix="b/")
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["b/x/"]
    assert "Contents" not in nested


def test_delimiter_other_than_slash(s3, bucket: str) -> None:
    _put_all(s3, bucket, ["x-1-a", "x-1-b", "x-2", "y", "dir/x-9"])
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="-")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["dir/x-", "x-"]
    assert [o["Key"] for o in page["Contents"]] == ["y"]
    assert page["KeyCount"] == 3

    inner = s3.list_objects_v2(Bucket=bucket, Delimiter="-", Prefix="x-")
    assert [p["Prefix"] for p in inner["CommonPrefixes"]] == ["x-1-"]
    assert [o["Key"] for o in inner["Contents"]] == ["x-2"]


def test_max_keys_and_continuation_token_page_through_everything(s3, bucket: str) -> None:
    keys = [f"k{i:02d}" for i in range(7)]
    _put_all(s3, bucket, keys)
    seen: list[str] = []
    token = None
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=3, **kwargs)
        seen += [o["Key"] for o in page.get("Contents", [])]
        assert page["KeyCount"] == len(page.get("Contents", []))
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == keys


def test_start_after_is_echoed_and_may_name_a_missing_key(s3, bucket: str) -> None:
    _put_all(s3, bucket, ["a", "c", "e"])
    page = s3.list_objects_v2(Bucket=bucket, StartAfter="b")
    assert page["StartAfter"] == "b"
    assert [o["Key"] for o in page["Contents"]] == ["c", "e"]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, StartAfter="zzz")


def test_continuation_token_wins_over_start_after(s3, bucket: str) -> None:
    _put_all(s3, bucket, ["a", "b", "c", "d"])
    first = s3.list_objects_v2(Bucket=bucket, MaxKeys=2)
    rest = s3.list_objects_v2(Bucket=bucket, ContinuationToken=first["NextContinuationToken"], StartAfter="a")
    assert [o["Key"] for o in rest["Contents"]] == ["c", "d"]


def test_list_objects_v1_marker_paging(s3, bucket: str) -> None:
    _put_all(s3, bucket, ["one", "three", "two"])
    first = s3.list_objects(Bucket=bucket, MaxKeys=2)
    assert [o["Key"] for o in first["Contents"]] == ["one", "three"]
    assert first["IsTruncated"] is True
    rest = s3.list_objects(Bucket=bucket, Marker="three")
    assert [o["Key"] for o in rest["Contents"]] == ["two"]
    assert rest["IsTruncated"] is False


def _raw_list(gw: GatewayProcess, creds: Credentials, bucket: str, params: dict[str, str]) -> ET.Element:
    query = urllib.parse.urlencode(sorted(params.items()), quote_via=urllib.parse.quote, safe="")
    resp = signed_request(gw.port, creds, "GET", f"/{bucket}", query=query)
    assert resp.status == 200, resp.body
    return ET.fromstring(resp.body)


def test_encoding_type_url_encodes_keys_and_prefixes(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str
) -> None:
    _put_all(s3, bucket, ["sp ace+plus/x", "sp ace+plus/y", "top key+"])
    doc = _raw_list(
        gateway, credentials, bucket, {"list-type": "2", "encoding-type": "url", "delimiter": "/", "start-after": "a b"}
    )
    assert doc.findtext(f"{NS}EncodingType") == "url"
    assert [e.text for e in doc.iter(f"{NS}Key")] == ["top%20key%2B"]
    assert [e.text for e in doc.iter(f"{NS}Prefix") if e.text] == ["sp%20ace%2Bplus/"]
    assert doc.findtext(f"{NS}StartAfter") == "a%20b"


def test_key_with_newline_lists_and_reads_back(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="line\nbreak", Body=b"nl")
    assert list_keys(s3, bucket) == ["line\nbreak"]
    assert s3.get_object(Bucket=bucket, Key="line\nbreak")["Body"].read() == b"nl"
    # Without URL encoding the key travels XML-escaped and must parse back unchanged.
    doc = _raw_list(gateway, credentials, bucket, {"list-type": "2"})
    assert [e.text for e in doc.iter(f"{NS}Key")] == ["line\nbreak"]


@pytest.mark.parametrize("key", ["q?uery", "hash#tag", "percent%41", "amp&er", "ünïcode/ß", "tilde~x", 'quote"s'])
def test_awkward_but_valid_keys_round_trip(s3, bucket: str, key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert list_keys(s3, bucket) == [key]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
