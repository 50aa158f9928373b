"""SigV4 verification against botocore's own signer (a real client) and AWS's documented examples."""

import time
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from multidict import CIMultiDict

from aif_gateway.errors import S3Error
from aif_gateway.identity import Identity
from aif_gateway.s3.sigv4 import EMPTY_SHA256, authenticate, canonical_query, canonical_uri, derive_signing_key

ACCESS_KEY = "AKIDGATEWAYTEST"
SECRET_KEY = "s3cr3t/with+odd=chars"
ALICE = Identity(name="alice", access_key=ACCESS_KEY, secret_key=SECRET_KEY, uid=1000, gid=1000)
HOST = "gw.example:9000"


def lookup(access_key):
    return ALICE if access_key == ACCESS_KEY else None


def _split(url):
    parts = urlsplit(url)
    return parts.path, parts.query


def sign_header(
    method,
    path,
    query="",
    headers=None,
    body=b"",
    secret=SECRET_KEY,
    params=None,
    sign_payload=True,
    region="us-east-1",
):
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers={"Host": HOST, **(headers or {})}, data=body, params=params)
    request.context["client_config"] = Config(s3={"payload_signing_enabled": sign_payload})
    S3SigV4Auth(Credentials(ACCESS_KEY, secret), "s3", region).add_auth(request)
    prepared = request.prepare()
    raw_path, raw_query = _split(prepared.url)
    return raw_path, raw_query, CIMultiDict(prepared.headers)


def sign_query(method, path, params=None, headers=None, expires=3600, secret=SECRET_KEY, region="us-east-1"):
    url = f"http://{HOST}{path}"
    request = AWSRequest(method=method, url=url, headers={"Host": HOST, **(headers or {})}, params=params)
    S3SigV4QueryAuth(Credentials(ACCESS_KEY, secret), "s3", region, expires=expires).add_auth(request)
    prepared = request.prepare()
    raw_path, raw_query = _split(prepared.url)
    return raw_path, raw_query, CIMultiDict(prepared.headers)


def refusal(method, raw_path, raw_query, headers, now=None, **gateway):
    """The S3Error ``authenticate`` raises; ``gateway`` holds its settings (``region``)."""
    with pytest.raises(S3Error) as info:
        authenticate(method, raw_path, raw_query, headers, lookup, now=now, **gateway)
    return info.value


def error_code(method, raw_path, raw_query, headers, now=None):
    return refusal(method, raw_path, raw_query, headers, now).code


KEYS = [
    "plain.txt",
    "with space/and more spaces.bin",
    "plus+sign",
    "tilde~name",
    "percent%25literal%",
    "equals=sign&amp",
    "unicodé/日本語/ключ",
    "deep/a//double/slash/",
    "sub-delims!$'()*,;:@",
    "question?mark#hash",
]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD", "DELETE"])
def test_header_auth_accepts_botocore_requests(method, key):
    path = "/bucket/" + quote(key, safe="/~")
    raw_path, raw_query, headers = sign_header(method, path, body=b"hello" if method == "PUT" else b"")
    ctx = authenticate(method, raw_path, raw_query, headers, lookup)
    assert ctx.identity == ALICE
    assert ctx.payload == "SHA256"
    assert ctx.scope.endswith("/us-east-1/s3/aws4_request")
    assert ctx.seed_signature in headers["Authorization"]


QUERIES = [
    "list-type=2&prefix=a%20b&delimiter=%2F",
    "prefix=a%2Bb",
    "prefix=%E6%97%A5%E6%9C%AC&start-after=~x",
    "uploads=",
    "uploads",
    "partNumber=1&uploadId=abc%3D%3D",
    "marker=&max-keys=5",
    "a=2&a=1&a=10",
    "key=%25percent&k%20y=v%3Dv",
]


@pytest.mark.parametrize("query", QUERIES)
def test_header_auth_accepts_encoded_queries(query):
    raw_path, raw_query, headers = sign_header("GET", "/bucket", query)
    assert authenticate("GET", raw_path, raw_query, headers, lookup).identity == ALICE


def test_plus_in_query_means_space():
    # botocore form-encodes params (space -> "+") on the wire but signs them with %20.
    raw_path, raw_query, headers = sign_header("GET", "/bucket", params={"prefix": "a b c", "delimiter": "/"})
    assert "+" in raw_query
    assert authenticate("GET", raw_path, raw_query, headers, lookup).identity == ALICE


def test_unsigned_payload():
    raw_path, raw_query, headers = sign_header("PUT", "/bucket/k", body=b"hello", sign_payload=False)
    ctx = authenticate("PUT", raw_path, raw_query, headers, lookup)
    assert ctx.payload == "UNSIGNED-PAYLOAD"
    assert ctx.content_sha256 is None


def test_signed_payload_hash_is_returned():
    raw_path, raw_query, headers = sign_header("PUT", "/bucket/k", body=b"")
    ctx = authenticate("PUT", raw_path, raw_query, headers, lookup)
    assert ctx.content_sha256 == EMPTY_SHA256


@pytest.mark.parametrize(
    "mode",
    [
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    ],
)
def test_streaming_modes_are_reported(mode, monkeypatch):
    monkeypatch.setattr(S3SigV4Auth, "payload", lambda self, request: mode)
    raw_path, raw_query, headers = sign_header("PUT", "/bucket/k", headers={"Content-Encoding": "aws-chunked"})
    ctx = authenticate("PUT", raw_path, raw_query, headers, lookup)
    assert ctx.payload == mode
    assert ctx.amz_date == headers["x-amz-date"]


def test_path_sent_with_unencoded_sub_delims_still_verifies():
    # Some clients send "(" raw on the wire but canonicalise it as %28; S3 decodes then encodes.
    raw_path, raw_query, headers = sign_header("GET", "/bucket/" + quote("a(b)!", safe=""))
    assert authenticate("GET", "/bucket/a(b)!", raw_query, headers, lookup).identity == ALICE


def test_repeated_headers_and_whitespace_are_canonicalised():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k", headers={"x-amz-meta-note": "  two   spaces  here "})
    assert authenticate("GET", raw_path, raw_query, headers, lookup).identity == ALICE


def test_tampered_header_is_rejected():
    raw_path, raw_query, headers = sign_header("PUT", "/bucket/k", headers={"x-amz-meta-a": "1"})
    headers["x-amz-meta-a"] = "2"
    assert error_code("PUT", raw_path, raw_query, headers) == "SignatureDoesNotMatch"


def test_tampered_path_query_method_are_rejected():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/key", "prefix=a")
    assert error_code("GET", "/bucket/kez", raw_query, headers) == "SignatureDoesNotMatch"
    assert error_code("GET", raw_path, "prefix=b", headers) == "SignatureDoesNotMatch"
    assert error_code("GET", raw_path, raw_query + "&x=1", headers) == "SignatureDoesNotMatch"
    assert error_code("DELETE", raw_path, raw_query, headers) == "SignatureDoesNotMatch"


def test_encoded_slash_differs_from_slash():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/a%2Fb")
    assert error_code("GET", "/bucket/a/b", raw_query, headers) == "SignatureDoesNotMatch"


def test_wrong_secret_is_rejected_with_debug_fields():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k", secret="not-the-secret")
    with pytest.raises(S3Error) as info:
        authenticate("GET", raw_path, raw_query, headers, lookup)
    assert info.value.code == "SignatureDoesNotMatch"
    assert info.value.extra["AWSAccessKeyId"] == ACCESS_KEY
    assert "GET\n/bucket/k\n" in info.value.extra["CanonicalRequest"]


def test_unknown_access_key():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k")
    headers["Authorization"] = headers["Authorization"].replace(ACCESS_KEY, "AKIDUNKNOWN")
    assert error_code("GET", raw_path, raw_query, headers) == "InvalidAccessKeyId"


@pytest.mark.parametrize("offset", [16 * 60, -16 * 60])
def test_skewed_date_is_rejected(offset):
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k")
    assert error_code("GET", raw_path, raw_query, headers, now=time.time() + offset) == "RequestTimeTooSkewed"


def test_small_skew_is_accepted():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k")
    assert authenticate("GET", raw_path, raw_query, headers, lookup, now=time.time() + 14 * 60).identity == ALICE


def test_anonymous_request_is_denied():
    assert error_code("GET", "/bucket/k", "", CIMultiDict({"Host": HOST})) == "AccessDenied"


def test_sigv2_is_refused_clearly():
    headers = CIMultiDict({"Host": HOST, "Authorization": "AWS AKID:c2lnbmF0dXJl"})
    assert error_code("GET", "/bucket/k", "", headers) == "InvalidRequest"
    sigv2_query = "AWSAccessKeyId=AKID&Signature=x&Expires=1"
    assert error_code("GET", "/bucket/k", sigv2_query, CIMultiDict()) == "InvalidRequest"


def test_missing_content_sha256_header():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k")
    del headers["x-amz-content-sha256"]
    assert error_code("GET", raw_path, raw_query, headers) == "InvalidRequest"


def test_invalid_content_sha256_value():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k")
    headers["x-amz-content-sha256"] = "not-a-hash"
    assert error_code("GET", raw_path, raw_query, headers) == "InvalidArgument"


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=abc",
        "AWS4-HMAC-SHA256 Credential=AKID/2025/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=abc",
        "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/s3/wrong, SignedHeaders=host, Signature=abc",
        "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=abc",
        "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date, Signature=a",
        "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/s3/aws4_request, SignedHeaders=Host, Signature=a",
    ],
)
def test_malformed_authorization_header(authorization):
    headers = CIMultiDict(
        {
            "Host": HOST,
            "Authorization": authorization,
            "x-amz-date": "20250101T000000Z",
            "x-amz-content-sha256": EMPTY_SHA256,
        }
    )
    assert error_code("GET", "/bucket/k", "", headers) == "AuthorizationHeaderMalformed"


def test_credential_date_must_match_request_date():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k")
    headers["x-amz-date"] = "20200101T000000Z"
    assert error_code("GET", raw_path, raw_query, headers) == "AuthorizationHeaderMalformed"


@pytest.mark.parametrize(
    "bad_date",
    [
        "2025011T000000Z",
        "20250101T0000Z",
        "20251301T000000Z",
        "20250230T000000Z",
        "20250101T250000Z",
        "yesterday",
        None,
    ],
)
def test_missing_or_unparseable_date_is_denied(bad_date):
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k")
    del headers["x-amz-date"]
    if bad_date is not None:
        headers["x-amz-date"] = bad_date
    assert error_code("GET", raw_path, raw_query, headers) == "AccessDenied"


def test_header_and_query_auth_together_is_invalid():
    raw_path, raw_query, _ = sign_query("GET", "/bucket/k")
    _, _, headers = sign_header("GET", "/bucket/k")
    assert error_code("GET", raw_path, raw_query, headers) == "InvalidArgument"


# -- presigned URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_presigned_get_accepted(key):
    raw_path, raw_query, headers = sign_query("GET", "/bucket/" + quote(key, safe="/~"))
    ctx = authenticate("GET", raw_path, raw_query, headers, lookup)
    assert ctx.identity == ALICE
    assert ctx.payload == "PRESIGNED"


def test_presigned_with_operation_params():
    params = {"uploadId": "abc==", "partNumber": "3", "prefix": "a b+c~"}
    raw_path, raw_query, headers = sign_query("PUT", "/bucket/k", params=params)
    assert authenticate("PUT", raw_path, raw_query, headers, lookup).identity == ALICE


def test_presigned_with_signed_header():
    raw_path, raw_query, headers = sign_query("PUT", "/bucket/k", headers={"x-amz-meta-owner": "bob"})
    assert authenticate("PUT", raw_path, raw_query, headers, lookup).identity == ALICE
    headers["x-amz-meta-owner"] = "eve"
    assert error_code("PUT", raw_path, raw_query, headers) == "SignatureDoesNotMatch"


def test_presigned_tampering_rejected():
    raw_path, raw_query, headers = sign_query("GET", "/bucket/k", params={"versionId": "1"})
    assert error_code("GET", "/bucket/other", raw_query, headers) == "SignatureDoesNotMatch"
    assert error_code("PUT", raw_path, raw_query, headers) == "SignatureDoesNotMatch"
    for old, new in [("versionId=1", "versionId=2"), ("X-Amz-Expires=3600", "X-Amz-Expires=3601")]:
        assert error_code("GET", raw_path, raw_query.replace(old, new), headers) == "SignatureDoesNotMatch"


def test_presigned_wrong_secret():
    raw_path, raw_query, headers = sign_query("GET", "/bucket/k", secret="nope")
    assert error_code("GET", raw_path, raw_query, headers) == "SignatureDoesNotMatch"


def test_presigned_expired():
    raw_path, raw_query, headers = sign_query("GET", "/bucket/k", expires=60)
    with pytest.raises(S3Error) as info:
        authenticate("GET", raw_path, raw_query, headers, lookup, now=time.time() + 120)
    assert (info.value.code, info.value.message) == ("AccessDenied", "Request has expired")


def test_presigned_not_yet_valid():
    raw_path, raw_query, headers = sign_query("GET", "/bucket/k")
    assert error_code("GET", raw_path, raw_query, headers, now=time.time() - 3600) == "AccessDenied"


@pytest.mark.parametrize("expires", [0, 604801, 10**9])
def test_presigned_expires_out_of_range(expires):
    raw_path, raw_query, headers = sign_query("GET", "/bucket/k", expires=expires)
    assert error_code("GET", raw_path, raw_query, headers) == "AuthorizationQueryParametersError"


def test_presigned_week_long_expiry_is_accepted():
    raw_path, raw_query, headers = sign_query("GET", "/bucket/k", expires=604800)
    assert authenticate("GET", raw_path, raw_query, headers, lookup, now=time.time() + 600000).identity == ALICE


@pytest.mark.parametrize(
    "mutation",
    [
        lambda q: q.replace("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256"),
        lambda q: "&".join(p for p in q.split("&") if not p.startswith("X-Amz-Credential")),
        lambda q: q.replace("X-Amz-Expires=3600", "X-Amz-Expires=abc"),
        lambda q: q.replace("%2Faws4_request", "%2Fother"),
    ],
)
def test_presigned_malformed_params(mutation):
    raw_path, raw_query, headers = sign_query("GET", "/bucket/k")
    assert error_code("GET", raw_path, mutation(raw_query), headers) == "AuthorizationQueryParametersError"


# -- every x-amz-* header the server acts on is signed -----------------------------------------


def _assert_headers_not_signed(err, names):
    assert (err.code, err.status) == ("AccessDenied", 403)
    assert err.message == "There were headers present in the request which were not signed"
    assert err.extra == {"HeadersNotSigned": names}


@pytest.mark.parametrize("sign", [sign_header, sign_query], ids=["header", "presigned"])
def test_an_unsigned_amz_header_is_refused(sign):
    raw_path, raw_query, headers = sign("PUT", "/bucket/k")
    headers["x-amz-copy-source"] = "/other/secret"
    _assert_headers_not_signed(refusal("PUT", raw_path, raw_query, headers), "x-amz-copy-source")


def test_unsigned_amz_headers_are_named_once_each_in_arrival_order():
    raw_path, raw_query, headers = sign_header("PUT", "/bucket/k", headers={"x-amz-meta-a": "1"})
    headers.add("X-Amz-Tagging", "a=b")
    headers.add("x-amz-metadata-directive", "REPLACE")
    headers.add("x-amz-tagging", "c=d")
    _assert_headers_not_signed(refusal("PUT", raw_path, raw_query, headers), "x-amz-tagging, x-amz-metadata-directive")


def test_presigned_url_refuses_an_unsigned_amz_header_next_to_signed_ones():
    raw_path, raw_query, headers = sign_query("PUT", "/bucket/k", headers={"x-amz-meta-owner": "bob"})
    headers["x-amz-meta-extra"] = "eve"
    _assert_headers_not_signed(refusal("PUT", raw_path, raw_query, headers), "x-amz-meta-extra")


def test_presigned_url_accepts_x_amz_content_sha256_outside_signed_headers():
    # botocore's presigner never lists it; its value is the canonical request's payload line.
    raw_path, raw_query, headers = sign_query("PUT", "/bucket/k")
    headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    assert authenticate("PUT", raw_path, raw_query, headers, lookup).identity == ALICE
    headers["x-amz-content-sha256"] = EMPTY_SHA256  # a different payload line: not what was signed
    assert error_code("PUT", raw_path, raw_query, headers) == "SignatureDoesNotMatch"


def test_headers_outside_the_amz_namespace_may_go_unsigned():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k")
    headers["User-Agent"] = "test"
    headers["x-amzn-trace-id"] = "Root=1-abc"  # SDKs leave it unsigned on purpose
    assert authenticate("GET", raw_path, raw_query, headers, lookup).identity == ALICE


# -- the credential scope names the gateway's region ---------------------------------------------


def test_header_auth_for_the_gateway_region_is_accepted():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k", region="eu-west-1")
    ctx = authenticate("GET", raw_path, raw_query, headers, lookup, region="eu-west-1")
    assert (ctx.identity, ctx.region) == (ALICE, "eu-west-1")


def test_header_auth_for_another_region_is_malformed_and_names_the_expected_one():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k", region="us-east-1")
    err = refusal("GET", raw_path, raw_query, headers, region="eu-west-1")
    assert (err.code, err.status) == ("AuthorizationHeaderMalformed", 400)
    assert (
        err.message == "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'"
    )
    assert err.extra == {"Region": "eu-west-1"}


def test_default_gateway_region_is_us_east_1():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k", region="eu-west-1")
    assert refusal("GET", raw_path, raw_query, headers, region="us-east-1").extra == {"Region": "us-east-1"}
    with pytest.raises(S3Error, match="expecting 'us-east-1'"):
        authenticate("GET", raw_path, raw_query, headers, lookup)


def test_presigned_url_for_the_gateway_region_is_accepted():
    raw_path, raw_query, headers = sign_query("GET", "/bucket/k", region="eu-west-1")
    assert authenticate("GET", raw_path, raw_query, headers, lookup, region="eu-west-1").region == "eu-west-1"


def test_presigned_url_for_another_region_is_refused_and_names_the_expected_one():
    raw_path, raw_query, headers = sign_query("GET", "/bucket/k", region="us-east-1")
    err = refusal("GET", raw_path, raw_query, headers, region="eu-west-1")
    assert (err.code, err.status) == ("AuthorizationQueryParametersError", 400)
    assert err.message == (
        "Error parsing the X-Amz-Credential parameter; the region 'us-east-1' is wrong; expecting 'eu-west-1'"
    )
    assert err.extra == {"Region": "eu-west-1"}


def test_signing_key_is_derived_once_per_day_and_region():
    raw_path, raw_query, headers = sign_header("GET", "/bucket/k", region="eu-west-1")
    authenticate("GET", raw_path, raw_query, headers, lookup, region="eu-west-1")
    hits = derive_signing_key.cache_info().hits
    authenticate("GET", raw_path, raw_query, headers, lookup, region="eu-west-1")
    assert derive_signing_key.cache_info().hits == hits + 1


# -- AWS documentation examples (known answers) ------------------------------------------------

DOC_KEY = Identity(name="doc", access_key="AKIAIOSFODNN7EXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
DOC_NOW = 1369353600.0  # 2013-05-24T00:00:00Z


def doc_lookup(access_key):
    return DOC_KEY if access_key == DOC_KEY.access_key else None


def test_aws_documented_get_object_example():
    headers = CIMultiDict(
        {
            "Host": "examplebucket.s3.amazonaws.com",
            "Range": "bytes=0-9",
            "x-amz-content-sha256": EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        }
    )
    ctx = authenticate("GET", "/test.txt", "", headers, doc_lookup, now=DOC_NOW)
    assert ctx.identity == DOC_KEY


def test_aws_documented_presigned_example():
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    headers = CIMultiDict({"Host": "examplebucket.s3.amazonaws.com"})
    ctx = authenticate("GET", "/test.txt", query, headers, doc_lookup, now=DOC_NOW + 3600)
    assert ctx.payload == "PRESIGNED"


# -- canonicalisation details -------------------------------------------------------------------


def test_canonical_uri_encodes_once():
    assert canonical_uri("/b/a%20b/c~d/e%2Bf/%E2%82%AC") == "/b/a%20b/c~d/e%2Bf/%E2%82%AC"
    assert canonical_uri("/b/a b/x+y/(z)") == "/b/a%20b/x%2By/%28z%29"
    assert canonical_uri("") == "/"


def test_canonical_query_sorts_encoded_pairs():
    pairs = [(b"b", b"2"), (b"a", b"z"), (b"a", b"1"), (b"c d", b"")]
    assert canonical_query(pairs) == "a=1&a=z&b=2&c%20d="
