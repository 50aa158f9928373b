"""aif-gateway benchmark: the gateway, a peer and the raw limits, in one run on the same data.

Run it through ``bash perf/run [options]``, which installs what is missing first. It lays a data
set in a fresh directory (default on /dev/shm, so that the servers' own cost shows rather than a
disk's), starts aif-gateway, ``rclone serve s3`` and nginx on it, drives them with the same
clients, stops them (also on Ctrl-C or error) and prints one Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dataset
from dataset import SHARDS, SMALL_SIZES, GiB, MiB, Sizes
from drivers import Curl, HttpDriver, OpStats, S5cmd, run_parallel_timed, run_timed
from report import Measure, Row, machine, publish, run_main, software, table
from servers import Credentials, Server, gateway, nginx, rclone

CONCURRENCY = 64  # requests in flight for the small-object rows, as the issue asks


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, root: Path, sizes: Sizes, workers: int, logs: Path) -> None:
        self.root = root
        self.sizes = sizes
        self.workers = workers
        self.logs = logs
        self.creds = Credentials()
        self.rows: list[Row] = []
        self.servers: dict[str, Server] = {}
        self._phase = 0

    # -- servers ---------------------------------------------------------------------------------

    def start_servers(self) -> None:
        for key, server in (
            ("gateway", gateway(self.root, self.logs, self.creds, self.workers)),
            ("peer", rclone(self.root, self.logs, self.creds)),
            ("raw", nginx(self.root, self.logs, self.workers)),
        ):
            log(f"starting {server.name}: {shlex.join(server.command)}")
            self.servers[key] = server.start()

    def stop_servers(self) -> None:
        for server in self.servers.values():
            server.stop()

    def s3_servers(self) -> list[tuple[str, Server]]:
        return [(k, self.servers[k]) for k in ("gateway", "peer")]

    def fresh_prefix(self, name: str) -> str:
        # Never reuse an upload prefix: rclone caches directory listings, and a prefix deleted
        # behind its back and then reused would read stale entries.
        self._phase += 1
        return f"p{self._phase}-{name}"

    def put_bucket(self, who: str) -> str:
        return f"put-{who}"

    def interleaved(
        self, actions: dict[str, Callable[[], float]], nbytes: int, warm_up: bool = False
    ) -> dict[str, Measure]:
        """Median GiB/s of each server's action, and that server's CPU seconds per GiB.

        Rounds take the servers in turn, so that load from other programs on the machine falls
        on all of them alike rather than on whichever ran during a busy minute. ``warm_up`` runs
        each action once untimed first (a fresh nginx worker, rclone's directory cache).
        """
        if warm_up:
            for action in actions.values():
                action()
        seconds: dict[str, list[float]] = {who: [] for who in actions}
        cpu = dict.fromkeys(actions, 0.0)
        for _ in range(self.sizes.repeats):
            for who, action in actions.items():
                server = self.servers.get(who)
                before = server.cpu_seconds() if server else 0.0
                seconds[who].append(action())
                cpu[who] += server.cpu_seconds() - before if server else 0.0
        gib = nbytes / GiB
        return {
            who: Measure(
                gib / statistics.median(seconds[who]),
                cpu=f"{cpu[who] / (gib * self.sizes.repeats):.2f} s/GiB" if who in self.servers else "",
            )
            for who in actions
        }

    # -- raw limits --------------------------------------------------------------------------------

    def raw_write_rows(self) -> tuple[Measure, Measure]:
        """dd to the same filesystem (plain, and plus MD5 as the gateway does), 1 and 8 streams."""
        scratch = self.root / "raw-write"
        scratch.mkdir()
        whole = self.root / "data/big/whole"
        shards = [self.root / f"data/big/shard-{i}" for i in range(SHARDS)]

        def dd(source: Path, target: Path) -> list[str]:
            return ["dd", f"if={source}", f"of={target}", "bs=16M", "conv=fdatasync", "status=none"]

        raw = self.interleaved(
            {
                "plain": lambda: run_timed(dd(whole, scratch / "whole")),
                "hashed": lambda: write_with_md5(whole, scratch / "whole-md5"),
            },
            self.sizes.whole,
        )
        plain, hashed = raw["plain"], raw["hashed"]
        parallel = self.interleaved(
            {"dd8": lambda: run_parallel_timed([dd(s, scratch / s.name) for s in shards])}, SHARDS * self.sizes.shard
        )["dd8"]
        shutil.rmtree(scratch)
        self.rows += [
            Row("raw write 1 large file (dd bs=16M conv=fdatasync)", "GiB/s", results={"raw": plain}),
            Row("raw write + MD5 1 large file (Python hashlib, 16 MiB blocks)", "GiB/s", results={"raw": hashed}),
            Row(f"raw write {SHARDS} files at once (dd ×{SHARDS})", "GiB/s", results={"raw": parallel}),
        ]
        return hashed, parallel

    # -- large objects -----------------------------------------------------------------------------

    def large_get(self) -> None:
        s = self.sizes
        whole, shards = "data/big/whole", [f"data/big/shard-{i}" for i in range(SHARDS)]
        s5 = {who: S5cmd(server.url, self.creds, workers=SHARDS) for who, server in self.s3_servers()}
        curl = {who: Curl(None if who == "raw" else self.creds) for who in self.servers}
        shard_commands = self.command_file("get-shards", [f"cat s3://{k}" for k in shards])

        def url(who: str, key: str) -> str:
            return f"{self.servers[who].url}/{key}"

        log("large GET, curl")
        curl_whole = Row(
            f"GET 1 × {_size(s.whole)} (curl, one stream)",
            "GiB/s",
            raw_label="nginx sendfile",
            results=self.interleaved(
                {who: lambda who=who: run_timed(curl[who].get_command(url(who, whole))) for who in self.servers},
                s.whole,
                warm_up=True,
            ),
        )
        curl_shards = Row(
            f"GET {SHARDS} × {_size(s.shard)} at once ({SHARDS} curl)",
            "GiB/s",
            raw_label="nginx sendfile",
            results=self.interleaved(
                {
                    who: lambda who=who: run_parallel_timed([curl[who].get_command(url(who, k)) for k in shards])
                    for who in self.servers
                },
                SHARDS * s.shard,
                warm_up=True,
            ),
        )
        log("large GET, s5cmd")
        s5_whole = Row(
            f"GET 1 × {_size(s.whole)} (s5cmd cat, 5 ranged parts in flight)",
            "GiB/s",
            results=self.interleaved(
                {who: lambda who=who: s5[who].cat(f"s3://{whole}") for who in s5}, s.whole, warm_up=True
            ),
        )
        s5_shards = Row(
            f"GET {SHARDS} × {_size(s.shard)} at once (s5cmd run, {SHARDS} workers)",
            "GiB/s",
            results=self.interleaved(
                {who: lambda who=who: s5[who].run_file(shard_commands) for who in s5}, SHARDS * s.shard, warm_up=True
            ),
        )
        check_dev_null()
        # s5cmd cannot talk to nginx: its rows compare with nginx's best (curl) figures.
        for s5_row, curl_row in ((s5_whole, curl_whole), (s5_shards, curl_shards)):
            s5_row.results["raw"] = curl_row.results["raw"]
            s5_row.raw_label = "nginx sendfile, curl"
        self.rows += [s5_whole, s5_shards, curl_whole, curl_shards]

    def large_put(self, raw_hashed: Measure, raw_parallel: Measure) -> None:
        s = self.sizes
        whole = self.root / "data/big/whole"
        shards = [self.root / f"data/big/shard-{i}" for i in range(SHARDS)]
        s5 = {who: S5cmd(server.url, self.creds, workers=SHARDS) for who, server in self.s3_servers()}
        curl = Curl(self.creds)
        # Repeats overwrite the same keys, as a re-run upload would.
        target = {who: f"{self.put_bucket(who)}/{self.fresh_prefix('large')}" for who in s5}
        shard_commands = {
            who: self.command_file(f"put-shards-{who}", [f"cp {p} s3://{target[who]}/{p.name}" for p in shards])
            for who in s5
        }
        log("large PUT")
        s5_whole = Row(
            f"PUT 1 × {_size(s.whole)} (s5cmd cp: multipart, 50 MiB parts, 5 in flight)",
            "GiB/s",
            raw_label="write + MD5",
            results=self.interleaved(
                {who: lambda who=who: s5[who].cp(str(whole), f"s3://{target[who]}/s5cmd-whole") for who in s5}, s.whole
            ),
        )
        curl_whole = Row(
            f"PUT 1 × {_size(s.whole)} (curl -T, one request)",
            "GiB/s",
            raw_label="write + MD5",
            results=self.interleaved(
                {
                    who: lambda who=who: run_timed(
                        curl.put_command(whole, f"{self.servers[who].url}/{target[who]}/curl-whole")
                    )
                    for who in s5
                },
                s.whole,
            ),
        )
        s5_shards = Row(
            f"PUT {SHARDS} × {_size(s.shard)} at once (s5cmd run, {SHARDS} workers)",
            "GiB/s",
            raw_label=f"dd ×{SHARDS}, no hashing",
            results=self.interleaved(
                {who: lambda who=who: s5[who].run_file(shard_commands[who]) for who in s5}, SHARDS * s.shard
            ),
        )
        s5_whole.results["raw"] = curl_whole.results["raw"] = raw_hashed
        s5_shards.results["raw"] = raw_parallel
        for who in s5:
            dataset.empty_bucket(self.root, self.put_bucket(who))
        self.rows += [s5_whole, curl_whole, s5_shards]

    # -- small objects -----------------------------------------------------------------------------

    def small_objects(self) -> None:
        """Per size, each operation on each server in turn (nginx: GET only)."""
        count, s5_count = self.sizes.small_count, self.sizes.s5cmd_small_count
        for label, size in SMALL_SIZES.items():
            keys = [dataset.small_key(label, i) for i in range(count)]
            get_paths = [f"/data/{k}" for k in keys]
            body = dataset.pattern(size)
            drivers = {
                who: HttpDriver(server.url, None if who == "raw" else self.creds, CONCURRENCY)
                for who, server in self.servers.items()
            }
            put_paths = {
                who: [f"/{self.put_bucket(who)}/{self.fresh_prefix('small')}/{k}" for k in keys]
                for who, _ in self.s3_servers()
            }
            log(f"small objects {label}, aiohttp driver")
            rows = []
            for op in ("GET", "PUT", "HEAD"):
                row = Row(
                    f"{op} {label}, {CONCURRENCY} in flight (aiohttp driver)",
                    "ops/s",
                    raw_label="nginx" if op == "GET" else "",
                )
                for who in self.servers if op == "GET" else put_paths:
                    paths = put_paths[who] if op == "PUT" else get_paths
                    row.results[who] = self.small_measure(
                        who,
                        lambda: drivers[who].ops(op, paths, body if op == "PUT" else None),  # noqa: B023 (called here)
                    )
                rows.append(row)
            log(f"small objects {label}, s5cmd")
            s5_keys = keys[:s5_count]
            gets = self.command_file("get-small", [f"cat s3://data/{k}" for k in s5_keys])
            for op in ("GET", "PUT"):
                row = Row(f"{op} {label}, {s5_count:,} objects (s5cmd run, {CONCURRENCY} workers)", "ops/s")
                for who, server in self.s3_servers():
                    s5 = S5cmd(server.url, self.creds, workers=CONCURRENCY)
                    commands = (
                        gets
                        if op == "GET"
                        else self.command_file(
                            f"put-small-{who}",
                            [
                                f"cp {self.root / 'data' / k} "
                                f"s3://{self.put_bucket(who)}/{self.fresh_prefix('s5small')}/{k}"
                                for k in s5_keys
                            ],
                        )
                    )
                    cpu_before = server.cpu_seconds()
                    seconds = s5.run_file(commands)
                    row.results[who] = Measure(
                        s5_count / seconds, cpu=_cpu_per_op(server.cpu_seconds() - cpu_before, s5_count)
                    )
                rows.append(row)
            check_dev_null()
            for who, _ in self.s3_servers():
                dataset.empty_bucket(self.root, self.put_bucket(who))
            self.rows += rows

    def small_measure(self, who: str, action: Callable[[], OpStats]) -> Measure:
        server = self.servers[who]
        cpu_before = server.cpu_seconds()
        stats = action()
        return Measure(
            stats.ops_per_s,
            detail=f"p50 {stats.percentile_ms(0.50):.2f} ms, p99 {stats.percentile_ms(0.99):.2f} ms",
            cpu=_cpu_per_op(server.cpu_seconds() - cpu_before, stats.ops) if who != "raw" else "",
        )

    # -- listing, multipart ----------------------------------------------------------------------

    def listing(self) -> None:
        expected = self.sizes.list_keys
        row = Row(
            f"ListObjectsV2 of {expected:,} keys, {self.sizes.list_dirs} dirs, full pagination "
            "(s5cmd ls; best of 2, the 1st in brackets)",
            "keys/s",
            raw_label="find -type f",
        )
        for who, server in self.s3_servers():
            log(f"listing: {server.name}")
            s5 = S5cmd(server.url, self.creds, workers=CONCURRENCY)
            rates = []
            for _ in range(2):
                cpu_before = server.cpu_seconds()
                found, seconds = s5.count_keys("list")
                if found != expected:
                    raise RuntimeError(f"{server.name} listed {found} keys, expected {expected}")
                rates.append(expected / seconds)
            row.results[who] = Measure(
                max(rates),
                detail=f"(1st: {rates[0]:,.0f})",
                cpu=_cpu_per_op(server.cpu_seconds() - cpu_before, expected),
            )
        seconds = run_timed(["find", str(self.root / "list"), "-type", "f"])
        row.results["raw"] = Measure(expected / seconds)
        self.rows.append(row)

    def multipart(self) -> None:
        s = self.sizes
        for part in (s.mpu_small_part, s.mpu_part):
            row = Row(
                f"CompleteMultipartUpload of {_size(part * s.mpu_parts)} ({s.mpu_parts} × {_size(part)} "
                "parts; the Complete call only)",
                "ms",
                higher_is_better=False,
            )
            body = dataset.pattern(part)
            for who, server in self.s3_servers():
                log(f"multipart {_size(part * s.mpu_parts)}: {server.name}")
                bucket = self.put_bucket(who)
                driver = HttpDriver(server.url, self.creds, concurrency=1)
                seconds = driver.multipart_complete_seconds(bucket, self.fresh_prefix("mpu"), body, s.mpu_parts)
                row.results[who] = Measure(seconds * 1000)
                dataset.empty_bucket(self.root, bucket)
            del body
            self.rows.append(row)

    # -- helpers ---------------------------------------------------------------------------------

    def command_file(self, name: str, lines: list[str]) -> Path:
        path = self.logs / f"{name}.s5cmd"
        path.write_text("\n".join(lines) + "\n")
        return path

    def run(self) -> None:
        log(f"laying out the data set in {self.root}")
        dataset.lay_out(self.root, self.sizes, [self.put_bucket(w) for w in ("gateway", "peer")])
        self.start_servers()
        hashed, parallel = self.raw_write_rows()
        self.large_get()
        self.large_put(hashed, parallel)
        self.small_objects()
        self.listing()
        self.multipart()


def check_dev_null() -> None:
    """Guard against a client replacing /dev/null by a file (root can): it would fill RAM."""
    if not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        raise RuntimeError(
            "/dev/null is no longer a character device: restore it with `rm /dev/null && mknod -m 666 /dev/null c 1 3`"
        )


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (user, nice, system, irq, softirq), all cores."""
    with open("/proc/stat") as stat_file:
        fields = [int(f) for f in stat_file.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def write_with_md5(source: Path, target: Path) -> float:
    """Copy ``source`` to ``target`` hashing MD5 on the way: the work a PUT does, without HTTP."""
    start = time.perf_counter()
    digest = hashlib.md5()
    buffer = bytearray(16 * MiB)
    view = memoryview(buffer)
    with open(source, "rb", buffering=0) as src, open(target, "wb", buffering=0) as dst:
        while n := src.readinto(buffer):
            digest.update(view[:n])
            dst.write(view[:n])
        os.fdatasync(dst.fileno())
    return time.perf_counter() - start


def _size(nbytes: int) -> str:
    return f"{nbytes // GiB} GiB" if nbytes >= GiB and nbytes % GiB == 0 else f"{nbytes // MiB} MiB"


def _cpu_per_op(cpu_seconds: float, ops: int) -> str:
    return f"{1e6 * cpu_seconds / ops:.0f} µs/op"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bash perf/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and one repeat (a minute or two)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("/dev/shm"),
        help="filesystem to benchmark: a fresh directory is made in it and removed at the end (default /dev/shm)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="aif-gateway and nginx worker processes (default: usable CPUs)",
    )
    parser.add_argument("--report", type=Path, help="also write the Markdown report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sizes = dataset.QUICK if args.quick else dataset.FULL
    # SIGTERM (and Ctrl-C) unwind through the finally below, which stops every server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where started with it ignored
    args.dir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="aif-bench-", dir=args.dir))
    base.chmod(0o755)
    root, logs = base / "root", base / "logs"
    root.mkdir()
    logs.mkdir()
    bench = Bench(root, sizes, args.workers, logs)
    started = datetime.now(UTC)
    measured = software()  # before the run: the tree may change while it runs
    wall_start, machine_start, ours_start = time.monotonic(), machine_busy_seconds(), own_cpu_seconds()
    completed = False
    try:
        bench.run()
        completed = True
    finally:
        bench.stop_servers()
        if args.keep:
            log(f"kept {base}")
        elif completed:
            shutil.rmtree(base, ignore_errors=True)
        else:  # the data goes (it is RAM on tmpfs); the servers' logs stay for the post-mortem
            shutil.rmtree(root, ignore_errors=True)
            log(f"stopped early: server logs kept in {logs}")
    # Servers and clients are all reaped children by now, so own_cpu_seconds covers them.
    wall = time.monotonic() - wall_start
    others = (machine_busy_seconds() - machine_start) - (own_cpu_seconds() - ours_start)
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(args.dir)], capture_output=True, text=True).stdout.strip()
    report = "\n".join(
        [
            f"- command: `bash perf/run {shlex.join(argv)}`",
            f"- date: {started:%Y-%m-%d %H:%M} UTC; data on {args.dir} ({fs}); aif-gateway --workers {args.workers}, "
            f"nginx worker_processes {args.workers}; rclone serve s3 defaults.",
            machine(),
            measured,
            f"- CPU time not spent by the benchmark's own processes during its {wall:.0f} s (other programs, "
            f"interrupts): {max(others, 0):.0f} CPU-s, "
            f"{100 * max(others, 0) / (wall * len(os.sched_getaffinity(0))):.0f}% of the machine",
            "",
            "Ratios are the gateway's speed over the other's: > 1 favours the gateway (for latencies, "
            "the other's time over the gateway's). CPU is the server processes' user + system time.",
            "",
            table(bench.rows),
        ]
    )
    return publish(report, args.report)


if __name__ == "__main__":
    run_main(main)
