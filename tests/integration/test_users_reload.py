"""Users managed with ``aif-gateway users`` and picked up by a running gateway on SIGHUP."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from .clients import boto3_client
from .gateway import Credentials, GatewayProcess
from .rawhttp import sign

RELOADED = "users reloaded"
NOT_RELOADED = "users not reloaded"


def users_cli(users_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aif_gateway", "users", *args, "--users", str(users_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def add_user(users_file: Path, name: str, *flags: str) -> Credentials:
    """``aif-gateway users add``, as an admin runs it; the keys from its export line."""
    out = users_cli(users_file, "add", name, *flags)
    assert out.returncode == 0, out.stderr
    fields = dict(word.split("=", 1) for word in out.stdout.split() if "=" in word)
    return Credentials(fields["AWS_ACCESS_KEY_ID"], fields["AWS_SECRET_ACCESS_KEY"])


def can_list_buckets(gw: GatewayProcess, keys: Credentials) -> bool:
    client = boto3_client(gw.url, keys)  # a client of its own: a fresh connection
    try:
        client.list_buckets()
        return True
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "InvalidAccessKeyId", exc.response
        return False
    finally:
        client.close()


def reload_and_wait(gw: GatewayProcess) -> None:
    """SIGHUP the master, then wait until every worker says it has the new users."""
    before = len(gw.log_entries(RELOADED))
    gw.reload()
    gw.wait_for_log(RELOADED, before + gw.workers)


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return tmp_path / "users.toml"


@pytest.fixture
def alice(users_file: Path) -> Credentials:
    return add_user(users_file, "alice", "--admin")


@pytest.fixture
def gateway_with_users(start_gateway, tmp_path: Path, users_file: Path, alice: Credentials) -> GatewayProcess:
    return start_gateway(root=tmp_path / "root", credentials=None, workers=3, extra_args=("--users", str(users_file)))


def test_a_user_added_while_running_works_in_every_worker_after_sighup(
    gateway_with_users: GatewayProcess, users_file: Path
) -> None:
    gw = gateway_with_users
    bob = add_user(users_file, "bob")
    assert not can_list_buckets(gw, bob)  # the file alone changes nothing until the reload

    reload_and_wait(gw)

    assert len({entry["pid"] for entry in gw.log_entries(RELOADED)}) == gw.workers
    assert all(entry["users"] == 2 for entry in gw.log_entries(RELOADED))
    # Fresh connections land on workers at the kernel's choice (SO_REUSEPORT): all must know bob.
    assert all(can_list_buckets(gw, bob) for _ in range(12))
    assert gw.is_running()


def test_a_removed_user_stops_working_after_sighup(
    gateway_with_users: GatewayProcess, users_file: Path, alice: Credentials
) -> None:
    gw = gateway_with_users
    bob = add_user(users_file, "bob")
    reload_and_wait(gw)
    assert can_list_buckets(gw, bob)

    assert users_cli(users_file, "remove", "bob").returncode == 0
    reload_and_wait(gw)

    assert not any(can_list_buckets(gw, bob) for _ in range(6))
    assert can_list_buckets(gw, alice)


def test_a_rotated_secret_replaces_the_old_one_after_sighup(
    gateway_with_users: GatewayProcess, users_file: Path, alice: Credentials
) -> None:
    gw = gateway_with_users
    out = users_cli(users_file, "rotate", "alice")
    assert out.returncode == 0, out.stderr
    new_secret = out.stdout.split("AWS_SECRET_ACCESS_KEY=")[1].split()[0]
    reload_and_wait(gw)

    assert can_list_buckets(gw, Credentials(alice.access_key, new_secret))
    client = boto3_client(gw.url, alice)
    with pytest.raises(ClientError) as exc:
        client.list_buckets()
    client.close()
    assert exc.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def _signed_list_buckets(conn: http.client.HTTPConnection, gw: GatewayProcess, keys: Credentials) -> int:
    host = f"127.0.0.1:{gw.port}"
    signed = sign(keys, "GET", f"http://{host}/", {"Host": host})
    conn.request("GET", "/", headers=signed.headers)
    resp = conn.getresponse()
    resp.read()
    return resp.status


def test_a_keep_alive_connection_opened_before_the_reload_keeps_working(
    gateway_with_users: GatewayProcess, users_file: Path, alice: Credentials
) -> None:
    gw = gateway_with_users
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        assert _signed_list_buckets(conn, gw, alice) == 200
        sock = conn.sock
        add_user(users_file, "bob")
        reload_and_wait(gw)
        assert _signed_list_buckets(conn, gw, alice) == 200
        assert conn.sock is sock and sock is not None  # the same connection, not a new one
    finally:
        conn.close()


def test_an_upload_in_flight_finishes_with_the_user_it_authenticated_as(
    gateway_with_users: GatewayProcess, users_file: Path, alice: Credentials
) -> None:
    gw = gateway_with_users
    admin = boto3_client(gw.url, alice)
    admin.create_bucket(Bucket="inflight")
    bob = add_user(users_file, "bob")
    reload_and_wait(gw)

    body = b"x" * 1000
    host = f"127.0.0.1:{gw.port}"
    signed = sign(
        bob, "PUT", f"http://{host}/inflight/k", {"Host": host}, body, content_sha256=hashlib.sha256(body).hexdigest()
    )
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.putrequest("PUT", "/inflight/k", skip_host=True, skip_accept_encoding=True)
        for name, value in {**signed.headers, "Content-Length": str(len(body))}.items():
            conn.putheader(name, value)
        conn.endheaders(body[:500])  # authenticated now; the rest of the body still to come
        assert users_cli(users_file, "remove", "bob").returncode == 0
        reload_and_wait(gw)
        conn.send(body[500:])
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    assert admin.get_object(Bucket="inflight", Key="k")["Body"].read() == body
    admin.close()
    assert not can_list_buckets(gw, bob)


@pytest.mark.parametrize("damage", ["not toml", "readable by others"])
def test_a_bad_users_file_at_reload_keeps_the_old_users_and_logs_why(
    gateway_with_users: GatewayProcess, users_file: Path, alice: Credentials, damage: str
) -> None:
    gw = gateway_with_users
    if damage == "not toml":
        users_file.write_text(users_file.read_text() + "[[users]\n")
        expected = "not valid TOML"
    else:
        users_file.chmod(0o644)
        expected = f"chmod 600 {users_file}"

    gw.reload()
    errors = gw.wait_for_log(NOT_RELOADED, 1)

    assert len(errors) == 1 and errors[0]["level"] == "error"
    assert str(users_file) in errors[0]["msg"] and expected in errors[0]["msg"], errors
    assert gw.log_entries(RELOADED) == []
    assert all(can_list_buckets(gw, alice) for _ in range(6))
    assert gw.is_running()


def test_sighup_to_a_starting_worker_neither_kills_it_nor_is_lost(
    tmp_path: Path, gateway_logs: Path, users_file: Path, alice: Credentials
) -> None:
    gw = GatewayProcess(
        tmp_path / "root", gateway_logs, credentials=None, workers=1, extra_args=("--users", str(users_file))
    )
    with open(gw.stderr_path, "wb") as stderr:
        proc = subprocess.Popen(gw.command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        # SIGHUP straight to the worker as soon as it exists: it is still importing its modules
        # (hundreds of milliseconds), long before it can serve.
        os.kill(_first_worker(proc.pid), signal.SIGHUP)

        gw.wait_for_log(RELOADED, 1)  # handled once the worker is up
        assert gw.health_status() == 200
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _first_worker(pid: int) -> int:
    """The first worker process of the gateway whose master is ``pid`` (not its resource tracker)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                if b"--multiprocessing-fork" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
        time.sleep(0.01)
    raise AssertionError("the gateway started no worker")


def test_sighup_without_a_users_file_keeps_the_gateway_running(start_gateway) -> None:
    gw = start_gateway(workers=2)
    reload_and_wait(gw)
    assert gw.health_status() == 200 and gw.is_running()


@pytest.mark.parametrize("problem", ["mode 0644", "owned by another user"])
def test_serve_refuses_a_users_file_others_could_read_or_change(
    tmp_path: Path, users_file: Path, alice: Credentials, problem: str
) -> None:
    if problem == "mode 0644":
        users_file.chmod(0o644)
        hint = f"chmod 600 {users_file}"
    else:
        os.chown(users_file, 12345, 12345)
        hint = f"chown {os.geteuid()} {users_file}"
    gw = GatewayProcess(tmp_path / "root", tmp_path / "logs", credentials=None, extra_args=("--users", str(users_file)))
    out = subprocess.run(gw.command, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert hint in out.stderr, out.stderr
    assert alice.secret_key not in out.stderr + out.stdout
