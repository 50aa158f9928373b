"""Real ``aif-gateway serve`` processes for the integration tests.

Each gateway runs as its own process group (the master plus its workers), so stopping it can
verify that no worker outlived the master, and a test that starts a second gateway on the same
root talks to a genuinely separate process, as a second node would.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate and key, and the CA that clients trust for it (all PEM)."""

    cert: Path
    key: Path
    ca: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayProcess:
    """One ``python -m aif_gateway serve`` with its logs captured in files."""

    def __init__(
        self,
        root: Path,
        log_dir: Path,
        *,
        credentials: Credentials | None,
        workers: int = 3,
        extra_args: tuple[str, ...] = (),
        port: int | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.root = root
        self.credentials = credentials
        self.workers = workers
        self.extra_args = extra_args
        self.tls = tls
        self.port = port or free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"gateway-{self.port}.stdout"
        self.stderr_path = log_dir / f"gateway-{self.port}.stderr"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "aif_gateway",
            "serve",
            "--root",
            str(self.root),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            *(("--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key)) if self.tls else ()),
            *self.extra_args,
        ]

    def start(self) -> GatewayProcess:
        # Keys come only from ``credentials``; other AIF_* settings (AIF_META_BACKEND...) pass
        # through, so the suite can be rerun against another configuration.
        env = {k: v for k, v in os.environ.items() if k not in ("AIF_ACCESS_KEY", "AIF_SECRET_KEY")}
        if self.credentials is not None:
            env["AIF_ACCESS_KEY"] = self.credentials.access_key
            env["AIF_SECRET_KEY"] = self.credentials.secret_key
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self._proc = subprocess.Popen(self.command, stdout=out, stderr=err, env=env, start_new_session=True)
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"gateway exited with status {self._proc.returncode} during startup:\n"
                    f"{' '.join(self.command)}\n{self.stderr()[-4000:]}"
                )
            if self.health_status() == 200:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway not healthy after {STARTUP_TIMEOUT_S}s:\n{self.stderr()[-4000:]}")

    def health_status(self) -> int | None:
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.tls.ca))
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=2, context=context
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/_aif/health")
            resp = conn.getresponse()
            resp.read()
            return resp.status
        except OSError:
            return None
        finally:
            conn.close()

    def stop(self) -> None:
        """SIGTERM the master; its workers must exit with it.

        Anything still alive in the process group after the grace period is killed and reported,
        because a worker that outlives its master keeps serving the port with stale code.
        """
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise RuntimeError(f"gateway on port {self.port} ignored SIGTERM") from None
        if _process_group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"gateway workers on port {self.port} outlived their master")

    def reload(self) -> None:
        """SIGHUP the master, as ``systemctl reload`` would: the gateway re-reads its users."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGHUP)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_entries(self, msg: str) -> list[dict]:
        """The JSON log lines whose message starts with ``msg`` (banners and other text are skipped)."""
        entries = []
        for line in self.stderr().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if str(entry.get("msg", "")).startswith(msg):
                    entries.append(entry)
        return entries

    def wait_for_log(self, msg: str, count: int, timeout_s: float = 30.0) -> list[dict]:
        """Wait until ``count`` lines carry ``msg`` (a log line may come a moment after the event)."""
        deadline = time.monotonic() + timeout_s
        while len(entries := self.log_entries(msg)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(entries) >= count, f"{len(entries)} of {count} {msg!r} lines:\n{self.stderr()[-4000:]}"
        return entries

    def kill_master(self) -> int:
        """SIGKILL the master alone, as the OOM killer might; returns its process group id."""
        assert self._proc is not None
        pgid = self._proc.pid
        self._proc.kill()
        self._proc.wait()
        return pgid

    def live_processes(self, pgid: int) -> list[int]:
        return _live_members(pgid)

    def worker_pids(self) -> list[int]:
        """The live processes of this gateway other than its master."""
        assert self._proc is not None
        return [pid for pid in _live_members(self._proc.pid) if pid != self._proc.pid]

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def tracebacks(self) -> str:
        """The captured stderr when it holds a Python traceback, else an empty string."""
        text = self.stderr()
        return text if "Traceback (most recent call last)" in text else ""


def _process_group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in the group (zombies may wait for a reaper)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if not _live_members(pgid):
            return False
        time.sleep(0.05)
    return True


def _live_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members
