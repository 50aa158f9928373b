"""SigV2 verification against botocore's own V2 signers (HmacV1Auth, HmacV1QueryAuth): the
header form and the presigned form, the resource S3 signs, and every refusal."""

from __future__ import annotations

import time
from email.utils import formatdate
from urllib.parse import urlsplit

import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from aif_gateway.errors import S3Error
from aif_gateway.identity import Identity
from aif_gateway.s3.sigv2 import authenticate_v2, signed_with_v2
from aif_gateway.s3.sigv4 import PRESIGNED, UNSIGNED_PAYLOAD

ACCESS_KEY = "AKIDGATEWAYTEST"
SECRET_KEY = "s3cr3t/with+odd=chars"
ALICE = Identity(name="alice", access_key=ACCESS_KEY, secret_key=SECRET_KEY, uid=1000, gid=1000)
HOST = "gw.example:9000"


def lookup(access_key: str) -> Identity | None:
    return ALICE if access_key == ACCESS_KEY else None


def signed(method: str, path: str, query: str = "", headers: dict[str, str] | None = None, secret: str = SECRET_KEY):
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers={"Host": HOST, **(headers or {})})
    HmacV1Auth(Credentials(ACCESS_KEY, secret)).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    return parts.path, parts.query, CIMultiDict(prepared.headers)


def presigned(method: str, path: str, expires: int = 3600, secret: str = SECRET_KEY, query: str = ""):
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers={"Host": HOST})
    HmacV1QueryAuth(Credentials(ACCESS_KEY, secret), expires=expires).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    return parts.path, parts.query, CIMultiDict(prepared.headers)


def code_of(*args, **kwargs) -> str:
    with pytest.raises(S3Error) as info:
        authenticate_v2(*args, lookup, region="us-east-1", **kwargs)
    return info.value.code


@pytest.mark.parametrize(
    "method, path, query, headers",
    [
        ("GET", "/bucket/key", "", {}),
        ("PUT", "/bucket/dir/a%20b+c", "", {"Content-Type": "text/plain", "x-amz-meta-Color": " blue "}),
        ("GET", "/bucket/k", "response-content-type=text/x%20y&list-type=2", {}),
        ("POST", "/bucket/big", "uploads", {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}),
        ("PUT", "/bucket/big", "partNumber=3&uploadId=abc", {}),
        ("DELETE", "/bucket", "", {"x-amz-date": formatdate(usegmt=True)}),  # then the Date line is empty
    ],
)
def test_what_botocore_signs_with_v2_is_accepted(method, path, query, headers) -> None:
    raw_path, raw_query, sent = signed(method, path, query, headers)
    assert signed_with_v2(sent, raw_query)
    auth = authenticate_v2(method, raw_path, raw_query, sent, lookup, region="us-east-1")
    assert (auth.identity, auth.payload, auth.region) == (ALICE, UNSIGNED_PAYLOAD, "us-east-1")


def test_aws_documented_example() -> None:
    # "Example Object GET" of AWS's REST authentication (Signature Version 2) documentation.
    example = Identity(
        name="ex", access_key="AKIAIOSFODNN7EXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    )
    headers = CIMultiDict(
        {
            "Host": "awsexamplebucket1.us-west-1.s3.amazonaws.com",
            "Date": "Tue, 27 Mar 2007 19:36:42 +0000",
            "Authorization": "AWS AKIAIOSFODNN7EXAMPLE:qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
        }
    )
    auth = authenticate_v2(
        "GET",
        "/awsexamplebucket1/photos/puppy.jpg",
        "",
        headers,
        {"AKIAIOSFODNN7EXAMPLE": example}.get,
        region="us-east-1",
        now=1175024202,
    )
    assert auth.identity == example


def test_a_presigned_url_is_accepted_until_it_expires() -> None:
    raw_path, raw_query, sent = presigned("GET", "/bucket/key")
    assert signed_with_v2(sent, raw_query)
    assert authenticate_v2("GET", raw_path, raw_query, sent, lookup, region="us-east-1").payload == PRESIGNED
    assert code_of("GET", raw_path, raw_query, sent, now=time.time() + 3700) == "AccessDenied"


def test_a_signature_over_other_bytes_is_refused() -> None:
    raw_path, raw_query, sent = signed("GET", "/bucket/key")
    assert code_of("GET", "/bucket/other", raw_query, sent) == "SignatureDoesNotMatch"
    assert code_of("DELETE", raw_path, raw_query, sent) == "SignatureDoesNotMatch"
    assert code_of("GET", raw_path, "acl", sent) == "SignatureDoesNotMatch"  # a signed sub-resource
    # A query parameter S3 does not sign changes nothing.
    assert authenticate_v2("GET", raw_path, "list-type=2", sent, lookup, region="us-east-1").identity == ALICE
    _, _, wrong = signed("GET", "/bucket/key", secret="not the secret")
    assert code_of("GET", raw_path, raw_query, wrong) == "SignatureDoesNotMatch"
    raw_path, raw_query, sent = presigned("GET", "/bucket/key")
    assert code_of("GET", "/bucket/other", raw_query, sent) == "SignatureDoesNotMatch"


def test_unknown_keys_stale_clocks_and_malformed_headers_are_refused() -> None:
    raw_path, raw_query, sent = signed("GET", "/bucket/key")
    stranger = CIMultiDict(sent)
    stranger["Authorization"] = stranger["Authorization"].replace(ACCESS_KEY, "AKIDNOBODY")
    assert code_of("GET", raw_path, raw_query, stranger) == "InvalidAccessKeyId"
    assert code_of("GET", raw_path, raw_query, sent, now=time.time() + 16 * 60) == "RequestTimeTooSkewed"
    undated = CIMultiDict(sent)
    del undated["Date"]
    assert code_of("GET", raw_path, raw_query, undated) == "AccessDenied"
    for bad in ("AWS ", "AWS nocolon", "AWS :sig", "AWS key:"):
        assert code_of("GET", raw_path, raw_query, CIMultiDict({**sent, "Authorization": bad})) == (
            "AuthorizationHeaderMalformed"
        )


def test_presigned_urls_need_all_three_parameters_and_a_sane_expiry() -> None:
    raw_path, raw_query, sent = presigned("GET", "/bucket/key")
    without = "&".join(p for p in raw_query.split("&") if not p.startswith("Expires="))
    assert code_of("GET", raw_path, without, sent) == "AccessDenied"
    now = int(time.time())
    for expires in ("soon", "1" * 30, str(now + 8 * 24 * 3600)):
        query = "&".join(f"Expires={expires}" if p.startswith("Expires=") else p for p in raw_query.split("&"))
        assert code_of("GET", raw_path, query, sent) == "AccessDenied"


def test_both_mechanisms_at_once_are_refused() -> None:
    raw_path, raw_query, sent = signed("GET", "/bucket/key")
    assert code_of("GET", raw_path, "Signature=abc&AWSAccessKeyId=x&Expires=1", sent) == "InvalidArgument"


def test_sigv4_requests_are_not_taken_for_v2() -> None:
    assert not signed_with_v2(CIMultiDict({"Authorization": "AWS4-HMAC-SHA256 Credential=x"}), "")
    assert not signed_with_v2(CIMultiDict(), "X-Amz-Algorithm=AWS4-HMAC-SHA256&AWSAccessKeyId=x")
    assert not signed_with_v2(CIMultiDict(), "list-type=2")
