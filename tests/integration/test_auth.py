"""Authentication failures: each has its S3 error, and a refused write changes nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import urllib.error
import urllib.request

import pytest

from .clients import boto3_client
from .gateway import Credentials, GatewayProcess
from .helpers import snapshot, unique_bucket_name
from .rawhttp import send, sign, signed_request


@pytest.fixture
def victim(isolated_gateway: GatewayProcess, isolated_s3, bucket_name: str):
    """A bucket holding one object the failed requests try to overwrite."""
    isolated_s3.create_bucket(Bucket=bucket_name)
    isolated_s3.put_object(Bucket=bucket_name, Key="obj", Body=b"original")
    return bucket_name


@pytest.fixture
def bucket_name(request: pytest.FixtureRequest) -> str:
    return unique_bucket_name(request)


def _assert_untouched(isolated_s3, bucket: str) -> None:
    assert isolated_s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"original"


def _put(gw: GatewayProcess, bucket: str, headers: dict[str, str]):
    return send(gw.port, "PUT", f"/{bucket}/obj", {"Host": f"127.0.0.1:{gw.port}", **headers}, b"evil")


def test_anonymous_request_is_access_denied(isolated_gateway, isolated_s3, victim: str) -> None:
    before = snapshot(isolated_gateway.root)
    resp = _put(isolated_gateway, victim, {})
    assert resp.status == 403
    assert resp.error()["Code"] == "AccessDenied"
    get = send(isolated_gateway.port, "GET", f"/{victim}/obj", {})
    assert get.status == 403 and get.error()["Code"] == "AccessDenied"
    assert snapshot(isolated_gateway.root) == before


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256 garbage",
        "AWS4-HMAC-SHA256 Credential=AKIDONLY, SignedHeaders=host, Signature=abc",
        "AWS4-HMAC-SHA256 Credential=AK/20250101/us-east-1/s3/aws4_request, Signature=00",
        "Basic dXNlcjpwYXNz",
        "",
    ],
    ids=["garbage", "short-credential", "no-signed-headers", "basic", "empty"],
)
def test_malformed_authorization_is_refused(isolated_gateway, isolated_s3, victim: str, authorization: str) -> None:
    before = snapshot(isolated_gateway.root)
    resp = _put(
        isolated_gateway,
        victim,
        {
            "Authorization": authorization,
            "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
            "x-amz-date": dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"),
        },
    )
    assert resp.status in (400, 403), (resp.status, resp.body)
    # AWS answers InvalidRequest for an authorization mechanism other than AWS4-HMAC-SHA256.
    assert resp.error()["Code"] in {"AuthorizationHeaderMalformed", "InvalidArgument", "InvalidRequest", "AccessDenied"}
    assert snapshot(isolated_gateway.root) == before
    _assert_untouched(isolated_s3, victim)


def test_unknown_access_key_is_invalid_access_key_id(isolated_gateway, isolated_s3, victim: str) -> None:
    stranger = Credentials("AKUNKNOWNUNKNOWN0000", "not-a-secret")
    resp = signed_request(isolated_gateway.port, stranger, "PUT", f"/{victim}/obj", body=b"evil")
    assert resp.status == 403
    assert resp.error()["Code"] == "InvalidAccessKeyId"
    _assert_untouched(isolated_s3, victim)


def test_wrong_secret_is_signature_does_not_match(
    isolated_gateway, credentials: Credentials, isolated_s3, victim: str
) -> None:
    forger = Credentials(credentials.access_key, credentials.secret_key + "x")
    resp = signed_request(isolated_gateway.port, forger, "PUT", f"/{victim}/obj", body=b"evil")
    assert resp.status == 403
    assert resp.error()["Code"] == "SignatureDoesNotMatch"
    _assert_untouched(isolated_s3, victim)


def test_header_changed_after_signing_is_signature_does_not_match(
    isolated_gateway, credentials: Credentials, isolated_s3, victim: str
) -> None:
    host = f"127.0.0.1:{isolated_gateway.port}"
    signed = sign(
        credentials, "PUT", f"http://{host}/{victim}/obj", {"Host": host, "x-amz-meta-owner": "alice"}, b"evil"
    )
    signed.headers["x-amz-meta-owner"] = "mallory"
    resp = send(isolated_gateway.port, "PUT", f"/{victim}/obj", signed.headers, b"evil")
    assert resp.status == 403
    assert resp.error()["Code"] == "SignatureDoesNotMatch"
    _assert_untouched(isolated_s3, victim)


def test_body_not_matching_signed_payload_hash_is_refused(
    isolated_gateway, credentials: Credentials, isolated_s3, victim: str
) -> None:
    resp = signed_request(
        isolated_gateway.port,
        credentials,
        "PUT",
        f"/{victim}/obj",
        body=b"evil",
        content_sha256=hashlib.sha256(b"something else").hexdigest(),
    )
    assert resp.status == 400
    assert resp.error()["Code"] == "XAmzContentSHA256Mismatch"
    _assert_untouched(isolated_s3, victim)


@pytest.mark.parametrize("minutes", [-20, 20])
def test_skewed_clock_is_request_time_too_skewed(
    isolated_gateway, credentials: Credentials, isolated_s3, victim: str, minutes: int
) -> None:
    when = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=minutes)
    resp = signed_request(isolated_gateway.port, credentials, "PUT", f"/{victim}/obj", body=b"evil", when=when)
    assert resp.status == 403
    assert resp.error()["Code"] == "RequestTimeTooSkewed"
    _assert_untouched(isolated_s3, victim)


def test_clock_within_fifteen_minutes_is_accepted(
    isolated_gateway, credentials: Credentials, isolated_s3, victim: str
) -> None:
    when = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=10)
    resp = signed_request(isolated_gateway.port, credentials, "GET", f"/{victim}/obj", when=when)
    assert resp.status == 200
    assert resp.body == b"original"


def test_expired_presigned_url_is_access_denied(
    isolated_gateway, credentials: Credentials, isolated_s3, victim: str
) -> None:
    url = isolated_s3.generate_presigned_url("put_object", Params={"Bucket": victim, "Key": "obj"}, ExpiresIn=1)
    time.sleep(2.5)
    request = urllib.request.Request(url, data=b"evil", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(request, timeout=30)
    assert exc.value.code == 403
    body = exc.value.read()
    assert b"<Code>AccessDenied</Code>" in body
    _assert_untouched(isolated_s3, victim)


def test_presigned_url_with_tampered_signature_is_refused(
    isolated_gateway, credentials: Credentials, isolated_s3, victim: str
) -> None:
    url = isolated_s3.generate_presigned_url("get_object", Params={"Bucket": victim, "Key": "obj"}, ExpiresIn=300)
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(tampered, timeout=30)
    assert exc.value.code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in exc.value.read()


def test_presigned_url_for_unknown_key_is_invalid_access_key_id(isolated_gateway, isolated_s3, victim: str) -> None:
    stranger = boto3_client(isolated_gateway.url, Credentials("AKUNKNOWNUNKNOWN0000", "x"))
    url = stranger.generate_presigned_url("get_object", Params={"Bucket": victim, "Key": "obj"}, ExpiresIn=300)
    stranger.close()
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url, timeout=30)
    assert exc.value.code == 403
    assert b"<Code>InvalidAccessKeyId</Code>" in exc.value.read()
