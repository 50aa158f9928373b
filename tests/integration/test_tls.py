"""HTTPS: the transport on which current SDKs send their default upload encoding.

Over plain HTTP botocore sends checksums as headers; over HTTPS its default
(``request_checksum_calculation=when_supported``) streams uploads as
``Content-Encoding: aws-chunked`` with ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` and a CRC trailer.
These tests drive that real path with real clients, and check they really took it.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import socket
import ssl
import xml.etree.ElementTree as ET
import zlib
from base64 import b64encode
from pathlib import Path

import boto3
import pytest
import trustme
from aiobotocore.session import get_session

from .clients import client_config
from .gateway import Credentials, GatewayProcess, TlsFiles
from .helpers import random_bytes, run_tool, write_random_file

MULTIPART_SIZE = 20 * 1024 * 1024 + 123  # over the 8 MiB default threshold of boto3 and awscli


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    server.private_key_pem.write_to_path(str(d / "key.pem"))
    server.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    return TlsFiles(cert=d / "cert.pem", key=d / "key.pem", ca=d / "ca.pem")


@pytest.fixture(scope="module")
def tls_gateway(tmp_path_factory, gateway_logs: Path, credentials: Credentials, tls_files: TlsFiles):
    gw = GatewayProcess(
        tmp_path_factory.mktemp("tls-root"), gateway_logs, credentials=credentials, workers=2, tls=tls_files
    ).start()
    yield gw
    gw.stop()
    assert not gw.tracebacks(), gw.tracebacks()[-4000:]


@pytest.fixture
def tls_s3(tls_gateway: GatewayProcess, credentials: Credentials, tls_files: TlsFiles):
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=tls_gateway.url,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        verify=str(tls_files.ca),
        config=client_config("when_supported"),
    )
    yield client
    client.close()


def _record_upload_encodings(client) -> list[dict[str, str]]:
    """The headers of every PutObject/UploadPart request the client sends."""
    seen: list[dict[str, str]] = []

    def record(request, **_):
        seen.append({k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()})

    client.meta.events.register("before-send.s3.PutObject", record)
    client.meta.events.register("before-send.s3.UploadPart", record)
    return seen


def _crc32_b64(data: bytes) -> str:
    return b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_boto3_default_put_streams_aws_chunked_with_crc_trailer(tls_s3):
    tls_s3.create_bucket(Bucket="tls-put")
    seen = _record_upload_encodings(tls_s3)
    data = random_bytes(300_000)
    resp = tls_s3.put_object(Bucket="tls-put", Key="obj.bin", Body=data)
    assert seen[0]["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert "aws-chunked" in seen[0]["content-encoding"]
    assert resp["ChecksumCRC32"] == _crc32_b64(data)
    got = tls_s3.get_object(Bucket="tls-put", Key="obj.bin", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32"] == _crc32_b64(data)
    # No trailer or chunk framing ended up in the stored object.
    assert "ContentEncoding" not in got or "aws-chunked" not in got["ContentEncoding"]


def test_boto3_default_multipart_upload_round_trips(tls_s3, tmp_path):
    tls_s3.create_bucket(Bucket="tls-mpu")
    seen = _record_upload_encodings(tls_s3)
    src = tmp_path / "big.bin"
    digest = write_random_file(src, MULTIPART_SIZE)
    tls_s3.upload_file(str(src), "tls-mpu", "big.bin")
    assert len(seen) >= 3 and all(h["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER" for h in seen)
    head = tls_s3.head_object(Bucket="tls-mpu", Key="big.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == MULTIPART_SIZE
    assert head["ETag"].strip('"').endswith(f"-{len(seen)}")
    out = tmp_path / "back.bin"
    tls_s3.download_file("tls-mpu", "big.bin", str(out))
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest


def test_aiobotocore_default_put_and_get(tls_gateway, credentials, tls_files):
    data = random_bytes(1_000_003)

    async def scenario() -> None:
        async with get_session().create_client(
            "s3",
            endpoint_url=tls_gateway.url,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            verify=str(tls_files.ca),
            config=client_config("when_supported"),
        ) as client:
            await client.create_bucket(Bucket="tls-aio")
            resp = await client.put_object(Bucket="tls-aio", Key="k", Body=data)
            assert resp["ChecksumCRC32"] == _crc32_b64(data)
            got = await client.get_object(Bucket="tls-aio", Key="k")
            async with got["Body"] as body:
                assert await body.read() == data

    asyncio.run(scenario())


def test_awscli_cp_large_file_over_https(tls_gateway, credentials, tls_files, tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CA_BUNDLE": str(tls_files.ca),
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    ep = ("--endpoint-url", tls_gateway.url)
    run_tool("aws", *ep, "s3", "mb", "s3://tls-cli", env=env)
    src = tmp_path / "big.bin"
    digest = write_random_file(src, MULTIPART_SIZE)
    run_tool("aws", *ep, "s3", "cp", str(src), "s3://tls-cli/dir/big.bin", env=env)
    run_tool("aws", *ep, "s3", "cp", "s3://tls-cli/dir/big.bin", str(tmp_path / "back.bin"), env=env)
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest
    # The object is a plain file at the mapped path, with the same bytes.
    on_disk = tls_gateway.root / "tls-cli" / "dir" / "big.bin"
    assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == digest


def test_a_client_still_sending_after_a_refusal_reads_the_error_over_tls(
    tls_gateway: GatewayProcess, tls_files: TlsFiles
) -> None:
    # TLS cannot shut one direction, so the gateway drains what follows its answer without the
    # half-close (aif_gateway/s3/connection.py): the client still gets the answer, not a reset.
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    line = b"x-amz-meta-pad: " + b"p" * 8000 + b"\r\n"
    with (
        socket.create_connection(("127.0.0.1", tls_gateway.port), timeout=60) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"GET /b/k HTTP/1.1\r\nHost: x\r\n")
        for _ in range(1000):  # 8 MB of header lines; refused past the first 64 KiB
            sock.sendall(line)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
    assert response.status == 400
    assert ET.fromstring(body).findtext("Code") == "RequestHeaderSectionTooLarge"
