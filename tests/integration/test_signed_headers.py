"""A signature covers what the gateway acts on: no unsigned x-amz-* header, no foreign region.

A presigned URL or a captured signed request must not be extendable with headers that change
the operation (``x-amz-copy-source`` makes a PUT a copy), and a client must sign for the region
the gateway was started with.
"""

from __future__ import annotations

import urllib.parse

import pytest
from botocore.exceptions import ClientError

from .clients import boto3_client
from .gateway import Credentials, GatewayProcess
from .helpers import unique_bucket_name
from .rawhttp import RawResponse, send, sign, signed_request

SECRET = b"only the signer's own copy may read this"


@pytest.fixture
def secret_source(s3, bucket: str) -> str:
    """The ``bucket/key`` of an object an unsigned x-amz-copy-source would copy."""
    s3.put_object(Bucket=bucket, Key="private/secret", Body=SECRET)
    return f"{bucket}/private/secret"


def _send_url(gateway: GatewayProcess, method: str, url: str, headers: dict[str, str], body: bytes) -> RawResponse:
    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return send(gateway.port, method, target, {"Host": parts.netloc, **headers}, body)


def _assert_headers_not_signed(resp: RawResponse, names: str) -> None:
    assert resp.status == 403, resp.body
    error = resp.error()
    assert error["Code"] == "AccessDenied"
    assert error["Message"] == "There were headers present in the request which were not signed"
    assert error["HeadersNotSigned"] == names


def _missing(s3, bucket: str, key: str) -> bool:
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=key)
    return exc.value.response["Error"]["Code"] == "404"


def test_presigned_put_with_an_added_copy_source_is_refused_and_copies_nothing(
    gateway: GatewayProcess, s3, bucket: str, secret_source: str
) -> None:
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "upload"}, ExpiresIn=300)
    resp = _send_url(gateway, "PUT", url, {"x-amz-copy-source": secret_source}, b"")
    _assert_headers_not_signed(resp, "x-amz-copy-source")
    assert _missing(s3, bucket, "upload")

    # The URL itself is good for what it was signed for.
    assert _send_url(gateway, "PUT", url, {}, b"mine").status == 200
    assert s3.get_object(Bucket=bucket, Key="upload")["Body"].read() == b"mine"


def test_presigned_get_with_an_added_amz_header_is_refused(
    gateway: GatewayProcess, s3, bucket: str, secret_source: str
) -> None:
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "private/secret"}, ExpiresIn=300)
    resp = _send_url(gateway, "GET", url, {"x-amz-checksum-mode": "ENABLED"}, b"")
    _assert_headers_not_signed(resp, "x-amz-checksum-mode")
    assert _send_url(gateway, "GET", url, {}, b"").body == SECRET


def test_replayed_signed_put_with_added_amz_headers_is_refused(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str
) -> None:
    host = f"127.0.0.1:{gateway.port}"
    captured = sign(credentials, "PUT", f"http://{host}/{bucket}/report", {"Host": host}, b"data")
    extended = {**captured.headers, "x-amz-tagging": "owner=mallory", "x-amz-metadata-directive": "REPLACE"}
    resp = send(gateway.port, "PUT", f"/{bucket}/report", extended, b"data")
    _assert_headers_not_signed(resp, "x-amz-tagging, x-amz-metadata-directive")
    assert _missing(s3, bucket, "report")

    assert send(gateway.port, "PUT", f"/{bucket}/report", captured.headers, b"data").status == 200
    assert s3.get_object_tagging(Bucket=bucket, Key="report")["TagSet"] == []


def test_replayed_signed_copy_cannot_change_its_metadata_directive(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"x", Metadata={"owner": "alice"})
    host = f"127.0.0.1:{gateway.port}"
    captured = sign(
        credentials, "PUT", f"http://{host}/{bucket}/dst", {"Host": host, "x-amz-copy-source": f"{bucket}/src"}
    )
    extended = {**captured.headers, "x-amz-metadata-directive": "REPLACE", "x-amz-meta-owner": "mallory"}
    resp = send(gateway.port, "PUT", f"/{bucket}/dst", extended)
    _assert_headers_not_signed(resp, "x-amz-metadata-directive, x-amz-meta-owner")
    assert _missing(s3, bucket, "dst")


# -- the gateway's region ----------------------------------------------------------------------


@pytest.fixture
def eu_gateway(start_gateway) -> GatewayProcess:
    return start_gateway(extra_args=("--region", "eu-west-1"))


def test_gateway_started_for_a_region_serves_clients_of_that_region(
    eu_gateway: GatewayProcess, credentials: Credentials, request: pytest.FixtureRequest
) -> None:
    client = boto3_client(eu_gateway.url, credentials, region="eu-west-1")
    bucket = unique_bucket_name(request)
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    client.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    assert client.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300)
    assert _send_url(eu_gateway, "GET", url, {}, b"").body == b"v"
    client.close()


def _assert_wrong_region(resp: RawResponse, code: str, message_start: str) -> None:
    assert resp.status == 400, resp.body
    error = resp.error()
    assert error["Code"] == code
    assert error["Message"] == f"{message_start}; the region 'us-east-1' is wrong; expecting 'eu-west-1'"
    assert error["Region"] == "eu-west-1"


def test_request_signed_for_another_region_is_malformed_naming_the_expected_one(
    eu_gateway: GatewayProcess, credentials: Credentials
) -> None:
    resp = signed_request(eu_gateway.port, credentials, "GET", "/", region="us-east-1")
    _assert_wrong_region(resp, "AuthorizationHeaderMalformed", "The authorization header is malformed")


def test_boto3_configured_for_another_region_is_told_the_gateway_region(
    eu_gateway: GatewayProcess, credentials: Credentials
) -> None:
    client = boto3_client(eu_gateway.url, credentials, region="us-east-1")
    with pytest.raises(ClientError) as exc:
        client.list_buckets()
    client.close()
    assert exc.value.response["Error"]["Code"] == "AuthorizationHeaderMalformed"
    assert exc.value.response["Error"]["Region"] == "eu-west-1"


def test_presigned_url_for_another_region_is_refused_naming_the_expected_one(
    eu_gateway: GatewayProcess, credentials: Credentials, s3, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")  # the session gateway, on the same root
    client = boto3_client(eu_gateway.url, credentials, region="us-east-1")
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300)
    client.close()
    resp = _send_url(eu_gateway, "GET", url, {}, b"")
    _assert_wrong_region(resp, "AuthorizationQueryParametersError", "Error parsing the X-Amz-Credential parameter")


def test_default_region_is_us_east_1(gateway: GatewayProcess, credentials: Credentials) -> None:
    resp = signed_request(gateway.port, credentials, "GET", "/", region="eu-west-1")
    assert resp.status == 400 and resp.error()["Region"] == "us-east-1"
