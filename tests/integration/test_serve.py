"""The ``serve`` command: health, logs, generated keys, users file, bucket mapping."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from .clients import boto3_client
from .gateway import Credentials, GatewayProcess
from .helpers import VENV_BIN
from .rawhttp import send


def test_health_answers_without_auth(gateway: GatewayProcess) -> None:
    resp = send(gateway.port, "GET", "/_aif/health", {})
    assert resp.status == 200


def test_logs_are_json_lines(gateway: GatewayProcess, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="logged", Body=b"x")
    lines = [line for line in gateway.stderr().splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert isinstance(json.loads(line), dict), line


def test_workers_log_the_native_engine_at_start(gateway: GatewayProcess) -> None:
    # A worker may answer the health check a moment before it logs "worker ready".
    deadline = time.monotonic() + 30
    while True:
        ready = [
            entry
            for entry in map(json.loads, filter(str.strip, gateway.stderr().splitlines()))
            if entry["msg"] == "worker ready"
        ]
        if ready or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert ready
    assert all(entry["engine"]["engine"] == "native" for entry in ready), ready


def test_console_script_and_module_entry_point(tmp_path: Path) -> None:
    for cmd in (
        [str(VENV_BIN / "aif-gateway"), "serve", "--help"],
        [sys.executable, "-m", "aif_gateway", "serve", "--help"],
    ):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        for flag in ("--root", "--listen", "--workers", "--users", "--config", "--domain"):
            assert flag in out.stdout


def _printed_keys(gw: GatewayProcess) -> Credentials:
    text = gw.stdout() + gw.stderr()
    access = re.findall(r"access key:\s*(\S+)", text)
    secret = re.findall(r"secret key:\s*(\S+)", text)
    assert access and secret, text[-2000:]
    return Credentials(access[-1], secret[-1])


def test_first_start_generates_keys_shows_the_secret_once_and_reuses_them(start_gateway, tmp_path: Path) -> None:
    root = tmp_path / "fresh-root"
    first = start_gateway(root=root, credentials=None)
    keys = _printed_keys(first)
    stored = root / ".aifgw" / "credentials"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert keys.access_key in stored.read_text() and keys.secret_key in stored.read_text()

    client = boto3_client(first.url, keys)
    client.create_bucket(Bucket="first")
    client.close()
    first.stop()

    second = start_gateway(root=root, credentials=None)
    said = second.stdout() + second.stderr()
    assert keys.access_key in said and str(stored) in said  # where the pair is, not the secret
    assert keys.secret_key not in said
    client = boto3_client(second.url, keys)
    assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["first"]
    client.close()


def test_the_banners_awscli_lines_work_when_pasted(start_gateway, tmp_path: Path) -> None:
    gw = start_gateway(root=tmp_path / "banner-root", credentials=None)
    banner = gw.stderr().split("\nawscli:\n", 1)[1].split("\n\n", 1)[0]
    workdir = tmp_path / "shell"
    (workdir / "home").mkdir(parents=True)
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(workdir / "home")}
    out = subprocess.run(["bash", "-euc", banner], cwd=workdir, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"{banner}\n{out.stderr}"
    assert "hello.txt" in out.stdout
    assert (tmp_path / "banner-root" / "demo" / "hello.txt").read_text() == "hello\n"


def test_users_file_defines_the_identities(start_gateway, tmp_path: Path, reachable_dir: Path) -> None:
    users = tmp_path / "users.toml"
    users.write_text(
        '[[users]]\nname = "alice"\naccess_key = "AKALICE0000000000001"\nsecret_key = "alice-secret"\n'
        "uid = 1000\ngid = 1000\nadmin = true\n\n"
        '[[users]]\nname = "bob"\naccess_key = "AKBOB000000000000002"\nsecret_key = "bob-secret"\n'
    )
    users.chmod(0o600)  # it holds secrets: the gateway refuses it readable by others
    gw = start_gateway(root=reachable_dir, credentials=None, extra_args=("--users", str(users)))
    alice = boto3_client(gw.url, Credentials("AKALICE0000000000001", "alice-secret"))
    alice.create_bucket(Bucket="shared")
    alice.put_object(Bucket="shared", Key="k", Body=b"from alice")
    alice.close()
    bob = boto3_client(gw.url, Credentials("AKBOB000000000000002", "bob-secret"))
    assert bob.get_object(Bucket="shared", Key="k")["Body"].read() == b"from alice"
    bob.close()

    stranger = boto3_client(gw.url, Credentials("AKNOBODY000000000003", "nope"))
    with pytest.raises(ClientError) as exc:
        stranger.list_buckets()
    stranger.close()
    assert exc.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    assert not (reachable_dir / ".aifgw" / "credentials").exists()


def test_config_maps_a_bucket_onto_an_existing_directory(
    start_gateway, credentials: Credentials, tmp_path: Path
) -> None:
    existing = tmp_path / "lustre" / "proj" / "datasets"
    (existing / "imagenet").mkdir(parents=True)
    (existing / "imagenet" / "train-000.tar").write_bytes(b"tar bytes")
    config = tmp_path / "gateway.toml"
    config.write_text(f'[buckets]\ndatasets = "{existing}"\n')

    gw = start_gateway(root=tmp_path / "config-root", extra_args=("--config", str(config)))
    client = boto3_client(gw.url, credentials)
    try:
        assert "datasets" in [b["Name"] for b in client.list_buckets()["Buckets"]]
        listed = client.list_objects_v2(Bucket="datasets")["Contents"]
        assert [o["Key"] for o in listed] == ["imagenet/train-000.tar"]
        got = client.get_object(Bucket="datasets", Key="imagenet/train-000.tar")
        assert got["Body"].read() == b"tar bytes"
        client.put_object(Bucket="datasets", Key="imagenet/new.txt", Body=b"written over S3")
    finally:
        client.close()
    assert (existing / "imagenet" / "new.txt").read_bytes() == b"written over S3"
    assert not (tmp_path / "config-root" / "datasets").exists()


def test_workers_stop_when_the_master_is_killed(start_gateway) -> None:
    gw = start_gateway(workers=2)
    pgid = gw.kill_master()
    deadline = time.monotonic() + 15
    while gw.live_processes(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gw.live_processes(pgid) == [], "workers kept serving after their master died"
    assert gw.health_status() is None
    assert "supervisor is gone" in gw.stderr()
