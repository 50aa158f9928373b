"""Signature Version 2 against the real gateway: boto3 signing every request with V2, boto3's
default presigned URLs (V2 against a custom endpoint), a V2 request whose bucket is in the Host,
expiry and tampering, and a gateway configured to refuse V2."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from email.utils import formatdate
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from .gateway import Credentials, GatewayProcess
from .helpers import VENV_BIN, MiB, random_bytes
from .rawhttp import RawResponse, send


def v2_client(gateway: GatewayProcess, credentials: Credentials, **config):
    """boto3 as a V2 client: every request signed with HMAC-SHA1 (``signature_version="s3"``)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=gateway.url,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        config=Config(
            region_name="us-east-1",
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "total_max_attempts": 1},
            **config,
        ),
    )


def default_presigner(gateway: GatewayProcess, credentials: Credentials):
    """boto3 as most users run it: no signature_version, so its presigned URLs are V2."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=gateway.url,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        config=Config(region_name="us-east-1", s3={"addressing_style": "path"}),
    )


def fetch(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_boto3_signing_with_v2_does_the_whole_object_lifecycle(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str
) -> None:
    v2 = v2_client(gateway, credentials, signature_version="s3")
    data = random_bytes(12 * MiB + 5)
    v2.put_object(Bucket=bucket, Key="dir/a b+c.bin", Body=b"small", Metadata={"color": "blue"}, ContentType="x/y")
    head = v2.head_object(Bucket=bucket, Key="dir/a b+c.bin")
    assert (head["Metadata"], head["ContentType"]) == ({"color": "blue"}, "x/y")
    assert v2.get_object(Bucket=bucket, Key="dir/a b+c.bin", Range="bytes=1-3")["Body"].read() == b"mal"
    upload = v2.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    parts = [
        {"PartNumber": n, "ETag": v2.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=n,
                                                   Body=data[(n - 1) * 5 * MiB : n * 5 * MiB])["ETag"]}
        for n in (1, 2, 3)
    ]  # fmt: skip
    v2.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload, MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data  # read back with SigV4
    listed = v2.list_objects_v2(Bucket=bucket, Prefix="dir/")["Contents"]
    assert [o["Key"] for o in listed] == ["dir/a b+c.bin"]
    v2.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "big"}, {"Key": "dir/a b+c.bin"}]})
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_boto3s_default_presigned_urls_work(gateway: GatewayProcess, credentials: Credentials, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="shared.txt", Body=b"for a colleague")
    presigner = default_presigner(gateway, credentials)
    url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared.txt"}, ExpiresIn=600)
    assert "AWSAccessKeyId=" in url and "X-Amz-Algorithm" not in url  # boto3's default: SigV2
    assert fetch(url) == (200, b"for a colleague")
    put_url = presigner.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "dropped.bin"})
    # As curl -T sends it: no Content-Type (a presigned V2 URL signs the Content-Type it was made for).
    parts = urllib.parse.urlsplit(put_url)
    assert (
        send(gateway.port, "PUT", f"{parts.path}?{parts.query}", {"Host": parts.netloc}, b"uploaded with a link").status
        == 200
    )
    assert s3.get_object(Bucket=bucket, Key="dropped.bin")["Body"].read() == b"uploaded with a link"
    # The link names one object: another key under it is refused.
    assert fetch(url.replace("shared.txt", "dropped.bin"))[0] == 403


def test_expired_or_tampered_presigned_urls_are_refused(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    presigner = default_presigner(gateway, credentials)
    expiring = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1)
    url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=600)
    status, body = fetch(url.replace("Signature=", "Signature=A"))
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    time.sleep(2.2)
    status, body = fetch(expiring)
    assert status == 403 and b"<Code>AccessDenied</Code>" in body and b"expired" in body


def _v2_headers(credentials: Credentials, method: str, resource: str, host: str) -> dict[str, str]:
    """An independent V2 signer (AWS's documented string to sign), for a request botocore cannot
    address: its bucket in the Host."""
    date = formatdate(usegmt=True)
    to_sign = f"{method}\n\n\n{date}\n{resource}"
    signature = base64.b64encode(hmac.new(credentials.secret_key.encode(), to_sign.encode(), hashlib.sha1).digest())
    return {"Host": host, "Date": date, "Authorization": f"AWS {credentials.access_key}:{signature.decode()}"}


def test_a_v2_request_with_its_bucket_in_the_host_signs_the_bucket_too(
    start_gateway, credentials: Credentials, s3, bucket: str
) -> None:
    gw = start_gateway(extra_args=("--domain", "localhost"))
    s3.put_object(Bucket=bucket, Key="vhost.txt", Body=b"virtual")
    host = f"{bucket}.localhost:{gw.port}"
    ok: RawResponse = send(gw.port, "GET", "/vhost.txt", _v2_headers(credentials, "GET", f"/{bucket}/vhost.txt", host))
    assert (ok.status, ok.body) == (200, b"virtual")
    wrong = send(gw.port, "GET", "/vhost.txt", _v2_headers(credentials, "GET", "/vhost.txt", host))
    assert wrong.status == 403 and wrong.error()["Code"] == "SignatureDoesNotMatch"


def test_a_gateway_configured_without_v2_refuses_it(
    start_gateway, credentials: Credentials, s3, bucket: str, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[server]\nsignature_v2 = false\n")
    gw = start_gateway(extra_args=("--config", str(config)))
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = default_presigner(gw, credentials).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    status, body = fetch(url)
    assert status == 400 and b"<Code>InvalidRequest</Code>" in body
    with pytest.raises(Exception, match="InvalidRequest"):
        v2_client(gw, credentials, signature_version="s3").list_objects_v2(Bucket=bucket)


def test_s3cmd_with_signature_v2(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str, tmp_path: Path
) -> None:
    config = tmp_path / "s3cmd.cfg"
    config.write_text(
        "[default]\n"
        f"access_key = {credentials.access_key}\nsecret_key = {credentials.secret_key}\n"
        f"host_base = 127.0.0.1:{gateway.port}\nhost_bucket = 127.0.0.1:{gateway.port}\n"
        "use_https = False\nsignature_v2 = True\n"
    )
    source = tmp_path / "notes.txt"
    source.write_bytes(b"from s3cmd")

    def s3cmd(*args: str) -> str:
        done = subprocess.run(
            [str(VENV_BIN / "s3cmd"), "-c", str(config), "--debug", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout + done.stderr

    s3cmd("put", str(source), f"s3://{bucket}/dir/notes.txt")
    assert s3.get_object(Bucket=bucket, Key="dir/notes.txt")["Body"].read() == b"from s3cmd"
    listed = s3cmd("ls", f"s3://{bucket}/dir/")
    assert f"s3://{bucket}/dir/notes.txt" in listed
    assert "'Authorization': 'AWS " in listed  # its debug output shows the request: Signature Version 2
    s3cmd("get", f"s3://{bucket}/dir/notes.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_bytes() == b"from s3cmd"
    s3cmd("del", f"s3://{bucket}/dir/notes.txt")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
