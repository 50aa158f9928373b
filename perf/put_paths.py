"""PUT through the socket path (native recv -> hash -> write) against the aiohttp path, in one run.

    .venv/bin/python perf/put_paths.py [--dir /dev/shm] [--size-mib 1024] [--repeats 3]

Starts two aif-gateways on one fresh directory, one with ``AIF_RECV_DIRECT=1`` (the default) and
one with ``=0``, and uploads the same file to each in turn (rounds interleaved, so load from
elsewhere falls on both alike): one ``curl -T`` request (a single PutObject), and ``s5cmd cp``
(multipart, 50 MiB parts, 5 in flight). Next to them: the raw limit the issue sets for PUT, a
write of the same file to the same filesystem hashing MD5 on the way (``bench.write_with_md5``).
Prints GiB/s (median), the ratio to that raw limit, and each gateway's CPU seconds per GiB.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench import write_with_md5
from dataset import GiB, MiB, write_file
from drivers import Curl, S5cmd, run_timed
from servers import Credentials, gateway


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="/dev/shm", help="filesystem to write to (default /dev/shm)")
    parser.add_argument("--size-mib", type=int, default=1024, help="object size (default 1024)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="gateway worker processes (default 2)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="aif-put-paths-", dir=args.dir))
    logs = root / "logs"
    logs.mkdir()
    size = args.size_mib * MiB
    source = root / "source"
    write_file(source, size)
    creds = Credentials()
    servers = {}
    try:
        for name, direct in (("direct", "1"), ("aiohttp", "0")):
            server = gateway(root, logs, creds, args.workers)
            server.env["AIF_RECV_DIRECT"] = direct
            server.log_path = logs / f"{name}.log"
            servers[name] = server.start()
        (root / "bench").mkdir()
        curl = Curl(creds)
        s5 = {name: S5cmd(s.url, creds, workers=5) for name, s in servers.items()}
        actions = {
            "curl -T (one PutObject)": {
                name: (lambda s=s: run_timed(curl.put_command(source, f"{s.url}/bench/curl")))
                for name, s in servers.items()
            },
            "s5cmd cp (multipart)": {
                name: (lambda name=name: s5[name].cp(str(source), "s3://bench/s5cmd")) for name in servers
            },
        }
        raw_seconds = []
        results: dict[str, dict[str, tuple[list[float], float]]] = {}
        for _ in range(args.repeats):
            raw_seconds.append(write_with_md5(source, root / "raw-copy"))
            for row, by_server in actions.items():
                for name, action in by_server.items():
                    before = servers[name].cpu_seconds()
                    seconds = action()
                    cpu = servers[name].cpu_seconds() - before
                    times, cpu_total = results.setdefault(row, {}).get(name, ([], 0.0))
                    results[row][name] = (times + [seconds], cpu_total + cpu)
        gib = size / GiB
        raw = gib / statistics.median(raw_seconds)
        print(f"object {args.size_mib} MiB on {args.dir}, {args.repeats} rounds, {args.workers} workers each")
        print(f"| path | raw write + MD5 | {' | '.join(servers)} |")
        print(f"|---|---|{'---|' * len(servers)}")
        for row, by_server in results.items():
            cells = []
            for name in servers:
                times, cpu = by_server[name]
                rate = gib / statistics.median(times)
                cells.append(f"{rate:.2f} GiB/s ({rate / raw:.2f}× raw, {cpu / (gib * len(times)):.2f} CPU s/GiB)")
            print(f"| {row} | {raw:.2f} GiB/s | {' | '.join(cells)} |")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
