"""PUT bodies through both paths: read straight from the socket by native code
(AIF_RECV_DIRECT=1, for bodies with at least 4 MiB still on the socket) and through aiohttp (=0).

Every test runs against a gateway of each kind. The direct gateway logs at debug level, which is
how the tests know its large PUTs really took the socket path. What must hold on both: bytes and
ETags exact, digests checked before anything is published, a body cut short or refused leaves the
old object, and the connection stays usable (on the direct path: closed, with ``Connection:
close``, because aiohttp's parser was bypassed; the next request opens a new one).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import socket
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from aif_gateway.s3.connection import LINGER_TIMEOUT_S

from .clients import boto3_client
from .gateway import Credentials, GatewayProcess
from .helpers import MiB, random_bytes
from .rawhttp import SIGNED_STREAMING, crc32_b64, put_signed_chunked, sign, signed_request

BUCKET = "put-paths"
DIRECT_LOG = "body bytes received from the socket"
BIG = random_bytes(20 * MiB + 11)
GiB = 1024 * MiB
CUT_OFF_SLACK_S = 25.0  # generous: only a gateway with no bound at all reaches it


@pytest.fixture(scope="module", params=[True, False], ids=["direct", "aiohttp"])
def direct_on(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.fixture(scope="module")
def gw(
    direct_on: bool, tmp_path_factory: pytest.TempPathFactory, gateway_logs: Path, credentials: Credentials
) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("put-paths")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIF_RECV_DIRECT", "1" if direct_on else "0")
        env.setenv("AIF_LOG_LEVEL", "debug")
        gateway = GatewayProcess(root, gateway_logs, credentials=credentials, workers=2).start()
    s3 = boto3_client(gateway.url, credentials)
    s3.create_bucket(Bucket=BUCKET)
    s3.close()
    yield gateway
    gateway.stop()
    assert not gateway.tracebacks(), gateway.tracebacks()[-6000:]


@pytest.fixture
def s3(gw: GatewayProcess, credentials: Credentials):
    client = boto3_client(gw.url, credentials)
    yield client
    client.close()


def _direct_reads(gw: GatewayProcess) -> int:
    return gw.stderr().count(DIRECT_LOG)


def _wait_for_direct_reads(gw: GatewayProcess, count: int) -> int:
    deadline = time.monotonic() + 10
    while (seen := _direct_reads(gw)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


def _presigned_put(s3, key: str, **params) -> str:
    url = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": key, **params})
    parts = urllib.parse.urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_large_put_arrives_intact_with_its_etag(s3, gw: GatewayProcess, direct_on: bool) -> None:
    before = _direct_reads(gw)
    etag = s3.put_object(Bucket=BUCKET, Key="big", Body=BIG)["ETag"]
    assert etag == f'"{hashlib.md5(BIG).hexdigest()}"'
    assert s3.get_object(Bucket=BUCKET, Key="big")["Body"].read() == BIG
    assert (gw.root / BUCKET / "big").read_bytes() == BIG  # one namespace: the object is the file
    expected = before + 1 if direct_on else before
    assert _wait_for_direct_reads(gw, expected) == expected
    # The access log counts every body byte, also those read around aiohttp's parser.
    puts = [
        json.loads(line)
        for line in gw.stderr().splitlines()
        if line.startswith("{") and '"aif_gateway.access"' in line and f"PUT /{BUCKET}/big " in line
    ]
    assert puts and puts[-1]["bytes_in"] == len(BIG)


def test_crc32c_checksum_of_a_large_put_is_verified_and_kept(s3) -> None:
    resp = s3.put_object(Bucket=BUCKET, Key="crc", Body=BIG, ChecksumAlgorithm="CRC32C")
    head = s3.head_object(Bucket=BUCKET, Key="crc", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32C"] == resp["ChecksumCRC32C"]
    assert head["ContentLength"] == len(BIG)


def test_small_puts_keep_the_connection(gw: GatewayProcess, s3) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    try:
        ports = set()
        for n in range(3):
            conn.request("PUT", _presigned_put(s3, f"small-{n}"), body=b"x" * (64 * 1024))
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            assert resp.headers.get("Connection", "").lower() != "close"
            ports.add(conn.sock.getsockname()[1])
        assert len(ports) == 1
    finally:
        conn.close()


def test_connection_after_a_large_put(gw: GatewayProcess, s3, direct_on: bool) -> None:
    body = random_bytes(6 * MiB)
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    try:
        conn.request("PUT", _presigned_put(s3, "six"), body=body)
        resp = conn.getresponse()
        assert resp.read() == b""
        assert resp.status == 200
        assert resp.headers["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
        closes = resp.headers.get("Connection", "").lower() == "close"
        assert closes is direct_on
        # The next request works either way (http.client reconnects after a close).
        conn.request(
            "GET",
            urllib.parse.urlsplit(s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "six"}))
            ._replace(scheme="", netloc="")
            .geturl(),
        )
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, body)
    finally:
        conn.close()


def test_body_cut_short_leaves_the_old_object(gw: GatewayProcess, s3) -> None:
    s3.put_object(Bucket=BUCKET, Key="victim", Body=b"old contents")
    target = _presigned_put(s3, "victim")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(
            f"PUT {target} HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\nContent-Length: {16 * MiB}\r\n\r\n".encode()
        )
        sock.sendall(random_bytes(5 * MiB))
        sock.shutdown(socket.SHUT_WR)  # the client gives up 11 MiB short
        sock.recv(65536)  # whatever the server answers, if anything, before closing
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not list((gw.root / ".aifgw" / "state" / BUCKET / "tmp").glob("put.*")):
            break
        time.sleep(0.05)
    assert not list((gw.root / ".aifgw" / "state" / BUCKET / "tmp").glob("put.*")), "temp file left behind"
    assert s3.get_object(Bucket=BUCKET, Key="victim")["Body"].read() == b"old contents"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="victim")["Contents"]]
    assert keys == ["victim"]


def test_wrong_content_md5_on_a_large_body_is_refused(gw: GatewayProcess, s3, credentials) -> None:
    s3.put_object(Bucket=BUCKET, Key="guarded", Body=b"keep me")
    body = random_bytes(7 * MiB)
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    resp = signed_request(
        gw.port,
        credentials,
        "PUT",
        f"/{BUCKET}/guarded",
        headers={"Content-MD5": wrong},
        body=body,
        content_sha256="UNSIGNED-PAYLOAD",
    )
    assert resp.status == 400
    assert resp.error()["Code"] == "BadDigest"
    assert s3.get_object(Bucket=BUCKET, Key="guarded")["Body"].read() == b"keep me"


def test_wrong_signed_payload_hash_on_a_large_body_is_refused(gw: GatewayProcess, s3, credentials) -> None:
    s3.put_object(Bucket=BUCKET, Key="signed", Body=b"keep me too")
    body = random_bytes(5 * MiB)
    claimed = hashlib.sha256(b"not the body").hexdigest()
    resp = signed_request(gw.port, credentials, "PUT", f"/{BUCKET}/signed", body=body, content_sha256=claimed)
    assert resp.status == 400
    assert resp.error()["Code"] == "XAmzContentSHA256Mismatch"
    assert s3.get_object(Bucket=BUCKET, Key="signed")["Body"].read() == b"keep me too"


def test_multipart_parts_take_the_same_path(s3, gw: GatewayProcess, direct_on: bool) -> None:
    before = _direct_reads(gw)
    parts = [random_bytes(8 * MiB), random_bytes(8 * MiB), random_bytes(3 * MiB)]
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
    assert s3.get_object(Bucket=BUCKET, Key="multi")["Body"].read() == b"".join(parts)
    # The two 8 MiB parts are large enough for the direct path; the 3 MiB one is not.
    expected = before + 2 if direct_on else before
    assert _wait_for_direct_reads(gw, expected) == expected


def test_gzip_content_encoding_is_stored_as_sent(s3) -> None:
    raw = gzip.compress(b"hello " * 1000)
    s3.put_object(Bucket=BUCKET, Key="page.gz", Body=raw, ContentEncoding="gzip")
    obj = s3.get_object(Bucket=BUCKET, Key="page.gz")
    assert obj["ContentEncoding"] == "gzip"
    assert obj["Body"].read() == raw


# -- aws-chunked bodies: decoded (and chunk signatures checked) by the same receive loop --------


def _put_signed_chunked(
    gw: GatewayProcess,
    credentials: Credentials,
    key: str,
    data: bytes,
    trailer: dict[str, str] | None = None,
    tamper=None,
):
    return put_signed_chunked(gw.port, credentials, f"/{BUCKET}/{key}", data, CHUNK, trailer, tamper)


CHUNK = 128 * 1024  # the Java SDK's chunk size for signed streaming uploads


def test_large_signed_aws_chunked_put(gw: GatewayProcess, credentials, s3, direct_on: bool) -> None:
    before = _direct_reads(gw)
    data = random_bytes(9 * MiB + 3)
    trailer = {"x-amz-checksum-crc32": crc32_b64(data)}
    resp = _put_signed_chunked(gw, credentials, "chunked", data, trailer)
    assert resp.status == 200, resp.body
    assert resp.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert s3.get_object(Bucket=BUCKET, Key="chunked")["Body"].read() == data
    head = s3.head_object(Bucket=BUCKET, Key="chunked", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == trailer["x-amz-checksum-crc32"]
    expected = before + 1 if direct_on else before
    assert _wait_for_direct_reads(gw, expected) == expected


@pytest.mark.parametrize("where", ["early", "late"])
def test_tampered_chunk_of_a_large_signed_body_is_refused(gw: GatewayProcess, credentials, s3, where: str) -> None:
    s3.put_object(Bucket=BUCKET, Key="chunked-victim", Body=b"original")
    data = random_bytes(6 * MiB)
    # Early: inside what aiohttp has buffered before the hand-over; late: read by the native loop.
    at = 1000 if where == "early" else 5 * MiB

    def flip(body: bytes) -> bytes:
        return body[:at] + bytes([body[at] ^ 1]) + body[at + 1 :]

    resp = _put_signed_chunked(gw, credentials, "chunked-victim", data, tamper=flip)
    assert resp.status in (400, 403), resp.body
    assert resp.error()["Code"] in ("SignatureDoesNotMatch", "InvalidRequest")
    assert s3.get_object(Bucket=BUCKET, Key="chunked-victim")["Body"].read() == b"original"


def test_large_aws_chunked_body_with_a_wrong_trailer_checksum(gw: GatewayProcess, credentials, s3) -> None:
    s3.put_object(Bucket=BUCKET, Key="chunked-crc", Body=b"original")
    data = random_bytes(5 * MiB)
    resp = _put_signed_chunked(gw, credentials, "chunked-crc", data, {"x-amz-checksum-crc32": crc32_b64(b"other")})
    assert resp.status == 400
    assert resp.error()["Code"] == "BadDigest"
    assert s3.get_object(Bucket=BUCKET, Key="chunked-crc")["Body"].read() == b"original"


# -- refused while the client is still sending: the answer arrives, the connection is bounded -----
# The gateway closes such a connection by lingering (aif_gateway/s3/connection.py): response,
# write side shut, what the client still sends read and dropped, within bounds. Closing at once
# would make the kernel answer the unread bytes with a RST, and the client lose the response.


def _refused_put_head(gw: GatewayProcess, credentials: Credentials, key: str, decoded: int) -> tuple[bytes, int]:
    """The head of a signed aws-chunked PUT of ``decoded`` bytes, and its Content-Length; its
    first chunk will carry a wrong signature (``_bad_first_chunk``), so it is refused there."""
    host, path = f"127.0.0.1:{gw.port}", f"/{BUCKET}/{key}"
    sizes = [CHUNK] * (decoded // CHUNK) + ([decoded % CHUNK] if decoded % CHUNK else []) + [0]
    length = sum(len(f"{n:x};chunk-signature=") + 64 + 2 + n + 2 for n in sizes)
    headers = {
        "Host": host,
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(decoded),
        "Content-Length": str(length),
    }
    signed = sign(credentials, "PUT", f"http://{host}{path}", headers, content_sha256=SIGNED_STREAMING)
    lines = [f"PUT {path} HTTP/1.1", *(f"{name}: {value}" for name, value in signed.headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), length


def _bad_first_chunk() -> bytes:
    return f"{CHUNK:x};chunk-signature={'0' * 64}\r\n".encode() + random_bytes(CHUNK) + b"\r\n"


class _ResponseReader(threading.Thread):
    """Reads one HTTP response from ``sock`` while the test goes on sending."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.outcome: tuple[int, bytes] | BaseException | None = None

    def run(self) -> None:
        try:
            response = http.client.HTTPResponse(self.sock)
            response.begin()
            self.outcome = (response.status, response.read())
        except BaseException as exc:  # reported by the test
            self.outcome = exc


def _start_refused_put(
    gw: GatewayProcess, credentials: Credentials, key: str, decoded: int
) -> tuple[socket.socket, _ResponseReader, int]:
    """Sends the head and half the first chunk, then waits: the handler takes the body with less
    than a chunk buffered, so on the direct gateway the socket's native loop finds the bad
    signature (the path the RST hit), on the other aiohttp's decoder does. Returns the socket,
    a reader already waiting for the answer, and the body bytes still to send."""
    head, length = _refused_put_head(gw, credentials, key, decoded)
    first = _bad_first_chunk()
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=60)
    reader = _ResponseReader(sock)
    reader.start()
    sock.sendall(head + first[: CHUNK // 2])
    time.sleep(1.0)
    sock.sendall(first[CHUNK // 2 :])
    return sock, reader, length - len(first)


def _lingering_closes(gw: GatewayProcess) -> list[dict]:
    return gw.log_entries("lingering close")


def test_a_client_still_sending_after_a_refusal_reads_the_whole_error(
    gw: GatewayProcess, credentials: Credentials, direct_on: bool
) -> None:
    before = len(_lingering_closes(gw))
    sock, reader, left = _start_refused_put(gw, credentials, "still-sending", 24 * MiB)
    with sock:
        filler = random_bytes(MiB)
        while left:  # the whole declared body, long after the refusal: no reset may cut it
            left -= sock.send(filler[: min(left, len(filler))])
        reader.join(60)
    assert not isinstance(reader.outcome, BaseException), repr(reader.outcome)
    assert reader.outcome is not None
    status, body = reader.outcome
    assert status == 403
    assert ET.fromstring(body).findtext("Code") == "SignatureDoesNotMatch"
    if direct_on:  # refused inside the socket's receive loop: closed by lingering, ended by the client
        entries = gw.wait_for_log("lingering close", before + 1)
        assert entries[-1]["ended_by"] == "eof", entries[-1]


@pytest.mark.parametrize("pace", ["trickle", "flood"])
def test_a_client_that_never_stops_sending_is_cut_off(
    gw: GatewayProcess, credentials: Credentials, direct_on: bool, pace: str
) -> None:
    # A trickle never pauses for LINGER_IDLE_S and never reaches LINGER_MAX_BYTES: only the time
    # bound ends it. A flood reaches the byte bound first, or the time bound on a slow machine.
    before = len(_lingering_closes(gw))
    sock, reader, _ = _start_refused_put(gw, credentials, f"never-ends-{pace}", 4 * GiB)
    piece = random_bytes(16 * 1024 if pace == "trickle" else MiB)
    cut_off = False
    started = time.monotonic()
    with sock:
        while time.monotonic() - started < LINGER_TIMEOUT_S + CUT_OFF_SLACK_S:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                cut_off = True
                break
            if pace == "trickle":
                time.sleep(0.05)
        reader.join(60)
    assert cut_off, f"still accepting bytes after {LINGER_TIMEOUT_S + CUT_OFF_SLACK_S} s"
    assert not isinstance(reader.outcome, BaseException), repr(reader.outcome)
    assert reader.outcome is not None and reader.outcome[0] == 403
    if direct_on:
        entries = gw.wait_for_log("lingering close", before + 1)
        assert entries[-1]["ended_by"] in (("time",) if pace == "trickle" else ("bytes", "time")), entries[-1]
