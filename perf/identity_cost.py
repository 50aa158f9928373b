"""What acting as each request's POSIX user costs per request, end to end.

    .venv/bin/python perf/identity_cost.py [--requests N] [--rounds R] [--workers W] [--dir /dev/shm]

Starts two gateways on the same tree in one run: one whose key has no POSIX ids (every request
runs with the gateway's own ids: no switch) and one whose key maps to uid/gid 4101 with two
supplementary groups (every storage call switches its thread to that user and back). The same
aiohttp driver sends N small HEAD, GET and PUT requests (4 KiB) to each, alternating the servers for R
rounds, and prints the best round's requests per second,
the servers' CPU microseconds per request, and the ratios. Needs root (to switch ids).
A program, not a test: results go to perf/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drivers import HttpDriver
from servers import Credentials, Server, free_port, venv_tool

USER_ID = 4101
GROUPS = (4200, 4201)
OBJECT = b"x" * 4096


def gateway(name: str, root: Path, logs: Path, creds: Credentials, workers: int, users: Path | None) -> Server:
    port = free_port()
    command = [
        venv_tool("aif-gateway"),
        "serve",
        "--root",
        str(root),
        "--listen",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
    ]
    env = {"AIF_LOG_LEVEL": "warning"}
    if users is None:
        env |= {"AIF_ACCESS_KEY": creds.access_key, "AIF_SECRET_KEY": creds.secret_key}
    else:
        command += ["--users", str(users)]
    return Server(
        name=name, command=command, port=port, log_path=logs / f"{name}.log", health_path="/_aif/health", env=env
    )


def lay_out(root: Path, objects: int) -> None:
    bucket = root / "bench"
    bucket.mkdir(parents=True)
    for i in range(objects):
        (bucket / f"o{i:05d}").write_bytes(OBJECT)
    (bucket / "put").mkdir()
    for path in (root, bucket, bucket / "put"):
        path.chmod(0o777)  # both gateways' users may write here


def measure(server: Server, creds: Credentials, requests: int, objects: int) -> dict[str, tuple[float, float]]:
    """{operation: (requests per second, server CPU microseconds per request)}."""
    driver = HttpDriver(server.url, creds, concurrency=32)
    reads = [f"/bench/o{i % objects:05d}" for i in range(requests)]
    plans = {
        "HEAD 4 KiB": ("HEAD", reads, None),
        "GET 4 KiB": ("GET", reads, None),
        "PUT 4 KiB": ("PUT", [f"/bench/put/{server.name}-{i}" for i in range(requests)], OBJECT),
    }
    out = {}
    for label, (method, paths, body) in plans.items():
        cpu = server.cpu_seconds()
        stats = driver.ops(method, paths, body)
        out[label] = (stats.ops_per_s, (server.cpu_seconds() - cpu) / stats.ops * 1e6)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", default="/dev/shm")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: the per-user gateway switches threads to another uid")
    work = Path(tempfile.mkdtemp(prefix="aif-identity-cost-", dir=args.dir))
    work.chmod(0o755)
    servers: list[Server] = []
    try:
        root, logs = work / "root", work / "logs"
        logs.mkdir()
        objects = 1000
        lay_out(root, objects)
        plain = Credentials("AKPLAIN000000000001", "plain-secret")
        user = Credentials("AKUSER0000000000002", "user-secret")
        users = work / "users.toml"
        users.write_text(
            f'[[users]]\nname = "u"\naccess_key = "{user.access_key}"\nsecret_key = "{user.secret_key}"\n'
            f"uid = {USER_ID}\ngid = {USER_ID}\ngroups = {list(GROUPS)}\n"
        )
        users.chmod(0o600)
        servers = [
            gateway("gateway-ids", root, logs, plain, args.workers, None).start(),
            gateway("per-user-ids", root, logs, user, args.workers, users).start(),
        ]
        creds = {"gateway-ids": plain, "per-user-ids": user}
        best: dict[str, dict[str, tuple[float, float]]] = {s.name: {} for s in servers}
        for _round in range(args.rounds):
            for server in servers:
                for op, (rate, cpu) in measure(server, creds[server.name], args.requests, objects).items():
                    kept = best[server.name].get(op)
                    if kept is None or rate > kept[0]:
                        best[server.name][op] = (rate, cpu)
                shutil.rmtree(root / "bench" / "put")
                (root / "bench" / "put").mkdir()
                (root / "bench" / "put").chmod(0o777)
        print(
            f"{args.requests} requests per operation, 32 in flight, {args.workers} workers, best of "
            f"{args.rounds} rounds, tree on {args.dir}, {os.cpu_count()} CPUs"
        )
        print(
            f"{'operation':16} {'gateway ids req/s':>18} {'per-user req/s':>15} {'ratio':>6} "
            f"{'CPU µs/req':>11} {'per-user':>9} {'+µs':>6}"
        )
        for op in best["gateway-ids"]:
            (rate_a, cpu_a), (rate_b, cpu_b) = best["gateway-ids"][op], best["per-user-ids"][op]
            print(
                f"{op:16} {rate_a:18.0f} {rate_b:15.0f} {rate_b / rate_a:6.2f} {cpu_a:11.0f} {cpu_b:9.0f} "
                f"{cpu_b - cpu_a:+6.0f}"
            )
        return 0
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
