"""Keys that cannot map to a path safely, and symlinks that point out of the bucket.

Requests are hand-made because clients normalise some of these keys before sending them. Each
test runs on a gateway with a root of its own and checks the whole root is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .gateway import Credentials, GatewayProcess
from .helpers import list_keys, snapshot, unique_bucket_name
from .rawhttp import signed_request

SECRET = b"another bucket's data\n"

# (raw request path after the bucket, why it cannot map)
UNMAPPABLE_PATHS = {
    "dot-dot segment": "a/../b",
    "leading dot-dot": "../escape",
    "encoded dot-dot": "%2E%2E/escape",
    "dot-dot into sibling bucket": "..%2Fsibling%2Fsecret.txt",
    "dot segment": "a/./b",
    "lone dot": ".",
    "empty segment": "a//b",
    "NUL byte": "a%00b",
    "segment over 255 bytes": "s" * 256 + "/x",
}


@pytest.fixture
def roots(isolated_gateway: GatewayProcess, isolated_s3, request: pytest.FixtureRequest):
    """A bucket, a sibling bucket holding a secret, and the gateway's root."""
    bucket = unique_bucket_name(request)
    isolated_s3.create_bucket(Bucket=bucket)
    root = isolated_gateway.root
    (root / "sibling").mkdir(exist_ok=True)
    (root / "sibling" / "secret.txt").write_bytes(SECRET)
    return bucket, root


@pytest.mark.parametrize("raw_key", UNMAPPABLE_PATHS.values(), ids=UNMAPPABLE_PATHS.keys())
def test_put_of_unmappable_key_is_refused_and_writes_nothing(
    isolated_gateway: GatewayProcess, credentials: Credentials, roots, raw_key: str
) -> None:
    bucket, root = roots
    before = snapshot(root)
    resp = signed_request(
        isolated_gateway.port,
        credentials,
        "PUT",
        f"/{bucket}/{raw_key}",
        body=b"payload",
        content_sha256="UNSIGNED-PAYLOAD",
    )
    assert resp.status == 400, (resp.status, resp.body)
    expected = {"InvalidArgument", "KeyTooLongError"} if "s" * 256 in raw_key else {"InvalidArgument"}
    assert resp.error()["Code"] in expected
    assert snapshot(root) == before


@pytest.mark.parametrize("raw_key", UNMAPPABLE_PATHS.values(), ids=UNMAPPABLE_PATHS.keys())
def test_get_of_unmappable_key_reads_nothing(
    isolated_gateway: GatewayProcess, credentials: Credentials, roots, raw_key: str
) -> None:
    bucket, _root = roots
    resp = signed_request(isolated_gateway.port, credentials, "GET", f"/{bucket}/{raw_key}")
    assert resp.status in (400, 404), (resp.status, resp.body)
    assert resp.error()["Code"] in {"InvalidArgument", "NoSuchKey", "KeyTooLongError"}
    assert SECRET not in resp.body


def test_key_over_1024_bytes_is_too_long(isolated_gateway: GatewayProcess, credentials: Credentials, roots) -> None:
    bucket, root = roots
    before = snapshot(root)
    key = "/".join(["d" * 100] * 11)  # 1110 bytes, every segment legal
    resp = signed_request(
        isolated_gateway.port, credentials, "PUT", f"/{bucket}/{key}", body=b"x", content_sha256="UNSIGNED-PAYLOAD"
    )
    assert resp.status == 400
    assert resp.error()["Code"] == "KeyTooLongError"
    assert snapshot(root) == before


def test_key_below_an_existing_file_is_refused(
    isolated_gateway: GatewayProcess, credentials: Credentials, isolated_s3, roots
) -> None:
    bucket, root = roots
    isolated_s3.put_object(Bucket=bucket, Key="plain", Body=b"i am a file")
    before = snapshot(root)
    resp = signed_request(
        isolated_gateway.port,
        credentials,
        "PUT",
        f"/{bucket}/plain/child",
        body=b"x",
        content_sha256="UNSIGNED-PAYLOAD",
    )
    assert resp.status == 400, (resp.status, resp.body)
    assert resp.error()["Code"] == "InvalidArgument"
    assert snapshot(root) == before
    assert isolated_s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == b"i am a file"


@pytest.fixture
def escape_links(roots, tmp_path: Path):
    """Symlinks inside the bucket to /etc, /etc/passwd, and a directory and file outside."""
    bucket, root = roots
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"outside data")
    bucket_dir = root / bucket
    (bucket_dir / "etc").symlink_to("/etc")
    (bucket_dir / "passwd").symlink_to("/etc/passwd")
    (bucket_dir / "out").symlink_to(outside)
    (bucket_dir / "victim").symlink_to(outside / "victim.txt")
    return bucket, root, outside


@pytest.mark.parametrize("key", ["etc/passwd", "passwd", "out/victim.txt", "victim"])
def test_get_through_escaping_symlink_is_refused(
    isolated_gateway: GatewayProcess, credentials: Credentials, escape_links, key: str
) -> None:
    bucket, _root, _outside = escape_links
    resp = signed_request(isolated_gateway.port, credentials, "GET", f"/{bucket}/{key}")
    assert resp.status in (403, 404), (resp.status, resp.body[:200])
    assert resp.error()["Code"] in {"AccessDenied", "NoSuchKey"}
    assert b"root:" not in resp.body and b"outside data" not in resp.body


@pytest.mark.parametrize("key", ["out/planted.txt", "out/victim.txt", "etc/planted-by-test"])
def test_put_through_escaping_directory_symlink_is_refused(
    isolated_gateway: GatewayProcess, credentials: Credentials, escape_links, key: str
) -> None:
    bucket, root, outside = escape_links
    before = snapshot(root), snapshot(outside)
    resp = signed_request(
        isolated_gateway.port,
        credentials,
        "PUT",
        f"/{bucket}/{key}",
        body=b"planted",
        content_sha256="UNSIGNED-PAYLOAD",
    )
    assert resp.status in (400, 403), (resp.status, resp.body)
    assert resp.error()["Code"] in {"AccessDenied", "InvalidArgument"}
    assert (snapshot(root), snapshot(outside)) == before
    assert not Path("/etc/planted-by-test").exists()


def test_put_over_a_symlink_to_an_outside_file_never_writes_through_it(
    isolated_gateway: GatewayProcess, credentials: Credentials, escape_links
) -> None:
    # Refusing, or replacing the link itself with a plain file, are both safe answers.
    bucket, _root, outside = escape_links
    signed_request(
        isolated_gateway.port,
        credentials,
        "PUT",
        f"/{bucket}/victim",
        body=b"planted",
        content_sha256="UNSIGNED-PAYLOAD",
    )
    assert (outside / "victim.txt").read_bytes() == b"outside data"


def test_listing_does_not_descend_into_escaping_symlinks(escape_links, isolated_s3) -> None:
    bucket, _root, _outside = escape_links
    keys = list_keys(isolated_s3, bucket)
    assert not [k for k in keys if k.startswith(("etc/", "out/"))], keys
