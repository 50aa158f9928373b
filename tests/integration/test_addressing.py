"""Virtual-host style addressing and the request id every response carries."""

from __future__ import annotations

import pytest

from .gateway import Credentials, GatewayProcess
from .helpers import unique_bucket_name
from .rawhttp import send, signed_request


@pytest.fixture
def domain_gateway(start_gateway) -> GatewayProcess:
    return start_gateway(extra_args=("--domain", "localhost"))


def test_virtual_host_style_reaches_the_bucket_in_the_host(
    domain_gateway: GatewayProcess, credentials: Credentials, s3, request: pytest.FixtureRequest
) -> None:
    bucket = unique_bucket_name(request)
    s3.create_bucket(Bucket=bucket)  # same root, through the session gateway
    host = f"{bucket}.localhost:{domain_gateway.port}"

    put = signed_request(domain_gateway.port, credentials, "PUT", "/dir/vhost.txt", body=b"virtual", host=host)
    assert put.status == 200, put.body
    assert s3.get_object(Bucket=bucket, Key="dir/vhost.txt")["Body"].read() == b"virtual"

    get = signed_request(domain_gateway.port, credentials, "GET", "/dir/vhost.txt", host=host)
    assert (get.status, get.body) == (200, b"virtual")

    listing = signed_request(domain_gateway.port, credentials, "GET", "/", query="list-type=2", host=host)
    assert listing.status == 200
    assert b"<Key>dir/vhost.txt</Key>" in listing.body


def test_path_style_still_works_on_a_gateway_with_a_domain(
    domain_gateway: GatewayProcess, credentials: Credentials, s3, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"path")
    resp = signed_request(domain_gateway.port, credentials, "GET", f"/{bucket}/k")
    assert (resp.status, resp.body) == (200, b"path")


def test_every_response_carries_a_request_id(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    responses = {
        "list buckets": signed_request(gateway.port, credentials, "GET", "/"),
        "get": signed_request(gateway.port, credentials, "GET", f"/{bucket}/k"),
        "head": signed_request(gateway.port, credentials, "HEAD", f"/{bucket}/k"),
        "head missing": signed_request(gateway.port, credentials, "HEAD", f"/{bucket}/missing"),
        "get missing": signed_request(gateway.port, credentials, "GET", f"/{bucket}/missing"),
        "no such bucket": signed_request(gateway.port, credentials, "GET", "/no-such-bucket-here/k"),
        "anonymous": send(gateway.port, "GET", f"/{bucket}/k", {}),
    }
    ids = {name: resp.headers.get("x-amz-request-id") for name, resp in responses.items()}
    assert all(ids.values()), ids
    assert len(set(ids.values())) == len(ids)
    assert responses["head missing"].status == 404 and responses["head missing"].body == b""
    assert responses["get missing"].error()["Code"] == "NoSuchKey"
    assert responses["get missing"].error()["Resource"] == f"/{bucket}/missing"
    assert responses["no such bucket"].error()["Code"] == "NoSuchBucket"


def test_unsupported_action_is_not_implemented(gateway: GatewayProcess, credentials: Credentials, bucket: str) -> None:
    # Bucket website configuration is out of scope; it must never answer a false success.
    resp = signed_request(gateway.port, credentials, "GET", f"/{bucket}", query="website=")
    assert resp.status == 501, resp.body
    assert resp.error()["Code"] == "NotImplemented"
