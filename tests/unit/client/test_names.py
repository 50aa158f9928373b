"""s3:// URLs and request paths (client/names.py)."""

from __future__ import annotations

import pytest

from aif_gateway.client import S3Url, is_s3_url, object_path, strip_etag


def test_an_s3_url_parses_into_bucket_and_key_and_prints_back() -> None:
    assert S3Url.parse("s3://b/a/b/") == S3Url("b", "a/b/")
    assert S3Url.parse("s3://b") == S3Url("b", "")
    assert str(S3Url("b", "k")) == "s3://b/k"


@pytest.mark.parametrize(
    ("text", "message"),
    [("/data", "not an s3:// URL: /data"), ("s3:///k", r"no bucket in s3:///k \(expected s3://BUCKET/PREFIX\)")],
)
def test_what_is_not_an_s3_url_says_why(text: str, message: str) -> None:
    assert not is_s3_url(text) or text.startswith("s3://")
    with pytest.raises(ValueError, match=message):
        S3Url.parse(text)


def test_request_paths_and_etags() -> None:
    assert object_path("b", "a b/~c") == "/b/a%20b/~c"
    assert object_path("b") == "/b/"
    assert strip_etag('"abc"') == "abc" and strip_etag(None) is None
