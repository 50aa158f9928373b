"""The S3 client's own SigV4 signer (checked against AWS's documented example and botocore; the
real gateway checks it in tests/integration/test_stage_s3.py), its listing parser, and when it steps aside."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aif_gateway.client import (
    EMPTY_SHA256,
    ClientOptions,
    SignedS3,
    canonical_query,
    parse_list_page,
    sign,
    sign_get,
    usable_key,
)

DOC = {
    "access_key": "AKIAIOSFODNN7EXAMPLE",
    "secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "region": "us-east-1",
    "host": "examplebucket.s3.amazonaws.com",
    "amz_date": "20130524T000000Z",
}


def test_the_aws_documented_get_object_example() -> None:
    signed = sign_get(token=None, path="/test.txt", headers={"range": "bytes=0-9"}, **DOC)
    assert signed["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert signed["x-amz-content-sha256"] == EMPTY_SHA256 and signed["range"] == "bytes=0-9"


def test_a_session_token_and_if_match_are_sent_and_signed() -> None:
    plain = sign_get(token=None, path="/b/k", headers={}, **DOC)
    signed = sign_get(token="tok", path="/b/k", headers={"if-match": '"abc"'}, **DOC)
    assert signed["x-amz-security-token"] == "tok" and signed["if-match"] == '"abc"'
    assert (
        "SignedHeaders=host;if-match;x-amz-content-sha256;x-amz-date;x-amz-security-token," in signed["authorization"]
    )
    assert signed["authorization"] != plain["authorization"]


@pytest.mark.parametrize(
    "key, usable",
    [
        ("a/b.bin", True),
        ("dir/", True),
        ("x y+z%/é", True),
        ("a//b", False),
        ("./a", False),
        ("a/../b", False),
        ("a/.", False),
        ("/lead", False),
    ],
)
def test_keys_a_url_library_could_rewrite_go_through_botocore(key: str, usable: bool) -> None:
    assert usable_key(key) is usable


def test_a_signed_list_request_matches_botocore() -> None:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    query = {"list-type": "2", "prefix": "a b/ü+~", "encoding-type": "url", "continuation-token": "x/y=="}
    ours = sign(method="GET", token=None, path="/bucket/", query=query, headers={}, **DOC)
    request = AWSRequest(
        method="GET",
        url=f"https://{DOC['host']}/bucket/?{canonical_query(query)}",
        headers={"x-amz-content-sha256": EMPTY_SHA256, "X-Amz-Date": DOC["amz_date"]},
    )
    request.context["timestamp"] = DOC["amz_date"]  # add_auth would take the clock's
    auth = S3SigV4Auth(Credentials(DOC["access_key"], DOC["secret_key"]), "s3", DOC["region"])
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    assert ours["authorization"].endswith("SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + signature)


def test_a_list_page_reads_like_botocore_decodes_it() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>'
        b"<EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
        b"<NextContinuationToken>tok</NextContinuationToken>"
        b"<Contents><Key>d/a+b%2Bc%C3%BC</Key><LastModified>2026-01-02T03:04:05.678Z</LastModified>"
        b'<ETag>"abc"</ETag><Size>12</Size></Contents></ListBucketResult>'
    )
    objects, token = parse_list_page(body)
    assert token == "tok"
    assert objects == [
        {
            "Key": "d/a b+cü",
            "Size": 12,
            "ETag": '"abc"',
            "LastModified": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        }
    ]
    last = body.replace(b"<IsTruncated>true", b"<IsTruncated>false")
    assert parse_list_page(last)[1] is None


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> pytest.MonkeyPatch:
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL_S3",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AIF_STAGE_S3_GET",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sk")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-such-config"))
    return monkeypatch


def _reader(options: ClientOptions | None = None) -> SignedS3 | None:
    reader = SignedS3.from_environment(options or ClientOptions(), 1)
    if reader is not None:
        reader.close()
    return reader


def test_endpoint_and_keys_from_the_environment_need_no_botocore(aws_env: pytest.MonkeyPatch) -> None:
    reader = _reader()
    assert reader is not None and reader._region == "us-east-1" and reader._frozen.access_key == "ak"
    aws_env.setenv("AWS_SESSION_TOKEN", "tok")
    aws_env.setenv("AWS_REGION", "eu-west-3")
    reader = _reader()
    assert reader is not None and reader._region == "eu-west-3" and reader._frozen.token == "tok"
    flags = ClientOptions(endpoint_url="http://10.0.0.1:9000", access_key="a2", secret_key="s2", region="r")
    reader = _reader(flags)
    assert reader is not None and reader._frozen.access_key == "a2" and reader._endpoint.netloc == "10.0.0.1:9000"


@pytest.mark.parametrize(
    "name, value",
    [
        ("AWS_PROFILE", "staging"),
        ("AWS_ENDPOINT_URL", "http://h:1/path"),
        ("AWS_ENDPOINT_URL", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
    ],
)
def test_whatever_botocore_would_decide_goes_to_botocore(aws_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    aws_env.setenv(name, value)
    assert _reader() is None


def test_a_config_file_that_may_name_the_region_goes_to_botocore_unless_the_region_is_given(
    aws_env: pytest.MonkeyPatch, tmp_path
) -> None:
    config = tmp_path / "config"
    config.write_text("[default]\nregion = ap-south-1\n")
    aws_env.setenv("AWS_CONFIG_FILE", str(config))
    assert _reader() is None
    assert _reader(ClientOptions(region="us-west-2")) is not None
