"""Process model: a supervisor and N worker processes sharing one port with SO_REUSEPORT.

Each worker runs its own uvloop event loop and aiohttp server over the same root; workers hold
no state the others need (everything durable is on the filesystem), so the kernel may hand any
connection to any worker. The supervisor restarts a worker that dies and forwards SIGTERM/SIGINT
for a graceful stop. SIGHUP reloads the users: the supervisor checks the file, then each worker
swaps in a table it reads itself (``reload_identities``); connections and requests in flight stay.
A worker (re)started later gets the supervisor's last good table, so a users file broken after
the start can never keep a worker from starting.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from .config import Settings
from .credentials import load_identities
from .identity import IdentityError, IdentityTable

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["check_port_free", "run_supervisor"]

log = logging.getLogger("aif_gateway.server")

# A worker that dies this soon after starting is failing to start, not crashing under load:
# restarting it in a loop would only spam the log.
_MIN_UPTIME_S = 5.0
# Each worker's default executor, where the storage layer runs every filesystem call (stat,
# open, xattrs, rename, reads and writes of up to 1 MiB batches): asyncio's default of
# cpu_count + 4 is sized for CPU work, but these calls mostly wait, for a metadata server round
# trip on Lustre/GPFS/NFS (milliseconds), so more in flight keeps such a filesystem busy. The
# bound caps threads (and the 1 MiB write batches they may hold) per worker. Large bodies'
# socket loops have their own pools (fsio.zerocopy, fsio.sockrecv), so slow clients never hold
# these threads. AIF_FS_THREADS overrides it.
FS_THREADS = 64
_ORPHAN_CHECK_S = 1.0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def check_port_free(host: str, port: int) -> None:
    """Fail fast, in the supervisor, with a clear message when the address is taken.

    SO_REUSEPORT would otherwise let a worker silently share the port with a stranger that set
    it too (another gateway, say), splitting its traffic.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


async def _stop_when_orphaned(supervisor_pid: int, stop: asyncio.Event) -> None:
    """A supervisor killed with SIGKILL cannot stop its workers: they notice and stop themselves,
    rather than keep serving the port with no one to restart or stop them.

    ``supervisor_pid`` comes from the supervisor, not from getppid() at start: the supervisor
    may already be gone by the time a slow-starting worker would ask."""
    while os.getppid() == supervisor_pid:  # noqa: ASYNC110 (no event says the parent died: polled)
        await asyncio.sleep(_ORPHAN_CHECK_S)
    log.warning("supervisor is gone; worker stopping")
    stop.set()


async def reload_identities(app: web.Application, settings: Settings, worker: int) -> None:
    """Re-read the users (SIGHUP) and swap them into ``app``; on error keep the current ones.

    A request already authenticated keeps its Identity; the next lookup sees the new table."""
    from .s3.app import IDENTITIES_KEY, POSIX_IDS_KEY

    try:
        # Off the loop: the file, and NSS lookups (posix_user) that may wait on LDAP.
        table, posix_ids = await asyncio.to_thread(load_identities, settings)
    except (IdentityError, OSError) as exc:
        log.error("users not reloaded, keeping the current ones: %s", exc, extra={"worker": worker})
        return
    # Both swaps in one step of the loop, which also runs each request's authentication and id
    # lookup without a pause in between: no request sees a key of one table with ids of the other.
    app[POSIX_IDS_KEY].replace_with(posix_ids)
    app[IDENTITIES_KEY].replace_with(table)
    log.info("users reloaded", extra={"worker": worker, "users": len(table)})


def _reload_on_sighup(app: web.Application, settings: Settings, worker: int) -> None:
    """Handle SIGHUP in this worker's loop, then let through the ones that arrived while it started
    (the supervisor starts workers with SIGHUP blocked, so an early one waits instead of killing)."""
    loop = asyncio.get_running_loop()
    # One reload at a time, in arrival order: the table that stays is from the last SIGHUP's read.
    in_order = asyncio.Lock()
    pending: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        async with in_order:
            await reload_identities(app, settings, worker)

    def on_sighup() -> None:
        task = loop.create_task(reload())
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def _worker_main(settings: Settings, identities: IdentityTable, index: int, supervisor_pid: int) -> None:
    # Imports here: a spawned worker builds its own loop and store from scratch.
    import uvloop
    from aiohttp import web

    from .config import server_ssl_context
    from .fsio.engine import engine_info
    from .fsio.fsinfo import fs_info
    from .logs import setup_logging
    from .posix_ids import PosixIdMap
    from .s3.app import make_app
    from .s3.connection import GatewayRunner
    from .store.fs import FsStore

    setup_logging()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop

    async def serve() -> None:
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(int(os.environ.get("AIF_FS_THREADS", FS_THREADS)), thread_name_prefix="aif-fs")
        )
        posix_ids = PosixIdMap.build(identities, require_posix_ids=settings.require_posix_ids)
        store = FsStore(settings.root, settings.bucket_map, fsync=settings.fsync)
        app = make_app(
            store,
            identities,
            domain=settings.domain,
            region=settings.region,
            limits=settings.limits,
            posix_ids=posix_ids,
            signature_v2=settings.signature_v2,
        )
        runner = GatewayRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=10.0,
            header_timeout=settings.header_timeout,
            keepalive_timeout=settings.keepalive_timeout,
        )
        await runner.setup()
        ssl_context = (
            server_ssl_context(settings.tls_cert, settings.tls_key) if settings.tls_cert and settings.tls_key else None
        )
        site = web.SockSite(runner, _bind(settings.host, settings.port), ssl_context=ssl_context)
        await site.start()
        _reload_on_sighup(app, settings, index)
        log.info(
            "worker ready",
            extra={
                "worker": index,
                "listen": f"{settings.scheme}://{settings.host}:{settings.port}",
                "filesystem": (await asyncio.to_thread(fs_info, settings.root)).summary(),
                "engine": engine_info(),
            },
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        orphan_watch = asyncio.create_task(_stop_when_orphaned(supervisor_pid, stop))
        await stop.wait()
        orphan_watch.cancel()
        log.info("worker stopping", extra={"worker": index})
        await runner.cleanup()

    uvloop.run(serve())


def _reload_workers(settings: Settings, procs: list[mp.process.BaseProcess]) -> IdentityTable | None:
    """Check the users once here, so a broken file is one error line and every worker keeps
    the users it has; a good one is re-read by each worker. Returns the new table, if good."""
    try:
        table, _ = load_identities(settings)
    except (IdentityError, OSError) as exc:
        log.error("users not reloaded, the gateway keeps the current ones: %s", exc)
        return None
    log.info("reloading users", extra={"users": len(table), "workers": len(procs)})
    for proc in procs:
        if proc.pid is not None and proc.is_alive():
            os.kill(proc.pid, signal.SIGHUP)
    return table


def run_supervisor(settings: Settings, identities: IdentityTable) -> int:
    """Run the workers until SIGTERM/SIGINT; ``identities``: the users as checked at start."""
    ctx = mp.get_context("spawn")
    workers: dict[int, tuple[mp.process.BaseProcess, float]] = {}
    stopping = False
    reload_asked = False

    def start(index: int) -> None:
        proc = ctx.Process(
            target=_worker_main, args=(settings, identities, index, os.getpid()), name=f"aif-worker-{index}"
        )
        # Born with SIGHUP blocked (the mask survives fork and exec): until the worker can reload,
        # a SIGHUP waits for it rather than killing it (_reload_on_sighup unblocks it).
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        workers[index] = (proc, time.monotonic())

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    def on_sighup(signum: int, _frame: object) -> None:
        nonlocal reload_asked
        reload_asked = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_sighup)

    for i in range(settings.workers):
        start(i)
    exit_code = 0
    while not stopping:
        time.sleep(0.2)
        if reload_asked:
            reload_asked = False
            reloaded = _reload_workers(settings, [proc for proc, _ in workers.values()])
            if reloaded is not None:
                identities = reloaded
        for index, (proc, started) in list(workers.items()):
            if proc.is_alive() or stopping:
                continue
            uptime = time.monotonic() - started
            if uptime < _MIN_UPTIME_S:
                log.error(
                    "worker failed to start; stopping the gateway (see the worker's error above)",
                    extra={"worker": index, "exitcode": proc.exitcode},
                )
                stopping, exit_code = True, 1
                break
            log.warning("worker died; restarting it", extra={"worker": index, "exitcode": proc.exitcode})
            start(index)

    for proc, _ in workers.values():
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc, _ in workers.values():
        proc.join(max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
    log.info("gateway stopped")
    return exit_code
