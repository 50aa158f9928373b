"""Resources bounded against unauthenticated and slow clients, sizes limited as AWS limits them,
and metadata records a user forged read as a foreign file: end to end, on raw sockets.

The gateway here runs with short timeouts from its config file (header_timeout 1 s, keep-alive
3 s, a body may stall 2 s), so every "it gets cut off" test ends in seconds; the socket timeouts
the tests wait with are generous, and only an old gateway (with no bound) ever reaches them.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from .clients import boto3_client
from .conftest import _stop_and_check
from .gateway import Credentials, GatewayProcess
from .helpers import MiB, unique_bucket_name
from .rawhttp import UNSIGNED_TRAILER, send, sign, signed_request

GiB, TiB = 1 << 30, 1 << 40
WAIT_S = 20.0  # far past every timeout configured below: reaching it means nothing was bounded
CONFIG = """
[server]
header_timeout = 1
keepalive_timeout = 3

[limits]
max_parts = 100
body_stall_timeout = 2
"""


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, gateway_logs: Path, credentials: Credentials
) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("limits-root")
    config = tmp_path_factory.mktemp("limits-config") / "gateway.toml"
    config.write_text(CONFIG)
    gateway = GatewayProcess(
        root, gateway_logs, credentials=credentials, workers=1, extra_args=("--config", str(config))
    ).start()
    yield gateway
    _stop_and_check([gateway])


@pytest.fixture
def s3(gw: GatewayProcess, credentials: Credentials):
    client = boto3_client(gw.url, credentials)
    yield client
    client.close()


@pytest.fixture
def bucket(s3, request: pytest.FixtureRequest) -> str:
    name = unique_bucket_name(request)
    s3.create_bucket(Bucket=name)
    return name


def connect(gw: GatewayProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=WAIT_S)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def error_code(body: bytes) -> str:
    return ET.fromstring(body).findtext("Code") or ""


def closed_by_server(sock: socket.socket) -> bool:
    """Reads until the server closes (True) or WAIT_S pass without that (False)."""
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def signed_head(credentials: Credentials, port: int, method: str, path: str, headers: dict[str, str]) -> bytes:
    """The request line and header section of a signed request, ready for a raw socket."""
    host = f"127.0.0.1:{port}"
    signed = sign(
        credentials, method, f"http://{host}{path}", {"Host": host, **headers}, content_sha256="UNSIGNED-PAYLOAD"
    )
    lines = [f"{method} {path} HTTP/1.1", *(f"{name}: {value}" for name, value in signed.headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def count_refusals(gw: GatewayProcess) -> int:
    return gw.stderr().count('"msg": "request refused"')


# -- before a request exists: time and memory -----------------------------------------------
def test_header_sections_that_never_end_are_cut_off_without_holding_memory(gw: GatewayProcess) -> None:
    workers = gw.worker_pids()
    before = rss_bytes(workers)
    line = b"x-amz-meta-pad: " + b"p" * 64_000 + b"\r\n"  # each line within aiohttp's old limit
    sockets = [connect(gw) for _ in range(20)]
    try:
        for sock in sockets:
            try:
                sock.sendall(b"GET /anything HTTP/1.1\r\nHost: x\r\n")
                for _ in range(250):  # 16 MB of headers, never the blank line that ends them
                    sock.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused early: what should happen
        grown = rss_bytes(workers) - before
        assert grown < 100 * MiB, f"workers grew by {grown / MiB:.0f} MiB"
        assert all(closed_by_server(sock) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("kib", [20, 70])  # a line aiohttp refuses; a line past the connection's bound
def test_an_oversized_header_line_gets_an_s3_error(gw: GatewayProcess, kib: int) -> None:
    with connect(gw) as sock:
        sock.sendall(b"GET /b/k HTTP/1.1\r\nHost: x\r\n" + b"x-amz-meta-a: " + b"y" * (kib * 1024) + b"\r\n\r\n")
        status, headers, body = read_response(sock)
    assert (status, error_code(body)) == (400, "RequestHeaderSectionTooLarge")
    assert headers["content-type"] == "application/xml" and headers["x-amz-request-id"]


def test_a_client_still_sending_after_its_header_section_was_refused_reads_the_error(gw: GatewayProcess) -> None:
    # Refused past 64 KiB while the client goes on for 8 MiB: the gateway answers, shuts its
    # write side and drops the rest (a lingering close), instead of a close whose RST would cut
    # the client's writes and lose the answer.
    line = b"x-amz-meta-pad: " + b"p" * 8000 + b"\r\n"
    with connect(gw) as sock:
        sock.sendall(b"GET /b/k HTTP/1.1\r\nHost: x\r\n")
        for _ in range(1000):
            sock.sendall(line)
        status, headers, body = read_response(sock)
        assert (status, error_code(body)) == (400, "RequestHeaderSectionTooLarge")
        assert closed_by_server(sock)


def test_a_slow_header_section_gets_request_timeout_and_is_closed(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        sock.sendall(b"GET /b/k HTTP/1.1\r\nHost: x\r\n")
        sock.sendall(b"x-amz-meta-slow: ")  # and then nothing: the section never ends
        status, _, body = read_response(sock)
        assert (status, error_code(body)) == (400, "RequestTimeout")
        assert closed_by_server(sock)


def test_a_connection_that_sends_nothing_is_closed(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        assert closed_by_server(sock)


def test_an_idle_keepalive_connection_is_closed(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        sock.sendall(b"GET /_aif/health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert status == 200 and headers.get("connection", "").lower() != "close"
        assert closed_by_server(sock)


def test_a_stalled_body_gets_request_timeout(gw: GatewayProcess, credentials: Credentials, bucket: str) -> None:
    with connect(gw) as sock:
        sock.sendall(signed_head(credentials, gw.port, "PUT", f"/{bucket}/stalled", {"Content-Length": "100"}))
        sock.sendall(b"0123456789")  # 10 of 100 bytes, then silence
        status, _, body = read_response(sock)
    assert (status, error_code(body)) == (400, "RequestTimeout")


def test_a_malformed_request_line_gets_an_s3_error_and_one_log_line(gw: GatewayProcess) -> None:
    refusals = count_refusals(gw)
    with connect(gw) as sock:
        sock.sendall(b"GET /b/k <script>alert(1)</script> HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = read_response(sock)
    assert (status, error_code(body)) == (400, "InvalidRequest")
    assert headers["content-type"] == "application/xml"
    assert b"script" not in body and b"aiohttp" not in body.lower()
    assert count_refusals(gw) == refusals + 1
    assert "Traceback" not in gw.stderr()


def test_a_malformed_header_gets_an_s3_error(gw: GatewayProcess) -> None:
    with connect(gw) as sock:
        sock.sendall(b"GET /b/k HTTP/1.1\r\nHost: x\r\nBad Header Name: v\r\n\r\n")
        status, _, body = read_response(sock)
    assert (status, error_code(body)) == (400, "InvalidRequest")
    assert b"Bad Header" not in body


# -- sizes ------------------------------------------------------------------------------------
def test_a_put_declaring_250_mb_and_sending_10_bytes_reserves_nothing(
    gw: GatewayProcess, credentials: Credentials, bucket: str
) -> None:
    tmp = gw.root / ".aifgw" / "state" / bucket / "tmp"
    with connect(gw) as sock:
        sock.sendall(signed_head(credentials, gw.port, "PUT", f"/{bucket}/claim", {"Content-Length": str(250_000_000)}))
        sock.sendall(b"0123456789")
        deadline = time.monotonic() + WAIT_S
        temps: list[Path] = []
        while not temps and time.monotonic() < deadline:
            temps = list(tmp.glob("put.*")) if tmp.is_dir() else []
            time.sleep(0.05)
        assert temps, "the upload never started"
        time.sleep(0.3)  # whatever the gateway reserves for it, it has reserved by now
        assert temps[0].stat().st_blocks * 512 < 1 * MiB


def test_a_declared_5_tib_put_is_entity_too_large_before_its_body(
    gw: GatewayProcess, credentials: Credentials, bucket: str
) -> None:
    with connect(gw) as sock:
        sock.sendall(signed_head(credentials, gw.port, "PUT", f"/{bucket}/huge", {"Content-Length": str(5 * TiB)}))
        status, _, body = read_response(sock)  # not a byte of the body sent
    assert (status, error_code(body)) == (400, "EntityTooLarge")
    fields = {child.tag: child.text for child in ET.fromstring(body)}
    assert (fields["ProposedSize"], fields["MaxSizeAllowed"]) == (str(5 * TiB), str(5 * GiB))


def test_a_declared_aws_chunked_length_over_the_limit_is_entity_too_large(
    gw: GatewayProcess, credentials: Credentials, bucket: str
) -> None:
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(5 * GiB + 1),
        "Content-Length": str(6 * GiB),
    }
    host = f"127.0.0.1:{gw.port}"
    signed = sign(
        credentials,
        "PUT",
        f"http://{host}/{bucket}/chunked",
        {"Host": host, **headers},
        content_sha256=UNSIGNED_TRAILER,
    )
    with connect(gw) as sock:
        sock.sendall(
            f"PUT /{bucket}/chunked HTTP/1.1\r\n".encode()
            + "".join(f"{k}: {v}\r\n" for k, v in signed.headers.items()).encode()
            + b"\r\n"
        )
        status, _, body = read_response(sock)
    assert (status, error_code(body)) == (400, "EntityTooLarge")


def test_an_upload_part_over_the_part_limit_is_entity_too_large(
    gw: GatewayProcess, credentials: Credentials, s3, bucket: str
) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    path = f"/{bucket}/mp?partNumber=1&uploadId={upload_id}"
    with connect(gw) as sock:
        sock.sendall(signed_head(credentials, gw.port, "PUT", path, {"Content-Length": str(6 * GiB)}))
        status, _, body = read_response(sock)
    assert (status, error_code(body)) == (400, "EntityTooLarge")


@pytest.mark.parametrize("number", ["0", "101", "10001"])
def test_part_numbers_outside_the_configured_range_are_invalid_argument(
    gw: GatewayProcess, credentials: Credentials, s3, bucket: str, number: str
) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    response = signed_request(
        gw.port, credentials, "PUT", f"/{bucket}/mp", query=f"partNumber={number}&uploadId={upload_id}", body=b"x"
    )
    fields = response.error()
    assert (response.status, fields["Code"]) == (400, "InvalidArgument")
    assert fields["Message"] == "Part number must be an integer between 1 and 100, inclusive"
    assert fields["ArgumentValue"] == number


def test_complete_listing_more_parts_than_allowed_is_refused(
    gw: GatewayProcess, credentials: Credentials, s3, bucket: str
) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    parts = "".join(f'<Part><PartNumber>{n}</PartNumber><ETag>"e"</ETag></Part>' for n in range(1, 102))
    body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
    response = signed_request(gw.port, credentials, "POST", f"/{bucket}/mp", query=f"uploadId={upload_id}", body=body)
    assert (response.status, response.error()["Code"]) == (400, "MalformedXML")


# -- records a user forged --------------------------------------------------------------------
def forge(gw: GatewayProcess, bucket: str, key: str, **fields: object) -> Path:
    """A file whose metadata record (xattr and sidecar alike) a local user wrote by hand."""
    path = gw.root / bucket / key
    path.write_bytes(b"0123456789")
    st = os.stat(path)
    record = json.dumps({"etag": "0" * 32, "size": st.st_size, "mtime_ns": st.st_mtime_ns, **fields}).encode()
    os.setxattr(path, "user.aifgw.meta", record)  # what `setfattr -n user.aifgw.meta` does
    sidecar = gw.root / ".aifgw" / "state" / bucket / "meta" / f"{key}.json"
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    sidecar.write_bytes(record)
    return path


FORGED = {
    "set-cookie": {"headers": {"Set-Cookie": "session=stolen", "Location": "https://evil.example/"}},
    "wrong-types": {"content_type": ["text/html"], "headers": {"Cache-Control": 5}, "checksums": {"CRC32": 7}},
    "header-injection": {"content_type": "text/plain\r\nSet-Cookie: a=b"},
    "long-part-run": {"part_sizes": [[0, 10**8], [10, 1]]},
}


@pytest.mark.parametrize("name", sorted(FORGED))
def test_a_forged_record_is_served_as_a_foreign_file(
    gw: GatewayProcess, credentials: Credentials, s3, bucket: str, name: str
) -> None:
    forge(gw, bucket, "forged.bin", **FORGED[name])
    for method in ("HEAD", "GET"):
        response = signed_request(gw.port, credentials, method, f"/{bucket}/forged.bin")
        assert response.status == 200, response.body[:300]
        assert "Set-Cookie" not in response.headers and "Location" not in response.headers
        assert response.headers["ETag"].endswith('-1"')  # the foreign file's ETag, not the record's
    assert s3.get_object(Bucket=bucket, Key="forged.bin")["Body"].read() == b"0123456789"
    part = signed_request(gw.port, credentials, "GET", f"/{bucket}/forged.bin", query="partNumber=1")
    assert (part.status, part.body) == (200, b"0123456789")
    [listed] = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert (listed["Key"], listed["Size"]) == ("forged.bin", 10) and listed["ETag"].endswith('-1"')


def test_a_forged_blob_pointer_reads_nothing_outside_the_blobs(
    gw: GatewayProcess, credentials: Credentials, bucket: str
) -> None:
    path = forge(gw, bucket, "pointed.bin")
    planted = gw.root / bucket / "planted.json"
    (gw.root / ".aifgw" / "state" / bucket / "blobs").mkdir(parents=True, exist_ok=True)  # as after one large record
    st = os.stat(path)
    planted.write_bytes(
        json.dumps(
            {"etag": "0" * 32, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "user_meta": {"planted": "yes"}}
        ).encode()
    )
    # From the state's blobs/ up to the root, then into the bucket: where the planted record lies.
    os.setxattr(path, "user.aifgw.meta", f"@blob:../../../../{bucket}/planted.json".encode())
    response = signed_request(gw.port, credentials, "HEAD", f"/{bucket}/pointed.bin")
    assert response.status == 200 and "x-amz-meta-planted" not in response.headers


def test_clients_still_work_within_the_limits(gw: GatewayProcess, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="small", Body=b"x" * 1000, Metadata={"who": "me"}, CacheControl="no-cache")
    head = s3.head_object(Bucket=bucket, Key="small")
    assert head["Metadata"] == {"who": "me"} and head["CacheControl"] == "no-cache"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=100, Body=b"y" * 10)
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 100, "ETag": part["ETag"]}]},
    )
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"y" * 10
    assert send(gw.port, "GET", "/_aif/health", {"Host": "x"}).status == 200
