"""Fixtures: one gateway process per session, extra gateways on demand, and S3 clients.

Every test gets its own bucket, so tests stay independent while sharing the session gateway.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .clients import boto3_client
from .gateway import Credentials, GatewayProcess
from .helpers import unique_bucket_name

SESSION_WORKERS = 3


@pytest.fixture(scope="session")
def credentials() -> Credentials:
    return Credentials(access_key="AKTEST" + secrets.token_hex(7).upper(), secret_key=secrets.token_urlsafe(30))


@pytest.fixture(scope="session")
def gateway_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-root")


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """An empty directory (0755) every local user can reach: pytest's own temp tree is root's
    alone (0700), so a gateway acting as an ordinary user could not reach a root below it."""
    path = Path(tempfile.mkdtemp(prefix="aif-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def gateway_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-logs")


def _stop_and_check(gateways: list[GatewayProcess]) -> None:
    """Stop every gateway, then fail loudly if any of them crashed or logged a traceback."""
    problems = []
    for gw in gateways:
        try:
            gw.stop()
        except RuntimeError as exc:
            problems.append(str(exc))
        if gw.tracebacks():
            problems.append(f"gateway on port {gw.port} logged a traceback:\n{gw.tracebacks()[-6000:]}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def gateway(gateway_root: Path, gateway_logs: Path, credentials: Credentials) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(gateway_root, gateway_logs, credentials=credentials, workers=SESSION_WORKERS).start()
    yield gw
    _stop_and_check([gw])


StartGateway = Callable[..., GatewayProcess]


@pytest.fixture
def start_gateway(gateway_root: Path, gateway_logs: Path, credentials: Credentials) -> Iterator[StartGateway]:
    """Start extra gateways (default: on the session's root, with the session's keys).

    Keyword arguments go to :class:`GatewayProcess`; all are stopped and checked at test end.
    """
    started: list[GatewayProcess] = []

    def start(**kwargs) -> GatewayProcess:
        kwargs.setdefault("root", gateway_root)
        kwargs.setdefault("log_dir", gateway_logs)
        kwargs.setdefault("credentials", credentials)
        kwargs.setdefault("workers", 1)
        gw = GatewayProcess(**kwargs)
        started.append(gw)
        return gw.start()

    yield start
    _stop_and_check(started)


@pytest.fixture
def s3(gateway: GatewayProcess, credentials: Credentials):
    """boto3 with its current defaults (request and response checksums when supported)."""
    client = boto3_client(gateway.url, credentials)
    yield client
    client.close()


@pytest.fixture(params=["when_supported", "when_required"])
def any_s3(request: pytest.FixtureRequest, gateway: GatewayProcess, credentials: Credentials):
    """boto3 in both checksum modes: the test runs once with each."""
    client = boto3_client(gateway.url, credentials, checksums=request.param)
    yield client
    client.close()


@pytest.fixture
def bucket(request: pytest.FixtureRequest, s3) -> str:
    """A fresh, empty bucket created over S3."""
    name = unique_bucket_name(request)
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket_dir(gateway_root: Path, bucket: str) -> Path:
    return gateway_root / bucket


@pytest.fixture
def bucket_tmp(gateway_root: Path, bucket: str) -> Path:
    """Where the gateway keeps the bucket's temp files (aif_gateway/store/internal.py)."""
    return gateway_root / ".aifgw" / "state" / bucket / "tmp"


@pytest.fixture
def cli_env(gateway: GatewayProcess, credentials: Credentials, tmp_path: Path) -> dict[str, str]:
    """Environment for awscli, rclone and s5cmd subprocesses: keys and endpoint, nothing else."""
    env = dict(os.environ)
    env.update(
        {
            "AWS_ACCESS_KEY_ID": credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
            "HOME": str(tmp_path / "home"),
            "RCLONE_CONFIG": str(tmp_path / "rclone-none.conf"),
            "RCLONE_CONFIG_AIF_TYPE": "s3",
            "RCLONE_CONFIG_AIF_PROVIDER": "Other",
            "RCLONE_CONFIG_AIF_ENDPOINT": gateway.url,
            "RCLONE_CONFIG_AIF_ACCESS_KEY_ID": credentials.access_key,
            "RCLONE_CONFIG_AIF_SECRET_ACCESS_KEY": credentials.secret_key,
            "RCLONE_CONFIG_AIF_REGION": "us-east-1",
            "RCLONE_CONFIG_AIF_FORCE_PATH_STYLE": "true",
        }
    )
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


@pytest.fixture(scope="module")
def isolated_gateway(
    tmp_path_factory: pytest.TempPathFactory, gateway_logs: Path, credentials: Credentials
) -> Iterator[GatewayProcess]:
    """A gateway on a root of its own, for tests that snapshot the whole root before/after."""
    root = tmp_path_factory.mktemp("isolated-root")
    gw = GatewayProcess(root, gateway_logs, credentials=credentials, workers=2).start()
    yield gw
    _stop_and_check([gw])


@pytest.fixture
def isolated_s3(isolated_gateway: GatewayProcess, credentials: Credentials):
    client = boto3_client(isolated_gateway.url, credentials)
    yield client
    client.close()
