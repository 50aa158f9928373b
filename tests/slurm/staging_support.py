"""What the Slurm staging tests share: a real gateway holding the datasets, the site settings
the hooks read, the staging CLI as the job user can run it, and readers for what a job left.

Public API
- ``StagingSite(root, hooks_dir).start()`` ... ``close()``: a gateway on a root of its own, a
  site cache and state directory under ``root``, keys for the site (root's stage-in) and for the
  job user (its stage-out); ``write_settings(keys_inline=, mode=, **extra)`` writes
  ``aif-stage.conf`` into ``hooks_dir`` (beside the lua or the Prolog scripts); ``new_bucket()``,
  ``put_tree(bucket, prefix, files)``, ``objects(bucket, prefix)``, ``s3`` (boto3),
  ``log(job)`` (the job's staging log), ``leases()`` (cache key -> live holders), ``cli``.
- ``reports(log_text) -> list[dict]`` (the CLI's JSON reports in a job's log, ``site.log(job)``),
  ``staged_files(cache, ignore)``: files that reached the data dirs of cache entries (``ignore``:
  entries, from ``cache_entries(cache)``, not to count), ``journaled_files(cache, ignore)``: files
  their journals record as done, ``sums_file(...)``.
- ``job_user_cli(workdir) -> Path``: an ``aif-gateway`` the job user can execute.
- ``env_lines(output)``, ``eventually(condition)``, ``gres_used(cluster)``,
  ``buffers_left(cluster)``: burst buffers not torn down (less those Slurm 22.05 lost).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from integration.clients import boto3_client
from integration.gateway import Credentials, GatewayProcess

from .cluster import NODE_NAME, TEST_USER, SlurmCluster, make_root


def env_lines(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def eventually(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true after {timeout}s: {what}"
        time.sleep(0.1)


def buffers_left(cluster: SlurmCluster) -> set[int]:
    """Jobs whose burst buffer ``scontrol show burst`` still lists, less those whose teardown
    slurmctld itself killed.

    Slurm 22.05 races a cancel's kill of the job's running scripts against the teardown the
    cancel has just queued: now and then the teardown is killed as it starts, never rerun, and
    the buffer stays listed in state "teardown" (slurmctld logs "teardown for JobId=N terminated
    by slurmctld"). burst_buffer.lua's release survives that kill (it runs under setsid); the
    listing is Slurm's and stays.
    """
    listed = {int(job) for job in re.findall(r"JobID=(\d+)", cluster.scontrol("show", "burst"))}
    log = (cluster.log_dir / "slurmctld.log").read_text(errors="replace")
    killed = {int(job) for job in re.findall(r"teardown for JobId=(\d+) terminated by slurmctld", log)}
    return listed - killed


def gres_used(cluster: SlurmCluster) -> str:
    return cluster.run("sinfo", "-h", "-N", "-n", NODE_NAME, "-O", "GresUsed").stdout.strip()


def job_user_cli(workdir: Path) -> Path:
    """The ``aif-gateway`` command as the job user can run it (the stage-out runs as that user).

    The venv's own script is used when the job user can execute it (CI: a Debian python3).
    Where the venv's interpreter is out of the user's reach (a pyenv build under /root, mode
    0700, on developer machines), a launcher runs the same installed package with the system
    interpreter of the same Python version.
    """
    venv_cli = Path(sys.executable).with_name("aif-gateway")
    probe = subprocess.run(
        ["runuser", "-u", TEST_USER, "--", str(venv_cli), "stage", "--help"], capture_output=True, text=True
    )
    if probe.returncode == 0:
        return venv_cli
    system_python = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    assert system_python.exists(), (
        f"the job user cannot run {venv_cli} ({probe.stderr.strip()}) and there is no {system_python}"
    )
    site_packages = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    launcher = workdir / "aif-gateway"
    launcher.write_text(
        "#!/bin/sh\n"
        f"exec {system_python} -c 'import site, sys; site.addsitedir(sys.argv.pop(1)); "
        'sys.argv[0] = "aif-gateway"; from aif_gateway.cli import main; sys.exit(main())\' '
        f'{site_packages} "$@"\n'
    )
    launcher.chmod(0o755)
    # The editable install points into this checkout: the job user must reach it too. Under a
    # 0700 directory (``mktemp -d``) every stage-out would fail after a timeout; say so now.
    probe = subprocess.run(
        ["runuser", "-u", TEST_USER, "--", str(launcher), "stage", "--help"], capture_output=True, text=True
    )
    assert probe.returncode == 0, (
        f"the job user {TEST_USER!r} cannot run aif-gateway from this checkout "
        f"({(probe.stderr.strip().splitlines() or ['exit ' + str(probe.returncode)])[-1]}): run the suite from "
        "a checkout every directory above which others may traverse (not under a 0700 directory)"
    )
    return launcher


def reports(log_text: str) -> list[dict[str, Any]]:
    """The JSON reports (``--json``) the staging CLI printed into a job's log, in order."""
    return [json.loads(line) for line in log_text.splitlines() if line.startswith('{"direction"')]


def cache_entries(cache: Path) -> set[Path]:
    return set(cache.glob("*/data"))


def staged_files(cache: Path, ignore: AbstractSet[Path] = frozenset()) -> int:
    """Files that reached the data dir of a cache entry (those in ``ignore`` left out): staged
    and verified (the engine renames a file into place only after its checksum matched)."""
    count = 0
    for data in cache_entries(cache) - ignore:
        for _dirpath, dirnames, filenames in os.walk(data):
            dirnames[:] = [d for d in dirnames if d != ".aifstage"]
            count += len(filenames)
    return count


def journaled_files(cache: Path, ignore: AbstractSet[Path] = frozenset()) -> int:
    """Files the stage's journal durably records as done (what a re-run may skip), in cache
    entries other than ``ignore``."""
    count = 0
    for data in cache_entries(cache) - ignore:
        try:
            lines = (data / ".aifstage" / "journal" / "log").read_text().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                count += json.loads(line).get("t") == "d"
            except ValueError:
                pass  # a torn last line
    return count


class StagingSite:
    """A gateway with the datasets, and everything the hooks' site settings point at."""

    def __init__(self, root: Path, etc: Path) -> None:
        self.root = root
        self.etc = etc
        self.cache = root / "cache"
        self.state = root / "stage-state"
        self.settings = etc / "aif-stage.conf"
        self.credentials = Credentials("AKSTAGE" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30))
        # The gateway gets a root of its own: the cluster kills whatever names its root.
        self.gateway_root = make_root("aifgw-s3-")
        self.gateway = GatewayProcess(
            self.gateway_root / "data", self.gateway_root / "logs", credentials=self.credentials, workers=2
        )
        self.s3: Any = None
        self.cli = root / "aif-gateway"

    def start(self) -> StagingSite:
        (self.gateway_root / "data").mkdir()
        self.gateway.start()
        self.s3 = boto3_client(self.gateway.url, self.credentials)
        self.cli = job_user_cli(self.root)
        account = pwd.getpwnam(TEST_USER)
        # The site's keys, for root's stage-in: root only.
        self.site_keys = self.root / "site-keys.ini"
        self.site_keys.write_text(self._ini())
        self.site_keys.chmod(0o600)
        # The job user's own keys (AIF_STAGE_USER_CREDENTIALS=.../%u.ini): that user's only.
        user_keys = self.root / "user-keys"
        user_keys.mkdir(mode=0o755)
        own = user_keys / f"{TEST_USER}.ini"
        own.write_text(self._ini())
        os.chown(own, account.pw_uid, account.pw_gid)
        own.chmod(0o600)
        self.user_keys_pattern = f"{user_keys}/%u.ini"
        return self

    def _ini(self) -> str:
        return (
            f"[default]\naws_access_key_id = {self.credentials.access_key}\n"
            f"aws_secret_access_key = {self.credentials.secret_key}\n"
        )

    def close(self) -> None:
        try:
            self.gateway.stop()
        finally:
            shutil.rmtree(self.gateway_root, ignore_errors=True)

    def write_settings(self, *, keys_inline: bool, mode: int, **extra: str) -> None:
        """aif-stage.conf beside the hooks. ``keys_inline``: the site's keys as
        AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY lines (then the file must be root's alone),
        else AWS_SHARED_CREDENTIALS_FILE naming a root-only file."""
        settings = {
            "AIF_GATEWAY_BIN": str(self.cli),
            "AIF_STAGE_CACHE": str(self.cache),
            "AIF_STAGE_STATE": str(self.state),
            "AIF_STAGE_USER_CREDENTIALS": self.user_keys_pattern,
            "AWS_ENDPOINT_URL": self.gateway.url,
            "AWS_REGION": "us-east-1",
        }
        if keys_inline:
            settings["AWS_ACCESS_KEY_ID"] = self.credentials.access_key
            settings["AWS_SECRET_ACCESS_KEY"] = self.credentials.secret_key
        else:
            settings["AWS_SHARED_CREDENTIALS_FILE"] = str(self.site_keys)
        settings.update(extra)
        text = "# written by tests/slurm/staging_support.py\n" + "".join(
            f"{key}={value}\n" for key, value in settings.items()
        )
        tmp = self.settings.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(mode)
        tmp.replace(self.settings)

    def new_bucket(self) -> str:
        bucket = f"stage-{secrets.token_hex(5)}"
        self.s3.create_bucket(Bucket=bucket)
        return bucket

    def put_tree(self, bucket: str, prefix: str, files: dict[str, bytes]) -> None:
        """Objects ``prefix/<rel>``, written as files into the gateway's tree: one namespace,
        so a file there is an object (and thousands appear in a blink, unlike PUTs)."""
        top = self.gateway.root / bucket / prefix
        for rel, body in files.items():
            path = top / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)

    def objects(self, bucket: str, prefix: str) -> dict[str, bytes]:
        found = {}
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
        for page in pages:
            for item in page.get("Contents", []):
                body = self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                found[item["Key"][len(prefix) + 1 :]] = body
        return found

    def log(self, job: int) -> str:
        path = self.state / "logs" / f"{job}.log"
        return path.read_text() if path.exists() else ""

    def leases(self) -> dict[str, list[str]]:
        """cache key -> holders with a live lease, from ``stage status --cache``."""
        out = subprocess.run(
            [str(self.cli), "stage", "status", "--cache", str(self.cache)], capture_output=True, text=True, check=True
        ).stdout
        return {
            entry["key"]: [lease["holder"] for lease in entry["leases"] if lease["live"]]
            for entry in map(json.loads, out.splitlines())
        }


def sums_file(directory: Path, files: dict[str, bytes], name: str) -> Path:
    """A ``sha256sum -c`` list of ``files`` the job checks its staged data against."""
    path = directory / name
    path.write_text("".join(f"{hashlib.sha256(body).hexdigest()}  {rel}\n" for rel, body in files.items()))
    path.chmod(0o644)
    return path
