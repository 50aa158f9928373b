import asyncio
import hashlib
import re
from xml.etree import ElementTree as ET

import pytest
from aiohttp.test_utils import TestClient, TestServer
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from aif_gateway.errors import S3Error
from aif_gateway.identity import Identity, IdentityTable
from aif_gateway.s3.app import make_app
from aif_gateway.s3.routing import action_for, locate, parse_query, split_raw_path
from aif_gateway.store.fs import FsStore


def test_raw_path_and_query_split():
    assert split_raw_path("/b/k%20x?list-type=2&prefix=a") == ("/b/k%20x", "list-type=2&prefix=a")
    assert split_raw_path("/b") == ("/b", "")


def test_query_decoding_is_done_once_and_plus_is_space():
    query = parse_query("prefix=a%2Bb+c&delimiter=%2F&uploads&x-id=GetObject")
    assert query["prefix"] == "a+b c"
    assert query["delimiter"] == "/"
    assert query["uploads"] == ""
    assert "x-id" in query


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", (None, None)),
        ("/bucket", ("bucket", None)),
        ("/bucket/", ("bucket", None)),
        ("/bucket/key", ("bucket", "key")),
        ("/bucket/dir/sub/file.txt", ("bucket", "dir/sub/file.txt")),
        ("/bucket/a%20b%2Bc", ("bucket", "a b+c")),
        ("/bucket/a+b", ("bucket", "a+b")),
        # No normalisation: the store sees exactly what was sent and judges it.
        ("/bucket/a//b", ("bucket", "a//b")),
        ("/bucket/a/../b", ("bucket", "a/../b")),
        ("/bucket/a%2Fb", ("bucket", "a/b")),
        ("/bucket/%2E%2E/x", ("bucket", "../x")),
        ("/bucket/d%C3%A9j%C3%A0", ("bucket", "déjà")),
        ("/bucket/line%0Abreak", ("bucket", "line\nbreak")),
    ],
)
def test_path_style(path, expected):
    assert locate(path, "gw.example:9000", None) == expected
    assert locate(path, "gw.example:9000", "gw.example") == expected


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        ("bucket.s3.example", "/", ("bucket", None)),
        ("bucket.s3.example:9000", "/dir/key", ("bucket", "dir/key")),
        ("my.dotted.bucket.s3.example", "/k", ("my.dotted.bucket", "k")),
        ("BUCKET.S3.EXAMPLE", "/k", ("bucket", "k")),
        ("s3.example:9000", "/bucket/k", ("bucket", "k")),
        ("other.host", "/bucket/k", ("bucket", "k")),
        ("[::1]:9000", "/bucket/k", ("bucket", "k")),
    ],
)
def test_virtual_host_style(host, path, expected):
    assert locate(path, host, "s3.example") == expected


def test_invalid_utf8_and_over_long_keys_are_refused():
    with pytest.raises(S3Error) as info:
        locate("/bucket/%FF", None, None)
    assert info.value.code == "InvalidURI"
    locate("/bucket/" + "k" * 1024, None, None)
    with pytest.raises(S3Error) as info:
        locate("/bucket/" + "k" * 1025, None, None)
    assert info.value.code == "KeyTooLongError"


def route(method, bucket, key, query="", headers=None):
    return action_for(method, bucket, key, parse_query(query), headers or {})


@pytest.mark.parametrize(
    ("method", "bucket", "key", "query", "headers", "action"),
    [
        ("GET", None, None, "", {}, "list_buckets"),
        ("GET", "b", None, "", {}, "list_objects_v1"),
        ("GET", "b", None, "list-type=2&prefix=a", {}, "list_objects_v2"),
        ("GET", "b", None, "uploads", {}, "list_multipart_uploads"),
        ("GET", "b", None, "location", {}, "get_bucket_location"),
        ("GET", "b", None, "versioning", {}, "get_bucket_versioning"),
        ("HEAD", "b", None, "", {}, "head_bucket"),
        ("PUT", "b", None, "", {}, "create_bucket"),
        ("DELETE", "b", None, "", {}, "delete_bucket"),
        ("POST", "b", None, "delete", {}, "delete_objects"),
        ("GET", "b", "k", "", {}, "get_object"),
        ("GET", "b", "k", "partNumber=2&x-id=GetObject", {}, "get_object"),
        ("GET", "b", "k", "versionId=null", {}, "get_object"),
        ("HEAD", "b", "k", "", {}, "head_object"),
        ("PUT", "b", "k", "", {}, "put_object"),
        ("PUT", "b", "k", "x-id=PutObject", {}, "put_object"),
        ("PUT", "b", "k", "", {"x-amz-copy-source": "/a/b"}, "copy_object"),
        ("DELETE", "b", "k", "", {}, "delete_object"),
        ("GET", "b", "k", "tagging", {}, "get_object_tagging"),
        ("PUT", "b", "k", "tagging", {}, "put_object_tagging"),
        ("DELETE", "b", "k", "tagging", {}, "delete_object_tagging"),
        ("POST", "b", "k", "uploads", {}, "create_multipart_upload"),
        ("PUT", "b", "k", "partNumber=1&uploadId=u", {}, "upload_part"),
        ("PUT", "b", "k", "partNumber=1&uploadId=u", {"x-amz-copy-source": "/a/b"}, "upload_part_copy"),
        ("POST", "b", "k", "uploadId=u", {}, "complete_multipart_upload"),
        ("DELETE", "b", "k", "uploadId=u", {}, "abort_multipart_upload"),
        ("GET", "b", "k", "uploadId=u", {}, "list_parts"),
    ],
)
def test_dispatch(method, bucket, key, query, headers, action):
    assert route(method, bucket, key, query, headers) == action


@pytest.mark.parametrize(
    ("method", "bucket", "key", "query"),
    [
        ("GET", "b", None, "acl"),
        ("PUT", "b", None, "policy"),
        ("GET", "b", None, "lifecycle"),
        ("PUT", "b", None, "versioning"),
        ("GET", "b", None, "tagging"),
        ("GET", "b", None, "versions"),
        ("GET", "b", "k", "acl"),
        ("PUT", "b", "k", "retention"),
        ("POST", "b", "k", "select&select-type=2"),
        ("POST", "b", None, ""),
    ],
)
def test_unsupported_sub_resources_are_not_implemented(method, bucket, key, query):
    with pytest.raises(S3Error) as info:
        route(method, bucket, key, query)
    assert info.value.code == "NotImplemented"


@pytest.mark.parametrize(
    ("method", "bucket", "key"),
    [("PUT", None, None), ("DELETE", None, None), ("PATCH", "b", None), ("POST", "b", "k"), ("OPTIONS", "b", "k")],
)
def test_wrong_method_is_not_allowed(method, bucket, key):
    with pytest.raises(S3Error) as info:
        route(method, bucket, key)
    assert info.value.code == "MethodNotAllowed"


def test_a_version_other_than_null_is_refused():
    with pytest.raises(S3Error) as info:
        route("GET", "b", "k", "versionId=3HL4kqtJlcpXroDTDmjVBH40Nrjfkd")
    assert info.value.code == "InvalidArgument"


# -- through the application: addressing, auth and the error envelope --------------------------

ACCESS_KEY, SECRET_KEY = "AKROUTING", "routing-secret"


def signed_headers(method, url, body=b"", headers=None):
    """Headers botocore's own SigV4 signer produces for this request."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def run_against_app(tmp_path, scenario, domain="s3.test"):
    """Runs ``scenario(client, base_url)`` against make_app over a real socket."""

    async def main():
        identities = IdentityTable([Identity("alice", ACCESS_KEY, SECRET_KEY)])
        server = TestServer(make_app(FsStore(tmp_path), identities, domain=domain))
        async with TestClient(server) as client:
            return await scenario(client, f"http://127.0.0.1:{server.port}")

    return asyncio.run(main())


def test_health_needs_no_auth_and_errors_carry_request_ids(tmp_path):
    async def scenario(client, _base):
        answers = []
        for response in (
            await client.get("/_aif/health"),
            await client.get("/bucket/key"),
            await client.head("/bucket/key"),
        ):
            answers.append((response.status, await response.read(), response.headers))
        return answers

    health, unsigned, head = run_against_app(tmp_path, scenario)
    assert health[:2] == (200, b'{"status": "ok"}')
    status, body, headers = unsigned
    assert status == 403
    root = ET.fromstring(body)
    assert root.findtext("Code") == "AccessDenied"
    assert root.findtext("Resource") == "/bucket/key"
    assert root.findtext("RequestId") == headers["x-amz-request-id"]
    assert re.fullmatch(r"[0-9A-F]{16}", headers["x-amz-request-id"])
    assert headers["Server"] == "aif-gateway"
    assert head[0] == 403 and head[1] == b"" and "x-amz-id-2" in head[2]


def test_virtual_host_and_path_style_reach_the_same_object(tmp_path):
    async def scenario(client, base):
        port = base.rsplit(":", 1)[1]
        path_url = f"{base}/bucket"
        created = await client.put("/bucket", headers=signed_headers("PUT", path_url))
        vhost = {"Host": f"bucket.s3.test:{port}"}
        url = f"http://bucket.s3.test:{port}/dir/a%20b"
        put = await client.put("/dir/a%20b", data=b"hello", headers=signed_headers("PUT", url, b"hello", vhost))
        get_url = f"{base}/bucket/dir/a%20b"
        got = await client.get("/bucket/dir/a%20b", headers=signed_headers("GET", get_url))
        return created.status, put.status, got.status, await got.read()

    assert run_against_app(tmp_path, scenario) == (200, 200, 200, b"hello")


def test_keys_with_newlines_and_encoded_slashes_reach_the_handler(tmp_path):
    async def scenario(client, base):
        await client.put("/bucket", headers=signed_headers("PUT", f"{base}/bucket"))
        statuses = []
        for raw_key in ("line%0Abreak", "a%2Fb"):
            url = f"{base}/bucket/{raw_key}"
            put = await client.put(f"/bucket/{raw_key}", data=b"x", headers=signed_headers("PUT", url, b"x"))
            got = await client.get(f"/bucket/{raw_key}", headers=signed_headers("GET", url))
            statuses.append((put.status, got.status, await got.read()))
        return statuses

    assert run_against_app(tmp_path, scenario) == [(200, 200, b"x"), (200, 200, b"x")]


def test_oversized_header_section_is_an_s3_error(tmp_path):
    async def scenario(client, _base):
        # Each line within aiohttp's limit (a longer one is refused by s3/connection.py).
        response = await client.get("/bucket/key", headers={"x-amz-meta-a": "y" * 10000, "x-amz-meta-b": "y" * 10000})
        return response.status, await response.read()

    status, body = run_against_app(tmp_path, scenario)
    assert status == 400
    assert ET.fromstring(body).findtext("Code") == "RequestHeaderSectionTooLarge"


def test_not_modified_answers_carry_request_id_and_validators(tmp_path):
    async def scenario(client, base):
        await client.put("/bucket", headers=signed_headers("PUT", f"{base}/bucket"))
        url = f"{base}/bucket/k"
        put = await client.put("/bucket/k", data=b"x", headers=signed_headers("PUT", url, b"x"))
        etag = put.headers["ETag"]
        got = await client.get("/bucket/k", headers=signed_headers("GET", url, headers={"If-None-Match": etag}))
        return etag, got.status, await got.read(), got.headers

    etag, status, body, headers = run_against_app(tmp_path, scenario)
    assert (status, body) == (304, b"")
    assert headers["ETag"] == etag
    assert "Last-Modified" in headers and "x-amz-request-id" in headers
