"""Process model: a supervisor and N worker processes sharing one port with SO_REUSEPORT.

Each worker runs its own uvloop event loop and aiohttp server over the same root; workers hold
no state the others need (everything durable is on the filesystem), so the kernel may hand any
connection to any worker. The supervisor restarts a worker that dies and forwards SIGTERM/SIGINT
for a graceful stop.
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

from .config import Settings

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
    while os.getppid() == supervisor_pid:
        await asyncio.sleep(_ORPHAN_CHECK_S)
    log.warning("supervisor is gone; worker stopping")
    stop.set()


def _worker_main(settings: Settings, index: int, supervisor_pid: int) -> None:
    # Imports here: a spawned worker builds its own loop and store from scratch.
    import uvloop
    from aiohttp import web

    from .config import server_ssl_context
    from .credentials import resolve_identities
    from .fsio.engine import engine_info
    from .fsio.fsinfo import fs_info
    from .logs import setup_logging
    from .s3.app import make_app
    from .s3.connection import GatewayRunner
    from .store.fs import FsStore

    setup_logging()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop

    async def serve() -> None:
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(int(os.environ.get("AIF_FS_THREADS", FS_THREADS)), thread_name_prefix="aif-fs"))
        identities, _, _ = resolve_identities(settings.root, settings.users_file)
        store = FsStore(settings.root, settings.bucket_map, fsync=settings.fsync)
        app = make_app(store, identities, domain=settings.domain, limits=settings.limits)
        runner = GatewayRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10.0,
                               header_timeout=settings.header_timeout, keepalive_timeout=settings.keepalive_timeout)
        await runner.setup()
        ssl_context = (server_ssl_context(settings.tls_cert, settings.tls_key)
                       if settings.tls_cert and settings.tls_key else None)
        site = web.SockSite(runner, _bind(settings.host, settings.port), ssl_context=ssl_context)
        await site.start()
        log.info("worker ready", extra={"worker": index, "listen": f"{settings.scheme}://{settings.host}:{settings.port}",
                                        "filesystem": (await asyncio.to_thread(fs_info, settings.root)).summary(),
                                        "engine": engine_info()})
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        orphan_watch = asyncio.create_task(_stop_when_orphaned(supervisor_pid, stop))
        await stop.wait()
        orphan_watch.cancel()
        log.info("worker stopping", extra={"worker": index})
        await runner.cleanup()

    uvloop.run(serve())


def run_supervisor(settings: Settings) -> int:
    ctx = mp.get_context("spawn")
    workers: dict[int, tuple[mp.process.BaseProcess, float]] = {}
    stopping = False

    def start(index: int) -> None:
        proc = ctx.Process(target=_worker_main, args=(settings, index, os.getpid()), name=f"aif-worker-{index}")
        proc.start()
        workers[index] = (proc, time.monotonic())

    def on_signal(signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    for i in range(settings.workers):
        start(i)
    exit_code = 0
    while not stopping:
        time.sleep(0.2)
        for index, (proc, started) in list(workers.items()):
            if proc.is_alive() or stopping:
                continue
            uptime = time.monotonic() - started
            if uptime < _MIN_UPTIME_S:
                log.error("worker failed to start; stopping the gateway (see the worker's error above)",
                          extra={"worker": index, "exitcode": proc.exitcode})
                stopping, exit_code = True, 1
                break
            log.warning("worker died; restarting it", extra={"worker": index, "exitcode": proc.exitcode})
            start(index)

    for proc, _ in workers.values():
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc, _ in workers.values():
        proc.join(max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
    log.info("gateway stopped")
    return exit_code
