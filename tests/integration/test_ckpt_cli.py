"""``aif-gateway ckpt info | verify`` on real checkpoints, on the filesystem and over S3, without PyTorch loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp

from aif_gateway import ckpt

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")

# The CLI runs in a child that fails if anything imported torch: checking needs no PyTorch.
RUN = (
    "import sys; from aif_gateway.cli import main; rc = main(sys.argv[1:]); "
    "assert 'torch' not in sys.modules, 'the ckpt CLI imported torch'; sys.exit(rc)"
)


@pytest.fixture
def cli(gateway, credentials):
    def run(*args: str, root_env: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIF_GATEWAY"))}
        env.update(
            AWS_ENDPOINT_URL=gateway.url,
            AWS_ACCESS_KEY_ID=credentials.access_key,
            AWS_SECRET_ACCESS_KEY=credentials.secret_key,
        )
        if root_env is not None:
            env["AIF_GATEWAY_ROOT"] = str(root_env)
        return subprocess.run(
            [sys.executable, "-c", RUN, "ckpt", *args], env=env, capture_output=True, text=True, timeout=120
        )

    return run


def saved(bucket: str, root: Path) -> str:
    dest = f"s3://{bucket}/run/step-1"
    ckpt.save({"w": torch.randn(2000, 500), "b": torch.zeros(7), "step": 1}, dest, root=root)
    return dest


@pytest.mark.parametrize("via", ["filesystem", "s3"])
def test_info_and_verify(cli, bucket, gateway_root, via):
    dest = saved(bucket, gateway_root)
    root = gateway_root if via == "filesystem" else None
    info = cli("info", dest, "--json", root_env=root)
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["complete"] and described["manifest"] and described["via"] == described["door"] == via
    assert sorted(described["files"]) == ["__0_0.distcp", "__0_1.distcp"]
    done = cli("verify", dest, root_env=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 2 files, ") and "match the manifest" in done.stdout


def test_verify_names_the_damaged_bytes(cli, bucket, bucket_dir, gateway_root):
    dest = saved(bucket, gateway_root)
    path = bucket_dir / "run/step-1/__0_0.distcp"
    data = bytearray(path.read_bytes())
    data[-5000] ^= 1
    path.write_bytes(bytes(data))
    done = cli("verify", dest)
    assert done.returncode == 1
    assert "__0_0.distcp: bytes " in done.stderr and "do not match the manifest" in done.stderr


def test_incomplete_and_missing(cli, bucket, bucket_dir, gateway_root):
    dest = saved(bucket, gateway_root)
    (bucket_dir / "run/step-1/.metadata").unlink()  # as a save killed before its end leaves it
    done = cli("verify", dest)
    assert done.returncode == 3 and ".metadata is missing" in done.stderr
    info = cli("info", dest)
    assert info.returncode == 0 and "INCOMPLETE" in info.stdout
    assert cli("info", f"s3://{bucket}/nothing-here").returncode == 3


def test_a_stock_checkpoint_has_no_manifest(cli, bucket, bucket_dir):
    dcp.save({"w": torch.ones(10)}, storage_writer=dcp.FileSystemWriter(bucket_dir / "stock"))
    info = cli("info", f"s3://{bucket}/stock")
    assert info.returncode == 0 and "manifest: no" in info.stdout
    done = cli("verify", f"s3://{bucket}/stock")
    assert done.returncode == 1 and "has no aif-manifest.json" in done.stderr


def test_usage_errors(cli):
    done = cli("verify", "s3://x/y")
    assert done.returncode == 2 and "InvalidBucketName" in done.stderr
