"""GET bodies through both data paths: zero-copy sendfile (AIF_SENDFILE=1) and copying (=0).

Every test runs against a gateway of each kind. Requests go over ``http.client`` with
presigned URLs, so a test controls the connection itself: keep-alive reuse, a client that
hangs up mid-body, a body cut short. The sendfile gateway logs at debug level, which is how
the tests know that its GETs really took the zero-copy path.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import trustme

from .clients import boto3_client, client_config
from .gateway import Credentials, GatewayProcess, TlsFiles
from .helpers import MiB, random_bytes

BUCKET = "get-paths"
BIG_SIZE = 64 * MiB
MEDIUM = random_bytes(MiB + 17)  # over the sendfile threshold, not a multiple of anything
PART_SIZES = (5 * MiB, 5 * MiB, 300 * 1024)
SENDFILE_LOG = "bytes sent by sendfile"


@pytest.fixture(scope="module", params=[True, False], ids=["sendfile", "copy"])
def sendfile_on(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.fixture(scope="module")
def gw(
    sendfile_on: bool, tmp_path_factory: pytest.TempPathFactory, gateway_logs: Path, credentials: Credentials
) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("get-paths")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIF_SENDFILE", "1" if sendfile_on else "0")
        env.setenv("AIF_LOG_LEVEL", "debug")
        # One worker: keep-alive and "still serving after a disconnect" must hit the same process.
        gateway = GatewayProcess(root, gateway_logs, credentials=credentials, workers=1).start()
    yield gateway
    gateway.stop()
    assert not gateway.tracebacks(), gateway.tracebacks()[-6000:]


@pytest.fixture(scope="module")
def objects(gw: GatewayProcess, credentials: Credentials) -> dict[str, bytes | str]:
    """The test objects: small ones as bytes; the 64 MiB one by its sha256 (written in place)."""
    s3 = boto3_client(gw.url, credentials)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="medium", Body=MEDIUM)
    s3.put_object(Bucket=BUCKET, Key="empty", Body=b"")
    s3.put_object(Bucket=BUCKET, Key="tiny", Body=b"0123456789")
    parts = [random_bytes(size) for size in PART_SIZES]
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="multi")["UploadId"]
    etags = [
        s3.upload_part(Bucket=BUCKET, Key="multi", UploadId=upload, PartNumber=n, Body=body)["ETag"]
        for n, body in enumerate(parts, 1)
    ]
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key="multi",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    s3.close()
    big = random_bytes(BIG_SIZE)
    (gw.root / BUCKET / "big").write_bytes(big)  # one namespace: a file in the bucket is an object
    return {"medium": MEDIUM, "multi": b"".join(parts), "big": hashlib.sha256(big).hexdigest()}


class Client:
    """Presigned GET/HEAD over one ``http.client`` connection (kept alive between requests)."""

    def __init__(self, gw: GatewayProcess, credentials: Credentials) -> None:
        self._s3 = boto3_client(gw.url, credentials)
        self.conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)

    def target(self, method: str, key: str, **params) -> str:
        """The presigned request target (path and query) of ``method`` on ``key``."""
        action = {"GET": "get_object", "HEAD": "head_object"}[method]
        url = self._s3.generate_presigned_url(action, Params={"Bucket": BUCKET, "Key": key, **params})
        parts = urllib.parse.urlsplit(url)
        return f"{parts.path}?{parts.query}"

    def request(
        self, method: str, key: str, headers: dict[str, str] | None = None, **params
    ) -> http.client.HTTPResponse:
        self.conn.request(method, self.target(method, key, **params), headers=headers or {})
        return self.conn.getresponse()

    def get(self, key: str, headers: dict[str, str] | None = None, **params) -> tuple[http.client.HTTPResponse, bytes]:
        resp = self.request("GET", key, headers, **params)
        return resp, resp.read()

    def close(self) -> None:
        self.conn.close()
        self._s3.close()


@pytest.fixture
def client(gw: GatewayProcess, credentials: Credentials, objects) -> Iterator[Client]:
    c = Client(gw, credentials)
    yield c
    c.close()


def _wait_for_log(gw: GatewayProcess, text: str, count: int) -> int:
    """How many times ``text`` is in the gateway's log, waiting (boundedly) for ``count``."""
    deadline = time.monotonic() + 10
    while (seen := gw.stderr().count(text)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


def test_whole_64_mib_object_arrives_intact(client: Client, gw: GatewayProcess, objects, sendfile_on: bool) -> None:
    before = gw.stderr().count(SENDFILE_LOG)
    resp = client.request("GET", "big")
    assert resp.status == 200
    assert int(resp.headers["Content-Length"]) == BIG_SIZE
    digest = hashlib.sha256()
    while chunk := resp.read(4 * MiB):
        digest.update(chunk)
    assert digest.hexdigest() == objects["big"]
    expected = before + 1 if sendfile_on else before
    assert _wait_for_log(gw, SENDFILE_LOG, expected) == expected


def test_access_log_counts_the_body_bytes(client: Client, gw: GatewayProcess) -> None:
    resp, body = client.get("medium")
    assert body == MEDIUM
    deadline = time.monotonic() + 10
    while not (lines := _access_lines(gw, "/medium")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lines and lines[-1]["bytes_out"] >= len(MEDIUM), lines[-1:]


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=100-300099", 100, 300099),  # a-b, large
        ("bytes=5-", 5, len(MEDIUM) - 1),  # a-
        ("bytes=-70000", len(MEDIUM) - 70000, len(MEDIUM) - 1),  # -n
        ("bytes=1000-1009", 1000, 1009),  # below the threshold: always copied
        ("bytes=0-", 0, len(MEDIUM) - 1),
    ],
)
def test_ranges(client: Client, header: str, first: int, last: int) -> None:
    resp, body = client.get("medium", {"Range": header})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{len(MEDIUM)}"
    assert body == MEDIUM[first : last + 1]


def test_part_number_reads(client: Client, objects) -> None:
    data = objects["multi"]
    offset = 0
    for number, size in enumerate(PART_SIZES, 1):
        resp, body = client.get("multi", PartNumber=number)
        assert resp.status == 206
        assert resp.headers["x-amz-mp-parts-count"] == str(len(PART_SIZES))
        assert body == data[offset : offset + size], number
        offset += size


def test_empty_and_tiny_objects(client: Client) -> None:
    resp, body = client.get("empty")
    assert (resp.status, resp.headers["Content-Length"], body) == (200, "0", b"")
    resp, body = client.get("tiny")
    assert (resp.status, body) == (200, b"0123456789")


def test_head_sends_headers_only(client: Client) -> None:
    resp = client.request("HEAD", "medium")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(MEDIUM))
    assert resp.read() == b""
    # The connection is still in step: a GET right after gets its own answer.
    assert client.get("tiny")[1] == b"0123456789"


def test_keep_alive_connection_is_reused_after_sendfile_gets(client: Client, objects) -> None:
    ports = set()
    for header in (None, "bytes=-70000", None, "bytes=0-9", None):
        resp, body = client.get("medium", {"Range": header} if header else None)
        assert resp.status in (200, 206)
        assert resp.headers.get("Connection", "").lower() != "close"
        assert body == (MEDIUM if header is None else MEDIUM[-70000:] if header == "bytes=-70000" else MEDIUM[:10])
        assert client.conn.sock is not None, "the server closed the connection"
        ports.add(client.conn.sock.getsockname()[1])
    assert len(ports) == 1, "each GET must reuse the first connection"


def _raw_get(gw: GatewayProcess, client: Client, key: str) -> socket.socket:
    """A socket on which a presigned GET of ``key`` has been sent and its headers read."""
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    sock.sendall(f"GET {client.target('GET', key)} HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def test_client_disconnecting_mid_body_leaves_the_gateway_serving(client: Client, gw: GatewayProcess, objects) -> None:
    for _ in range(3):
        sock = _raw_get(gw, client, "big")
        sock.recv(64 * 1024)
        sock.close()  # unread data pending: the kernel answers with a reset
    resp = client.request("GET", "big")
    digest = hashlib.sha256()
    while chunk := resp.read(4 * MiB):
        digest.update(chunk)
    assert digest.hexdigest() == objects["big"]
    # Tracebacks are checked when the gateway stops (the fixture's teardown).


def test_object_shrinking_mid_body_ends_in_a_short_body_and_a_closed_connection(
    client: Client, gw: GatewayProcess
) -> None:
    path = gw.root / BUCKET / "shrinking"
    original = random_bytes(BIG_SIZE)
    path.write_bytes(original)
    sock = _raw_get(gw, client, "shrinking")
    # The client has read nothing, so socket buffers (a few MiB) hold the gateway back; truncate
    # the file under the open GET.
    time.sleep(0.2)
    with open(path, "r+b") as fh:
        fh.truncate(MiB)
    received = bytearray()
    while chunk := sock.recv(4 * MiB):  # ends when the gateway closes the connection
        received += chunk
    sock.close()
    assert MiB <= len(received) < BIG_SIZE
    # Bytes past the new end may already be in flight; with sendfile they are page references,
    # so what they read as is the truncated page's, not the original (in-place writes are not
    # isolated from a GET on either path; S3 overwrites are, being renames).
    assert received[:MiB] == original[:MiB]
    assert _wait_for_log(gw, "shrank while it was being read", 1) >= 1


def test_tls_connections_fall_back_to_copying(
    tmp_path_factory: pytest.TempPathFactory, gateway_logs: Path, credentials: Credentials
) -> None:
    d = tmp_path_factory.mktemp("get-paths-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    tls = TlsFiles(cert=d / "cert.pem", key=d / "key.pem", ca=d / "ca.pem")
    ca.cert_pem.write_to_path(str(tls.ca))
    cert.private_key_pem.write_to_path(str(tls.key))
    cert.cert_chain_pems[0].write_to_path(str(tls.cert))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIF_SENDFILE", "1")
        gw = GatewayProcess(d / "root", gateway_logs, credentials=credentials, workers=1, tls=tls)
        (d / "root").mkdir()
        gw.start()
    try:
        s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=gw.url,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            verify=str(tls.ca),
            config=client_config(),
        )
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="medium", Body=MEDIUM)
        url = urllib.parse.urlsplit(s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "medium"}))
        s3.close()
        conn = http.client.HTTPSConnection(
            "127.0.0.1", gw.port, timeout=60, context=ssl.create_default_context(cafile=str(tls.ca))
        )
        for _ in range(2):  # twice: the connection stays usable
            conn.request("GET", f"{url.path}?{url.query}")
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, MEDIUM)
        conn.close()
    finally:
        gw.stop()
    assert not gw.tracebacks(), gw.tracebacks()[-6000:]


def _access_lines(gw: GatewayProcess, path_suffix: str) -> list[dict]:
    lines = []
    for line in gw.stderr().splitlines():
        if '"aif_gateway.access"' in line and path_suffix in line and '"GET' in line:
            lines.append(json.loads(line))
    return lines
