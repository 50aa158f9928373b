"""A private one-node Slurm (munged + slurmctld + slurmd) for tests, started from Debian's packages.

Public API:

- ``SlurmCluster(root, burst_buffer_lua=None, *, gpus=2, ...)``: a context manager. ``root`` is a
  directory the job user can traverse (``make_root()`` makes one); everything the cluster writes
  lives in it: configuration (``etc/``), munge key and socket, state, spool, logs (``log/``), pid
  files, the device stand-ins behind its ``gpu`` GRES, and ``jobs/`` (job scripts, working
  directory and output files, owned by the job user). ``burst_buffer_lua`` (a path) is copied to
  ``etc/burst_buffer.lua``: 22.05's ``burst_buffer/lua`` reads ``burst_buffer.lua`` from the
  directory of slurm.conf. Without one the cluster has no burst buffer plugin.
  ``extra_conf`` lines are appended to slurm.conf (``Prolog=...``, ``TaskProlog=...``).
- ``sbatch(script, *args, user=None) -> int``: submits the script's text as the test user (or
  ``user``) and returns the job id.
- ``job(id) -> dict``: the job's record from ``squeue --json`` (``job_state``, ``state_reason``,
  ``state_description``, ``nodes``, ``gres_detail``, ``priority``, ``burst_buffer_state``...);
  ``show_job(id)``: the text of ``scontrol -d show job``; ``state(id) -> (state, reason)``.
- ``wait_for(id, *states, reason=None, timeout=60) -> dict``: polls until the job is in one of
  ``states`` (and has ``state_reason == reason`` when given) and returns its record.
- ``run(*command, user=None)``, ``scontrol(*args)``, ``squeue(*args)``: any Slurm client against
  this cluster; ``output(id)``: the job's output file; ``install_lua(path)``: replace the lua.
- ``log_tail()``: the end of every daemon log, for failure reports.
- ``ensure_test_user()`` creates the unprivileged ``TEST_USER`` (idempotent); ``make_root()``
  makes a fresh root directory outside pytest's 0700 temp tree.

Requirements: root (the daemons run as root; jobs are submitted with ``runuser``) and the Debian
packages ``slurm-wlm`` and ``munge`` (``tests/run`` installs them). The daemons run in the
foreground as children of the test process (each in its own process group, killed if the test
process dies), with ``SLURM_CONF`` pointing at the private slurm.conf, munge on a private socket
(``AuthInfo=socket=...``) and ports chosen free, so they never meet a system Slurm or another
test's cluster on the same machine.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from integration.gateway import free_port

TEST_USER = "aifgw-test"
NODE_NAME = "aifgw0"
PARTITION = "debug"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
CLIENT_TIMEOUT_S = 30.0
_DAEMONS = ("munged", "slurmctld", "slurmd")  # in start order
# slurm.conf must match the machine's topology or the node is drained as INVAL ("Low
# socket*core*thread count"), so these are copied from `slurmd -C` rather than guessed.
_TOPOLOGY_KEYS = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def ensure_test_user(name: str = TEST_USER) -> pwd.struct_passwd:
    """The ordinary user that submits jobs (Slurm 22.05 refuses burst buffers to uid 0)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--no-create-home", "--user-group", "--shell", "/bin/sh", name], capture_output=True, text=True
    )
    # 9: the name was taken meanwhile (another test process created it): that is success too.
    if result.returncode not in (0, 9):
        raise RuntimeError(f"useradd {name} failed ({result.returncode}): {result.stderr.strip()}")
    return pwd.getpwnam(name)


def make_root(prefix: str = "aifgw-slurm-") -> Path:
    """A fresh directory in the system temp dir, traversable by the job user.

    pytest's tmp_path sits under /tmp/pytest-of-root (mode 0700): the job user could reach
    neither the munge socket nor slurmd's spool there, from which slurmstepd runs the job script.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def _machine_topology() -> dict[str, str]:
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
    return {key: fields[key] for key in _TOPOLOGY_KEYS if key in fields}


def _die_with_parent() -> None:
    # A test process killed by a timeout cannot run stop(): the daemons go with it instead.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class SlurmCluster:
    """munged, slurmctld and slurmd for one node with ``gpus`` gpu GRES, partition ``debug``."""

    def __init__(
        self,
        root: Path,
        burst_buffer_lua: Path | None = None,
        *,
        gpus: int = 2,
        user: str = TEST_USER,
        stage_in_timeout_s: int = 120,
        stage_out_timeout_s: int = 120,
        other_timeout_s: int = 60,
        extra_conf: Iterable[str] = (),
    ) -> None:
        self.root = root
        self.burst_buffer_lua = burst_buffer_lua
        self.gpus = gpus
        self.user = user
        self.stage_in_timeout_s = stage_in_timeout_s
        self.stage_out_timeout_s = stage_out_timeout_s
        self.other_timeout_s = other_timeout_s
        self.extra_conf = list(extra_conf)
        self.etc = root / "etc"
        self.conf = self.etc / "slurm.conf"
        self.log_dir = root / "log"
        self.run_dir = root / "run"
        self.munge_dir = root / "munge"
        self.munge_socket = self.munge_dir / "munge.socket"
        self.dev_dir = root / "dev"
        self.state_dir = root / "state"
        self.spool_dir = root / "spool"
        self.jobs_dir = root / "jobs"
        self.ctld_port = 0
        self.slurmd_port = 0
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # ----- lifecycle

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> SlurmCluster:
        if os.geteuid() != 0:
            raise RuntimeError("SlurmCluster: must run as root (slurmd, munged, runuser)")
        for tool in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "runuser"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"SlurmCluster: {tool} is missing (apt-get install slurm-wlm munge)")
        self._write_files(ensure_test_user(self.user))
        try:
            self._start_munged()
            self._start("slurmctld", ["slurmctld", "-D"])
            self._start("slurmd", ["slurmd", "-D", "-N", NODE_NAME])
            self._wait_node_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel every job, stop the daemons, then kill whatever they left behind."""
        ctld = self._procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            self._cancel_all_jobs()
        for name in reversed(_DAEMONS):
            proc = self._procs.get(name)
            if proc is None:
                continue
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait(STOP_TIMEOUT_S)
            # Children the daemon left in its group (slurmscriptd, a lua hook's command).
            _signal_group(proc, signal.SIGKILL)
        self._kill_strays()

    def _cancel_all_jobs(self) -> None:
        ids = self.run("squeue", "-h", "-o", "%i", check=False).stdout.split()
        if not ids:
            return
        self.run("scancel", *ids, check=False)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.run("squeue", "-h", "-t", "R,CG,CF,SO", "-o", "%i", check=False).stdout.split():
                return
            time.sleep(0.2)

    def _kill_strays(self) -> None:
        """Processes started for this cluster that outlived their daemon (slurmstepd, hook commands).

        slurmstepd detaches from slurmd's process group. Strays are recognised by this cluster's
        root in their command line or their SLURM_CONF, so nothing of another cluster or of the
        system is touched.
        """
        marker = str(self.root).encode()
        conf = f"SLURM_CONF={self.conf}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in cmdline or conf in environ.split(b"\0"):
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # ----- configuration

    def _write_files(self, account: pwd.struct_passwd) -> None:
        for directory in (
            self.etc,
            self.log_dir,
            self.run_dir,
            self.munge_dir,
            self.dev_dir,
            self.state_dir,
            self.spool_dir,
            self.jobs_dir,
        ):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
        os.chown(self.jobs_dir, account.pw_uid, account.pw_gid)
        self.ctld_port = free_port()
        self.slurmd_port = free_port()
        while self.slurmd_port == self.ctld_port:
            self.slurmd_port = free_port()
        devices = []
        for index in range(self.gpus):
            # Slurm counts a gpu GRES by its files (a Count alone leaves the node INVAL):
            # character-device stand-ins with /dev/null's numbers.
            device = self.dev_dir / f"nvidia{index}"
            if not device.exists():
                os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))
            devices.append(device)
        self.conf.write_text(self._slurm_conf())
        (self.etc / "gres.conf").write_text(
            "AutoDetect=off\n" + "".join(f"NodeName={NODE_NAME} Name=gpu File={device}\n" for device in devices)
        )
        if self.burst_buffer_lua is not None:
            # 22.05 has no PollInterval here (23.02 added it) and rejects the file if it is set.
            (self.etc / "burst_buffer.conf").write_text(
                f"StageInTimeout={self.stage_in_timeout_s}\n"
                f"StageOutTimeout={self.stage_out_timeout_s}\n"
                f"OtherTimeout={self.other_timeout_s}\n"
            )
            self.install_lua(self.burst_buffer_lua)
        for path in self.etc.iterdir():
            path.chmod(0o644)

    def install_lua(self, source: Path) -> None:
        """Put ``source`` where burst_buffer/lua reads it: burst_buffer.lua beside slurm.conf."""
        target = self.etc / "burst_buffer.lua"
        shutil.copyfile(source, target)
        target.chmod(0o644)

    def _slurm_conf(self) -> str:
        topology = " ".join(f"{key}={value}" for key, value in _machine_topology().items())
        lines = [
            "ClusterName=aifgw",
            # slurmctld accepts 'localhost' as "this host" whatever the machine's hostname is.
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # Both munge plugins (auth and cred) and the clients find munged's socket here.
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.state_dir}",
            f"SlurmdSpoolDir={self.spool_dir}",
            f"SlurmctldPidFile={self.run_dir / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.run_dir / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.log_dir / 'slurmctld.log'}",
            f"SlurmdLogFile={self.log_dir / 'slurmd.log'}",
            "SlurmctldDebug=debug",
            "SlurmdDebug=debug",
            "DebugFlags=BurstBuffer,Gres",
            # Containers rarely offer a usable cgroup hierarchy; these plugins need none.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SwitchType=switch/none",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "GresTypes=gpu",
            # Every scheduling pass within a second, so a job that becomes eligible starts at once.
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=1,bf_interval=1",
            "ReturnToService=2",
            # Finished jobs stay visible to squeue --json for the tests' checks.
            "MinJobAge=600",
            "KillWait=2",
            "InactiveLimit=0",
            f"NodeName={NODE_NAME} NodeAddr=127.0.0.1 {topology} Gres=gpu:{self.gpus} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={NODE_NAME} Default=YES MaxTime=INFINITE State=UP",
        ]
        if self.burst_buffer_lua is not None:
            lines.append("BurstBufferType=burst_buffer/lua")
        lines.extend(self.extra_conf)
        return "\n".join(lines) + "\n"

    # ----- daemons

    def _start_munged(self) -> None:
        key = self.munge_dir / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._start(
            "munged",
            [
                # --force: munged refuses to run as root without it.
                "munged",
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.run_dir / 'munged.pid'}",
                f"--log-file={self.log_dir / 'munged.log'}",
                f"--seed-file={self.munge_dir / 'munged.seed'}",
            ],
        )
        self._wait(self.munge_socket.is_socket, "munged", "socket")

    def _start(self, name: str, command: list[str]) -> None:
        with open(self.log_dir / f"{name}.stdout", "ab") as out:
            self._procs[name] = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env(),
                cwd=self.root,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def _wait(self, ready: Callable[[], bool], name: str, what: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            for daemon, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{daemon} exited with status {proc.returncode} while waiting for the "
                        f"{name} {what}:\n{self.log_tail()}"
                    )
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"no {name} {what} after {STARTUP_TIMEOUT_S}s:\n{self.log_tail()}")

    def _wait_node_idle(self) -> None:
        def idle() -> bool:
            out = self.run("sinfo", "-h", "-N", "-n", NODE_NAME, "-o", "%T", check=False)
            return out.returncode == 0 and out.stdout.strip() == "idle"

        self._wait(idle, NODE_NAME, "idle in sinfo")

    # ----- clients

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SQUEUE_"))}
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(
        self, *command: str, user: str | None = None, check: bool = True, timeout: float = CLIENT_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster, as root or as ``user``."""
        argv = list(command)
        if user is not None:
            # runuser resets HOME/SHELL/USER/LOGNAME only; env states SLURM_CONF all the same.
            argv = ["runuser", "-u", user, "--", "env", f"SLURM_CONF={self.conf}", *argv]
        result = subprocess.run(
            argv, capture_output=True, text=True, env=self.env(), cwd=self.jobs_dir, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"`{' '.join(argv)}` failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def scontrol(self, *args: str) -> str:
        return self.run("scontrol", *args).stdout

    def squeue(self, *args: str) -> str:
        return self.run("squeue", *args).stdout

    def sbatch(self, script: str, *args: str, user: str | None = None) -> int:
        """Submit ``script`` (its text) as ``user`` (the test user by default); the job id."""
        account = pwd.getpwnam(user or self.user)
        with tempfile.NamedTemporaryFile("w", dir=self.jobs_dir, prefix="job-", suffix=".sh", delete=False) as f:
            f.write(script)
        os.chown(f.name, account.pw_uid, account.pw_gid)
        result = self.run(
            "sbatch",
            "--parsable",
            f"--chdir={self.jobs_dir}",
            f"--output={self.jobs_dir}/slurm-%j.out",
            *args,
            f.name,
            user=account.pw_name,
        )
        return int(result.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, Any]:
        """The job's record from ``squeue --json``.

        22.05's scontrol has no --json, and its ``squeue --json`` ignores -j: it lists every job
        slurmctld still holds, finished ones included (MinJobAge), so the record is picked here.
        """
        for record in json.loads(self.squeue("--json"))["jobs"]:
            if record["job_id"] == job_id:
                return record
        raise LookupError(f"job {job_id} is unknown to slurmctld")

    def show_job(self, job_id: int) -> str:
        """``scontrol -d show job``: the text an administrator reads (with GRES allocation)."""
        return self.scontrol("-d", "show", "job", str(job_id))

    def state(self, job_id: int) -> tuple[str, str]:
        """(job state, reason): the reason is the job's state description when Slurm set one."""
        record = self.job(job_id)
        return record["job_state"], record["state_description"] or record["state_reason"]

    def wait_for(self, job_id: int, *states: str, reason: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """Poll until the job is in one of ``states`` (with ``state_reason == reason`` if given)."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.job(job_id)
            if record["job_state"] in states and reason in (None, record["state_reason"]):
                return record
            if time.monotonic() > deadline:
                wanted = "/".join(states) + (f" with reason {reason}" if reason else "")
                raise TimeoutError(
                    f"job {job_id} still {record['job_state']} ({record['state_reason']}: "
                    f"{record['state_description']}) after {timeout}s, waiting for {wanted}"
                )
            time.sleep(0.1)

    def output(self, job_id: int) -> str:
        return (self.jobs_dir / f"slurm-{job_id}.out").read_text()

    def log_tail(self, lines: int = 80) -> str:
        # With -D the slurm daemons write their log to stdout too: one copy is enough, the
        # .stdout one only when the log file was never opened (a configuration error).
        present = {p.name for p in self.log_dir.iterdir() if p.stat().st_size > 0}
        names: Iterable[str] = sorted(
            n for n in present if not (n.endswith(".stdout") and n.removesuffix(".stdout") + ".log" in present)
        )
        parts = []
        for name in names:
            text = (self.log_dir / name).read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"===== {self.log_dir / name} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(parts)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
