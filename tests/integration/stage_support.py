"""What the staging tests share: running the real ``aif-gateway stage`` CLI, tree digests,
watching a running stage's journal, and running a command without root's file-permission bypass."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .gateway import Credentials, GatewayProcess

CLI = [sys.executable, "-m", "aif_gateway", "stage"]
CLI_TIMEOUT_S = 120
STATE_DIR = ".aifstage"


def s3_env(gateway: GatewayProcess, credentials: Credentials) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AWS_ACCESS_KEY_ID": credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
            "AWS_ENDPOINT_URL": gateway.url,
        }
    )
    return env


def stage(
    *args: str | Path, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *CLI, *map(str, args)], env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )


def report_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON report: the last stdout line of a ``--json`` run."""
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no report on stdout; rc={proc.returncode}\nstderr:\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])


def ok(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}"
    report = report_of(proc)
    assert report["ok"] is True and report["errors"] == []
    return report


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def tree(top: Path) -> dict[str, str]:
    """rel path -> sha256 of every regular file under ``top``, the stage's own state left out."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != STATE_DIR]
        for name in filenames:
            path = Path(dirpath, name)
            found[str(path.relative_to(top))] = file_digest(path)
    return found


def complete_marker(dest: Path) -> Path:
    return dest / STATE_DIR / "complete.json"


def journal_ranges(dest: Path) -> int:
    try:
        return (dest / STATE_DIR / "journal" / "log").read_text().count('"t":"r"')
    except FileNotFoundError:
        return 0


def wait_for_ranges(dest: Path, proc: subprocess.Popen, at_least: int, timeout: float = 30.0) -> None:
    """Wait until the running stage journaled ``at_least`` ranges (it must still be running)."""
    deadline = time.monotonic() + timeout
    while journal_ranges(dest) < at_least:
        assert proc.poll() is None, f"the stage ended (rc={proc.returncode}) before it was interrupted"
        assert time.monotonic() < deadline, "no progress in the journal"
        time.sleep(0.005)


def without_root_bypass() -> tuple[str, ...]:
    """A command prefix that drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so the kernel
    applies file permissions to this root-run process as it would to any user."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test permission errors as root"
    return (setpriv, "--bounding-set", "-dac_override,-dac_read_search")
