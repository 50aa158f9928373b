"""Small utilities the integration tests share: data, digests, tree snapshots, tool runs."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

# The clients are installed next to the interpreter running the tests (the venv's bin).
VENV_BIN = Path(sys.executable).parent

MiB = 1024 * 1024
TOOL_TIMEOUT_S = 180


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def write_random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = random_bytes(size)
    path.write_bytes(data)
    return sha256(data)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot(top: Path) -> dict[str, str]:
    """Every path under ``top`` with its kind and content digest, symlinks not followed.

    The internal ``.aifgw`` directories are left out: bad requests must not change what users
    see, while the gateway may legitimately touch its own state.
    """
    entries: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != ".aifgw"]
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(top))
            if path.is_symlink():
                entries[rel] = f"link -> {os.readlink(path)}"
            elif path.is_dir():
                entries[rel] = "dir"
            else:
                entries[rel] = f"file {file_sha256(path)}"
    return entries


def run_tool(name: str, *args: str, env: dict[str, str], cwd: Path | None = None) -> str:
    """Run a client from the venv's bin directory; fail with its output when it fails."""
    cmd = [str(VENV_BIN / name), *args]
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def list_keys(client, bucket: str, **kwargs) -> list[str]:
    """All keys of a bucket via ListObjectsV2, following continuation tokens."""
    keys: list[str] = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, **kwargs):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


def unique_bucket_name(request: pytest.FixtureRequest) -> str:
    """A valid bucket name derived from the test's name, unique per call."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"{stem}-{secrets.token_hex(4)}"
